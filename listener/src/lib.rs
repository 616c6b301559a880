//! Accepting TCP connections so that no client can take the process down: the accept loop
//! survives descriptor exhaustion, connections are capped in total and per client address, and
//! each connection is closed when it sits idle, takes too long to send a request head, or stops
//! reading what it is sent. The gateway and the storage nodes serve through it.
//!
//! What is timed where: the idle and head timeouts and the write stall are enforced here, on the
//! socket, because only the socket sees them. A request body that stops arriving mid-request is
//! left to whoever reads the body (see `Limits::stall_timeout`): at the socket, a handler that
//! waits for its body cannot be told from one that is busy elsewhere while the HTTP library keeps
//! a read pending to notice a hang-up.

mod connection;

pub use connection::{Guarded, RequestGuard, Tracker};

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};

/// The limits one listener enforces. Every field has a default, so a config may name only those
/// it changes.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Connections open at once; further ones are closed as soon as they are accepted. The
    /// effective cap is also at most half the process's descriptor limit, so that files and
    /// outgoing connections keep descriptors of their own. Default 8192.
    pub max_connections: usize,
    /// Connections open at once from one client address. A gateway behind a load balancer or a
    /// proxy sees every client at the proxy's address, and should raise this. Default 1024.
    pub max_connections_per_address: usize,
    /// Seconds a client has from the first byte of a request head to its end. Default 20.
    pub header_timeout_secs: u64,
    /// Seconds a connection may stay open with no request in flight and nothing sent or received
    /// (keep-alive). Default 60: longer than the 30 s for which the gateways keep their own idle
    /// connections to nodes, so that a node never closes one a gateway is about to reuse.
    pub idle_timeout_secs: u64,
    /// Seconds without progress after which a request body that stopped arriving, or a response
    /// the client stopped reading, ends the connection. Default 60.
    pub stall_timeout_secs: u64,
    /// Bytes of request headers (names and values) a request may carry; S3 allows 8 KiB and
    /// answers more with `400 RequestHeaderSectionTooLarge` (a node answers 431). Default 8192.
    pub max_header_bytes: usize,
    /// Request header lines a request may carry; more are refused (431) before the request is
    /// read further. Default 100.
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 8192,
            max_connections_per_address: 1024,
            header_timeout_secs: 20,
            idle_timeout_secs: 60,
            stall_timeout_secs: 60,
            max_header_bytes: 8192,
            max_headers: 100,
        }
    }
}

impl Limits {
    pub fn header_timeout(&self) -> Duration {
        Duration::from_secs(self.header_timeout_secs.max(1))
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs.max(1))
    }

    pub fn stall_timeout(&self) -> Duration {
        Duration::from_secs(self.stall_timeout_secs.max(1))
    }

    /// Whether a request's headers, names and values, come to more than `max_header_bytes`.
    pub fn headers_too_large(&self, headers: &http::HeaderMap) -> bool {
        let bytes: usize = headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len())
            .sum();
        bytes > self.max_header_bytes
    }
}

/// Raises the process's soft limit on open descriptors to its hard limit, and returns the limit
/// now in force. A server holds a descriptor per connection, per open fragment file and per
/// outgoing connection; the usual soft default of 1024 is a few hundred idle clients away.
pub fn raise_descriptor_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed to them.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    limit.rlim_cur
}

/// Sets the TCP congestion control of the connections `listener` accepts from now on (Linux's
/// `TCP_CONGESTION` on the listening socket, which its connections inherit from their start).
///
/// Why a process would: with `bbr`, the congestion control some systems default to, every
/// connection paces its sends with a timer of its own (unless the interface's queue is `fq`),
/// which on links with microseconds of latency buys nothing and costs the sender CPU and
/// throughput: 64 MiB GETs through a `tessera dev` cluster ran at about half the rate with the
/// nodes' and the gateway's connections under `bbr` as under `reno` or `cubic`
/// (docs/performance.md). It has to be set on the listening socket: a connection that started
/// under `bbr` keeps pacing after it is switched. An unprivileged process may choose only among
/// `net.ipv4.tcp_allowed_congestion_control` (`reno` always is). An empty name changes nothing; a
/// name the system refuses is logged, and the connections keep the system's default (the setting
/// is a matter of speed, so the process goes on).
pub fn set_congestion_control(listener: &TcpListener, algorithm: &str) -> std::io::Result<()> {
    if algorithm.is_empty() {
        return Ok(());
    }
    use std::os::fd::AsRawFd;
    // SAFETY: the name is passed with its length (no terminator needed) and only read.
    let set = unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_CONGESTION,
            algorithm.as_ptr().cast(),
            algorithm.len() as libc::socklen_t,
        )
    };
    if set != 0 {
        let error = std::io::Error::last_os_error();
        tracing::warn!(algorithm, %error, "cannot set the TCP congestion control: keeping the system's");
        return Err(error);
    }
    Ok(())
}

