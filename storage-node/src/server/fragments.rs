//! Fragment streaming: uploads checked frame by frame and against their stream tag as they arrive,
//! over HTTP or alone on an upgraded connection (raw), and reads sent back in chunks, with
//! `sendfile`, or with a lookup.

use super::{bad, blocking, NodeError};
use crate::auth::{StreamKey, StreamTagger, STREAM_TAG_LEN};
use crate::body::{empty, full, ChannelBody, HttpBody};
use crate::metrics::METRICS;
use crate::protocol::{
    raw_upload_answer, Lookup, BLOCK_SIZE_HEADER, DATA_SHARDS_HEADER, FRAMES_HEADER,
    RAW_FRAGMENT_PROTOCOL, RESUME_HEADER, SIZE_HEADER,
};
use crate::store::{FragmentFile, Store, StoreError};
use bytes::Bytes;
use erasure::{FragmentVerifier, FrameFormat, StripeLayout};
use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use listener::Guarded;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Fragment bytes are handed to the disk in batches of this size, and read back in chunks of it.
const IO_CHUNK: usize = 1 << 20;
/// How long a fragment transfer (raw, or an HTTP body) waits for a peer that moves no bytes
/// before it gives up. A
/// gateway stops reading while its S3 client is slow to take the object, and stops sending while
/// its S3 client is slow to send one, so this is far above the node timeout: it only catches
/// peers that are gone.
const TRANSFER_STALL: Duration = Duration::from_secs(300);
/// The longest fragment file a lookup sends along with its record (see `lookup_and_fragment`):
/// that of a 16 MiB object in 4+2. Larger objects take long enough to read that one more round
/// trip does not count.
const LOOKUP_FRAGMENT_MAX: u64 = (4 << 20) + (64 << 10);
/// The shortest fragment a lookup sends with `sendfile` on a raw connection, when the reader asks
/// for one, rather than in its body: below it, the copies saved cost less than the switch.
const LOOKUP_RAW_MIN: u64 = 128 << 10;

/// How a connection goes back to serving calls after a raw read took it over.
pub(super) type ServeAgain = Arc<dyn Fn(Guarded<TcpStream>, listener::Tracker) + Send + Sync>;

/// A plain connection's way back to serving calls, for a raw read to take once its range is
/// sent: the reader can then keep the connection for its next raw read to this node instead of
/// opening another (see `RESUME_HEADER`). Only plain connections have one: over TLS the bytes
/// are copied, and the connection is closed after them.
#[derive(Clone)]
pub(super) struct Resume {
    pub(super) serve: ServeAgain,
    pub(super) tracker: listener::Tracker,
}

/// What a raw read sends: `head`, then `len` bytes of `file` from `offset`.
pub(super) struct RawSend {
    pub(super) head: Bytes,
    pub(super) file: std::fs::File,
    pub(super) offset: u64,
    pub(super) len: u64,
}

/// The stripe geometry of a fragment upload, from its headers.
pub(super) fn fragment_layout<B>(req: &Request<B>) -> Result<StripeLayout, NodeError> {
    let header = |name| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| bad(format!("missing {name}")))
    };
    let frames = match req.headers().get(FRAMES_HEADER) {
        None => FrameFormat::PositionFirst,
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|v| v.parse().ok())
            .and_then(FrameFormat::from_number)
            .ok_or_else(|| bad(format!("unknown {FRAMES_HEADER}")))?,
    };
    StripeLayout::checked(
        header(SIZE_HEADER)?,
        header(DATA_SHARDS_HEADER)? as usize,
        header(BLOCK_SIZE_HEADER)? as usize,
        frames,
    )
    .map_err(|_| bad("bad stripe geometry"))
}

/// Whether a fragment transfer asks for a connection of its own (see `RAW_FRAGMENT_PROTOCOL`).
pub(super) fn wants_raw<B>(req: &Request<B>) -> bool {
    req.headers()
        .get(http::header::UPGRADE)
        .is_some_and(|p| p == RAW_FRAGMENT_PROTOCOL)
}

