//! The gateway's side of the node protocol: one signed HTTP call per method, over pooled connections.

use crate::auth::{BodyDigest, StreamKey, StreamTagger, STREAM_TAG_LEN};
use crate::body::{empty, full, HttpBody};
use crate::gather::{self, Commits, Gathering, Lookups};
use crate::protocol::{
    parse_raw_upload_answer, ClaimAnswer, ClaimRequest, ClusterSecret, CommitRequest, LeaseAnswer,
    LeaseRequest, ListRequest, ListResponse, Lookup, LookupRequest, OutboxPage, OutboxReport,
    OutboxRequest, PartRequest, PurgeRequest, ScrubStatus, ShardDigest, ShardUsage, UndoRequest,
    UploadRequest, VersionListRequest, BLOCK_SIZE_HEADER, DATA_SHARDS_HEADER, FRAMES_HEADER,
    HINT_QUERY, RAW_FRAGMENT_PROTOCOL, RESUME_HEADER, SIZE_HEADER,
};
use crate::raw::{KeepFor, Kept, RawFragment, Recycling};
use crate::record::{
    BucketId, BucketRecord, KeyRecord, PartRecord, UploadRecord, Version, VersionRef,
};
use crate::tls::{self, TlsError};
use crate::ClusterConfig;
use bytes::Bytes;
use erasure::{FrameFormat, StripeLayout};
use http::header::{CONNECTION, UPGRADE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::upgrade::Upgraded;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use telemetry::trace;
use tracing::Instrument;

#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error("node unreachable: {0}")]
    Unreachable(#[from] hyper_util::client::legacy::Error),
    #[error("node did not answer in time")]
    Timeout,
    #[error("node answered {0}: {1}")]
    Status(StatusCode, String),
    #[error("reading the node's answer: {0}")]
    Body(#[from] hyper::Error),
    #[error("undecodable answer: {0}")]
    Decode(#[from] serde_json::Error),
    #[error("the node's answer ended early")]
    Truncated,
    #[error("raw fragment transfer: {0}")]
    Raw(#[from] std::io::Error),
    /// A commit sent with others (see `commits`) whose call failed, or that had no answer.
    #[error("batched commit: {0}")]
    Gathered(String),
}

fn object_path(bucket: &BucketId, key: &str, query: Option<String>) -> String {
    let mut path = format!("/v1/object/{}/{}", hex::encode(bucket), hex::encode(key));
    if let Some(query) = query {
        path.push('?');
        path.push_str(&query);
    }
    path
}

impl RpcError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, RpcError::Status(StatusCode::NOT_FOUND, _))
    }

    /// The node refused because its disk is (nearly) full.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, RpcError::Status(StatusCode::INSUFFICIENT_STORAGE, _))
    }

    /// The node refused to delete a version that Object Lock protects.
    pub fn is_locked(&self) -> bool {
        matches!(self, RpcError::Status(StatusCode::LOCKED, _))
    }
}

/// The shortest fragment read or upload that takes a connection of its own (see
/// `RAW_FRAGMENT_PROTOCOL`): below it, a pooled connection's HTTP body costs less than a new
/// connection.
const RAW_MIN: u64 = 1 << 20;
/// The longest record a raw lookup's answer may carry: far above any real one, but no more than
/// a broken stream may make the gateway allocate.
const RAW_HEAD_MAX: usize = 16 << 20;

/// The body of a call, as it is signed.
enum Outgoing {
    /// Known whole: its hash is signed.
    Whole(Bytes),
    /// A fragment streamed as the request body, followed by the call's stream tag.
    Tagged(HttpBody, StripeLayout),
    /// No body: the fragment follows on the upgraded connection, and the caller tags it with the
    /// key `send_keyed` returns.
    Upgrade,
}

/// A fragment range as a node sends it.
pub enum FragmentBody {
    /// As a response body, of which `chunk` was already read.
    Http { body: Incoming, chunk: Bytes },
    /// Alone on a connection the read has to itself.
    Raw(RawFragment),
}

