//! Healing: after a node comes back with an empty or partial disk, walk every object (every
//! version, in a bucket that has versioning) it should hold and rebuild what it lacks (records,
//! and fragments from k good ones elsewhere). Rate-limited, checkpointed on the node being healed
//! so that a crash resumes where it stopped, and reported through the admin API.

use crate::cluster::Cluster;
use crate::error::S3Error;
use crate::get;
use crate::list::{list_versions, VersionQuery};
use erasure::Codec;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use storage_node::protocol::unix_now;
use storage_node::record::VersionRef;

/// Where a heal stands; also the checkpoint a node keeps while it is being healed.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct HealProgress {
    pub node: String,
    pub running: bool,
    pub keys_checked: u64,
    pub keys_repaired: u64,
    pub bytes_rebuilt: u64,
    pub errors: u64,
    pub started_unix: u64,
    pub finished_unix: Option<u64>,
    /// The last (bucket, key) fully handled: a restarted heal resumes after it.
    pub position: Option<(String, String)>,
    /// Rebuild throughput so far, bytes per second.
    pub bytes_per_sec: u64,
}

/// The setting name under which a node keeps its heal checkpoint.
const CHECKPOINT: &str = "heal-checkpoint";
/// Checkpoint after this many keys.
const CHECKPOINT_EVERY: u64 = 100;

#[derive(Default)]
pub struct Healer {
    progress: Mutex<Option<HealProgress>>,
}

impl Healer {
    pub fn progress(&self) -> Option<HealProgress> {
        self.progress.lock().expect("heal progress lock").clone()
    }

    /// Starts healing `node` in the background unless a heal is running.
    pub fn start(
        self: &Arc<Self>,
        cluster: Arc<Cluster>,
        codec: Codec,
        node: String,
        bytes_per_sec: u64,
    ) -> Result<HealProgress, S3Error> {
        let index = cluster
            .layout
            .nodes()
            .iter()
            .position(|n| n.id == node)
            .ok_or_else(|| S3Error::InvalidArgument(format!("no node {node} in the layout")))?;
        let mut slot = self.progress.lock().expect("heal progress lock");
        if slot.as_ref().is_some_and(|p| p.running) {
            return Err(S3Error::InvalidRequest("a heal is already running".into()));
        }
        let progress = HealProgress {
            node,
            running: true,
            started_unix: unix_now(),
            ..HealProgress::default()
        };
        *slot = Some(progress.clone());
        drop(slot);
        let healer = self.clone();
        tokio::spawn(async move {
            let outcome = healer.run(&cluster, &codec, index, bytes_per_sec).await;
            let mut slot = healer.progress.lock().expect("heal progress lock");
            if let Some(p) = slot.as_mut() {
                p.running = false;
                p.finished_unix = Some(unix_now());
                if let Err(e) = outcome {
                    tracing::warn!(error = %e, "heal stopped");
                    p.errors += 1;
                }
            }
        });
        Ok(progress)
    }

    fn update(&self, f: impl FnOnce(&mut HealProgress)) -> HealProgress {
        let mut slot = self.progress.lock().expect("heal progress lock");
        let p = slot.get_or_insert_with(HealProgress::default);
        f(p);
        p.clone()
    }

