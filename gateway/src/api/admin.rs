//! The admin API, under `/_tessera/` on the S3 port (a name no bucket can have), authenticated
//! like any S3 request, by the configured key only: cluster status (nodes, hints, scrubbing,
//! replication), starting and following a heal, where buckets replicate (`api::replication`),
//! and the access keys (`api::keys`).

use crate::api::access::owner_id;
use crate::api::listing::iso8601;
use crate::api::{Gateway, S3Request};
use crate::background::activity::SAMPLE_EVERY;
use crate::background::replication::LinkStatus;
use crate::ops::usage::{bucket_usage, BucketUsage};
use crate::s3::error::S3Error;
use crate::s3::response::{json_response, S3Response};
use erasure::FrameFormat;
use futures::future::join_all;
use http::{Method, StatusCode};
use node_rpc::protocol::ScrubStatus;
use node_rpc::record::Versioning;
use node_rpc::NodeHealth;
use serde::Serialize;
use supervisor::WorkerStatus;

/// A bucket as `GET /_tessera/buckets` lists it.
#[derive(Serialize)]
struct BucketSummary {
    name: String,
    created: String,
    /// The owner's canonical id (`tessera` for the administrator's buckets).
    owner: String,
    versioning: Option<Versioning>,
    object_lock: bool,
    #[serde(flatten)]
    usage: BucketUsage,
}

/// The pseudo-bucket the admin API lives under.
pub const PREFIX: &str = "_tessera";

#[derive(Serialize)]
struct NodeStatus {
    id: String,
    zone: String,
    addr: String,
    up: bool,
    /// Writes the node keeps for holders that were down, not yet handed over.
    hints: Option<u64>,
    /// The node missed writes that nobody kept for it; a heal starts when it answers.
    needs_heal: bool,
    /// Other nodes keep writes for it that they have not handed over yet: until they have,
    /// reads hear from every holder that is up.
    behind: bool,
    /// The node's scrubber: passes, what the current one checked, damage found.
    scrub: Option<ScrubStatus>,
    /// Free bytes and size of the node's data disk.
    disk_free_bytes: Option<u64>,
    disk_size_bytes: Option<u64>,
    /// The file system of the data disk: nodes on one host with the same id share one disk.
    disk_id: Option<String>,
    /// The fragment frame formats the node knows (format 1 alone from a release before format 2).
    frame_formats: Option<Vec<u8>>,
    /// The node's background workers, with any panic they were restarted after.
    workers: Option<Vec<WorkerStatus>>,
}

