//! The `multipart/form-data` body of a browser upload (S3's POST Object): its fields, read whole
//! up to the `file` field, and then the file's bytes, streamed.
//!
//! S3 takes the file as the form's last field, so its length is known from the request's
//! `Content-Length` once the fields before it are read: what remains is the file and the closing
//! delimiter. That lets the write path stream the file like a PUT body of known length; the
//! delimiter is checked when the body ends, before the write commits.

use crate::s3::error::S3Error;
use bytes::{Buf, Bytes, BytesMut};
use futures::StreamExt;
use http_body_util::{BodyExt, BodyStream, StreamBody};
use hyper::body::{Frame, Incoming};
use memchr::memmem;
use node_rpc::body::HttpBody;
use std::time::Duration;

/// Most bytes the fields before the file may take, as in S3 (20 KB policy and the rest).
const MAX_PRE_DATA: usize = 1 << 20;

/// The form's fields before the file, and the file part's own headers.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Form {
    /// Field names lowercased (S3 treats them without regard to case), values as sent.
    pub fields: Vec<(String, String)>,
    /// The file part's `filename`, for `${filename}` in the key.
    pub file_name: Option<String>,
}

impl Form {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The boundary of a `multipart/form-data` content type, if that is what it is.
pub fn boundary(content_type: &str) -> Option<String> {
    let mut params = content_type.split(';');
    let kind = params.next()?.trim();
    if !kind.eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params.find_map(|p| {
        let (name, value) = p.trim().split_once('=')?;
        let value = value.trim().trim_matches('"');
        (name.trim().eq_ignore_ascii_case("boundary") && !value.is_empty())
            .then(|| value.to_string())
    })
}

fn malformed() -> S3Error {
    S3Error::MalformedPostRequest
}

/// Reads the fields of a form body of `content_length` bytes up to its `file` field. Returns the
/// form, and the file's bytes as a body of the returned length that fails if the form does not
/// end right after it.
/// `stall`: longest wait for more of the fields (the file's bytes are timed by their reader).
pub async fn read(
    body: Incoming,
    boundary: &str,
    content_length: u64,
    stall: Duration,
) -> Result<(Form, HttpBody, u64), S3Error> {
    let mut stream = BodyStream::new(body);
    let mut buf = BytesMut::new();
    let mut consumed = 0u64;
    let mut form = Form::default();
    let delimiter = format!("--{boundary}");
    let next_delimiter = format!("\r\n--{boundary}");
    loop {
        // A part starts with the delimiter line, then its headers up to an empty line.
        let head_end = loop {
            if let Some(at) = find(&buf, b"\r\n\r\n") {
                break at;
            }
            fill(&mut stream, &mut buf, consumed, stall).await?;
        };
        let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| malformed())?;
        let mut lines = head.split("\r\n");
        if lines.next() != Some(delimiter.as_str()) {
            return Err(malformed());
        }
        let (name, file_name) = disposition(lines).ok_or_else(malformed)?;
        advance(&mut buf, &mut consumed, head_end + 4);
        if name == "file" {
            form.file_name = file_name;
            break;
        }
        let value_end = loop {
            if let Some(at) = find(&buf, next_delimiter.as_bytes()) {
                break at;
            }
            fill(&mut stream, &mut buf, consumed, stall).await?;
        };
        let value = String::from_utf8(buf[..value_end].to_vec()).map_err(|_| malformed())?;
        form.fields.push((name, value));
        advance(&mut buf, &mut consumed, value_end + 2);
    }
    let trailer = format!("\r\n--{boundary}--\r\n").into_bytes();
    let file_len = content_length
        .checked_sub(consumed + trailer.len() as u64)
        .ok_or_else(malformed)?;
    let file = file_body(buf.freeze(), stream, file_len, next_delimiter, trailer);
    Ok((form, file, file_len))
}

/// Takes a part's headers (after its delimiter line) and returns its field name, lowercased, and
/// its file name if it has one.
fn disposition<'a>(lines: impl Iterator<Item = &'a str>) -> Option<(String, Option<String>)> {
    let line = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-disposition"))?
        .1;
    let mut params = line.split(';');
    if !params.next()?.trim().eq_ignore_ascii_case("form-data") {
        return None;
    }
    let (mut name, mut file_name) = (None, None);
    for param in params {
        let (key, value) = param.trim().split_once('=')?;
        let value = value.trim().trim_matches('"').to_string();
        match key.trim().to_ascii_lowercase().as_str() {
            "name" => name = Some(value.to_ascii_lowercase()),
            "filename" => file_name = Some(value),
            _ => {}
        }
    }
    Some((name?, file_name))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn advance(buf: &mut BytesMut, consumed: &mut u64, n: usize) {
    buf.advance(n);
    *consumed += n as u64;
}

/// Reads more of the body into `buf`; an early end, or fields beyond `MAX_PRE_DATA`, fail.
async fn fill(
    stream: &mut BodyStream<Incoming>,
    buf: &mut BytesMut,
    consumed: u64,
    stall: Duration,
) -> Result<(), S3Error> {
    if consumed as usize + buf.len() > MAX_PRE_DATA {
        return Err(S3Error::MaxPostPreDataLengthExceeded);
    }
    loop {
        let next = tokio::time::timeout(stall, stream.next()).await;
        match next.map_err(|_| S3Error::RequestTimeout)? {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    buf.extend_from_slice(&data);
                    return Ok(());
                }
            }
            Some(Err(_)) => return Err(S3Error::IncompleteBody),
            None => {
                return Err(S3Error::InvalidArgument(
                    "POST requires exactly one file upload per request.".into(),
                ))
            }
        }
    }
}

