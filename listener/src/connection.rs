//! One accepted connection: its socket wrapped so that reads and writes enforce the idle, head
//! and write-stall timeouts, and the tracker its requests report to.
//!
//! The socket cannot see where one request ends and the next begins, so the server tells it:
//! each request in flight holds a `RequestGuard`. With none held, the connection is between
//! requests: it is idle until a byte arrives, then reading a head, and a pending read fails with
//! `TimedOut` once the matching deadline passes. With one held, reads have no deadline (the body
//! reader has its own). A write that the client does not take fails once it has waited
//! `stall_timeout`, whatever the state. A timed-out read or write makes the HTTP library close
//! the connection, which releases its slot.

use crate::{Limits, Slot};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// A moment as milliseconds after the connection was accepted, plus one: 0 stands for "none".
type Stamp = u64;
const NONE: Stamp = 0;

/// What a connection's socket and its requests share.
struct Activity {
    accepted: Instant,
    requests: AtomicUsize,
    /// The last time a byte was read or written, or a request ended.
    progress: AtomicU64,
    /// When the first byte of the next request head arrived, while no request is in flight.
    head_started: AtomicU64,
}

impl Activity {
    fn now(&self) -> Stamp {
        self.accepted.elapsed().as_millis() as u64 + 1
    }

    fn instant(&self, stamp: Stamp) -> Instant {
        self.accepted + Duration::from_millis(stamp.saturating_sub(1))
    }
}

/// Hands out a `RequestGuard` per request; cheap to clone into a service.
#[derive(Clone)]
pub struct Tracker(Arc<Activity>);

impl Tracker {
    /// Marks a request in flight until the guard is dropped (when its response head is ready;
    /// sending the body counts as progress of its own).
    pub fn request(&self) -> RequestGuard {
        self.0.requests.fetch_add(1, Ordering::AcqRel);
        self.0.head_started.store(NONE, Ordering::Release);
        RequestGuard(self.0.clone())
    }
}

pub struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.progress.store(self.0.now(), Ordering::Release);
        self.0.requests.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A socket that enforces its connection's timeouts, and holds its slot among the open
/// connections until it is dropped.
pub struct Guarded<S> {
    inner: S,
    activity: Arc<Activity>,
    header_timeout: Duration,
    idle_timeout: Duration,
    stall_timeout: Duration,
    read_timer: Pin<Box<Sleep>>,
    write_timer: Pin<Box<Sleep>>,
    /// When the pending write began to wait.
    write_blocked: Stamp,
    _slot: Slot,
}

pub(crate) fn guard<S>(inner: S, slot: Slot, limits: &Limits) -> (Guarded<S>, Tracker) {
    let now = Instant::now();
    let activity = Arc::new(Activity {
        accepted: now,
        requests: AtomicUsize::new(0),
        progress: AtomicU64::new(1),
        head_started: AtomicU64::new(NONE),
    });
    let guarded = Guarded {
        inner,
        activity: activity.clone(),
        header_timeout: limits.header_timeout(),
        idle_timeout: limits.idle_timeout(),
        stall_timeout: limits.stall_timeout(),
        read_timer: Box::pin(tokio::time::sleep_until(now)),
        write_timer: Box::pin(tokio::time::sleep_until(now)),
        write_blocked: NONE,
        _slot: slot,
    };
    (guarded, Tracker(activity))
}