/// The 101 of a raw transfer; `resumes`: the node serves calls on the connection after it.
pub(super) fn switching_to_raw(resumes: bool) -> Response<HttpBody> {
    let upgrade = (
        http::header::UPGRADE,
        HeaderValue::from_static(RAW_FRAGMENT_PROTOCOL),
    );
    let mut response = super::response(StatusCode::SWITCHING_PROTOCOLS, Some(upgrade), empty());
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONNECTION,
        HeaderValue::from_static("upgrade"),
    );
    if resumes {
        headers.insert(RESUME_HEADER, HeaderValue::from_static("1"));
    }
    response
}

/// Receives one fragment, checking every frame's hash as it arrives, and commits the file only
/// when exactly the expected frames came, followed by the call's stream tag: a truncated,
/// corrupted or forged upload leaves nothing behind.
pub(super) async fn receive_fragment(
    mut file: FragmentFile,
    layout: StripeLayout,
    index: u8,
    mut body: Incoming,
    key: StreamKey,
) -> Result<Response<HttpBody>, NodeError> {
    let mut verifier = FragmentVerifier::new(layout, index as usize);
    let mut tagger = key.tagger(layout);
    let mut fragment_left = layout.fragment_len();
    let mut tag = Vec::with_capacity(STREAM_TAG_LEN);
    let mut batch = Vec::new();
    let mut batched = 0;
    while let Some(frame) = super::next_frame(&mut body, TRANSFER_STALL).await? {
        let Ok(mut data) = frame.into_data() else {
            continue;
        };
        // The bytes past the fragment's length are the tag.
        let in_fragment = data
            .len()
            .min(usize::try_from(fragment_left).unwrap_or(usize::MAX));
        let past = data.split_off(in_fragment);
        if tag.len() + past.len() > STREAM_TAG_LEN {
            return Err(bad("the body is longer than the fragment and its tag"));
        }
        tag.extend_from_slice(&past);
        fragment_left -= data.len() as u64;
        if data.is_empty() {
            continue;
        }
        tagger.update(&data);
        verifier.update(&data).map_err(|e| bad(e.to_string()))?;
        batched += data.len();
        batch.push(data);
        if batched >= IO_CHUNK {
            let chunks = std::mem::take(&mut batch);
            file = blocking(move || write_chunks(&mut file, &chunks).map(|()| file)).await?;
            batched = 0;
        }
    }
    verifier.finish().map_err(|e| bad(e.to_string()))?;
    tagger.check(&tag)?;
    // The last chunks and the commit in one trip to the blocking pool: a fragment of up to
    // `IO_CHUNK` (every object up to 4 MiB) takes one.
    blocking(move || {
        write_chunks(&mut file, &batch)?;
        file.commit()
    })
    .await?;
    count_written(layout);
    Ok(Response::new(empty()))
}

/// Receives one fragment and its stream tag alone on the connection of `upgrade`, then answers
/// with a status line (see `RAW_FRAGMENT_PROTOCOL`) and closes it. The bytes are read straight
/// into the file's direct-I/O buffer, and each buffer is checked whole before it is written: the
/// HTTP path's copy from hyper's chunks into that buffer was a tenth of a node's CPU on large PUTs.
/// `_in_flight` marks the connection busy until the upload ends, so that only `TRANSFER_STALL`
/// bounds its reads.
pub(super) async fn receive_raw(
    upgrade: hyper::upgrade::OnUpgrade,
    file: FragmentFile,
    layout: StripeLayout,
    index: u8,
    key: StreamKey,
    _in_flight: Option<listener::RequestGuard>,
) {
    let mut io = match upgrade.await {
        Ok(upgraded) => TokioIo::new(upgraded),
        Err(e) => return tracing::debug!(error = %e, "raw fragment upload never started"),
    };
    let mut left = layout.fragment_len() + STREAM_TAG_LEN as u64;
    let tagger = key.tagger(layout);
    let reply = match receive_into(&mut io, file, layout, index, tagger, &mut left).await {
        Ok(()) => raw_upload_answer(StatusCode::OK, "stored"),
        Err(e) => {
            // The sender writes the whole fragment before it reads the answer: the rest is
            // read and dropped first, or closing with unread bytes would reset the connection
            // and lose the answer.
            let (mut rest, mut dropped) = ((&mut io).take(left), tokio::io::sink());
            let _ = tokio::time::timeout(TRANSFER_STALL, tokio::io::copy(&mut rest, &mut dropped))
                .await;
            raw_upload_answer(e.status(), &e.to_string())
        }
    };
    let sent = async {
        io.write_all(reply.as_bytes()).await?;
        io.shutdown().await
    };
    if let Err(e) = sent.await {
        tracing::debug!(error = %e, "raw fragment upload: the answer did not reach the sender");
    }
}