/// The file's `len` bytes (`first`, then the rest of `stream`), ending with an error unless the
/// body then holds exactly `trailer`, the form's closing delimiter. A form with fields after the
/// file has the same length as one whose file is that much longer: the file holding the parts'
/// `delimiter` (which a sender must choose so that no content holds it) tells them apart.
fn file_body(
    first: Bytes,
    stream: BodyStream<Incoming>,
    len: u64,
    delimiter: String,
    trailer: Vec<u8>,
) -> HttpBody {
    struct State {
        pending: Option<Bytes>,
        stream: BodyStream<Incoming>,
        left: u64,
        finder: memmem::Finder<'static>,
        /// The file's last bytes sent, fewer than the delimiter's: one may start in them.
        carry: Vec<u8>,
        tail: Vec<u8>,
        trailer: Vec<u8>,
        done: bool,
    }
    impl State {
        /// Whether the delimiter is in `file`, or starts in the bytes sent before it.
        fn holds_delimiter(&mut self, file: &[u8]) -> bool {
            let width = self.finder.needle().len() - 1;
            let head = &file[..file.len().min(width)];
            let across = [self.carry.as_slice(), head].concat();
            if self.finder.find(&across).is_some() || self.finder.find(file).is_some() {
                return true;
            }
            if file.len() >= width {
                self.carry = file[file.len() - width..].to_vec();
            } else {
                self.carry = across[across.len().saturating_sub(width)..].to_vec();
            }
            false
        }
    }
    let state = State {
        pending: Some(first),
        stream,
        left: len,
        finder: memmem::Finder::new(delimiter.as_bytes()).into_owned(),
        carry: Vec::new(),
        tail: Vec::new(),
        trailer,
        done: false,
    };
    let frames = futures::stream::unfold(state, |mut s| async move {
        loop {
            if s.done {
                return None;
            }
            let data = match s.pending.take() {
                Some(data) => data,
                None => match s.stream.next().await {
                    Some(Ok(frame)) => match frame.into_data() {
                        Ok(data) => data,
                        Err(_) => continue,
                    },
                    Some(Err(e)) => {
                        s.done = true;
                        return Some((Err(std::io::Error::other(e)), s));
                    }
                    None => {
                        s.done = true;
                        if s.left == 0 && s.tail == s.trailer {
                            return None;
                        }
                        let e = std::io::Error::other("the form does not end after its file");
                        return Some((Err(e), s));
                    }
                },
            };
            let take = (s.left.min(data.len() as u64)) as usize;
            s.left -= take as u64;
            if data.len() > take && s.tail.len() + data.len() - take <= s.trailer.len() {
                s.tail.extend_from_slice(&data[take..]);
            } else if data.len() > take {
                s.done = true;
                let e = std::io::Error::other("fields after the file");
                return Some((Err(e), s));
            }
            if take > 0 {
                let file = data.slice(..take);
                if s.holds_delimiter(&file) {
                    s.done = true;
                    let e = std::io::Error::other("fields after the file");
                    return Some((Err(e), s));
                }
                return Some((Ok(Frame::data(file)), s));
            }
        }
    });
    BodyExt::boxed(StreamBody::new(frames))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundaries() {
        assert_eq!(
            boundary("multipart/form-data; boundary=----abc").as_deref(),
            Some("----abc")
        );
        assert_eq!(
            boundary("Multipart/Form-Data;boundary=\"x y\"").as_deref(),
            Some("x y")
        );
        assert_eq!(boundary("multipart/form-data"), None);
        assert_eq!(boundary("application/xml; boundary=x"), None);
    }

    #[test]
    fn dispositions() {
        let d = |line: &str| disposition([line].into_iter());
        assert_eq!(
            d("Content-Disposition: form-data; name=\"Key\""),
            Some(("key".into(), None))
        );
        assert_eq!(
            d("content-disposition: form-data; name=\"file\"; filename=\"a b.txt\""),
            Some(("file".into(), Some("a b.txt".into())))
        );
        assert_eq!(d("Content-Disposition: attachment; name=\"x\""), None);
        assert_eq!(d("Content-Disposition: form-data"), None);
    }
}
