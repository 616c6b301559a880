//! Healing: after a node comes back with an empty or partial disk, find the shards it differs on
//! from their other holders (per-shard digests of each bucket's versions, one call per node and
//! bucket), walk the objects of those shards only (every version, in a bucket that has
//! versioning) and rebuild what it lacks (records, and fragments from k good ones elsewhere).
//! Rate-limited, checkpointed on the node being healed so that a crash resumes where it stopped,
//! and reported through the admin API.

use crate::ops::cluster::Cluster;
use crate::ops::error::OpError;
use crate::ops::list::{list_versions, VersionQuery};
use crate::ops::lookup::{lookup, Ask};
use crate::ops::usage::bucket_usage;
use crate::s3::error::S3Error;
use node_rpc::protocol::{unix_now, CommitRequest};
use node_rpc::record::{BucketId, VersionRef};
use placement::ShardId;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where a heal stands; also the checkpoint a node keeps while it is being healed.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct HealProgress {
    pub node: String,
    pub running: bool,
    /// Shards of the node compared with their other holders, and those that differed.
    pub shards_compared: u64,
    pub shards_differing: u64,
    /// Versions of the buckets with differing shards, counted when their shards were compared
    /// (`bucket_usage`), and those listed so far: how far the heal has got. The listing walks
    /// every version of such a bucket and looks at those of the differing shards.
    #[serde(default)]
    pub versions_total: u64,
    #[serde(default)]
    pub versions_listed: u64,
    /// Keys of the differing shards looked at, and those rebuilt.
    pub keys_checked: u64,
    pub keys_repaired: u64,
    pub bytes_rebuilt: u64,
    pub errors: u64,
    pub started_unix: u64,
    pub finished_unix: Option<u64>,
    /// The last (bucket, key) fully handled: a restarted heal resumes after it.
    pub position: Option<(String, String)>,
    /// The checkpoint this heal resumed after, left by one that stopped (its gateway died).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumed_from: Option<(String, String)>,
    /// Rebuild throughput so far, bytes per second.
    pub bytes_per_sec: u64,
}

/// The setting name under which a node keeps its heal checkpoint.
const CHECKPOINT: &str = "heal-checkpoint";
/// Checkpoint after this many keys.
const CHECKPOINT_EVERY: u64 = 100;
/// Tries at a key before it counts as an error; the n-th retry waits n times `RETRY_PAUSE`.
const KEY_ATTEMPTS: u32 = 3;
const RETRY_PAUSE: Duration = Duration::from_secs(1);
/// Longest wait for the healed node's health when deciding whether to try a key again.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(1);

/// Heals this gateway remembers, the running one included (in memory: a restarted gateway
/// starts with none).
const RECENT_HEALS: usize = 20;

/// Runs one heal at a time and keeps its progress, and that of the heals before it.
pub struct Healer {
    cluster: Arc<Cluster>,
    /// Most bytes per second a heal rebuilds (`heal_bytes_per_sec`).
    bytes_per_sec: u64,
    /// Newest first: the front is the heal running, or the last one.
    heals: Mutex<VecDeque<HealProgress>>,
}

impl Healer {
    pub fn new(cluster: Arc<Cluster>, bytes_per_sec: u64) -> Healer {
        Healer {
            cluster,
            bytes_per_sec,
            heals: Mutex::default(),
        }
    }

    /// The heal running, or the last one.
    pub fn progress(&self) -> Option<HealProgress> {
        self.heals().front().cloned()
    }

    /// The heals this gateway ran or runs, newest first.
    pub fn recent(&self) -> Vec<HealProgress> {
        self.heals().iter().cloned().collect()
    }

    fn heals(&self) -> std::sync::MutexGuard<'_, VecDeque<HealProgress>> {
        self.heals.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts healing `node` in the background unless a heal is running.
    pub fn start(self: &Arc<Self>, node: String) -> Result<HealProgress, OpError> {
        let index = self
            .cluster
            .layout
            .nodes()
            .iter()
            .position(|n| n.id == node)
            .ok_or_else(|| S3Error::InvalidArgument(format!("no node {node} in the layout")))?;
        let mut heals = self.heals();
        if heals.front().is_some_and(|p| p.running) {
            return Err(S3Error::InvalidRequest("a heal is already running".into()).into());
        }
        let progress = HealProgress {
            node,
            running: true,
            started_unix: unix_now(),
            ..HealProgress::default()
        };
        heals.push_front(progress.clone());
        heals.truncate(RECENT_HEALS);
        drop(heals);
        let worker = self.clone();
        tokio::spawn(
            self.clone()
                .conclude(index, async move { worker.run(index).await }),
        );
        Ok(progress)
    }

