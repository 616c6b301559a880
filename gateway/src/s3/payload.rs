//! The bytes of an upload as the client meant them: the raw body, or an `aws-chunked` body decoded
//! chunk by chunk (checking chunk signatures) with its trailers kept for the checksum check.

use crate::metrics::{Counted, METRICS};
use crate::s3::auth::{Authenticated, ChunkSigner, Payload};
use crate::s3::error::S3Error;
use bytes::{Buf, Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use node_rpc::body::HttpBody;
use sha2::{Digest, Sha256};
use std::time::Duration;

/// Longest chunk header or trailer line accepted; real ones are under 200 bytes.
const MAX_LINE: usize = 4096;

enum Chunked {
    Header,
    Data { left: u64 },
    DataEnd,
    Done,
}

pub struct PayloadReader {
    body: HttpBody,
    /// `None` for content the gateway produced itself, whose source has timeouts of its own.
    stall: Option<Duration>,
    buf: BytesMut,
    eof: bool,
    expected_len: u64,
    received: u64,
    /// For a `Payload::Sha256` body: the running hash and the value it must reach.
    sha256: Option<(Sha256, String)>,
    chunked: Option<Chunked>,
    signer: Option<ChunkSigner>,
    /// The running hash of the current chunk and the signature it must match.
    chunk: Option<(Sha256, String)>,
    trailers: Vec<(String, String)>,
}

impl PayloadReader {
    /// `decoded_len` is the number of content bytes the client declared.
    /// `stall`: longest wait for the next bytes of the body before the request fails with
    /// `RequestTimeout` (a client that stops sending must not hold the request forever).
    pub fn new(
        body: Incoming,
        auth: Authenticated,
        decoded_len: u64,
        stall: Duration,
    ) -> PayloadReader {
        PayloadReader::with_body(
            Counted::wrap(
                body.map_err(std::io::Error::other).boxed(),
                &METRICS.received_bytes,
            ),
            auth,
            decoded_len,
            Some(stall),
        )
    }

    /// `new` for a body already boxed (the fuzz targets feed their bytes from memory, without a
    /// runtime's timer: `stall` is `None`).
    pub fn with_body(
        body: HttpBody,
        auth: Authenticated,
        decoded_len: u64,
        stall: Option<Duration>,
    ) -> PayloadReader {
        let (sha256, chunked) = match &auth.payload {
            Payload::Unsigned => (None, None),
            Payload::Sha256(hash) => (Some((Sha256::new(), hash.clone())), None),
            Payload::Chunked { .. } => (None, Some(Chunked::Header)),
        };
        PayloadReader {
            body,
            stall,
            buf: BytesMut::new(),
            eof: false,
            expected_len: decoded_len,
            received: 0,
            sha256,
            chunked,
            signer: auth.chunk_signer,
            chunk: None,
            trailers: Vec::new(),
        }
    }

    /// Content the gateway produced itself (the source of a copy), taken as is: no signature or
    /// chunk decoding, only the length check.
    pub fn from_body(body: HttpBody, len: u64) -> PayloadReader {
        PayloadReader {
            body,
            stall: None,
            buf: BytesMut::new(),
            eof: false,
            expected_len: len,
            received: 0,
            sha256: None,
            chunked: None,
            signer: None,
            chunk: None,
            trailers: Vec::new(),
        }
    }

    /// A trailer's value, once the whole payload has been read.
    pub fn trailer(&self, name: &str) -> Option<&str> {
        self.trailers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The next run of content bytes; `None` once all of it has arrived and checked out.
    pub async fn next(&mut self) -> Result<Option<Bytes>, S3Error> {
        let piece = if self.chunked.is_some() {
            self.next_chunked().await?
        } else {
            self.next_plain().await?
        };
        match &piece {
            Some(bytes) => {
                self.received += bytes.len() as u64;
                if self.received > self.expected_len {
                    return Err(S3Error::InvalidRequest(
                        "the body is longer than its declared length".into(),
                    ));
                }
            }
            None if self.received != self.expected_len => return Err(S3Error::IncompleteBody),
            None => {}
        }
        Ok(piece)
    }

    async fn next_plain(&mut self) -> Result<Option<Bytes>, S3Error> {
        if !self.buf.is_empty() {
            return Ok(Some(self.buf.split().freeze()));
        }
        match self.frame().await? {
            Some(data) => {
                if let Some((hash, _)) = &mut self.sha256 {
                    hash.update(&data);
                }
                Ok(Some(data))
            }
            None => {
                if let Some((hash, expected)) = self.sha256.take() {
                    if hex::encode(hash.finalize()) != expected {
                        return Err(S3Error::ContentSha256Mismatch);
                    }
                }
                Ok(None)
            }
        }
    }

    async fn next_chunked(&mut self) -> Result<Option<Bytes>, S3Error> {
        loop {
            match self.chunked.take().expect("chunked state is set") {
                Chunked::Done => {
                    self.chunked = Some(Chunked::Done);
                    return Ok(None);
                }
                Chunked::Header => {
                    let line = self.line().await?.ok_or(S3Error::IncompleteBody)?;
                    let (size, signature) = parse_chunk_header(&line)?;
                    if self.signer.is_some() && signature.is_none() {
                        return Err(S3Error::SignatureDoesNotMatch);
                    }
                    self.chunk = signature.map(|s| (Sha256::new(), s));
                    if size == 0 {
                        self.check_chunk_signature()?;
                        self.read_trailers().await?;
                        self.chunked = Some(Chunked::Done);
                    } else if size > self.expected_len - self.received {
                        return Err(S3Error::InvalidRequest(
                            "aws-chunked body is longer than x-amz-decoded-content-length".into(),
                        ));
                    } else {
                        self.chunked = Some(Chunked::Data { left: size });
                    }
                }
                Chunked::Data { left } => {
                    if self.buf.is_empty() {
                        match self.frame().await? {
                            Some(data) => self.buf.extend_from_slice(&data),
                            None => return Err(S3Error::IncompleteBody),
                        }
                    }
                    let take = (left as usize).min(self.buf.len());
                    let data = self.buf.split_to(take).freeze();
                    if let Some((hash, _)) = &mut self.chunk {
                        hash.update(&data);
                    }
                    let left = left - take as u64;
                    self.chunked = Some(if left == 0 {
                        Chunked::DataEnd
                    } else {
                        Chunked::Data { left }
                    });
                    return Ok(Some(data));
                }
                Chunked::DataEnd => {
                    match self.line().await? {
                        Some(line) if line.is_empty() => {}
                        _ => return Err(S3Error::IncompleteBody),
                    }
                    self.check_chunk_signature()?;
                    self.chunked = Some(Chunked::Header);
                }
            }
        }
    }

    fn check_chunk_signature(&mut self) -> Result<(), S3Error> {
        if let (Some(signer), Some((hash, signature))) = (&mut self.signer, self.chunk.take()) {
            if !signer.verify_chunk(&signature, &hash.finalize()) {
                return Err(S3Error::SignatureDoesNotMatch);
            }
        }
        Ok(())
    }

    /// Reads `name:value` lines up to a blank line or the end of the body.
    async fn read_trailers(&mut self) -> Result<(), S3Error> {
        let mut signed_text = Vec::new();
        let mut signature = None;
        while let Some(line) = self.line().await? {
            if line.is_empty() {
                break;
            }
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| S3Error::InvalidRequest("malformed trailer".into()))?;
            let (name, value) = (name.trim().to_ascii_lowercase(), value.trim().to_string());
            if name == "x-amz-trailer-signature" {
                signature = Some(value);
            } else {
                signed_text.extend_from_slice(format!("{name}:{value}\n").as_bytes());
                self.trailers.push((name, value));
            }
        }
        if let Some(signer) = &mut self.signer {
            if !self.trailers.is_empty() || signature.is_some() {
                let signature = signature.ok_or(S3Error::SignatureDoesNotMatch)?;
                if !signer.verify_trailer(&signature, &signed_text) {
                    return Err(S3Error::SignatureDoesNotMatch);
                }
            }
        }
        Ok(())
    }

    /// One CRLF- (or LF-) terminated line without its terminator; `None` at the end of the body.
    async fn line(&mut self) -> Result<Option<String>, S3Error> {
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let mut line = self.buf.split_to(pos + 1);
                line.truncate(pos);
                if line.last() == Some(&b'\r') {
                    line.truncate(pos - 1);
                }
                return String::from_utf8(line.to_vec())
                    .map(Some)
                    .map_err(|_| S3Error::InvalidRequest("aws-chunked line is not UTF-8".into()));
            }
            if self.buf.len() > MAX_LINE {
                return Err(S3Error::InvalidRequest("aws-chunked line too long".into()));
            }
            match self.frame().await? {
                Some(data) => self.buf.extend_from_slice(&data),
                None if self.buf.is_empty() => return Ok(None),
                None => {
                    let rest = self.buf.split().freeze();
                    return Ok(Some(String::from_utf8_lossy(rest.chunk()).into_owned()));
                }
            }
        }
    }

    async fn frame(&mut self) -> Result<Option<Bytes>, S3Error> {
        while !self.eof {
            let next = match self.stall {
                Some(stall) => tokio::time::timeout(stall, self.body.frame())
                    .await
                    .map_err(|_| S3Error::RequestTimeout)?,
                None => self.body.frame().await,
            };
            match next {
                None => self.eof = true,
                Some(Err(_)) => return Err(S3Error::IncompleteBody),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        if !data.is_empty() {
                            return Ok(Some(data));
                        }
                    }
                }
            }
        }
        Ok(None)
    }
}

fn parse_chunk_header(line: &str) -> Result<(u64, Option<String>), S3Error> {
    let bad = || S3Error::InvalidRequest("malformed aws-chunked chunk header".into());
    let (size, ext) = line.split_once(';').unwrap_or((line, ""));
    let size = u64::from_str_radix(size.trim(), 16).map_err(|_| bad())?;
    let signature = ext
        .split(';')
        .filter_map(|e| e.trim().strip_prefix("chunk-signature="))
        .next()
        .map(str::to_string);
    Ok((size, signature))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_headers() {
        assert_eq!(parse_chunk_header("400").unwrap(), (1024, None));
        assert_eq!(
            parse_chunk_header("10000;chunk-signature=abc").unwrap(),
            (65536, Some("abc".into()))
        );
        assert!(parse_chunk_header("zz").is_err());
        assert!(parse_chunk_header("").is_err());
    }
}