    async fn run(
        &self,
        cluster: &Cluster,
        codec: &Codec,
        index: usize,
        bytes_per_sec: u64,
    ) -> Result<(), S3Error> {
        let node = cluster.layout.nodes()[index].clone();
        let resume: Option<(String, String)> = cluster
            .client
            .setting(&node.addr, CHECKPOINT)
            .await?
            .and_then(|bytes| serde_json::from_slice::<HealProgress>(&bytes).ok())
            .and_then(|p| p.position);
        self.update(|p| p.position = resume.clone());
        let started = Instant::now();
        for bucket in cluster.live_buckets().await? {
            let mut marker: Option<(String, Option<VersionRef>)> = match &resume {
                Some((b, _)) if *b > bucket.name => continue,
                Some((b, key)) if *b == bucket.name => Some((key.clone(), None)),
                _ => None,
            };
            loop {
                // Every version (delete markers too) in a bucket that has versioning; the current
                // live version of each key otherwise.
                let query = VersionQuery {
                    prefix: String::new(),
                    delimiter: None,
                    key_marker: marker.as_ref().map(|(key, _)| key.clone()),
                    version_marker: marker.as_ref().and_then(|(_, version)| *version),
                    max_keys: 1000,
                    hide_markers: bucket.versioning.is_none(),
                };
                let page = list_versions(cluster, &bucket.id, &query).await?;
                for (entry, _) in &page.versions {
                    let which = bucket.versioning.map(|_| entry.version_ref());
                    let rebuilt = self
                        .heal_key(cluster, codec, &bucket.id, &entry.key, which, index)
                        .await;
                    let progress = self.update(|p| {
                        p.keys_checked += 1;
                        match rebuilt {
                            Ok(Some(bytes)) => {
                                p.keys_repaired += 1;
                                p.bytes_rebuilt += bytes;
                            }
                            Ok(None) => {}
                            Err(_) => p.errors += 1,
                        }
                        p.position = Some((bucket.name.clone(), entry.key.clone()));
                        let secs = started.elapsed().as_secs_f64().max(0.001);
                        p.bytes_per_sec = (p.bytes_rebuilt as f64 / secs) as u64;
                    });
                    if progress.keys_checked.is_multiple_of(CHECKPOINT_EVERY) {
                        let bytes = serde_json::to_vec(&progress).unwrap_or_default();
                        cluster
                            .client
                            .put_setting(&node.addr, CHECKPOINT, bytes)
                            .await?;
                    }
                    // Rate limit: never rebuild faster than bytes_per_sec on average.
                    let due = Duration::from_secs_f64(
                        progress.bytes_rebuilt as f64 / bytes_per_sec.max(1) as f64,
                    );
                    if let Some(wait) = due.checked_sub(started.elapsed()) {
                        tokio::time::sleep(wait).await;
                    }
                }
                match page.next {
                    Some(next) => marker = Some(next),
                    None => break,
                }
            }
        }
        cluster
            .client
            .put_setting(&node.addr, CHECKPOINT, Vec::new())
            .await?;
        Ok(())
    }

    /// Rebuilds what node `index` lacks of one version of a key (`which`; `None`: its current
    /// live version). `Some(bytes)` when something was rebuilt.
    async fn heal_key(
        &self,
        cluster: &Cluster,
        codec: &Codec,
        bucket: &storage_node::record::BucketId,
        key: &str,
        which: Option<VersionRef>,
        index: usize,
    ) -> Result<Option<u64>, S3Error> {
        let node = &cluster.layout.nodes()[index];
        let Some(holder) = cluster
            .holders(bucket, key)
            .into_iter()
            .find(|h| h.node.id == node.id)
        else {
            return Ok(None);
        };
        let found = get::lookup(cluster, bucket, key, which).await?;
        let Some(found) = found.filter(|f| which.is_some() || !f.record.deleted) else {
            return Ok(None);
        };
        let mine = cluster
            .client
            .object(&node.addr, bucket, key, which)
            .await?
            .record;
        let complete = match mine {
            Some(record) if record.version >= found.record.version => {
                let mut complete = true;
                for part in record.parts.iter().filter(|p| p.inline.is_none()) {
                    let probe = cluster
                        .client
                        .get_fragment(&node.addr, &part.fragment_id, holder.fragment, 0, 0)
                        .await;
                    if probe.is_err() {
                        complete = false;
                    }
                }
                complete
            }
            _ => false,
        };
        if complete {
            return Ok(None);
        }
        let bytes = crate::repair::repair(cluster, codec, &found, &[holder.fragment]).await?;
        Ok(Some(bytes))
    }
}