    /// Awaits the heal of node `index` and marks it over. The heal runs in a task of its own so
    /// that a panic in it is seen here as an error and `running` is cleared: otherwise every
    /// later heal would be refused.
    async fn conclude<F>(self: Arc<Self>, index: usize, heal: F)
    where
        F: Future<Output = Result<(), OpError>> + Send + 'static,
    {
        let outcome = match tokio::spawn(heal).await {
            Ok(outcome) => outcome.map_err(|e| format!("{e:?}")),
            Err(e) => Err(format!("the heal task failed: {e}")),
        };
        let mut heals = self.heals();
        if let Some(p) = heals.front_mut() {
            p.running = false;
            p.finished_unix = Some(unix_now());
            if let Err(e) = outcome {
                tracing::warn!(error = %e, "heal stopped");
                p.errors += 1;
                // Retried when the node next answers a probe: it may have gone down (or not
                // yet be up) when the heal began.
                self.cluster.liveness.missed(index);
            }
        }
    }

    /// Waits until no heal is running.
    async fn idle(&self) {
        while self.progress().is_some_and(|p| p.running) {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    fn update(&self, f: impl FnOnce(&mut HealProgress)) -> HealProgress {
        let mut heals = self.heals();
        if heals.is_empty() {
            heals.push_front(HealProgress::default());
        }
        let p = heals.front_mut().expect("one was just put there");
        f(p);
        p.clone()
    }

    async fn run(&self, index: usize) -> Result<(), OpError> {
        let cluster = &*self.cluster;
        let bytes_per_sec = self.bytes_per_sec;
        let node = cluster.layout.nodes()[index].clone();
        let resume: Option<(String, String)> = cluster
            .client
            .setting(&node.addr, CHECKPOINT)
            .await?
            .and_then(|bytes| serde_json::from_slice::<HealProgress>(&bytes).ok())
            .and_then(|p| p.position);
        self.update(|p| {
            p.position = resume.clone();
            p.resumed_from = resume.clone();
        });
        let started = Instant::now();
        // First every bucket's shards are compared, so that the work is known before it begins.
        let mut walks = Vec::new();
        for bucket in cluster.live_buckets().await? {
            let marker: Option<(String, Option<VersionRef>)> = match &resume {
                Some((b, _)) if *b > bucket.name => continue,
                Some((b, key)) if *b == bucket.name => Some((key.clone(), None)),
                _ => None,
            };
            let (compared, differing) = differing_shards(cluster, &bucket.id, index).await?;
            let versions = match differing.is_empty() {
                true => 0,
                false => bucket_usage(cluster, &bucket.id).await.versions,
            };
            self.update(|p| {
                p.shards_compared += compared;
                p.shards_differing += differing.len() as u64;
                p.versions_total += versions;
            });
            if !differing.is_empty() {
                walks.push((bucket, marker, differing));
            }
        }
        for (bucket, mut marker, differing) in walks {
            loop {
                // Every version (delete markers too) in a bucket that has versioning; the current
                // record of each key otherwise, a deleted key's tombstone included, so that a node
                // that missed a delete drops the object too.
                let query = VersionQuery {
                    prefix: String::new(),
                    delimiter: None,
                    key_marker: marker.as_ref().map(|(key, _)| key.clone()),
                    version_marker: marker.as_ref().and_then(|(_, version)| *version),
                    max_keys: 1000,
                    hide_markers: false,
                };
                let page = list_versions(cluster, &bucket.id, &query).await?;
                let listed = page.versions.len() as u64;
                self.update(|p| p.versions_listed += listed);
                let in_differing = |key: &str| {
                    let shard = cluster.layout.shard_of(&bucket.id, key.as_bytes());
                    differing.contains(&shard.0)
                };
                for (entry, _) in page.versions.iter().filter(|(e, _)| in_differing(&e.key)) {
                    let which = bucket.versioning.map(|_| entry.version_ref());
                    let rebuilt = retried(
                        || answers(cluster, index),
                        || self.heal_key(cluster, &bucket.id, &entry.key, which, index),
                    )
                    .await;
                    if let Err(e) = &rebuilt {
                        tracing::warn!(node = %node.id, bucket = %bucket.name, key = %entry.key, error = ?e, "heal could not rebuild a key");
                    }
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
        bucket: &BucketId,
        key: &str,
        which: Option<VersionRef>,
        index: usize,
    ) -> Result<Option<u64>, OpError> {
        let node = &cluster.layout.nodes()[index];
        let Some(holder) = cluster
            .holders(bucket, key)
            .into_iter()
            .find(|h| h.node.id == node.id)
        else {
            return Ok(None);
        };
        let found = lookup(cluster, bucket, key, which, Ask::Everyone).await?;
        let Some(found) = found else {
            return Ok(None);
        };
        let mine = cluster
            .client
            .object(&node.addr, bucket, key, which)
            .await?
            .record;
        let complete = match &mine {
            Some(record) if record.version >= found.record.version => {
                let mut complete = true;
                for part in record.parts.iter().filter(|p| p.inline.is_none()) {
                    let probe = cluster
                        .client
                        .get_fragment(&node.addr, &part.fragment_id, holder.slot, 0, 0)
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
            // The bytes are there; a revision it missed (tags, an Object Lock change) is its
            // record alone.
            let behind = mine.filter(|r| r.stamp() < found.record.stamp());
            if let Some(record) = behind.filter(|r| r.version == found.record.version) {
                let request = CommitRequest {
                    bucket: *bucket,
                    key: key.to_string(),
                    record: crate::ops::repair::revised_for(&found.record, &record),
                    upload_id: None,
                    claim: None,
                    replicate: None,
                };
                cluster.client.commit(&node.addr, &request).await?;
                return Ok(Some(0));
            }
            return Ok(None);
        }
        let bytes = crate::ops::repair::repair(cluster, &found, &[holder.slot]).await?;
        Ok(Some(bytes))
    }
}

/// Runs `rebuild` again a moment later while it fails and `up()` (the healed node answers): a
/// passing failure (sources unreachable for a second, a cut connection) must not leave a key
/// short of a fragment until the next heal.
async fn retried<T, F: Future<Output = Result<T, OpError>>, U: Future<Output = bool>>(
    up: impl Fn() -> U,
    mut rebuild: impl FnMut() -> F,
) -> Result<T, OpError> {
    let mut attempt = 1;
    loop {
        match rebuild().await {
            Err(e) if attempt < KEY_ATTEMPTS && up().await => {
                tracing::info!(attempt, error = ?e, "heal will try a key again");
                tokio::time::sleep(RETRY_PAUSE * attempt).await;
                attempt += 1;
            }
            outcome => return outcome,
        }
    }
}

/// Whether node `index` answers now. Asked rather than taken from the probe's last round: a node
/// wiped and restarted just before its heal can still be marked down for half a second, and its
/// keys would fail instead of being tried again.
async fn answers(cluster: &Cluster, index: usize) -> bool {
    let node = &cluster.layout.nodes()[index];
    let health = tokio::time::timeout(ANSWER_TIMEOUT, cluster.client.health(&node.addr)).await;
    matches!(health, Ok(Ok(_)))
}

/// The shards of a bucket that node `index` holds (how many), and those on which its digest
/// differs from that of another holder that answered. A node that cannot answer fails the heal.
async fn differing_shards(
    cluster: &Cluster,
    bucket: &BucketId,
    index: usize,
) -> Result<(u64, BTreeSet<u32>), OpError> {
    let nodes = cluster.all_nodes();
    let mut answers = cluster
        .on_all(&nodes, |n| cluster.client.digests(&n.addr, bucket))
        .await;
    let mine = std::mem::replace(&mut answers[index], Ok(BTreeMap::new()))?;
    let layout = &cluster.layout;
    let mut compared = 0;
    let mut differing = BTreeSet::new();
    for shard in 0..layout.shard_count() {
        let holders = layout.holders(ShardId(shard));
        if !holders.contains(&index) {
            continue;
        }
        compared += 1;
        let theirs = holders
            .iter()
            .filter(|&&h| h != index)
            .filter_map(|&h| answers[h].as_ref().ok());
        if theirs.map(|d| d.get(&shard)).any(|d| d != mine.get(&shard)) {
            differing.insert(shard);
        }
    }
    Ok((compared, differing))
}

/// Anti-entropy: every `anti_entropy_secs`, heals each node that is up in turn, one heal at a time.
/// A node in step with its peers costs one digest call per node and bucket.
pub async fn anti_entropy(healer: Arc<Healer>, every: Duration) {
    if every.is_zero() {
        return;
    }
    let cluster = healer.cluster.clone();
    loop {
        tokio::time::sleep(every).await;
        for (index, node) in cluster.layout.nodes().iter().enumerate() {
            healer.idle().await;
            if !cluster.liveness.is_up(index) {
                continue;
            }
            let started = healer.start(node.id.clone());
            if let Err(e) = started {
                tracing::debug!(node = %node.id, error = ?e, "anti-entropy heal deferred");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cluster of six nodes that nothing listens for: enough to keep a heal's bookkeeping.
    fn cluster() -> Arc<Cluster> {
        let (config, gateway) = crate::ops::testing::config();
        Arc::new(Cluster::new(&config, &gateway).unwrap())
    }

    #[tokio::test]
    async fn a_heal_that_panics_is_over_and_the_next_one_may_start() {
        let healer = Arc::new(Healer::new(cluster(), 1 << 20));
        healer.heals().push_front(HealProgress {
            node: "n1".into(),
            running: true,
            ..HealProgress::default()
        });
        assert!(healer.start("n2".into()).is_err(), "refused while one runs");
        let panicking = async { panic!("a bug in a heal") };
        healer.clone().conclude(1, panicking).await;
        let over = healer.progress().unwrap();
        assert!(!over.running && over.finished_unix.is_some(), "{over:?}");
        assert_eq!(over.errors, 1);
        assert!(
            healer.cluster.liveness.needs_heal(1),
            "retried when the node answers"
        );
        assert!(healer.start("n2".into()).is_ok(), "the next heal starts");
    }
}