/// Reads the fragment's bytes into `file`, then the tag, and commits the file if the tag is the
/// bytes'; `left` counts the bytes (tag included) still to come.
async fn receive_into(
    io: &mut TokioIo<hyper::upgrade::Upgraded>,
    mut file: FragmentFile,
    layout: StripeLayout,
    index: u8,
    mut tagger: StreamTagger,
    left: &mut u64,
) -> Result<(), NodeError> {
    let mut verifier = FragmentVerifier::new(layout, index as usize);
    let mut check = |verifier: &mut FragmentVerifier, file: &mut FragmentFile| {
        tagger.update(file.pending());
        verifier
            .update(file.pending())
            .map_err(|e| bad(e.to_string()))
    };
    let tag_len = STREAM_TAG_LEN as u64;
    while *left > tag_len {
        let spare = file.spare();
        let want = spare
            .len()
            .min(usize::try_from(*left - tag_len).unwrap_or(usize::MAX));
        let n = tokio::time::timeout(TRANSFER_STALL, io.read(&mut spare[..want]))
            .await
            .map_err(|_| bad("the sender stalled"))?
            .map_err(|e| bad(format!("reading the fragment: {e}")))?;
        if n == 0 {
            return Err(bad("the fragment ended early"));
        }
        file.fill(n);
        *left -= n as u64;
        if file.is_full() {
            check(&mut verifier, &mut file)?;
            file = blocking(move || file.flush().map(|()| file)).await?;
        }
    }
    check(&mut verifier, &mut file)?;
    verifier.finish().map_err(|e| bad(e.to_string()))?;
    let mut tag = [0u8; STREAM_TAG_LEN];
    tokio::time::timeout(TRANSFER_STALL, io.read_exact(&mut tag))
        .await
        .map_err(|_| bad("the sender stalled"))?
        .map_err(|e| bad(format!("reading the fragment's tag: {e}")))?;
    *left = 0;
    tagger.check(&tag)?;
    blocking(move || file.commit()).await?;
    count_written(layout);
    Ok(())
}

fn count_written(layout: StripeLayout) {
    METRICS.fragments_written.inc();
    METRICS.fragment_bytes_written.add(layout.fragment_len());
}

/// Writes the received (already verified) chunks without first joining them into one buffer.
fn write_chunks(file: &mut FragmentFile, chunks: &[Bytes]) -> Result<(), StoreError> {
    chunks.iter().try_for_each(|chunk| file.write(chunk))
}

