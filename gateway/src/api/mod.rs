//! The gateway's request handling: authenticate, pick the S3 operation, turn errors into S3 XML.

pub mod access;
pub mod acl;
pub mod admin;
pub mod attributes;
pub mod bucket;
pub mod copy;
pub mod cors;
pub mod encryption;
mod fallback;
mod keys;
pub mod lifecycle;
pub mod listing;
pub mod multi_delete;
pub mod multipart;
pub mod object;
pub mod object_lock;
pub mod policy;
pub mod post_object;
pub mod replica;
pub mod replication;
mod request;
mod router;
pub mod scrape;
pub mod tagging;
mod unsupported;
pub mod versioning;

use crate::background::activity::Activity;
use crate::background::heal::Healer;
use crate::background::replication::Replication;
use crate::background::resync::Resyncer;
use crate::config::GatewayConfig;
use crate::metrics::{Counted, METRICS};
use crate::ops::cluster::Cluster;
use crate::ops::encryption::WrappingKey;
use crate::s3::auth::Credentials;
use crate::s3::error::S3Error;
use crate::s3::response::{error_response, S3Response};
use http::{Method, Request};
use hyper::body::Incoming;
use node_rpc::cluster::RegionConfig;
use node_rpc::ClusterConfig;
use scrape::RequestLabel;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;
use telemetry::trace;
use tracing::Instrument;

pub use request::S3Request;
pub use unsupported::Operation;

/// One S3 gateway: the cluster it writes to, its codec and the credentials it accepts.
pub struct Gateway {
    pub cluster: Arc<Cluster>,
    pub config: GatewayConfig,
    pub healer: Arc<Healer>,
    pub resyncer: Arc<Resyncer>,
    /// The drain of the outboxes to peer regions, when this region has peers.
    pub replication: Option<Arc<Replication>>,
    pub workers: supervisor::Workers,
    /// This gateway's requests over the last hour, for the console.
    pub activity: Arc<Activity>,
    /// SSE-S3's master key, if the config gives one.
    pub master_key: Option<WrappingKey>,
    /// What a Prometheus scrape of `/metrics` bears (see `ClusterSecret::metrics_token`).
    pub metrics_token: String,
    credentials: Credentials,
    /// The regions this one replicates with, if it is one of several.
    region: Option<RegionConfig>,
}

impl Gateway {
    /// A gateway for the cluster, with its background workers started (they stop when it is
    /// dropped). Must be called inside a Tokio runtime.
    pub fn new(config: GatewayConfig, cluster_config: &ClusterConfig) -> anyhow::Result<Gateway> {
        let credentials = Credentials {
            access_key_id: config.access_key_id.clone(),
            secret_access_key: config.secret_access_key.0.clone(),
            region: config.region.clone(),
        };
        let cluster = Arc::new(Cluster::new(cluster_config, &config)?);
        let healer = Arc::new(Healer::new(cluster.clone(), config.heal_bytes_per_sec));
        let master_key = config.master_key()?.map(WrappingKey::new);
        let resyncer = Arc::new(Resyncer::new(
            cluster.clone(),
            cluster_config.region.clone(),
            master_key.clone(),
        ));
        let activity = Arc::new(Activity::default());
        let replication = match cluster_config.region.as_ref() {
            Some(region) if !region.peers.is_empty() => Some(Arc::new(
                Replication::new(cluster.clone(), region, master_key.clone(), config.listen)
                    .map_err(|e| anyhow::anyhow!("replication: {e:?}"))?,
            )),
            _ => None,
        };
        Ok(Gateway {
            master_key,
            metrics_token: cluster_config.secret.metrics_token(),
            workers: crate::background::start_workers(
                &cluster,
                &healer,
                &activity,
                replication.as_ref(),
                &config,
            ),
            replication,
            activity,
            healer,
            resyncer,
            cluster,
            config,
            credentials,
            region: cluster_config.region.clone(),
        })
    }

    /// Whether clients reach this gateway over TLS only.
    pub fn serves_tls(&self) -> bool {
        self.config.tls_cert.is_some()
    }

    /// Answers one request; `client_ip` is the address of the connection it came on.
    pub async fn handle(&self, req: Request<Incoming>, client_ip: Option<IpAddr>) -> S3Response {
        let arrived = Instant::now();
        let mut label = RequestLabel::Refused;
        let request_id = format!("{:016X}", rand::random::<u64>());
        let is_head = req.method() == Method::HEAD;
        let resource = req.uri().path().to_string();
        let (expect, has_body) = body_signals(&req);
        let cors = req
            .headers()
            .get(http::header::ORIGIN)
            .and_then(|o| o.to_str().ok())
            .filter(|_| req.method() != Method::OPTIONS)
            .map(|o| (o.to_string(), req.method().to_string()));
        let span = tracing::info_span!(
            target: trace::TARGET,
            "s3 request",
            otel.kind = "server",
            http.request.method = %req.method(),
            url.path = %resource,
            trace_id = tracing::field::Empty,
            http.response.status_code = tracing::field::Empty,
        );
        if let Some(id) = trace::trace_id(&span) {
            span.record("trace_id", id);
        }
        let (parts, body) = req.into_parts();
        let location = self.locate(&parts);
        let bucket = location.as_ref().ok().and_then(|(b, _)| b.clone());
        // A panic is a bug; it fails its request, not the connection or the process. Boxed: the
        // handler's future holds every operation's state, and moving it into the wrappers below
        // copied it each time (a fifth of the gateway's `memmove` under 4 KiB GETs).
        let handler = Box::pin(self.dispatch(parts, body, location, client_ip, &mut label));
        let outcome = supervisor::caught(|| resource.clone(), handler.instrument(span.clone()))
            .await
            .unwrap_or_else(|message| {
                Err(S3Error::Internal(format!(
                    "the request's handler panicked: {message}"
                )))
            });
        let mut response = match outcome {
            Ok(r) => r,
            Err(e) => {
                if e.status().is_server_error() {
                    span.in_scope(
                        || tracing::warn!(code = e.code(), error = ?e, %resource, "request failed"),
                    );
                }
                error_response(&e, &resource, &request_id, is_head)
            }
        };
        if let (Some((origin, method)), Some(bucket)) = (cors, &bucket) {
            crate::api::cors::decorate(self, bucket, &origin, &method, &mut response).await;
        }
        if let Ok(v) = request_id.parse() {
            response.headers_mut().insert("x-amz-request-id", v);
        }
        // botocore (boto3, aws CLI v1) mis-parses the next response on a connection where it sent
        // `Expect: 100-continue` and got a final answer without `100 Continue` (hyper sends that
        // only once the body is read), then stalls for its 60 s read timeout. And a request
        // refused before its body was read leaves the rest of the body in the connection. Closing
        // such connections keeps either state from being reused.
        if (expect && !has_body) || (has_body && !response.status().is_success()) {
            response.headers_mut().insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("close"),
            );
        }
        METRICS.request(label.index(), response.status().as_u16(), arrived.elapsed());
        trace::rename(&span, label.name());
        span.record("http.response.status_code", response.status().as_u16());
        response.map(|body| Counted::wrap(body, &METRICS.sent_bytes))
    }
}

/// Whether a request asks for `100 Continue`, and whether it has a body.
fn body_signals(req: &Request<Incoming>) -> (bool, bool) {
    let headers = req.headers();
    let expect = headers
        .get(http::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let has_body = headers.contains_key(http::header::TRANSFER_ENCODING)
        || headers
            .get(http::header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0");
    (expect, has_body)
}