/// A TCP listener whose `accept` never fails and hands out only connections within the limits.
pub struct Listener {
    inner: TcpListener,
    limits: Limits,
    /// `limits.max_connections`, lowered to what the descriptor limit allows.
    max_connections: usize,
    open: Arc<OpenConnections>,
    refusals: Throttled,
}

impl Listener {
    pub fn new(inner: TcpListener, limits: Limits) -> Listener {
        let descriptors = raise_descriptor_limit();
        let max_connections = limits
            .max_connections
            .min(usize::try_from(descriptors / 2).unwrap_or(usize::MAX))
            .max(1);
        Listener {
            inner,
            limits,
            max_connections,
            open: Arc::default(),
            refusals: Throttled::new(Duration::from_secs(10)),
        }
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    /// The next connection within the limits, with the tracker its requests report to.
    ///
    /// Errors of `accept` are waited out, never returned: running out of descriptors (EMFILE,
    /// ENFILE) or memory backs off for a moment while the connections already open go on being
    /// served and release theirs; a connection reset before it was accepted is skipped.
    pub async fn accept(&self) -> (Guarded<TcpStream>, Tracker) {
        loop {
            let (stream, peer) = match self.inner.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    if is_resource_exhaustion(&e) {
                        self.refusals.note(|n| {
                            tracing::warn!(error = %e, refused = n, "cannot accept: backing off")
                        });
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    continue;
                }
            };
            let Some(slot) = self
                .open
                .take(peer.ip(), self.max_connections, &self.limits)
            else {
                self.refusals.note(|n| {
                    tracing::warn!(%peer, refused = n, "connection limit reached: closing new connections")
                });
                continue;
            };
            let _ = stream.set_nodelay(true);
            return connection::guard(stream, slot, &self.limits);
        }
    }
}

fn is_resource_exhaustion(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Connections open now, in all and by client address.
#[derive(Default)]
struct OpenConnections {
    total: AtomicUsize,
    by_address: Mutex<HashMap<IpAddr, usize>>,
}

impl OpenConnections {
    fn take(self: &Arc<Self>, ip: IpAddr, max: usize, limits: &Limits) -> Option<Slot> {
        let mut by_address = self.by_address.lock().expect("never poisoned");
        let from_ip = by_address.entry(ip).or_insert(0);
        if self.total.load(Ordering::Relaxed) >= max
            || *from_ip >= limits.max_connections_per_address
        {
            if *from_ip == 0 {
                by_address.remove(&ip);
            }
            return None;
        }
        *from_ip += 1;
        self.total.fetch_add(1, Ordering::Relaxed);
        Some(Slot {
            open: self.clone(),
            ip,
        })
    }
}

/// One connection's place among the open connections, given back when it is dropped.
pub struct Slot {
    open: Arc<OpenConnections>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut by_address = self.open.by_address.lock().expect("never poisoned");
        if let Some(n) = by_address.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                by_address.remove(&self.ip);
            }
        }
        self.open.total.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A warning logged at most once a period, with how many times it happened meanwhile: a flood
/// must not turn into a flood of log lines.
struct Throttled {
    period: Duration,
    state: Mutex<(Option<Instant>, u64)>,
}

impl Throttled {
    fn new(period: Duration) -> Throttled {
        Throttled {
            period,
            state: Mutex::new((None, 0)),
        }
    }