/// A record followed by this node's fragment file of its first part, whole, when the file is
/// here and at most `LOOKUP_FRAGMENT_MAX` long: a reader of a whole object is spared one round
/// trip per holder. The body is the JSON's length (4 bytes, big-endian), the JSON (whose
/// `fragment_len` says whether the fragment follows), then the fragment's bytes. With `raw` (a
/// plain connection whose reader asked for the raw protocol), a fragment of `LOOKUP_RAW_MIN` or
/// more is sent the same way on the connection switched over, with `sendfile`.
pub(super) async fn lookup_and_fragment(
    store: Arc<Store>,
    mut lookup: Lookup,
    raw: Option<(hyper::upgrade::OnUpgrade, Resume)>,
) -> Result<Response<HttpBody>, NodeError> {
    let file = lookup.record.as_ref().and_then(|r| {
        let part = r
            .parts
            .first()
            .filter(|p| p.inline.is_none() && !r.deleted)?;
        let len = part.layout(r.data_shards as usize).fragment_len();
        (len <= LOOKUP_FRAGMENT_MAX).then(|| (part.fragment_id.clone(), r.slot, len))
    });
    let raw = raw.filter(|_| file.as_ref().is_some_and(|f| f.2 >= LOOKUP_RAW_MIN));
    if let (Some((upgrade, resume)), Some((id, index, len))) = (raw, &file) {
        // Without the file the reader asks for the fragment as usual, and gets the error then.
        let opened = (store.open_fragment(id, *index).ok())
            .filter(|f| f.metadata().is_ok_and(|m| m.len() == *len));
        if let Some(opened) = opened {
            lookup.fragment_len = Some(*len);
            METRICS.fragment_reads.inc();
            METRICS.fragment_bytes_read.add(*len);
            let send = RawSend {
                head: lookup_head(&lookup)?.into(),
                file: opened,
                offset: 0,
                len: *len,
            };
            return Ok(start_raw(send, upgrade, Some(resume)));
        }
    }
    let mut fragment = None;
    if let Some((id, index, len)) = file {
        let cached = store.read_cached_fragment(&id, index, 0, len as usize);
        let read = match cached {
            Ok(Some(bytes)) => Ok(bytes),
            Ok(None) => {
                let store = store.clone();
                blocking(move || store.read_fragment(&id, index, 0, len)).await
            }
            Err(e) => Err(e.into()),
        };
        // Without it the reader asks for the fragment as usual, and gets the error then.
        fragment = read.ok().filter(|bytes| bytes.len() as u64 == len);
    }
    lookup.fragment_len = fragment.as_ref().map(|f| f.len() as u64);
    let head = lookup_head(&lookup)?;
    let total = head.len() as u64 + lookup.fragment_len.unwrap_or(0);
    let (tx, body) = ChannelBody::new(2, Some(total));
    // Room for both chunks: the sends cannot fail, and the body needs no task.
    let _ = tx.try_send(Ok(head.into()));
    if let Some(fragment) = fragment {
        METRICS.fragment_reads.inc();
        METRICS.fragment_bytes_read.add(fragment.len() as u64);
        let _ = tx.try_send(Ok(fragment.into()));
    }
    Ok(Response::new(body.boxed()))
}

/// A lookup's JSON behind its length (4 bytes, big-endian).
fn lookup_head(lookup: &Lookup) -> Result<Vec<u8>, NodeError> {
    let json = serde_json::to_vec(lookup).map_err(|e| NodeError::Store(e.into()))?;
    let head_len = u32::try_from(json.len()).map_err(|_| bad("record too large"))?;
    let mut head = Vec::with_capacity(4 + json.len());
    head.extend_from_slice(&head_len.to_be_bytes());
    head.extend_from_slice(&json);
    Ok(head)
}

/// Streams a byte range of a fragment file from a blocking reader, `IO_CHUNK` at a time.
pub(super) async fn send_fragment(
    store: Arc<Store>,
    id: String,
    index: u8,
    offset: u64,
    len: u64,
) -> Result<Response<HttpBody>, NodeError> {
    let first_len = len.min(IO_CHUNK as u64);
    let first = match store.read_cached_fragment(&id, index, offset, first_len as usize)? {
        Some(cached) => cached,
        None => {
            let (store, id) = (store.clone(), id.clone());
            blocking(move || store.read_fragment(&id, index, offset, first_len)).await?
        }
    };
    if (first.len() as u64) < first_len {
        return Err(bad("range past the end of the fragment"));
    }
    if first_len == len {
        return Ok(Response::new(full(first)));
    }
    Ok(Response::new(stream_fragment(
        store,
        id,
        index,
        offset,
        len,
        first.into(),
    )))
}

/// Answers a raw read: switches the connection over and hands it to `send_raw`.
pub(super) fn start_raw(
    send: RawSend,
    upgrade: hyper::upgrade::OnUpgrade,
    resume: Option<Resume>,
) -> Response<HttpBody> {
    let resumes = resume.is_some();
    tokio::spawn(send_raw(upgrade, send, resume));
    switching_to_raw(resumes)
}

