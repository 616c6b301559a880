//! Raw fragment reads (see `RAW_FRAGMENT_PROTOCOL`): a range that comes alone on its connection,
//! and the connections kept for the next raw read to the same node when the node serves calls on
//! them again after the range (`RESUME_HEADER`). A kept connection spares the next read a TCP
//! handshake, its teardown and the node's accept, which cost more than the copies `sendfile`
//! saves on ranges of a few hundred KiB.

use hyper::upgrade::Upgraded;
use hyper_rustls::MaybeHttpsStream;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf, Take};
use tokio::net::TcpStream;

/// How long a kept connection waits for the next raw read: well under a node's idle timeout
/// (60 s by default), so that the node has not closed it when it is taken.
const KEEP_FOR: Duration = Duration::from_secs(10);
/// Connections kept per node, at most: as many as raw reads a gateway has in flight to one node
/// under load (8 large GETs, a fragment each, plus hedges).
const KEEP_MAX: usize = 16;

/// Connections whose raw read is over, by the node's address, waiting for the next one.
#[derive(Clone, Default)]
pub(crate) struct Kept(Arc<Mutex<HashMap<String, Idle>>>);

/// Connections to one node, each with when it was kept.
type Idle = Vec<(TcpStream, Instant)>;

/// Where a raw read's connection goes once its range is read to the end.
pub(crate) struct KeepFor {
    kept: Kept,
    addr: String,
}

impl Kept {
    /// Where a raw read from the node at `addr` leaves its connection.
    pub(crate) fn for_node(&self, addr: &str) -> KeepFor {
        KeepFor {
            kept: self.clone(),
            addr: addr.to_string(),
        }
    }

    fn put(&self, addr: String, stream: TcpStream) {
        let mut kept = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let streams = kept.entry(addr).or_default();
        streams.retain(|(_, since)| since.elapsed() < KEEP_FOR);
        if streams.len() < KEEP_MAX {
            streams.push((stream, Instant::now()));
        }
    }

    /// The most recently kept connection to `addr` that is still open and quiet.
    fn take(&self, addr: &str) -> Option<TcpStream> {
        let mut kept = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let streams = kept.get_mut(addr)?;
        while let Some((stream, since)) = streams.pop() {
            if since.elapsed() < KEEP_FOR && open_and_quiet(&stream) {
                return Some(stream);
            }
        }
        None
    }
}

/// Whether the node has neither closed the connection nor sent anything on it unasked.
fn open_and_quiet(stream: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    let mut buf = ReadBuf::new(&mut byte);
    let mut cx = Context::from_waker(Waker::noop());
    stream.poll_peek(&mut cx, &mut buf).is_pending()
}

/// Dials nodes for the client of raw transfers, handing out a kept connection to the node first
/// when there is one.
#[derive(Clone)]
pub(crate) struct Recycling {
    dial: HttpConnector,
    kept: Kept,
}

impl Recycling {
    pub(crate) fn new(dial: HttpConnector, kept: Kept) -> Recycling {
        Recycling { dial, kept }
    }
}

type Dialed = Result<TokioIo<TcpStream>, Box<dyn std::error::Error + Send + Sync>>;

impl tower_service::Service<http::Uri> for Recycling {
    type Response = TokioIo<TcpStream>;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future = Pin<Box<dyn Future<Output = Dialed> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.dial.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let kept = (uri.authority()).and_then(|a| self.kept.take(a.as_str()));
        if let Some(stream) = kept {
            return Box::pin(async move { Ok(TokioIo::new(stream)) });
        }
        let dialing = self.dial.call(uri);
        Box::pin(async move { dialing.await.map_err(Into::into) })
    }
}

/// A fragment range alone on a connection, read to `len` bytes and no further. Read to its end
/// on a connection the node serves calls on again, it goes back to `kept` for the next raw read
/// to that node when dropped; dropped earlier, the connection is closed.
pub struct RawFragment {
    io: Option<Take<TokioIo<Upgraded>>>,
    keep: Option<KeepFor>,
}

impl RawFragment {
    pub(crate) fn new(io: TokioIo<Upgraded>, len: u64, keep: Option<KeepFor>) -> Self {
        RawFragment {
            io: Some(io.take(len)),
            keep,
        }
    }
}

impl AsyncRead for RawFragment {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut().io.as_mut() {
            Some(io) => Pin::new(io).poll_read(cx, buf),
            None => Poll::Ready(Ok(())),
        }
    }
}

impl Drop for RawFragment {
    fn drop(&mut self) {
        let (Some(io), Some(keep)) = (self.io.take(), self.keep.take()) else {
            return;
        };
        if io.limit() > 0 {
            return;
        }
        let upgraded = io.into_inner().into_inner();
        let Ok(parts) = upgraded.downcast::<MaybeHttpsStream<TokioIo<TcpStream>>>() else {
            return;
        };
        if let (MaybeHttpsStream::Http(io), true) = (parts.io, parts.read_buf.is_empty()) {
            keep.kept.put(keep.addr, io.into_inner());
        }
    }
}
