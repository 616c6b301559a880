//! The storage node's HTTP server (over TCP, or TLS when a certificate is configured):
//! authentication, and one handler per protocol call over `Store`; fragment transfers are in
//! `fragments`.

mod fragments;
mod leases;

pub(crate) use fragments::stream_fragment;

use crate::auth::{AuthError, NonceMemory, StreamKey, VerifiedBody};
use crate::body::{empty, full, HttpBody};
use crate::client::{NodeClient, NodeHealth};
use crate::config::NodeConfig;
use crate::hints::{self, Hint};
use crate::metrics::{NodeMetrics, Snapshot, METRICS};
use crate::protocol::{
    unix_now, ClaimRequest, ClusterSecret, CommitOutcome, CommitRequest, LeaseRequest, ListRequest,
    Lookup, LookupOutcome, LookupRequest, OutboxReport, OutboxRequest, PartRequest, PurgeRequest,
    UndoRequest, UploadRequest, VersionListRequest, HINT_QUERY, MAX_BATCH_ENTRIES,
};
use crate::record::{is_fragment_id, BucketId, BucketRecord, KeyRecord, VersionRef};
use crate::scrub::{self, ScrubSettings, Scrubber};
use crate::store::{FromStored, Store, StoreError, StoredRecord};
use anyhow::Context;
use bytes::Bytes;
use erasure::FrameFormat;
use fragments::{
    fragment_layout, lookup_and_fragment, receive_fragment, receive_raw, send_fragment, start_raw,
    switching_to_raw, wants_raw, RawSend, Resume, ServeAgain,
};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use leases::DrainLeases;
use listener::Listener;
use node_rpc::ClusterConfig;
use placement::Layout;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};
use supervisor::Workers;
use telemetry::trace;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tracing::Instrument;

/// How long a TLS client may take over its handshake before its connection is dropped.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest body of a call signed by its hash (records and batches of them), which is read
/// whole to be checked before anything acts on it. A batch of commits carries at most a few
/// inline objects' bytes per record; fragment bytes are never sent this way.
const MAX_HASHED_BODY: usize = 64 << 20;