/// Sends `send` alone on the connection of `upgrade`, once the reader has it, with `sendfile`;
/// then hands the connection back to serving calls (`resume`), or closes it (see
/// `RAW_FRAGMENT_PROTOCOL`). A failure closes it early: the reader counts the bytes. Over TLS the
/// bytes must pass through the node to be encrypted: they are copied instead.
async fn send_raw(upgrade: hyper::upgrade::OnUpgrade, send: RawSend, resume: Option<Resume>) {
    let upgraded = upgrade
        .await
        .map(|u| u.downcast::<TokioIo<Guarded<TcpStream>>>());
    let parts = match upgraded {
        Ok(Ok(parts)) => parts,
        Ok(Err(upgraded)) => {
            if let Err(e) = copy_range(TokioIo::new(upgraded), send).await {
                tracing::debug!(error = %e, "raw fragment send ended early");
            }
            return;
        }
        Err(e) => return tracing::debug!(error = %e, "raw fragment send never started"),
    };
    // Bytes the reader sent after its request would be its next call: not expected, and not
    // served (the connection is closed after the range).
    let resume = resume.filter(|_| parts.read_buf.is_empty());
    let mut stream = parts.io.into_inner();
    let head = tokio::time::timeout(TRANSFER_STALL, stream.write_all(&send.head)).await;
    if !matches!(head, Ok(Ok(()))) {
        return tracing::debug!("raw fragment send: the record did not reach the reader");
    }
    // From the page cache `sendfile` cannot wait for the disk: it runs here, without the two
    // thread switches of a blocking task.
    let sent = match in_page_cache(&send.file, send.offset, send.len) {
        true => send_cached(stream.get_ref(), &send).await.map(|()| stream),
        false => tokio::task::spawn_blocking(move || {
            send_file(stream.get_ref(), &send.file, send.offset, send.len).map(|()| stream)
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e))),
    };
    match (sent, resume) {
        (Ok(stream), Some(resume)) => {
            // The transfer counts as the connection's last activity, for its idle timeout.
            drop(resume.tracker.request());
            METRICS.raw_reads_resumed.inc();
            (resume.serve)(stream, resume.tracker);
        }
        (Ok(_), None) => {}
        (Err(e), _) => tracing::debug!(error = %e, "raw fragment send ended early"),
    }
}

/// Whether every page of a file range is in the page cache (`cachestat`, Linux 6.5 and later;
/// false where the kernel lacks it).
fn in_page_cache(file: &std::fs::File, offset: u64, len: u64) -> bool {
    use std::os::fd::AsRawFd;
    #[repr(C)]
    struct Range {
        offset: u64,
        len: u64,
    }
    #[repr(C)]
    #[derive(Default)]
    struct CacheStat {
        cached: u64,
        dirty: u64,
        writeback: u64,
        evicted: u64,
        recently_evicted: u64,
    }
    const SYS_CACHESTAT: libc::c_long = 451;
    // A larger page size only makes this count more pages than there are, and answer false.
    const PAGE: u64 = 4096;
    let range = Range { offset, len };
    let mut stat = CacheStat::default();
    // SAFETY: `range` and `stat` are valid for the call, laid out as the kernel's
    // `cachestat_range` and `cachestat`; the kernel writes only `stat`.
    let done = unsafe {
        libc::syscall(
            SYS_CACHESTAT,
            file.as_raw_fd(),
            &range as *const Range,
            &mut stat as *mut CacheStat,
            0,
        )
    };
    let pages = (offset + len).div_ceil(PAGE) - offset / PAGE;
    done == 0 && stat.cached >= pages
}

