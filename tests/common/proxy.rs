//! A TCP proxy the fault tests put in front of a storage node, to slow, black-hole or cut the
//! connections the gateway (and other nodes) make to it, as a real network would.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Bytes flow as they come.
    Pass,
    /// Every chunk, either way, waits this long before it is passed on.
    Delay(Duration),
    /// Connections are accepted but nothing is passed on or answered: a partition. Open
    /// connections hang, and resume (nothing lost, as TCP retransmits) when it heals.
    Blackhole,
    /// Connections are closed as soon as they open: a node whose network refuses. Open connections
    /// are cut.
    Refuse,
    /// A connection is cut when a request for this path comes through it, before the request
    /// reaches the node: one step of a protocol failing while the others pass.
    CutAt(&'static str),
}

struct State {
    mode: Mutex<Mode>,
    /// Bumped to cut every open connection.
    generation: AtomicU64,
}

pub struct Proxy {
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listens on `listen` and passes connections on to `upstream`.
    pub async fn start(listen: SocketAddr, upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind(listen).await.expect("proxy listens");
        let state = Arc::new(State {
            mode: Mutex::new(Mode::Pass),
            generation: AtomicU64::new(0),
        });
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(serve(shared.clone(), client, upstream));
            }
        });
        Proxy { state, task }
    }

    /// Switches mode; a refusal also cuts the connections that are open.
    pub fn set(&self, mode: Mode) {
        *self.state.mode.lock().unwrap() = mode;
        if mode == Mode::Refuse {
            self.state.generation.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl State {
    fn mode(&self) -> Mode {
        *self.mode.lock().unwrap()
    }

    /// Waits for as long as the proxy black-holes.
    async fn through_partition(&self) {
        while self.mode() == Mode::Blackhole {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn serve(state: Arc<State>, client: TcpStream, upstream: SocketAddr) {
    if state.mode() == Mode::Refuse {
        return;
    }
    state.through_partition().await;
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let generation = state.generation.load(Ordering::SeqCst);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::select! {
        _ = pump(&state, client_read, server_write) => {}
        _ = pump(&state, server_read, client_write) => {}
        _ = cut(&state, generation) => {}
    }
}

/// Copies one direction, applying the mode to every chunk.
async fn pump(
    state: &State,
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        state.through_partition().await;
        match state.mode() {
            Mode::Delay(d) => tokio::time::sleep(d).await,
            Mode::CutAt(path) if contains(&buf[..n], path.as_bytes()) => return,
            _ => {}
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Resolves when the connection is to be cut.
async fn cut(state: &State, generation: u64) {
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if state.generation.load(Ordering::SeqCst) != generation {
            return;
        }
    }
}