#[derive(Clone)]
pub struct NodeClient {
    http: Client<HttpsConnector<HttpConnector>, HttpBody>,
    /// For the calls that ask for a raw connection (`RAW_FRAGMENT_PROTOCOL`), which leave the
    /// pool when the node switches: it dials through `kept`, the connections that raw reads
    /// left open.
    raw: Client<HttpsConnector<Recycling>, HttpBody>,
    kept: Kept,
    /// `https` when nodes serve TLS, else `http`.
    scheme: &'static str,
    secret: ClusterSecret,
    timeout: Duration,
    /// Id of the holder whose share of a write this client's calls carry (see `HINT_QUERY`).
    hint_for: Option<String>,
    /// Commits waiting to be sent together, per node.
    gathering: Arc<Gathering>,
}

/// What a node reports about itself.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct NodeHealth {
    /// Writes it keeps for holders that were down, not yet handed over.
    pub hints: u64,
    /// The same, by the id of the node each is for: that node lacks those writes until they are
    /// handed over, which a gateway's reads must allow for.
    #[serde(default)]
    pub hints_for: BTreeMap<String, u64>,
    #[serde(default)]
    pub scrub: ScrubStatus,
    /// Free bytes (for the node's user) and size of the data disk; absent when the node could
    /// not tell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_free_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_size_bytes: Option<u64>,
    /// Names the file system of the data disk: nodes on one host that report the same id share
    /// one disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_id: Option<String>,
    /// The fragment frame formats the node checks and serves (`erasure::FrameFormat::number`);
    /// empty from a node of a release before format 2, which knows format 1 alone.
    #[serde(default)]
    pub frame_formats: Vec<u8>,
    /// The node's background workers (hinted handoff, the sweeper, the scrubber): a panic shows
    /// here, with the restart that followed.
    #[serde(default)]
    pub workers: Vec<supervisor::WorkerStatus>,
}

impl NodeClient {
    /// A client of nodes that serve plain HTTP.
    pub fn new(secret: ClusterSecret, timeout: Duration) -> NodeClient {
        NodeClient::build(secret, timeout, None)
    }

    /// A client of the cluster's nodes: over TLS, checked against the cluster's CA, when the
    /// cluster config names one (`tls_ca`).
    pub fn for_cluster(cluster: &ClusterConfig) -> Result<NodeClient, TlsError> {
        let tls = cluster
            .tls_ca
            .as_deref()
            .map(tls::client_config)
            .transpose()?;
        Ok(NodeClient::build(
            cluster.secret.clone(),
            cluster.rpc_timeout(),
            tls,
        ))
    }

    /// A client of nodes that serve TLS with certificates `tls` trusts.
    pub fn with_tls(
        secret: ClusterSecret,
        timeout: Duration,
        tls: rustls::ClientConfig,
    ) -> NodeClient {
        NodeClient::build(secret, timeout, Some(tls))
    }