    fn note(&self, log: impl FnOnce(u64)) {
        let mut state = self.state.lock().expect("never poisoned");
        state.1 += 1;
        let due = state.0.is_none_or(|last| last.elapsed() >= self.period);
        if due {
            log(state.1);
            *state = (Some(Instant::now()), 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// The congestion control of a connected socket, by name.
    fn congestion_control_of(stream: &TcpStream) -> String {
        use std::os::fd::AsRawFd;
        let mut name = [0u8; 16];
        let mut len = name.len() as libc::socklen_t;
        // SAFETY: the kernel writes at most `len` bytes into `name` and the length it wrote.
        let got = unsafe {
            libc::getsockopt(
                stream.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_CONGESTION,
                name.as_mut_ptr().cast(),
                &mut len,
            )
        };
        assert_eq!(got, 0, "{}", std::io::Error::last_os_error());
        let name = &name[..len as usize];
        let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
        String::from_utf8_lossy(&name[..end]).into_owned()
    }

    #[tokio::test]
    async fn accepted_connections_take_the_listeners_congestion_control() {
        // One other than the system's default, so that the test sees the setting take.
        let default = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_congestion_control").unwrap();
        let algorithm = if default.trim() == "reno" {
            "cubic"
        } else {
            "reno"
        };
        let inner = TcpListener::bind("127.0.0.1:0").await.unwrap();
        set_congestion_control(&inner, algorithm).unwrap();
        let client = TcpStream::connect(inner.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, inner.accept());
        let (accepted, _) = accepted.unwrap();
        assert_eq!(congestion_control_of(&accepted), algorithm);
        drop(client);

        let refused = set_congestion_control(&inner, "no-such-algorithm").unwrap_err();
        assert_eq!(refused.raw_os_error(), Some(libc::ENOENT), "{refused}");
    }

    async fn listener(limits: Limits) -> (Arc<Listener>, SocketAddr) {
        let inner = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let listener = Arc::new(Listener::new(inner, limits));
        let addr = listener.local_addr().unwrap();
        (listener, addr)
    }

    /// Accepts forever, echoing each connection's bytes back.
    fn echo(listener: Arc<Listener>) {
        tokio::spawn(async move {
            loop {
                let (mut stream, _tracker) = listener.accept().await;
                tokio::spawn(async move {
                    let mut buf = [0; 1024];
                    while let Ok(n @ 1..) = stream.read(&mut buf).await {
                        if stream.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
    }

    async fn echoes(addr: SocketAddr) -> bool {
        let Ok(mut client) = TcpStream::connect(addr).await else {
            return false;
        };
        let mut buf = [0; 2];
        client.write_all(b"hi").await.is_ok()
            && tokio::time::timeout(Duration::from_secs(2), client.read_exact(&mut buf))
                .await
                .is_ok_and(|r| r.is_ok())
            && &buf == b"hi"
    }

    #[tokio::test]
    async fn connections_over_the_per_address_cap_are_closed_and_the_cap_frees_up() {
        let limits = Limits {
            max_connections_per_address: 3,
            ..Limits::default()
        };
        let (listener, addr) = listener(limits).await;
        echo(listener);
        let mut held = Vec::new();
        for _ in 0..3 {
            let mut c = TcpStream::connect(addr).await.unwrap();
            c.write_all(b"x").await.unwrap();
            let mut b = [0; 1];
            c.read_exact(&mut b).await.unwrap();
            held.push(c);
        }
        assert!(!echoes(addr).await, "a fourth connection was served");
        held.pop();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(echoes(addr).await, "a freed slot was not reused");
    }

    #[tokio::test]
    async fn the_total_cap_applies_across_addresses() {
        let limits = Limits {
            max_connections: 2,
            ..Limits::default()
        };
        let (listener, addr) = listener(limits).await;
        echo(listener);
        let _a = TcpStream::connect(addr).await.unwrap();
        let _b = TcpStream::connect(addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!echoes(addr).await);
    }

    #[test]
    fn limits_parse_with_defaults_for_what_is_not_named() {
        let limits: Limits = serde_json::from_str(r#"{"idle_timeout_secs": 5}"#).unwrap();
        assert_eq!(limits.idle_timeout(), Duration::from_secs(5));
        assert_eq!(limits.max_connections, Limits::default().max_connections);
        assert!(serde_json::from_str::<Limits>(r#"{"idle_timeout": 5}"#).is_err());
    }

    #[test]
    fn warnings_are_throttled_with_a_count() {
        let throttled = Throttled::new(Duration::from_secs(3600));
        let mut logged = Vec::new();
        for _ in 0..5 {
            throttled.note(|n| logged.push(n));
        }
        assert_eq!(logged, vec![1]);
    }
}