impl<S> Guarded<S> {
    /// The socket itself, to ask it things (its peer's address).
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The socket itself, for a transfer that leaves the async world (`sendfile` on a blocking
    /// socket), and its slot among the open connections, to keep until the transfer is over.
    pub fn into_inner(self) -> (S, Slot) {
        (self.inner, self._slot)
    }

    /// When a read that is waiting must give up: `None` while a request is in flight.
    fn read_deadline(&self) -> Option<Instant> {
        let a = &self.activity;
        if a.requests.load(Ordering::Acquire) > 0 {
            return None;
        }
        let head = a.head_started.load(Ordering::Acquire);
        Some(if head != NONE {
            a.instant(head) + self.header_timeout
        } else {
            a.instant(a.progress.load(Ordering::Acquire)) + self.idle_timeout
        })
    }

    fn made_progress(&mut self, read: bool) {
        let a = &self.activity;
        let now = a.now();
        a.progress.store(now, Ordering::Release);
        if read && a.requests.load(Ordering::Acquire) == 0 {
            let _ = a
                .head_started
                .compare_exchange(NONE, now, Ordering::AcqRel, Ordering::Acquire);
        }
    }

    /// Notes a write's outcome: progress, or a wait that fails once it has lasted `stall_timeout`.
    fn after_write(
        &mut self,
        cx: &mut Context<'_>,
        written: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match written {
            Poll::Ready(result) => {
                self.write_blocked = NONE;
                if matches!(result, Ok(1..)) {
                    self.made_progress(false);
                }
                Poll::Ready(result)
            }
            Poll::Pending => self.write_stalled(cx),
        }
    }

    fn write_stalled(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.write_blocked == NONE {
            self.write_blocked = self.activity.now();
        }
        let deadline = self.activity.instant(self.write_blocked) + self.stall_timeout;
        self.write_timer.as_mut().reset(deadline);
        ready!(self.write_timer.as_mut().poll(cx));
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the client stopped reading",
        )))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    self.made_progress(true);
                }
                Poll::Ready(result)
            }
            Poll::Pending => {
                let Some(deadline) = self.read_deadline() else {
                    return Poll::Pending;
                };
                self.read_timer.as_mut().reset(deadline);
                ready!(self.read_timer.as_mut().poll(cx));
                let why = if self.activity.head_started.load(Ordering::Acquire) != NONE {
                    "the request head took too long"
                } else {
                    "the connection was idle too long"
                };
                Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, why)))
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.after_write(cx, written)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.after_write(cx, written)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use crate::{Limits, Listener};
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    fn short() -> Limits {
        Limits {
            header_timeout_secs: 1,
            idle_timeout_secs: 2,
            stall_timeout_secs: 1,
            ..Limits::default()
        }
    }

    /// Serves one connection: reads a one-line "request" and answers it, holding a request guard
    /// for `busy`, until a read or write fails. Returns when and why the connection ended.
    async fn serve_lines(
        busy: Duration,
        answer_len: usize,
    ) -> (
        std::net::SocketAddr,
        tokio::task::JoinHandle<std::io::Error>,
    ) {
        let inner = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let listener = Listener::new(inner, short());
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (mut stream, tracker) = listener.accept().await;
            let mut byte = [0; 1];
            loop {
                let mut line = Vec::new();
                loop {
                    match stream.read(&mut byte).await {
                        Ok(0) => return std::io::Error::other("closed"),
                        Ok(_) if byte[0] == b'\n' => break,
                        Ok(_) => line.push(byte[0]),
                        Err(e) => return e,
                    }
                }
                let guard = tracker.request();
                tokio::time::sleep(busy).await;
                drop(guard);
                if let Err(e) = stream.write_all(&vec![b'a'; answer_len]).await {
                    return e;
                }
            }
        });
        (addr, task)
    }

    #[tokio::test]
    async fn an_idle_connection_is_closed_after_the_idle_timeout() {
        let (addr, task) = serve_lines(Duration::ZERO, 1).await;
        let _client = TcpStream::connect(addr).await.unwrap();
        let started = std::time::Instant::now();
        let e = task.await.unwrap();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{e}");
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(1900) && waited < Duration::from_secs(4),
            "{waited:?}"
        );
    }

    #[tokio::test]
    async fn a_head_sent_a_byte_a_while_is_cut_off_by_the_header_timeout() {
        let (addr, task) = serve_lines(Duration::ZERO, 1).await;
        let mut client = TcpStream::connect(addr).await.unwrap();
        let started = std::time::Instant::now();
        let trickle = tokio::spawn(async move {
            for _ in 0..10 {
                if client.write_all(b"x").await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        });
        let e = task.await.unwrap();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{e}");
        assert!(
            started.elapsed() < Duration::from_millis(1900),
            "{:?}",
            started.elapsed()
        );
        trickle.abort();
    }

    #[tokio::test]
    async fn a_request_in_flight_is_not_timed_out_however_long_it_takes() {
        let (addr, task) = serve_lines(Duration::from_secs(3), 2).await;
        let mut client = TcpStream::connect(addr).await.unwrap();
        client.write_all(b"slow\n").await.unwrap();
        let mut answer = [0; 2];
        client.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"aa");
        // Then idle: closed by the idle timeout.
        let e = task.await.unwrap();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{e}");
    }

    #[tokio::test]
    async fn a_client_that_stops_reading_is_dropped_after_the_stall_timeout() {
        let (addr, task) = serve_lines(Duration::ZERO, 64 << 20).await;
        let mut client = TcpStream::connect(addr).await.unwrap();
        client.write_all(b"big\n").await.unwrap();
        let e = tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("not dropped")
            .unwrap();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{e}");
    }
}
