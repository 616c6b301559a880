//! Serves the S3 API over TCP, or TLS when a certificate is configured.

use crate::api::Gateway;
use crate::config::GatewayConfig;
use anyhow::Context as _;
use http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use listener::{Listener, Tracker};
use node_rpc::body::full;
use node_rpc::ClusterConfig;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use web_ui::Console;

/// Starts the gateway and serves until the process ends. `ready` is called once it listens.
pub async fn run(
    config: GatewayConfig,
    cluster: ClusterConfig,
    ready: impl FnOnce(std::net::SocketAddr),
) -> anyhow::Result<()> {
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(tls_acceptor(cert, key)?),
        (None, None) => None,
        _ => anyhow::bail!("tls_cert and tls_key must be set together"),
    };
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let _ = listener::set_congestion_control(&listener, &config.tcp_congestion_control);
    let listener = Listener::new(listener, config.connections.clone());
    let console = match config.console_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the console port {addr}"))?,
        ),
        None => None,
    };
    let gateway = Arc::new(Gateway::new(config, &cluster)?);
    if let Some(listener) = console {
        let listener = Listener::new(listener, gateway.config.connections.clone());
        let settings = web_ui::Settings {
            region: gateway.config.region.clone(),
            secure: tls.is_some(),
            sessions: web_ui::Lifetimes {
                idle: Duration::from_secs(gateway.config.console_idle_secs),
                max: Duration::from_secs(gateway.config.console_session_secs),
            },
        };
        let console = Console::new(settings, Arc::new(InProcess(gateway.clone())));
        tokio::spawn(serve_console(
            listener,
            gateway.clone(),
            Arc::new(console),
            tls.clone(),
        ));
    }
    ready(listener.local_addr()?);
    loop {
        let (stream, tracker) = listener.accept().await;
        let client_ip = stream.get_ref().peer_addr().ok().map(|a| a.ip());
        let stream = Lingering(Some(stream));
        let gateway = gateway.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(stream) => serve(gateway, stream, Some(tracker), client_ip).await,
                    Err(e) => tracing::debug!(error = %e, "TLS handshake failed"),
                },
                None => serve(gateway, stream, Some(tracker), client_ip).await,
            }
        });
    }
}

/// Serves S3 requests on one connection: a client's (with its listener's tracker) or the
/// console's.
async fn serve<S>(
    gateway: Arc<Gateway>,
    stream: S,
    tracker: Option<Tracker>,
    client_ip: Option<IpAddr>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let max_headers = gateway.config.connections.max_headers;
    let service = hyper::service::service_fn(move |req| {
        let gateway = gateway.clone();
        let request = tracker.as_ref().map(Tracker::request);
        async move {
            let response = gateway.handle(req, client_ip).await;
            drop(request);
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder.http1().max_headers(max_headers);
    let _ = builder
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

/// The console's way to the S3 API: a connection in memory, served like a client's.
struct InProcess(Arc<Gateway>);

/// Bytes in flight each way on a console connection: enough to stream an upload without
/// stalling on every frame.
const IN_PROCESS_BUFFER: usize = 256 << 10;

impl web_ui::Upstream for InProcess {
    fn connect(&self, client: Option<IpAddr>) -> tokio::io::DuplexStream {
        let (console_end, gateway_end) = tokio::io::duplex(IN_PROCESS_BUFFER);
        tokio::spawn(serve(self.0.clone(), gateway_end, None, client));
        console_end
    }
}

/// Serves the operator's port: the web console, and `/metrics` for Prometheus (to bearers of
/// the metrics token unless the config makes metrics public).
async fn serve_console(
    listener: Listener,
    gateway: Arc<Gateway>,
    console: Arc<Console>,
    tls: Option<TlsAcceptor>,
) {
    loop {
        let (stream, tracker) = listener.accept().await;
        let client_ip = stream.get_ref().peer_addr().ok().map(|a| a.ip());
        let (gateway, console, tls) = (gateway.clone(), console.clone(), tls.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let (gateway, console) = (gateway.clone(), console.clone());
                let request = tracker.request();
                async move {
                    let response = if req.uri().path() == "/metrics" {
                        let token = (!gateway.config.metrics_public)
                            .then_some(gateway.metrics_token.as_str());
                        telemetry::scrape(req.method(), req.headers(), token, || {
                            crate::api::scrape::render(&gateway)
                        })
                        .map(full)
                    } else {
                        console.handle(req, client_ip).await
                    };
                    drop(request);
                    Ok::<_, std::convert::Infallible>(response)
                }
            });
            let http = hyper::server::conn::http1::Builder::new();
            let _ = match tls {
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(stream) => http.serve_connection(TokioIo::new(stream), service).await,
                    Err(e) => return tracing::debug!(error = %e, "TLS handshake failed"),
                },
                None => http.serve_connection(TokioIo::new(stream), service).await,
            };
        });
    }
}

/// How long a closed connection is still read from, in all and between two reads.
const LINGER: Duration = Duration::from_secs(30);
const LINGER_IDLE: Duration = Duration::from_secs(5);

/// A client connection that is read to its end (for at most `LINGER`) once the server is done with
/// it, and only then closed.
///
/// A request refused before its body was read (a bad signature, a lost write quorum) is answered
/// with `Connection: close` while the client is still sending. Closing a socket that holds unread
/// bytes makes the kernel reset the connection, and a client still writing its body then sees a
/// broken pipe instead of the S3 error it was sent. Reading on until the client is done lets it
/// read the answer (nginx calls this a lingering close).
struct Lingering<S: AsyncRead + Unpin + Send + 'static>(Option<S>);

impl<S: AsyncRead + Unpin + Send + 'static> Lingering<S> {
    fn stream(&mut self) -> Pin<&mut S> {
        Pin::new(self.0.as_mut().expect("taken only when dropped"))
    }
}

impl<S: AsyncRead + Unpin + Send + 'static> Drop for Lingering<S> {
    fn drop(&mut self) {
        let (Some(mut stream), Ok(runtime)) =
            (self.0.take(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        runtime.spawn(async move {
            let mut sink = vec![0; 64 << 10];
            let drain = async {
                while let Ok(Ok(1..)) =
                    tokio::time::timeout(LINGER_IDLE, stream.read(&mut sink)).await
                {
                }
            };
            let _ = tokio::time::timeout(LINGER, drain).await;
        });
    }
}

impl<S: AsyncRead + Unpin + Send + 'static> AsyncRead for Lingering<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        self.stream().poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> AsyncWrite for Lingering<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.stream().poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.stream().poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.as_ref().is_some_and(|s| s.is_write_vectored())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.stream().poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.stream().poll_shutdown(cx)
    }
}

fn tls_acceptor(cert: &std::path::Path, key: &std::path::Path) -> anyhow::Result<TlsAcceptor> {
    let certs = rustls_pemfile::certs(&mut std::io::BufReader::new(
        std::fs::File::open(cert).with_context(|| format!("opening {}", cert.display()))?,
    ))
    .collect::<Result<Vec<_>, _>>()
    .context("reading the certificate")?;
    let key = rustls_pemfile::private_key(&mut std::io::BufReader::new(
        std::fs::File::open(key).with_context(|| format!("opening {}", key.display()))?,
    ))
    .context("reading the private key")?
    .context("no private key in the key file")?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