#[derive(Debug, thiserror::Error)]
enum NodeError {
    #[error("unauthenticated request: {0}")]
    Unauthenticated(#[from] AuthError),
    #[error("no such route")]
    NotFound,
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("request body: {0}")]
    Body(#[from] hyper::Error),
    #[error("disk full: less than the {0} bytes this node keeps free")]
    DiskFull(u64),
    #[error("the request body stopped arriving for {0:?}")]
    BodyStalled(Duration),
    #[error("the request body is over {0} bytes")]
    BodyTooLarge(usize),
}

impl NodeError {
    fn status(&self) -> StatusCode {
        match self {
            NodeError::Unauthenticated(AuthError::TooManyCalls) => StatusCode::SERVICE_UNAVAILABLE,
            NodeError::Unauthenticated(_) => StatusCode::FORBIDDEN,
            NodeError::NotFound | NodeError::Store(StoreError::NoSuchFragment) => {
                StatusCode::NOT_FOUND
            }
            NodeError::BadRequest(_) | NodeError::Body(_) => StatusCode::BAD_REQUEST,
            NodeError::DiskFull(_) => StatusCode::INSUFFICIENT_STORAGE,
            NodeError::BodyStalled(_) => StatusCode::REQUEST_TIMEOUT,
            NodeError::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            NodeError::Store(StoreError::Io(e)) if e.kind() == std::io::ErrorKind::StorageFull => {
                StatusCode::INSUFFICIENT_STORAGE
            }
            NodeError::Store(StoreError::Locked) => StatusCode::LOCKED,
            NodeError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// A refusal of one commit of a batch, as a lone call's answer would have said it.
fn refused(e: NodeError) -> CommitOutcome {
    CommitOutcome::Refused {
        status: e.status().as_u16(),
        error: e.to_string(),
    }
}

/// What `GET /v1/object/{bucket}/{key}` answers for the current version of a key, or for the
/// version `which` names; the record parsed, or as stored when only sent on (see `FromStored`).
fn look_up<R: FromStored>(
    store: &Store,
    bucket: &BucketId,
    key: &str,
    which: Option<VersionRef>,
) -> Result<Lookup<R>, NodeError> {
    let lookup = match which {
        Some(which) => {
            let found = store.object_version(bucket, key, which)?;
            Lookup {
                record: found.record.map(R::from_record).transpose()?,
                purged: found.purged,
                fragment_len: found.fragment_len,
                outbox: found.outbox,
            }
        }
        None => store.current(bucket, key)?,
    };
    with_outbox(store, bucket, key, lookup)
}

/// `lookup` with its record's outbox state. Only a version queued for peer regions when it was
/// committed has one: the others, every version of a region alone, cost no read here.
fn with_outbox<R: FromStored>(
    store: &Store,
    bucket: &BucketId,
    key: &str,
    mut lookup: Lookup<R>,
) -> Result<Lookup<R>, NodeError> {
    if let Some(record) = lookup.record.as_ref().filter(|r| r.queued()) {
        lookup.outbox = store.outbox_state(bucket, key, record.version())?;
    }
    Ok(lookup)
}

fn bad(msg: impl Into<String>) -> NodeError {
    NodeError::BadRequest(msg.into())
}

struct Node {
    id: String,
    store: Arc<Store>,
    /// Where keys live, to file this node's records by shard.
    layout: Layout,
    secret: ClusterSecret,
    /// Nonces of the calls accepted within the date window: each call is taken once.
    nonces: NonceMemory,
    data_dir: std::path::PathBuf,
    min_free_bytes: u64,
    scrub: Scrubber,
    /// What a scrape of `/metrics` must bear; `None` when the node's metrics are public.
    metrics_token: Option<String>,
    leases: DrainLeases,
    /// How long a hashed body may stop arriving (`listener::Limits::stall_timeout`).
    body_stall: Duration,
    /// Hinted handoff, the sweeper and the scrubber, supervised.
    workers: Workers,
}

/// Opens the node's store and serves the node protocol until the process ends.
pub async fn run(node: NodeConfig, cluster: ClusterConfig) -> anyhow::Result<()> {
    let me = cluster
        .nodes
        .iter()
        .find(|n| n.id == node.id)
        .with_context(|| format!("node {} is not in the cluster's node list", node.id))?;
    let listen = match node.listen {
        Some(addr) => addr,
        None => me.addr.parse().context("node addr")?,
    };
    let tls = match (&node.tls_cert, &node.tls_key) {
        (Some(cert), Some(key)) => Some(TlsAcceptor::from(Arc::new(node_rpc::tls::server_config(
            cert, key,
        )?))),
        (None, None) => None,
        _ => anyhow::bail!("tls_cert and tls_key must be set together"),
    };
    let client = NodeClient::for_cluster(&cluster).context("the cluster's tls_ca")?;
    std::fs::create_dir_all(&node.data_dir)?;
    let store = Store::open(&node.data_dir, &node.id).context("opening the node's store")?;
    std::fs::write(node.data_dir.join("pid"), std::process::id().to_string())?;
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let _ = listener::set_congestion_control(&listener, &node.tcp_congestion_control);
    let listener = Listener::new(listener, node.connections.clone());
    tracing::info!(node = %node.id, %listen, "storage node listening");
    let mut workers = Workers::default();
    let (handing, nodes, k) = (store.clone(), cluster.nodes.clone(), cluster.data_shards);
    workers.supervise("hinted handoff", move || {
        hints::hand_off_forever(handing.clone(), client.clone(), nodes.clone(), k)
    });
    let (sweeping, settings) = (store.clone(), node.clone());
    workers.supervise("sweeper", move || {
        sweep_forever(sweeping.clone(), settings.clone())
    });
    let scrub = scrub::start(
        store.clone(),
        ScrubSettings {
            interval: Duration::from_secs(node.scrub_interval_secs),
            bytes_per_sec: node.scrub_bytes_per_sec,
            data_shards: cluster.data_shards,
        },
        workers.watch("scrubber"),
    )
    .context("starting the scrubber")?;
    let state = Arc::new(Node {
        id: node.id.clone(),
        store,
        scrub,
        layout: cluster.layout()?,
        secret: cluster.secret.clone(),
        nonces: NonceMemory::default(),
        data_dir: node.data_dir.clone(),
        min_free_bytes: node.min_free_bytes,
        metrics_token: (!node.metrics_public).then(|| cluster.secret.metrics_token()),
        leases: DrainLeases::default(),
        body_stall: node.connections.stall_timeout(),
        workers,
    });
    let limits = Arc::new(node.connections.clone());
    loop {
        let (stream, tracker) = listener.accept().await;
        let (state, limits) = (state.clone(), limits.clone());
        let tls = tls.clone();
        tokio::spawn(async move {
            let Some(acceptor) = tls else {
                let again = serve_again(state.clone(), limits.clone());
                return serve(state, stream, tracker, limits, Some(again)).await;
            };
            match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => serve(state, stream, tracker, limits, None).await,
                Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!("TLS handshake timed out"),
            }
        });
    }
}

/// How a plain connection goes back to `serve` after a raw read took it over (see `Resume`).
fn serve_again(state: Arc<Node>, limits: Arc<listener::Limits>) -> ServeAgain {
    Arc::new(move |stream, tracker| {
        let again = serve_again(state.clone(), limits.clone());
        let served = serve(state.clone(), stream, tracker, limits.clone(), Some(again));
        tokio::spawn(served);
    })
}

/// Serves one connection's calls; `again`, on a plain connection, lets a raw read hand it back.
async fn serve<S>(
    state: Arc<Node>,
    stream: S,
    tracker: listener::Tracker,
    limits: Arc<listener::Limits>,
    again: Option<ServeAgain>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let max_headers = limits.max_headers;
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        let state = state.clone();
        let request = tracker.request();
        let too_large = limits.headers_too_large(req.headers());
        // For a call that takes the connection over (`receive_raw`), to hold a request of its
        // own there after its answer.
        req.extensions_mut().insert(tracker.clone());
        if let Some(serve) = again.clone() {
            let tracker = tracker.clone();
            req.extensions_mut().insert(Resume { serve, tracker });
        }
        async move {
            if too_large {
                let refusal = full("request headers too large");
                return Ok(response(
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    None,
                    refusal,
                ));
            }
            // A panic is a bug; it fails its call (500, logged), not the connection or the node.
            let (method, uri) = (req.method().clone(), req.uri().clone());
            let what = move || format!("{method} {}", uri.path());
            let response = supervisor::caught(what, state.handle(req))
                .await
                .unwrap_or_else(|message| {
                    let message = full(format!("panicked: {message}"));
                    response(StatusCode::INTERNAL_SERVER_ERROR, None, message)
                });
            drop(request);
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    // HTTP/1 only: a raw fragment read takes the TCP stream itself over (`send_raw`).
    // Without a timer, so without hyper's own header-read timeout, which would also
    // close the gateways' pooled connections while idle: the listener times out heads
    // and idle connections itself (`listener::Limits`).
    let _ = hyper::server::conn::http1::Builder::new()
        .max_headers(max_headers)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades()
        .await;
}

impl Node {
    async fn handle(&self, req: Request<Incoming>) -> Response<HttpBody> {
        if req.uri().path() == "/metrics" {
            return self.metrics(&req);
        }
        let arrived = Instant::now();
        let call = NodeMetrics::call_index(req.method(), req.uri().path());
        let span = tracing::info_span!(
            target: trace::TARGET,
            "node request",
            otel.kind = "server",
            otel.name = %format!("{} {}", req.method(), NodeMetrics::call_label(call)),
            node = %self.id,
            trace_id = tracing::field::Empty,
            http.response.status_code = tracing::field::Empty,
        );
        let traceparent = req
            .headers()
            .get("traceparent")
            .and_then(|v| v.to_str().ok());
        trace::continue_trace(&span, traceparent);
        if let Some(id) = trace::trace_id(&span) {
            span.record("trace_id", id);
        }
        let result = async {
            match self.authenticate(req).await {
                Ok(req) => self.route(req).await,
                Err(e) => Err(e),
            }
        }
        .instrument(span.clone())
        .await;
        let response = result.unwrap_or_else(|e| {
            if e.status() == StatusCode::INTERNAL_SERVER_ERROR {
                tracing::error!(error = %e, "node request failed");
            }
            response(e.status(), None, full(e.to_string()))
        });
        METRICS.call(call, response.status().as_u16(), arrived.elapsed());
        span.record("http.response.status_code", response.status().as_u16());
        response
    }

    /// `GET /metrics`: Prometheus text, for bearers of the metrics token unless the node's
    /// metrics are public.
    fn metrics(&self, req: &Request<Incoming>) -> Response<HttpBody> {
        let token = self.metrics_token.as_deref();
        telemetry::scrape(req.method(), req.headers(), token, || {
            METRICS.render(Snapshot {
                node: &self.id,
                hints_for: self.store.hint_targets(),
                scrub: self.scrub.status(),
                disk: disk_space(&self.data_dir),
                write_stall_secs: self.store.write_stall_secs(),
                worker_restarts: self.workers.restarts(),
            })
        })
        .map(full)
    }

    /// Refuses new data while the disk has less free space than the node keeps in reserve.
    fn ensure_space(&self) -> Result<(), NodeError> {
        let free = free_bytes(&self.data_dir).map_err(|e| NodeError::Store(e.into()))?;
        if free < self.min_free_bytes {
            return Err(NodeError::DiskFull(self.min_free_bytes));
        }
        Ok(())
    }

    /// Checks a call's signature and nonce, and reads a body signed by its hash whole to check it
    /// before anything acts on it. A streamed body is checked against its tag as it is received.
    async fn authenticate(&self, req: Request<Incoming>) -> Result<Request<Body>, NodeError> {
        let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
        let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let verified = self
            .secret
            .verify(req.method().as_str(), path, header, &self.nonces)?;
        let (parts, incoming) = req.into_parts();
        let body = match verified {
            VerifiedBody::Hashed(digest) => {
                let bytes = read_whole(incoming, MAX_HASHED_BODY, self.body_stall).await?;
                if !digest.matches(&bytes) {
                    return Err(AuthError::BodyMismatch.into());
                }
                Body::Checked(bytes)
            }
            VerifiedBody::Streamed(key) => Body::Streamed(incoming, key),
        };
        Ok(Request::from_parts(parts, body))
    }

    async fn route(&self, mut req: Request<Body>) -> Result<Response<HttpBody>, NodeError> {
        let path: Vec<String> = req
            .uri()
            .path()
            .trim_start_matches('/')
            .split('/')
            .map(str::to_string)
            .collect();
        let path: Vec<&str> = path.iter().map(String::as_str).collect();
        let store = self.store.clone();
        let query = parse_query(req.uri().query());
        if let Some((_, holder)) = query.iter().find(|(k, _)| *k == HINT_QUERY) {
            if *holder != self.id {
                let holder = holder.to_string();
                return keep_hint(store, holder, req).await;
            }
        }
        match (req.method().clone(), path.as_slice()) {
            (Method::GET, ["v1", "health"]) => {
                let hints_for = store.hint_targets();
                let disk = disk_space(&self.data_dir).ok();
                json(&NodeHealth {
                    hints: hints_for.values().sum(),
                    hints_for,
                    scrub: self.scrub.status(),
                    disk_free_bytes: disk.as_ref().map(|d| d.free),
                    disk_size_bytes: disk.as_ref().map(|d| d.size),
                    disk_id: disk.map(|d| format!("{:016x}", d.id)),
                    frame_formats: FrameFormat::known().to_vec(),
                    workers: self.workers.status(),
                })
            }
            (Method::POST, ["v1", "scrub"]) => {
                let scrub = self.scrub.clone();
                json(&blocking(move || Ok(scrub.start_pass())).await?)
            }
            (Method::PUT, ["v1", "fragment", id, index]) => {
                let (id, index) = fragment_name(id, index)?;
                self.ensure_space()?;
                let layout = fragment_layout(&req)?;
                let raw = wants_raw(&req).then(|| hyper::upgrade::on(&mut req));
                // The upload outlives this call's answer (101) on the connection it takes
                // over, where it holds a request of its own: else the listener would time its
                // reads out as a slow head (`header_timeout`) instead of `TRANSFER_STALL`.
                let connection = req.extensions().get::<listener::Tracker>().cloned();
                let Body::Streamed(body, key) = req.into_body() else {
                    return Err(bad("fragment uploads are streamed"));
                };
                let file = store.create_fragment(&id, index)?;
                if let Some(upgrade) = raw {
                    let held = connection.as_ref().map(listener::Tracker::request);
                    tokio::spawn(receive_raw(upgrade, file, layout, index, key, held));
                    return Ok(switching_to_raw(false));
                }
                receive_fragment(file, layout, index, body, key).await
            }
            (Method::GET, ["v1", "fragment", id, index]) => {
                let (id, index) = fragment_name(id, index)?;
                let offset = query_u64(&query, "offset")?;
                let len = query_u64(&query, "len")?;
                METRICS.fragment_reads.inc();
                METRICS.fragment_bytes_read.add(len);
                if wants_raw(&req) {
                    let resume = req.extensions_mut().remove::<Resume>();
                    let upgrade = hyper::upgrade::on(&mut req);
                    let file = store.open_fragment(&id, index)?;
                    let size = file.metadata().map_err(StoreError::from)?.len();
                    if offset.checked_add(len).is_none_or(|end| end > size) {
                        return Err(bad("range past the end of the fragment"));
                    }
                    let send = RawSend {
                        head: Bytes::new(),
                        file,
                        offset,
                        len,
                    };
                    return Ok(start_raw(send, upgrade, resume));
                }
                send_fragment(store, id, index, offset, len).await
            }
            (Method::DELETE, ["v1", "fragment", id, index]) => {
                let (id, index) = fragment_name(id, index)?;
                blocking(move || store.remove_fragment(&id, index)).await?;
                Ok(Response::new(empty()))
            }
            (Method::POST, ["v1", "commit"]) => {
                let commit: CommitRequest = read_json(req)?;
                if !commit.record.deleted {
                    self.ensure_space()?;
                }
                let applied = match commit.claim {
                    Some(token) => {
                        blocking(move || {
                            store.commit_claimed(
                                &commit.bucket,
                                &commit.key,
                                &commit.record,
                                commit.upload_id.as_deref(),
                                commit.replicate.as_ref(),
                                &token,
                            )
                        })
                        .await?
                    }
                    None => store
                        .submit_commit(
                            commit.bucket,
                            commit.key,
                            commit.record,
                            commit.upload_id,
                            commit.replicate,
                        )
                        .await
                        .unwrap_or(Err(StoreError::CommitterGone))?,
                };
                json(&applied)
            }
            (Method::POST, ["v1", "commits"]) => {
                let commits: Vec<CommitRequest> = read_batch(req)?;
                // As `/v1/commit`: a full disk refuses new data, not deletions.
                let disk_full = if commits.iter().any(|c| !c.record.deleted) {
                    self.ensure_space().err().map(refused)
                } else {
                    None
                };
                // All queued before any is awaited: they share the committer's groups.
                let pending: Vec<_> = commits
                    .into_iter()
                    .map(|commit| {
                        if commit.claim.is_some() {
                            return Err(refused(bad("a conditional commit is sent alone")));
                        }
                        if let (false, Some(full)) = (commit.record.deleted, &disk_full) {
                            return Err(full.clone());
                        }
                        Ok(store.submit_commit(
                            commit.bucket,
                            commit.key,
                            commit.record,
                            commit.upload_id,
                            commit.replicate,
                        ))
                    })
                    .collect();
                let mut outcomes = Vec::with_capacity(pending.len());
                for commit in pending {
                    outcomes.push(match commit {
                        Ok(outcome) => {
                            match outcome.await.unwrap_or(Err(StoreError::CommitterGone)) {
                                Ok(applied) => CommitOutcome::Applied(applied),
                                Err(e) => refused(e.into()),
                            }
                        }
                        Err(refusal) => refusal,
                    });
                }
                json(&outcomes)
            }
            (Method::GET, ["v1", "object", bucket, key]) => {
                let bucket = bucket_id(bucket)?;
                let key = hex_string(key)?;
                let query = parse_query(req.uri().query());
                let param = |name| query.iter().find(|(k, _)| *k == name).map(|(_, v)| v);
                // On the async thread: a point read comes from RocksDB's memtable or block cache
                // in microseconds, less than the two thread switches of `blocking` cost.
                if let Some(holder) = param("hinted_for") {
                    let version = param("version").and_then(|v| v.parse().ok());
                    let version = version.ok_or_else(|| bad("hinted_for needs a version"))?;
                    let holder = hex_string(holder)?;
                    let record =
                        blocking(move || store.hinted_record(&holder, &bucket, &key, version))
                            .await?;
                    return json(&crate::protocol::Lookup::of(record));
                }
                let which = match param("version") {
                    Some(which) => Some(which.parse().map_err(|()| bad("bad version"))?),
                    None => None,
                };
                let fragment = param("fragment").is_some();
                let lookup = match (which, param("before")) {
                    (which, None) if !fragment => {
                        return json(&look_up::<StoredRecord>(&store, &bucket, &key, which)?);
                    }
                    (Some(which), _) => look_up(&store, &bucket, &key, Some(which))?,
                    (None, Some(before)) => {
                        let before = before.parse().map_err(|_| bad("bad version"))?;
                        with_outbox(
                            &store,
                            &bucket,
                            &key,
                            store.object_before(&bucket, &key, before)?,
                        )?
                    }
                    (None, None) => look_up(&store, &bucket, &key, None)?,
                };
                if !fragment {
                    return json(&lookup);
                }
                // Over plain TCP only (`Resume`): over TLS the node would have to copy the bytes.
                let raw = match wants_raw(&req) {
                    true => req.extensions_mut().remove::<Resume>(),
                    false => None,
                };
                let raw = raw.map(|resume| (hyper::upgrade::on(&mut req), resume));
                lookup_and_fragment(store, lookup, raw).await
            }
            (Method::POST, ["v1", "objects"]) => {
                let lookups: Vec<LookupRequest> = read_batch(req)?;
                // On the async thread, as `GET /v1/object`: at most a gateway's batch of point
                // reads (`node_rpc::gather`).
                let outcomes: Vec<LookupOutcome<StoredRecord>> = lookups
                    .into_iter()
                    .map(|l| match look_up(&store, &l.bucket, &l.key, l.version) {
                        Ok(lookup) => LookupOutcome::Found(Box::new(lookup)),
                        Err(e) => LookupOutcome::Refused {
                            status: e.status().as_u16(),
                            error: e.to_string(),
                        },
                    })
                    .collect();
                json(&outcomes)
            }
            (Method::POST, ["v1", "purge"]) => {
                let purge: PurgeRequest = read_json(req)?;
                let removed = blocking(move || {
                    store.purge(
                        &purge.bucket,
                        &purge.key,
                        purge.version,
                        purge.bypass_governance,
                        purge.replicate.as_ref(),
                    )
                })
                .await?;
                json(&removed.map(|r| r.deleted))
            }
            (Method::POST, ["v1", "outbox"]) => {
                let request: OutboxRequest = read_json(req)?;
                json(&blocking(move || store.outbox(&request)).await?)
            }
            (Method::POST, ["v1", "outbox", "lease"]) => {
                let request: LeaseRequest = read_json(req)?;
                json(&self.leases.ask(&request, std::time::Instant::now()))
            }
            (Method::POST, ["v1", "outbox", "report"]) => {
                let report: OutboxReport = read_json(req)?;
                blocking(move || store.outbox_report(&report)).await?;
                Ok(Response::new(empty()))
            }
            (Method::GET, ["v1", "digests", bucket]) => {
                let bucket = bucket_id(bucket)?;
                // Cheap next to the scan: heals ask once per node and bucket.
                let layout = self.layout.clone();
                let shard_of = move |key: &[u8]| layout.shard_of(&bucket, key).0;
                let digests = blocking(move || store.digests(&bucket, shard_of)).await?;
                json(&digests)
            }
            (Method::GET, ["v1", "usage", bucket]) => {
                let bucket = bucket_id(bucket)?;
                let layout = self.layout.clone();
                let shard_of = move |key: &[u8]| layout.shard_of(&bucket, key).0;
                json(&blocking(move || store.usage(&bucket, shard_of)).await?)
            }
            (Method::POST, ["v1", "undo"]) => {
                let undo: UndoRequest = read_json(req)?;
                let settled = unix_now().saturating_sub(undo.settled_secs);
                json(
                    &blocking(move || store.undo(&undo.bucket, &undo.key, undo.version, settled))
                        .await?,
                )
            }
            (Method::POST, ["v1", "versions"]) => {
                let list: VersionListRequest = read_json(req)?;
                json(&blocking(move || store.list_versions(&list)).await?)
            }
            (Method::POST, ["v1", "claim"]) => {
                let claim: ClaimRequest = read_json(req)?;
                json(
                    &blocking(move || {
                        store.claim(&claim.bucket, &claim.key, &claim.token, claim.expected)
                    })
                    .await?,
                )
            }
            (Method::POST, ["v1", "release"]) => {
                let claim: ClaimRequest = read_json(req)?;
                store.release(&claim.bucket, &claim.key, &claim.token);
                Ok(Response::new(empty()))
            }
            (Method::POST, ["v1", "list"]) => {
                let list: ListRequest = read_json(req)?;
                json(&blocking(move || store.list(&list)).await?)
            }
            (Method::PUT, ["v1", "bucket"]) => {
                let record: BucketRecord = read_json(req)?;
                json(&blocking(move || store.put_bucket(&record)).await?)
            }
            (Method::GET, ["v1", "buckets"]) => json(&blocking(move || store.buckets()).await?),
            (Method::PUT, ["v1", "key"]) => {
                let record: KeyRecord = read_json(req)?;
                json(&blocking(move || store.put_key(&record)).await?)
            }
            (Method::GET, ["v1", "keys"]) => json(&blocking(move || store.keys()).await?),
            (Method::PUT, ["v1", "upload"]) => {
                self.ensure_space()?;
                let upload: UploadRequest = read_json(req)?;
                blocking(move || store.put_upload(&upload.bucket, &upload.record)).await?;
                Ok(Response::new(empty()))
            }
            (Method::GET, ["v1", "upload", bucket, upload_id]) => {
                let bucket = bucket_id(bucket)?;
                let upload_id = upload_id.to_string();
                json(&blocking(move || store.upload(&bucket, &upload_id)).await?)
            }
            (Method::GET, ["v1", "uploads", bucket]) => {
                let bucket = bucket_id(bucket)?;
                json(&blocking(move || store.uploads(&bucket)).await?)
            }
            (Method::DELETE, ["v1", "upload", bucket, upload_id]) => {
                let bucket = bucket_id(bucket)?;
                let upload_id = upload_id.to_string();
                blocking(move || store.abort_upload(&bucket, &upload_id)).await?;
                Ok(Response::new(empty()))
            }
            (Method::PUT, ["v1", "part"]) => {
                self.ensure_space()?;
                let part: PartRequest = read_json(req)?;
                json(&blocking(move || store.put_part(&part.upload_id, &part.record)).await?)
            }
            (Method::GET, ["v1", "parts", upload_id]) => {
                let upload_id = upload_id.to_string();
                json(&blocking(move || store.parts(&upload_id)).await?)
            }
            (Method::PUT, ["v1", "setting", name]) => {
                let name = name.to_string();
                let value = req.into_body().checked()?;
                blocking(move || store.put_setting(&name, &value)).await?;
                Ok(Response::new(empty()))
            }
            (Method::GET, ["v1", "setting", name]) => {
                let name = name.to_string();
                match blocking(move || store.setting(&name)).await? {
                    Some(value) => Ok(Response::new(full(value))),
                    None => Err(NodeError::NotFound),
                }
            }
            _ => Err(NodeError::NotFound),
        }
    }
}

/// Reads a body whole, failing once it grows past `max` bytes or stops arriving for `stall`.
/// A body that came in one frame (most records) is returned as it came, without a copy.
async fn read_whole(mut body: Incoming, max: usize, stall: Duration) -> Result<Bytes, NodeError> {
    let (mut frames, mut len) = (Vec::<Bytes>::new(), 0);
    while let Some(frame) = next_frame(&mut body, stall).await? {
        let Ok(data) = frame.into_data() else {
            continue;
        };
        len += data.len();
        if len > max {
            return Err(NodeError::BodyTooLarge(max));
        }
        frames.push(data);
    }
    Ok(match frames.len() {
        1 => frames.swap_remove(0),
        _ => frames.concat().into(),
    })
}

/// The next frame of a body, or `BodyStalled` when none comes within `stall`.
async fn next_frame(
    body: &mut Incoming,
    stall: Duration,
) -> Result<Option<hyper::body::Frame<Bytes>>, NodeError> {
    match tokio::time::timeout(stall, body.frame()).await {
        Err(_) => Err(NodeError::BodyStalled(stall)),
        Ok(None) => Ok(None),
        Ok(Some(frame)) => Ok(Some(frame?)),
    }
}

/// A call's body once its signature is checked.
enum Body {
    /// Read whole, and found to be the body signed for.
    Checked(Bytes),
    /// A fragment upload's body, to be checked against its tag (made with this key) as it comes.
    Streamed(Incoming, StreamKey),
}

impl Body {
    /// The whole body; only fragment uploads are streamed.
    fn checked(self) -> Result<Bytes, NodeError> {
        match self {
            Body::Checked(bytes) => Ok(bytes),
            Body::Streamed(..) => Err(bad("only fragment uploads are streamed")),
        }
    }
}

/// Keeps a metadata call meant for `holder` as a hint, and answers as the holder would.
async fn keep_hint(
    store: Arc<Store>,
    holder: String,
    req: Request<Body>,
) -> Result<Response<HttpBody>, NodeError> {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let body = req.into_body().checked()?;
    let hint = Hint::new(&holder, &method, &path, body).map_err(|e| bad(e.to_string()))?;
    let reply = hint.reply();
    blocking(move || store.add_hint(&hint)).await?;
    Ok(Response::new(full(reply)))
}

/// Bytes an unprivileged writer can still put on the filesystem holding `path`.
fn free_bytes(path: &std::path::Path) -> std::io::Result<u64> {
    Ok(disk_space(path)?.free)
}

/// The file system that holds a node's data dir.
pub(crate) struct DiskSpace {
    /// Bytes an unprivileged writer can still put on it.
    pub free: u64,
    pub size: u64,
    /// The file system's id (`statvfs`'s `f_fsid`: from its UUID on ext4, from its device number
    /// on XFS and others): nodes on one host that report the same one share the disk, so a total
    /// counts it once.
    pub id: u64,
}

fn disk_space(path: &std::path::Path) -> std::io::Result<DiskSpace> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(path.as_os_str().as_bytes())?;
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a valid C string and `stat` a writable statvfs.
    if unsafe { libc::statvfs(path.as_ptr(), &mut stat) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let block = stat.f_frsize as u64;
    Ok(DiskSpace {
        free: stat.f_bavail as u64 * block,
        size: stat.f_blocks as u64 * block,
        id: stat.f_fsid as u64,
    })
}

/// Drops the replaced versions kept for longer than `keep_replaced_secs` (see `Store::undo`) and
/// the fragment files superseded longer than `keep_superseded_secs` ago, looking a few times per
/// the shorter of the two, at least once a minute; and removes orphaned fragment files a few times
/// per `orphan_age_secs`, at least once an hour (that takes a scan of all records).
async fn sweep_forever(store: Arc<Store>, node: NodeConfig) {
    let secs = Duration::from_secs;
    let (keep_replaced, keep_superseded, orphan_age) = (
        secs(node.keep_replaced_secs),
        secs(node.keep_superseded_secs),
        secs(node.orphan_age_secs),
    );
    let every = (keep_replaced.min(keep_superseded) / 4).clamp(secs(1), secs(60));
    let orphans_every = (orphan_age / 4).clamp(secs(1), secs(3600));
    let mut tick = tokio::time::interval(every.min(orphans_every));
    let mut orphans_swept = tokio::time::Instant::now();
    loop {
        tick.tick().await;
        let now = unix_now();
        let (replaced, superseded) = (
            now.saturating_sub(keep_replaced.as_secs()),
            now.saturating_sub(keep_superseded.as_secs()),
        );
        let orphans = (orphans_swept.elapsed() >= orphans_every)
            .then(|| std::time::SystemTime::now().checked_sub(orphan_age))
            .flatten();
        if orphans.is_some() {
            orphans_swept = tokio::time::Instant::now();
        }
        let store = store.clone();
        let swept = blocking(move || {
            Ok((
                store.expire_replaced(replaced)?,
                store.remove_superseded(superseded)?,
                orphans
                    .map(|cutoff| store.remove_orphans(cutoff))
                    .transpose()?,
            ))
        });
        match swept.await {
            Ok((expired, removed, orphans)) => {
                if let Some(orphans @ 1..) = orphans {
                    tracing::info!(orphans, "orphaned fragment files removed");
                }
                if expired + removed > 0 {
                    tracing::debug!(expired, removed, "old versions swept");
                }
            }
            Err(e) => tracing::warn!(error = %e, "sweeping old versions failed"),
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, NodeError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| NodeError::Store(StoreError::Io(std::io::Error::other(e))))?
        .map_err(NodeError::from)
}

fn read_json<T: DeserializeOwned>(req: Request<Body>) -> Result<T, NodeError> {
    // Parsed from one slice: serde_json reads a `Read` byte by byte.
    let body = req.into_body().checked()?;
    serde_json::from_slice(&body).map_err(|e| bad(e.to_string()))
}

/// The entries of a batch call, at most `MAX_BATCH_ENTRIES`.
fn read_batch<T: DeserializeOwned>(req: Request<Body>) -> Result<Vec<T>, NodeError> {
    let entries: Vec<T> = read_json(req)?;
    if entries.len() > MAX_BATCH_ENTRIES {
        return Err(bad(format!(
            "a batch of {} entries; at most {MAX_BATCH_ENTRIES}",
            entries.len()
        )));
    }
    Ok(entries)
}

fn json<T: Serialize>(value: &T) -> Result<Response<HttpBody>, NodeError> {
    let bytes = serde_json::to_vec(value).map_err(|e| bad(e.to_string()))?;
    let json = HeaderValue::from_static("application/json");
    Ok(response(
        StatusCode::OK,
        Some((http::header::CONTENT_TYPE, json)),
        full(bytes),
    ))
}

/// A response built without a fallible builder: nothing in a node's answers can panic.
pub(super) fn response(
    status: StatusCode,
    header: Option<(http::HeaderName, HeaderValue)>,
    body: HttpBody,
) -> Response<HttpBody> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().extend(header);
    response
}

fn fragment_name(id: &str, index: &str) -> Result<(String, u8), NodeError> {
    if !is_fragment_id(id) {
        return Err(bad("bad fragment id"));
    }
    let index = index.parse().map_err(|_| bad("bad fragment index"))?;
    Ok((id.to_string(), index))
}

fn bucket_id(hex_id: &str) -> Result<BucketId, NodeError> {
    let mut id = [0u8; 16];
    hex::decode_to_slice(hex_id, &mut id).map_err(|_| bad("bad bucket id"))?;
    Ok(id)
}

fn hex_string(hex_key: &str) -> Result<String, NodeError> {
    let bytes = hex::decode(hex_key).map_err(|_| bad("bad hex"))?;
    String::from_utf8(bytes).map_err(|_| bad("key is not UTF-8"))
}

fn parse_query(query: Option<&str>) -> Vec<(&str, &str)> {
    query
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .collect()
}

fn query_u64(query: &[(&str, &str)], name: &str) -> Result<u64, NodeError> {
    query
        .iter()
        .find(|(k, _)| *k == name)
        .and_then(|(_, v)| v.parse().ok())
        .ok_or_else(|| bad(format!("missing {name}")))
}