    fn build(
        secret: ClusterSecret,
        timeout: Duration,
        tls: Option<rustls::ClientConfig>,
    ) -> NodeClient {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(timeout));
        // Plain connections pass through it untouched; `https` addresses get TLS.
        connector.enforce_http(false);
        let scheme = if tls.is_some() { "https" } else { "http" };
        let tls = tls.unwrap_or_else(|| {
            rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("ring supports the default versions")
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth()
        });
        let kept = Kept::default();
        let recycling = Recycling::new(connector.clone(), kept.clone());
        let https = || {
            hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(tls.clone())
                .https_or_http()
                .enable_http1()
        };
        let pooled = || {
            let mut builder = Client::builder(TokioExecutor::new());
            builder
                .pool_idle_timeout(Duration::from_secs(30))
                .pool_max_idle_per_host(64);
            builder
        };
        NodeClient {
            http: pooled().build(https().wrap_connector(connector)),
            raw: pooled().build(https().wrap_connector(recycling)),
            kept,
            scheme,
            secret,
            timeout,
            hint_for: None,
            gathering: Arc::default(),
        }
    }

    /// A client whose metadata calls a substitute keeps as hints for `holder`, instead of applying.
    pub fn hinted(&self, holder: &str) -> NodeClient {
        NodeClient {
            hint_for: Some(holder.to_string()),
            ..self.clone()
        }
    }

    /// Sends a signed request and waits (at most `deadline`, when given) for the response head.
    /// Statuses other than 2xx and 101 (switching protocols) come back as `RpcError::Status`.
    async fn send(
        &self,
        addr: &str,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        body: Outgoing,
        deadline: Option<Duration>,
    ) -> Result<Response<Incoming>, RpcError> {
        let (response, _) = self
            .send_keyed(addr, method, path, headers, body, deadline)
            .await?;
        Ok(response)
    }

    /// `send`, also returning the stream tag key of a streamed body. Each call is a span of the
    /// trace it is made in (when tracing is on), which the node continues.
    async fn send_keyed(
        &self,
        addr: &str,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        body: Outgoing,
        deadline: Option<Duration>,
    ) -> Result<(Response<Incoming>, Option<StreamKey>), RpcError> {
        let span = tracing::info_span!(
            target: trace::TARGET,
            "node call",
            otel.kind = "client",
            otel.name = %format!("{method} {}", call_name(path)),
            server.address = addr,
            http.response.status_code = tracing::field::Empty,
        );
        let traceparent = trace::traceparent(&span);
        let answer = async {
            let hinted;
            let path = match &self.hint_for {
                Some(holder) => {
                    let sep = if path.contains('?') { '&' } else { '?' };
                    hinted = format!("{path}{sep}{HINT_QUERY}={holder}");
                    &hinted
                }
                None => path,
            };
            let digest = match &body {
                Outgoing::Whole(bytes) => BodyDigest::of(bytes),
                Outgoing::Tagged(..) | Outgoing::Upgrade => BodyDigest::Streamed,
            };
            let signed = self.secret.sign(method.as_str(), path, digest);
            let body = match body {
                Outgoing::Whole(bytes) => full(bytes),
                Outgoing::Tagged(body, layout) => {
                    let tagger = signed
                        .stream_key
                        .as_ref()
                        .expect("signed streamed")
                        .tagger(layout);
                    TaggedBody::new(body, tagger).boxed()
                }
                Outgoing::Upgrade => empty(),
            };
            let mut builder = Request::builder()
                .method(method)
                .uri(format!("{}://{addr}{path}", self.scheme));
            for (name, value) in signed.headers.iter().chain(headers) {
                builder = builder.header(*name, value);
            }
            if let Some(traceparent) = traceparent {
                builder = builder.header("traceparent", traceparent);
            }
            let req = builder.body(body).expect("request parts are valid");
            let sent = match headers.iter().any(|(name, _)| *name == UPGRADE.as_str()) {
                true => self.raw.request(req),
                false => self.http.request(req),
            };
            let resp = match deadline {
                Some(limit) => tokio::time::timeout(limit, sent)
                    .await
                    .map_err(|_| RpcError::Timeout)??,
                None => sent.await?,
            };
            let status = resp.status();
            if status.is_success() || status == StatusCode::SWITCHING_PROTOCOLS {
                return Ok((resp, signed.stream_key));
            }
            let text = tokio::time::timeout(self.timeout, resp.into_body().collect())
                .await
                .map_err(|_| RpcError::Timeout)??
                .to_bytes();
            Err(RpcError::Status(
                status,
                String::from_utf8_lossy(&text).into_owned(),
            ))
        }
        .instrument(span.clone())
        .await;
        if let Ok((response, _)) = &answer {
            span.record("http.response.status_code", response.status().as_u16());
        }
        answer
    }

    async fn call<T: DeserializeOwned>(
        &self,
        addr: &str,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T, RpcError> {
        let body = match body {
            Some(b) => serde_json::to_vec(b)?.into(),
            None => Bytes::new(),
        };
        self.call_with(addr, method, path, body).await
    }

    /// `call` with a body already serialized.
    async fn call_with<T: DeserializeOwned>(
        &self,
        addr: &str,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> Result<T, RpcError> {
        let incoming = self
            .send(
                addr,
                method,
                path,
                &[],
                Outgoing::Whole(body),
                Some(self.timeout),
            )
            .await?
            .into_body();
        let bytes = tokio::time::timeout(self.timeout, incoming.collect())
            .await
            .map_err(|_| RpcError::Timeout)??
            .to_bytes();
        if bytes.is_empty() {
            return Ok(serde_json::from_slice(b"null")?);
        }
        Ok(serde_json::from_slice(&bytes)?)
    }

    pub async fn health(&self, addr: &str) -> Result<NodeHealth, RpcError> {
        self.call(addr, Method::GET, "/v1/health", None::<&()>)
            .await
    }

    /// Starts a scrub pass on the node now (one already under way goes on); its status after.
    pub async fn start_scrub(&self, addr: &str) -> Result<ScrubStatus, RpcError> {
        self.call(addr, Method::POST, "/v1/scrub", None::<&()>)
            .await
    }

    /// Sends a call kept as a hint to the node it was meant for.
    pub async fn replay(
        &self,
        addr: &str,
        method: &str,
        path: &str,
        body: String,
    ) -> Result<(), RpcError> {
        let method = Method::from_bytes(method.as_bytes())
            .map_err(|_| RpcError::Status(StatusCode::BAD_REQUEST, method.to_string()))?;
        let answer = self
            .send(
                addr,
                method,
                path,
                &[],
                Outgoing::Whole(body.into()),
                Some(self.timeout),
            )
            .await?
            .into_body();
        tokio::time::timeout(self.timeout, answer.collect())
            .await
            .map_err(|_| RpcError::Timeout)??;
        Ok(())
    }

    /// Uploads one fragment; returns once the node has made it durable. A large one goes alone on
    /// a connection of its own (see `RAW_FRAGMENT_PROTOCOL`), unless it is a hint: a substitute
    /// keeps those through the HTTP path.
    pub async fn put_fragment(
        &self,
        addr: &str,
        id: &str,
        index: u8,
        layout: StripeLayout,
        body: HttpBody,
    ) -> Result<(), RpcError> {
        let mut headers = vec![
            (SIZE_HEADER, layout.size.to_string()),
            (DATA_SHARDS_HEADER, layout.data_shards.to_string()),
            (BLOCK_SIZE_HEADER, layout.block_size.to_string()),
        ];
        if layout.frames != FrameFormat::PositionFirst {
            headers.push((FRAMES_HEADER, layout.frames.number().to_string()));
        }
        let path = format!("/v1/fragment/{id}/{index}");
        if layout.fragment_len() >= RAW_MIN && self.hint_for.is_none() {
            headers.extend(raw_upgrade());
            let (resp, key) = self
                .send_keyed(
                    addr,
                    Method::PUT,
                    &path,
                    &headers,
                    Outgoing::Upgrade,
                    Some(self.timeout),
                )
                .await?;
            if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
                return Err(RpcError::Status(
                    resp.status(),
                    "the node did not take the raw upload".into(),
                ));
            }
            let raw = tokio::time::timeout(self.timeout, hyper::upgrade::on(resp))
                .await
                .map_err(|_| RpcError::Timeout)??;
            let tagger = key.expect("signed streamed").tagger(layout);
            return upload_raw(TokioIo::new(raw), body, layout.fragment_len(), tagger).await;
        }
        // No deadline here: sending a large fragment takes as long as it takes; the caller
        // watches for stalls and for a late confirmation.
        let answer = self
            .send(
                addr,
                Method::PUT,
                &path,
                &headers,
                Outgoing::Tagged(body, layout),
                None,
            )
            .await?
            .into_body();
        answer.collect().await?;
        Ok(())
    }

    /// Streams `len` bytes of a fragment from `offset`.
    pub async fn get_fragment(
        &self,
        addr: &str,
        id: &str,
        index: u8,
        offset: u64,
        len: u64,
    ) -> Result<FragmentBody, RpcError> {
        let path = format!("/v1/fragment/{id}/{index}?offset={offset}&len={len}");
        let deadline = Some(self.timeout);
        if len < RAW_MIN {
            let body = self
                .send(addr, Method::GET, &path, &[], no_body(), deadline)
                .await?
                .into_body();
            return Ok(FragmentBody::Http {
                body,
                chunk: Bytes::new(),
            });
        }
        let resp = self
            .send(
                addr,
                Method::GET,
                &path,
                &raw_upgrade(),
                no_body(),
                deadline,
            )
            .await?;
        match self.raw_answer(addr, resp).await? {
            Ok(io) => Ok(FragmentBody::Raw(RawFragment::new(io.0, len, io.1))),
            Err(body) => Ok(FragmentBody::Http {
                body,
                chunk: Bytes::new(),
            }),
        }
    }

    /// The connection a node switched over to the raw protocol, with where it goes once its
    /// range is read when the node serves calls on it again (`RESUME_HEADER`); or the answer's
    /// body, from a node that did not switch.
    async fn raw_answer(
        &self,
        addr: &str,
        resp: Response<Incoming>,
    ) -> Result<Result<(TokioIo<Upgraded>, Option<KeepFor>), Incoming>, RpcError> {
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            return Ok(Err(resp.into_body()));
        }
        let keep = (resp.headers().contains_key(RESUME_HEADER)).then(|| self.kept.for_node(addr));
        let raw = tokio::time::timeout(self.timeout, hyper::upgrade::on(resp))
            .await
            .map_err(|_| RpcError::Timeout)??;
        Ok(Ok((TokioIo::new(raw), keep)))
    }

    pub async fn delete_fragment(&self, addr: &str, id: &str, index: u8) -> Result<(), RpcError> {
        let path = format!("/v1/fragment/{id}/{index}");
        self.call(addr, Method::DELETE, &path, None::<&()>).await
    }

    /// Returns whether the node applied the record (false: it had the same or a newer version).
    /// Plain commits to the node itself are gathered with others under load (see `commits`);
    /// a conditional one, or one a substitute keeps as a hint, goes alone.
    pub async fn commit(&self, addr: &str, commit: &CommitRequest) -> Result<bool, RpcError> {
        // Sized for its inline fragments, so that serializing does not grow and copy the buffer
        // over and over (a few percent of a gateway's CPU under small PUTs).
        let mut body = Vec::with_capacity(commit.record.inline_json_len() + 2048);
        serde_json::to_writer(&mut body, commit)?;
        let body = Bytes::from(body);
        if self.hint_for.is_some() || commit.claim.is_some() {
            // Boxed, as in `gather::call`: rare, and kilobytes inline.
            return Box::pin(self.commit_alone(addr, body)).await;
        }
        gather::call::<Commits>(self, addr, body).await
    }

    /// `POST /v1/commit` of a serialized `CommitRequest`.
    pub(crate) async fn commit_alone(&self, addr: &str, body: Bytes) -> Result<bool, RpcError> {
        self.call_with(addr, Method::POST, "/v1/commit", body).await
    }

    /// A batch of gathered calls (see `gather`): `array` is their JSON array, and the answer
    /// one outcome each.
    pub(crate) async fn batch<T: DeserializeOwned>(
        &self,
        addr: &str,
        path: &str,
        array: Bytes,
    ) -> Result<Vec<T>, RpcError> {
        self.call_with(addr, Method::POST, path, array).await
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    pub(crate) fn gathering(&self) -> &Gathering {
        &self.gathering
    }

    /// The key's current record (`version` None) or one version of it.
    pub async fn object(
        &self,
        addr: &str,
        bucket: &BucketId,
        key: &str,
        version: Option<VersionRef>,
    ) -> Result<Lookup, RpcError> {
        let lookup = LookupRequest {
            bucket: *bucket,
            key: key.to_string(),
            version,
        };
        gather::call::<Lookups>(self, addr, lookup).await
    }

    /// `object` as a call of its own.
    pub(crate) async fn object_alone(
        &self,
        addr: &str,
        lookup: LookupRequest,
    ) -> Result<Lookup, RpcError> {
        let query = lookup.version.map(|v| format!("version={v}"));
        self.lookup(addr, &lookup.bucket, &lookup.key, query).await
    }

    /// The record of `version` of a key that the node keeps as a hint for `holder`, not yet
    /// handed over (see `Store::hinted_record`).
    pub async fn hinted_record(
        &self,
        addr: &str,
        holder: &str,
        bucket: &BucketId,
        key: &str,
        version: Version,
    ) -> Result<Lookup, RpcError> {
        let query = format!("hinted_for={}&version={version}", hex::encode(holder));
        self.lookup(addr, bucket, key, Some(query)).await
    }

    /// The newest version the node has of a key older than `version` (see `Store::object_before`).
    pub async fn object_before(
        &self,
        addr: &str,
        bucket: &BucketId,
        key: &str,
        version: Version,
    ) -> Result<Lookup, RpcError> {
        let query = Some(format!("before={version}"));
        self.lookup(addr, bucket, key, query).await
    }

    /// `object`, with the node's fragment file of the record's first part following the record
    /// when the node sends it (see `Lookup::fragment_len`): then also the rest of the body, and
    /// the bytes of it already read.
    pub async fn object_and_fragment(
        &self,
        addr: &str,
        bucket: &BucketId,
        key: &str,
        version: Option<VersionRef>,
    ) -> Result<(Lookup, Option<FragmentBody>), RpcError> {
        let query = match version {
            Some(v) => format!("fragment=1&version={v}"),
            None => "fragment=1".into(),
        };
        let path = object_path(bucket, key, Some(query));
        // Over plain TCP a node sends a large fragment with `sendfile`, after the record, on the
        // connection switched over to the raw protocol; over TLS it would have to copy it.
        let upgrade = raw_upgrade();
        let headers: &[_] = if self.scheme == "http" { &upgrade } else { &[] };
        let resp = self
            .send(
                addr,
                Method::GET,
                &path,
                headers,
                no_body(),
                Some(self.timeout),
            )
            .await?;
        let mut body = match self.raw_answer(addr, resp).await? {
            Ok((io, keep)) => return self.raw_lookup(io, keep).await,
            Err(body) => body,
        };
        // The first chunk usually holds the whole head and much of the fragment: it is kept as
        // it came, and only a head split over chunks is joined.
        let mut got = Bytes::new();
        let head = async {
            loop {
                if let Some(len) = got
                    .first_chunk::<4>()
                    .map(|n| u32::from_be_bytes(*n) as usize)
                {
                    if got.len() >= 4 + len {
                        return Ok(len);
                    }
                }
                match body.frame().await {
                    Some(frame) => {
                        if let Ok(data) = frame?.into_data() {
                            got = if got.is_empty() {
                                data
                            } else {
                                [std::mem::take(&mut got), data].concat().into()
                            };
                        }
                    }
                    None => return Err(RpcError::Truncated),
                }
            }
        };
        let len = tokio::time::timeout(self.timeout, head)
            .await
            .map_err(|_| RpcError::Timeout)??;
        let lookup: Lookup = serde_json::from_slice(&got[4..4 + len])?;
        let rest = lookup.fragment_len.map(|_| FragmentBody::Http {
            body,
            chunk: got.split_off(4 + len),
        });
        Ok((lookup, rest))
    }

    /// A lookup's answer on a raw connection: the record's length (4 bytes, big-endian), the
    /// record, then the fragment (see `object_and_fragment`).
    async fn raw_lookup(
        &self,
        mut io: TokioIo<Upgraded>,
        keep: Option<KeepFor>,
    ) -> Result<(Lookup, Option<FragmentBody>), RpcError> {
        use tokio::io::AsyncReadExt;
        let head = async {
            let mut len = [0u8; 4];
            io.read_exact(&mut len).await?;
            let len = u32::from_be_bytes(len) as usize;
            if len > RAW_HEAD_MAX {
                return Err(RpcError::Truncated);
            }
            let mut json = vec![0u8; len];
            io.read_exact(&mut json).await?;
            Ok(json)
        };
        let json = tokio::time::timeout(self.timeout, head)
            .await
            .map_err(|_| RpcError::Timeout)??;
        let lookup: Lookup = serde_json::from_slice(&json)?;
        let len = lookup.fragment_len.ok_or(RpcError::Truncated)?;
        let fragment = RawFragment::new(io, len, keep);
        Ok((lookup, Some(FragmentBody::Raw(fragment))))
    }

    async fn lookup(
        &self,
        addr: &str,
        bucket: &BucketId,
        key: &str,
        query: Option<String>,
    ) -> Result<Lookup, RpcError> {
        let path = object_path(bucket, key, query);
        self.call(addr, Method::GET, &path, None::<&()>).await
    }

    /// The node's per-shard digests of a bucket's versions (see `Store::digests`).
    pub async fn digests(
        &self,
        addr: &str,
        bucket: &BucketId,
    ) -> Result<BTreeMap<u32, ShardDigest>, RpcError> {
        let path = format!("/v1/digests/{}", hex::encode(bucket));
        self.call(addr, Method::GET, &path, None::<&()>).await
    }

    /// The node's per-shard counts of a bucket's objects (see `ShardUsage`).
    pub async fn usage(
        &self,
        addr: &str,
        bucket: &BucketId,
    ) -> Result<BTreeMap<u32, ShardUsage>, RpcError> {
        let path = format!("/v1/usage/{}", hex::encode(bucket));
        self.call(addr, Method::GET, &path, None::<&()>).await
    }

    /// Undoes an inline overwrite that never reached enough holders; whether it was undone.
    pub async fn undo(&self, addr: &str, req: &UndoRequest) -> Result<bool, RpcError> {
        self.call(addr, Method::POST, "/v1/undo", Some(req)).await
    }

    /// Deletes one version for good; `Some(is a delete marker)` when the node had it.
    pub async fn purge(&self, addr: &str, req: &PurgeRequest) -> Result<Option<bool>, RpcError> {
        self.call(addr, Method::POST, "/v1/purge", Some(req)).await
    }

    /// The first entries of the node's outbox for a target region (see `OutboxRequest`).
    pub async fn outbox(&self, addr: &str, req: &OutboxRequest) -> Result<OutboxPage, RpcError> {
        self.call(addr, Method::POST, "/v1/outbox", Some(req)).await
    }

    /// Asks the node for the lease on draining the outboxes for a target region.
    pub async fn outbox_lease(
        &self,
        addr: &str,
        req: &LeaseRequest,
    ) -> Result<LeaseAnswer, RpcError> {
        self.call(addr, Method::POST, "/v1/outbox/lease", Some(req))
            .await
    }

    /// Tells the node which of its outbox entries were delivered or refused.
    pub async fn outbox_report(&self, addr: &str, req: &OutboxReport) -> Result<(), RpcError> {
        self.call(addr, Method::POST, "/v1/outbox/report", Some(req))
            .await
    }

    pub async fn list(&self, addr: &str, req: &ListRequest) -> Result<ListResponse, RpcError> {
        self.call(addr, Method::POST, "/v1/list", Some(req)).await
    }

    pub async fn list_versions(
        &self,
        addr: &str,
        req: &VersionListRequest,
    ) -> Result<ListResponse, RpcError> {
        self.call(addr, Method::POST, "/v1/versions", Some(req))
            .await
    }

    pub async fn claim(&self, addr: &str, req: &ClaimRequest) -> Result<ClaimAnswer, RpcError> {
        self.call(addr, Method::POST, "/v1/claim", Some(req)).await
    }

    pub async fn release(&self, addr: &str, req: &ClaimRequest) -> Result<(), RpcError> {
        self.call(addr, Method::POST, "/v1/release", Some(req))
            .await
    }

    pub async fn put_bucket(&self, addr: &str, record: &BucketRecord) -> Result<bool, RpcError> {
        self.call(addr, Method::PUT, "/v1/bucket", Some(record))
            .await
    }

    pub async fn buckets(&self, addr: &str) -> Result<Vec<BucketRecord>, RpcError> {
        self.call(addr, Method::GET, "/v1/buckets", None::<&()>)
            .await
    }

    pub async fn put_key(&self, addr: &str, record: &KeyRecord) -> Result<bool, RpcError> {
        self.call(addr, Method::PUT, "/v1/key", Some(record)).await
    }

    pub async fn keys(&self, addr: &str) -> Result<Vec<KeyRecord>, RpcError> {
        self.call(addr, Method::GET, "/v1/keys", None::<&()>).await
    }

    pub async fn put_upload(&self, addr: &str, req: &UploadRequest) -> Result<(), RpcError> {
        self.call(addr, Method::PUT, "/v1/upload", Some(req)).await
    }

    pub async fn upload(
        &self,
        addr: &str,
        bucket: &BucketId,
        upload_id: &str,
    ) -> Result<Option<UploadRecord>, RpcError> {
        let path = format!("/v1/upload/{}/{upload_id}", hex::encode(bucket));
        self.call(addr, Method::GET, &path, None::<&()>).await
    }

    pub async fn uploads(
        &self,
        addr: &str,
        bucket: &BucketId,
    ) -> Result<Vec<UploadRecord>, RpcError> {
        let path = format!("/v1/uploads/{}", hex::encode(bucket));
        self.call(addr, Method::GET, &path, None::<&()>).await
    }

    pub async fn abort_upload(
        &self,
        addr: &str,
        bucket: &BucketId,
        upload_id: &str,
    ) -> Result<(), RpcError> {
        let path = format!("/v1/upload/{}/{upload_id}", hex::encode(bucket));
        self.call(addr, Method::DELETE, &path, None::<&()>).await
    }

    pub async fn put_part(&self, addr: &str, req: &PartRequest) -> Result<bool, RpcError> {
        self.call(addr, Method::PUT, "/v1/part", Some(req)).await
    }

    pub async fn put_setting(
        &self,
        addr: &str,
        name: &str,
        value: Vec<u8>,
    ) -> Result<(), RpcError> {
        let path = format!("/v1/setting/{name}");
        let answer = self
            .send(
                addr,
                Method::PUT,
                &path,
                &[],
                Outgoing::Whole(value.into()),
                Some(self.timeout),
            )
            .await?
            .into_body();
        answer.collect().await?;
        Ok(())
    }

    /// A named setting of a node, or `None` when it has none.
    pub async fn setting(&self, addr: &str, name: &str) -> Result<Option<Bytes>, RpcError> {
        let path = format!("/v1/setting/{name}");
        match self
            .send(addr, Method::GET, &path, &[], no_body(), Some(self.timeout))
            .await
        {
            Ok(resp) => Ok(Some(collect_body(resp.into_body()).await?)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn parts(&self, addr: &str, upload_id: &str) -> Result<Vec<PartRecord>, RpcError> {
        let path = format!("/v1/parts/{upload_id}");
        self.call(addr, Method::GET, &path, None::<&()>).await
    }
}

fn no_body() -> Outgoing {
    Outgoing::Whole(Bytes::new())
}

/// A streamed body followed by its stream tag (see `auth`): the tag goes out as one more frame
/// once the body has ended.
struct TaggedBody {
    inner: HttpBody,
    /// `None` once the tag has been sent.
    tagger: Option<StreamTagger>,
}

impl TaggedBody {
    fn new(inner: HttpBody, tagger: StreamTagger) -> TaggedBody {
        TaggedBody {
            inner,
            tagger: Some(tagger),
        }
    }

    fn boxed(self) -> HttpBody {
        http_body_util::combinators::BoxBody::new(self)
    }
}

impl http_body::Body for TaggedBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        let this = self.get_mut();
        let Some(tagger) = this.tagger.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    tagger.update(data);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) => {
                let tag = tagger.tag();
                this.tagger = None;
                Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::copy_from_slice(
                    &tag,
                )))))
            }
            other => other,
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        let inner = self.inner.size_hint();
        let mut hint = http_body::SizeHint::new();
        hint.set_lower(inner.lower() + STREAM_TAG_LEN as u64);
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper + STREAM_TAG_LEN as u64);
        }
        hint
    }
}