/// `sendfile` of a raw read's range from the page cache, on the runtime: each call sends what
/// the socket takes, and a full socket is waited for like any write.
async fn send_cached(socket: &TcpStream, send: &RawSend) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let mut at = libc::off_t::try_from(send.offset).map_err(std::io::Error::other)?;
    let end = send.offset + send.len;
    while (at as u64) < end {
        tokio::time::timeout(TRANSFER_STALL, socket.writable())
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        let sent = socket.try_io(tokio::io::Interest::WRITABLE, || {
            send_some(socket.as_raw_fd(), &send.file, &mut at, end)
        });
        match sent {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Copies a raw read to a connection `sendfile` cannot write to, `IO_CHUNK` at a time, then
/// closes it.
async fn copy_range(
    mut io: TokioIo<hyper::upgrade::Upgraded>,
    send: RawSend,
) -> std::io::Result<()> {
    use tokio::io::AsyncSeekExt;
    let stalled = || std::io::Error::from(std::io::ErrorKind::TimedOut);
    tokio::time::timeout(TRANSFER_STALL, io.write_all(&send.head))
        .await
        .map_err(|_| stalled())??;
    let mut file = tokio::fs::File::from_std(send.file);
    file.seek(std::io::SeekFrom::Start(send.offset)).await?;
    let mut chunk = vec![0u8; IO_CHUNK];
    let mut left = send.len;
    while left > 0 {
        let want = usize::try_from(left).map_or(IO_CHUNK, |left| left.min(IO_CHUNK));
        file.read_exact(&mut chunk[..want]).await?;
        tokio::time::timeout(TRANSFER_STALL, io.write_all(&chunk[..want]))
            .await
            .map_err(|_| stalled())??;
        left -= want as u64;
    }
    io.shutdown().await
}

/// `sendfile` of a file range to a connection, on a blocking thread (the file's pages may have to
/// come from the disk): the socket is made blocking for it, with `TRANSFER_STALL` as its send
/// timeout, and non-blocking again after, for the runtime that owns it.
fn send_file(
    socket: &TcpStream,
    file: &std::fs::File,
    offset: u64,
    len: u64,
) -> std::io::Result<()> {
    use std::os::fd::{AsRawFd, FromRawFd};
    // SAFETY: `socket` keeps the descriptor open for the whole call, and `ManuallyDrop` keeps
    // this second handle to it from closing it.
    let blocking = std::mem::ManuallyDrop::new(unsafe {
        std::net::TcpStream::from_raw_fd(socket.as_raw_fd())
    });
    blocking.set_nonblocking(false)?;
    blocking.set_write_timeout(Some(TRANSFER_STALL))?;
    let sent = send_range(&blocking, file, offset, len);
    blocking.set_write_timeout(None)?;
    blocking.set_nonblocking(true)?;
    sent
}

/// `sendfile` of a file range to a blocking socket.
fn send_range(
    socket: &std::net::TcpStream,
    file: &std::fs::File,
    offset: u64,
    len: u64,
) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let mut at = libc::off_t::try_from(offset).map_err(std::io::Error::other)?;
    let end = offset + len;
    while (at as u64) < end {
        send_some(socket.as_raw_fd(), file, &mut at, end)?;
    }
    Ok(())
}

/// One `sendfile` call of what is left of a range up to `end`, from `at`, which the kernel
/// advances by the bytes sent.
fn send_some(
    socket: std::os::fd::RawFd,
    file: &std::fs::File,
    at: &mut libc::off_t,
    end: u64,
) -> std::io::Result<usize> {
    use std::os::fd::AsRawFd;
    let want = (end - *at as u64).min(1 << 30) as usize;
    // SAFETY: both descriptors are open for the call, and `at` is a valid offset.
    let sent = unsafe { libc::sendfile(socket, file.as_raw_fd(), at, want) };
    match sent {
        0 => Err(std::io::ErrorKind::UnexpectedEof.into()),
        n if n < 0 => Err(std::io::Error::last_os_error()),
        n => Ok(n as usize),
    }
}

/// `len` bytes of a fragment file from `offset` as a body, read `IO_CHUNK` at a time by a blocking
/// reader; `first` holds the bytes from `offset` already read (possibly none).
pub(crate) fn stream_fragment(
    store: Arc<Store>,
    id: String,
    index: u8,
    offset: u64,
    len: u64,
    first: Bytes,
) -> HttpBody {
    let (tx, body) = ChannelBody::new(2, Some(len));
    tokio::task::spawn_blocking(move || {
        let mut sent = first.len() as u64;
        if !first.is_empty() && tx.blocking_send(Ok(first)).is_err() {
            return;
        }
        while sent < len {
            let want = (len - sent).min(IO_CHUNK as u64);
            let chunk = match store.read_fragment(&id, index, offset + sent, want) {
                Ok(c) if c.len() as u64 == want => Ok(Bytes::from(c)),
                Ok(_) => Err(std::io::Error::other("fragment shorter than asked")),
                Err(e) => Err(std::io::Error::other(e.to_string())),
            };
            let failed = chunk.is_err();
            sent += want;
            if tx.blocking_send(chunk).is_err() || failed {
                return;
            }
        }
    });
    body.boxed()
}
