//! Resync: makes a peer region hold every version of a bucket that this region holds. It walks
//! the bucket's versions here (every version with versioning, each key's current record
//! otherwise), asks the peer for each with a HEAD signed by this region's replication key, and
//! sends what the peer lacks (or holds an older null version of) as a replica (`Peer::send`). Replaying a version the peer has is a no-op there, so a
//! resync interrupted or run twice does no harm. One runs at a time; its progress is on
//! `GET /_tessera/replication/resync`.

use crate::background::peer::Peer;
use crate::ops::cluster::Cluster;
use crate::ops::encryption::WrappingKey;
use crate::ops::error::OpError;
use crate::ops::list::{list_versions, VersionQuery};
use crate::s3::error::S3Error;
use futures::StreamExt;
use node_rpc::cluster::RegionConfig;
use node_rpc::protocol::unix_now;
use node_rpc::record::{BucketRecord, ListEntry};
use serde::Serialize;
use std::sync::{Arc, Mutex};

/// Versions compared and sent at once: enough to keep the link busy with small objects (one at a
/// time, each costs two round trips), few enough that large ones hold at most this many streams
/// (each a few blocks ahead of the peer) in memory.
const IN_FLIGHT: usize = 16;

/// Where a resync stands.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ResyncProgress {
    pub bucket: String,
    pub target: String,
    pub running: bool,
    /// Versions compared with the target, and those it lacked and was sent.
    pub versions_checked: u64,
    pub versions_sent: u64,
    pub bytes_sent: u64,
    pub errors: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub started_unix: u64,
    pub finished_unix: Option<u64>,
}

/// Runs one resync at a time and keeps its progress.
pub struct Resyncer {
    cluster: Arc<Cluster>,
    region: Option<RegionConfig>,
    /// SSE-S3's master key, to read encrypted objects and send them.
    master_key: Option<WrappingKey>,
    progress: Mutex<Option<ResyncProgress>>,
}

impl Resyncer {
    pub fn new(
        cluster: Arc<Cluster>,
        region: Option<RegionConfig>,
        master_key: Option<WrappingKey>,
    ) -> Resyncer {
        Resyncer {
            cluster,
            region,
            master_key,
            progress: Mutex::default(),
        }
    }

    /// The resync running, or the last one.
    pub fn progress(&self) -> Option<ResyncProgress> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<ResyncProgress>> {
        self.progress.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn update(&self, f: impl FnOnce(&mut ResyncProgress)) {
        if let Some(p) = self.lock().as_mut() {
            f(p);
        }
    }

    /// Starts sending `target` what it lacks of `bucket`, unless a resync is running.
    pub async fn start(
        self: &Arc<Self>,
        bucket: &str,
        target: &str,
    ) -> Result<ResyncProgress, OpError> {
        let region = self.region.as_ref().ok_or_else(|| {
            S3Error::InvalidRequest("this cluster has no [cluster.region] with peers".into())
        })?;
        let peer = Peer::connect(region, target, self.master_key.clone())?;
        let bucket = self.cluster.bucket(bucket).await?;
        let progress = ResyncProgress {
            bucket: bucket.name.clone(),
            target: target.to_string(),
            running: true,
            started_unix: unix_now(),
            ..ResyncProgress::default()
        };
        {
            let mut current = self.lock();
            if current.as_ref().is_some_and(|p| p.running) {
                let busy = S3Error::InvalidRequest("a resync is already running".into());
                return Err(busy.into());
            }
            *current = Some(progress.clone());
        }
        let resyncer = self.clone();
        tokio::spawn(async move {
            // In a task of its own, so that a panic in it still clears `running`.
            let worker = resyncer.clone();
            let outcome = tokio::spawn(async move { worker.run(&peer, &bucket).await }).await;
            let error = match outcome {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(format!("{e:?}")),
                Err(e) => Some(format!("the resync task failed: {e}")),
            };
            resyncer.update(|p| {
                p.running = false;
                p.finished_unix = Some(unix_now());
                if let Some(e) = error {
                    tracing::warn!(error = %e, "resync stopped");
                    p.errors += 1;
                    p.last_error = Some(e);
                }
            });
        });
        Ok(progress)
    }

    async fn run(&self, peer: &Peer, bucket: &BucketRecord) -> Result<(), OpError> {
        let mut marker = None;
        loop {
            let query = VersionQuery {
                prefix: String::new(),
                delimiter: None,
                key_marker: marker.as_ref().map(|(key, _): &(String, _)| key.clone()),
                version_marker: marker.as_ref().and_then(|(_, version)| *version),
                max_keys: 1000,
                hide_markers: false,
            };
            let page = list_versions(&self.cluster, &bucket.id, &query).await?;
            // Collected first: a stream over the mapping iterator itself would not be `Send`
            // (a closure's lifetimes, rust-lang/rust#110338), and the resync runs in a task.
            let checked: Vec<_> = (page.versions.iter())
                .map(|(entry, _)| self.sync(peer, bucket, entry))
                .collect();
            let mut checked = futures::stream::iter(checked).buffer_unordered(IN_FLIGHT);
            while let Some((entry, sent)) = checked.next().await {
                if let Err(e) = &sent {
                    tracing::warn!(bucket = %bucket.name, key = %entry.key, error = %e, "resync could not send a version");
                }
                self.update(|p| {
                    p.versions_checked += 1;
                    match sent {
                        Ok(Some(bytes)) => {
                            p.versions_sent += 1;
                            p.bytes_sent += bytes;
                        }
                        Ok(None) => {}
                        Err(e) => {
                            p.errors += 1;
                            p.last_error = Some(e);
                        }
                    }
                });
            }
            match page.next {
                Some(next) => marker = Some(next),
                None => return Ok(()),
            }
        }
    }

    /// Sends the peer one version if it lacks it; the bytes sent, if it was sent.
    async fn sync<'a>(
        &self,
        peer: &Peer,
        bucket: &BucketRecord,
        entry: &'a ListEntry,
    ) -> (&'a ListEntry, Result<Option<u64>, String>) {
        let sent = match peer.lacks(bucket, entry).await {
            Ok(true) => peer
                .send(&self.cluster, bucket, entry, Vec::new())
                .await
                .map(Some),
            Ok(false) => Ok(None),
            Err(e) => Err(e),
        };
        (entry, sent.map_err(|e| e.to_string()))
    }
}