pub async fn handle(
    gw: &Gateway,
    req: S3Request,
    path: Option<&str>,
) -> Result<S3Response, S3Error> {
    match (req.parts.method.clone(), path.unwrap_or("")) {
        (Method::GET, "status") => {
            let nodes = gw.cluster.layout.nodes();
            let health = join_all(nodes.iter().map(|n| gw.cluster.client.health(&n.addr))).await;
            let status: Vec<NodeStatus> = nodes
                .iter()
                .zip(health)
                .enumerate()
                .map(|(i, (n, h))| {
                    let h = h.ok();
                    let disk = |f: fn(&NodeHealth) -> Option<u64>| h.as_ref().and_then(f);
                    NodeStatus {
                        disk_free_bytes: disk(|h| h.disk_free_bytes),
                        disk_size_bytes: disk(|h| h.disk_size_bytes),
                        disk_id: h.as_ref().and_then(|h| h.disk_id.clone()),
                        id: n.id.clone(),
                        zone: n.zone.clone(),
                        addr: n.addr.clone(),
                        up: h.is_some(),
                        hints: h.as_ref().map(|h| h.hints),
                        needs_heal: gw.cluster.liveness.needs_heal(i),
                        behind: gw.cluster.liveness.is_behind(i),
                        frame_formats: h.as_ref().map(|h| match &h.frame_formats[..] {
                            [] => vec![FrameFormat::PositionFirst.number()],
                            known => known.to_vec(),
                        }),
                        workers: h.as_ref().map(|h| h.workers.clone()),
                        scrub: h.map(|h| h.scrub),
                    }
                })
                .collect();
            json_response(
                StatusCode::OK,
                &serde_json::json!({
                    "region": gw.config.region,
                    "frame_format": gw.cluster.liveness.frame_format().number(),
                    "nodes": status,
                    "workers": gw.workers.status(),
                    "replication": links(gw),
                }),
            )
        }
        (Method::GET, "heal") => json_response(StatusCode::OK, &gw.healer.progress()),
        (Method::GET, "heals") => json_response(StatusCode::OK, &gw.healer.recent()),
        (Method::GET, "replication") => json_response(
            StatusCode::OK,
            &serde_json::json!({ "region": gw.config.region, "links": links(gw) }),
        ),
        (Method::GET, "replication/history") => json_response(
            StatusCode::OK,
            &serde_json::json!({
                "region": gw.config.region,
                "interval_secs": SAMPLE_EVERY.as_secs(),
                "links": gw.replication.as_ref().map(|r| r.history()).unwrap_or_default(),
            }),
        ),
        (Method::GET, "replication/resync") => {
            json_response(StatusCode::OK, &gw.resyncer.progress())
        }
        (Method::GET, "workers") => json_response(StatusCode::OK, &gw.workers.status()),
        (Method::GET, "activity") => json_response(
            StatusCode::OK,
            &serde_json::json!({
                "region": gw.config.region,
                "interval_secs": SAMPLE_EVERY.as_secs(),
                "samples": gw.activity.samples(),
            }),
        ),
        (Method::GET, "buckets") => {
            let buckets = gw.cluster.live_buckets().await?;
            let usage = join_all(buckets.iter().map(|b| bucket_usage(&gw.cluster, &b.id))).await;
            let summaries: Vec<BucketSummary> = buckets
                .iter()
                .zip(usage)
                .map(|(b, usage)| BucketSummary {
                    name: b.name.clone(),
                    created: iso8601(b.created()),
                    owner: owner_id(b).to_string(),
                    versioning: b.versioning,
                    object_lock: b.object_lock.is_some(),
                    usage,
                })
                .collect();
            json_response(StatusCode::OK, &summaries)
        }
        (Method::POST, "scrub") => {
            let id = req
                .query
                .get("node")
                .ok_or_else(|| S3Error::InvalidArgument("scrub needs ?node=ID".into()))?;
            let nodes = gw.cluster.layout.nodes();
            let node = nodes
                .iter()
                .find(|n| n.id == id)
                .ok_or_else(|| S3Error::InvalidArgument(format!("no node {id} in the layout")))?;
            let scrub = gw
                .cluster
                .client
                .start_scrub(&node.addr)
                .await
                .map_err(|e| {
                    S3Error::ServiceUnavailable(format!("node {id} did not answer: {e}"))
                })?;
            json_response(
                StatusCode::ACCEPTED,
                &serde_json::json!({ "node": id, "scrub": scrub }),
            )
        }
        (Method::GET, "metrics-token") => json_response(
            StatusCode::OK,
            &serde_json::json!({ "token": gw.metrics_token }),
        ),
        (Method::POST, "heal") => {
            let node = req
                .query
                .get("node")
                .ok_or_else(|| S3Error::InvalidArgument("heal needs ?node=ID".into()))?;
            let progress = gw.healer.start(node.to_string())?;
            json_response(StatusCode::ACCEPTED, &progress)
        }
        (Method::POST, "replication/resync") => {
            let (Some(bucket), Some(target)) = (req.query.get("bucket"), req.query.get("target"))
            else {
                return Err(S3Error::InvalidArgument(
                    "resync needs ?bucket=B&target=REGION".into(),
                ));
            };
            let progress = gw.resyncer.start(bucket, target).await?;
            json_response(StatusCode::ACCEPTED, &progress)
        }
        (method, path) if path.starts_with("buckets/") && path.ends_with("/replication") => {
            let bucket = &path["buckets/".len()..path.len() - "/replication".len()];
            crate::api::replication::admin(gw, &method, bucket, req).await
        }
        (_, path) if path == "keys" || path.starts_with("keys/") => {
            crate::api::keys::handle(gw, req, path).await
        }
        _ => Err(S3Error::MethodNotAllowed),
    }
}

/// This region's replication links (none for a region alone).
fn links(gw: &Gateway) -> Vec<LinkStatus> {
    gw.replication
        .as_ref()
        .map(|r| r.status())
        .unwrap_or_default()
}