/// The headers that ask a node for a connection of the fragment transfer's own.
/// The call a node protocol path makes (`/v1/fragment/ID/3` -> `fragment`), for span names.
fn call_name(path: &str) -> &str {
    let path = path.split('?').next().unwrap_or(path);
    path.strip_prefix("/v1/")
        .and_then(|rest| rest.split('/').next())
        .unwrap_or(path)
}

fn raw_upgrade() -> [(&'static str, String); 2] {
    [
        (CONNECTION.as_str(), "upgrade".to_string()),
        (UPGRADE.as_str(), RAW_FRAGMENT_PROTOCOL.to_string()),
    ]
}

/// Sends a fragment's `len` bytes and their stream tag on a raw upload's connection, then reads
/// the node's answer. A
/// body that fails or ends short drops the connection, and the node discards what it had: unlike
/// HTTP, the connection carries no length for the node to hold a short body against, so a
/// sender that waited for the answer would wait as long as the node waits for the missing bytes.
async fn upload_raw(
    mut io: TokioIo<Upgraded>,
    mut body: HttpBody,
    len: u64,
    mut tagger: StreamTagger,
) -> Result<(), RpcError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut sent = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            sent += data.len() as u64;
            tagger.update(&data);
            io.write_all(&data).await?;
        }
    }
    if sent != len {
        return Err(RpcError::Raw(std::io::Error::other(format!(
            "the fragment's body gave {sent} of {len} bytes"
        ))));
    }
    io.write_all(&tagger.tag()).await?;
    io.flush().await?;
    // The answer is one short line; anything longer is not a node's.
    let mut answer = Vec::new();
    (&mut io).take(4096).read_to_end(&mut answer).await?;
    match parse_raw_upload_answer(&answer) {
        Some((StatusCode::OK, _)) => Ok(()),
        Some((status, message)) => Err(RpcError::Status(status, message)),
        None => Err(RpcError::Truncated),
    }
}

/// Reads an answer body to its end as bytes.
pub async fn collect_body(body: Incoming) -> Result<Bytes, RpcError> {
    Ok(body.collect().await?.to_bytes())
}
