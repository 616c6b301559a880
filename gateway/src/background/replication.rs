//! Cross-region replication's drain. Every change made in this region to a bucket that
//! replicates is queued, by each holder that commits it, for each target region (the holders'
//! outboxes, `storage-node/src/store/outbox.rs`). For each target, this worker reads the first
//! entries of every node's outbox (a small version comes with its data holders' records, so that
//! it is sent without a lookup: `Found::from_records`), merges the holders' copies (they share
//! one id), sends each version to the target (`Peer::send`, 32 at once), and tells every node
//! which entries the target took, so that they are removed everywhere; a refusal is noted on
//! the holders (the version's `FAILED` status) and the entry stays. Once a second it also sends
//! the target the bucket records (`sync_buckets`) and access keys (`sync_keys`) that changed.
//!
//! Invariants:
//! - An entry is removed only after the target answered the PUT or DELETE with success, which
//!   its gateway does only once a write quorum of its holders committed it.
//! - An entry is never skipped: every pass starts again from the oldest entry, and one that
//!   failed is tried again after a backoff (1 s, doubling to a minute) until it is delivered.
//! - Sending a version again is harmless: the target's holders apply a version they have as a
//!   no-op, so an entry delivered but not yet removed everywhere (a node down when told, a
//!   gateway killed between the answer and the report) only costs a second send.

use crate::background::activity::{LastHour, SAMPLE_EVERY};
use crate::background::peer::{Peer, SendError};
use crate::ops::bucket::live_bucket;
use crate::ops::cluster::Cluster;
use crate::ops::encryption::WrappingKey;
use crate::ops::error::OpError;
use crate::ops::secret_seal::SecretSeal;
use futures::future::join_all;
use futures::StreamExt;
use node_rpc::client::RpcError;
use node_rpc::cluster::RegionConfig;
use node_rpc::protocol::{
    unix_now, BucketBacklog, LeaseAnswer, LeaseRequest, OutboxItem, OutboxReport, OutboxRequest,
};
use node_rpc::record::{BucketRecord, KeyRecord, ObjectRecord, Version};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Entries read from each node per pass, and the most sent in one pass.
const BATCH: usize = 256;
/// Pages of entries waiting out a backoff that one pass looks past for entries that are due.
const MAX_PAGES: usize = 16;
/// Versions sent at once (as resync: the link stays busy with small objects, and large ones
/// hold few streams).
const IN_FLIGHT: usize = 32;
/// The pause after a pass that found nothing to send.
const IDLE: Duration = Duration::from_millis(250);
/// How often the whole backlog is counted (a scan of every node's outbox for the target): at
/// most once a second, and at most a tenth of the time, so that counting a large backlog does
/// not slow its drain.
const COUNT_EVERY: Duration = Duration::from_secs(1);
const COUNT_SHARE: u32 = 10;
/// The backoff of a failed entry, and of a link that is down: from the first to the last.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const LAST_BACKOFF: Duration = Duration::from_secs(60);
/// The longest wait before a link that is down is tried again with a pass, and how often the
/// heartbeat (the bucket records) asks meanwhile whether it is back: what a partition's end
/// costs before the drain resumes.
const LINK_BACKOFF: Duration = Duration::from_secs(2);
const DOWN_HEARTBEAT: Duration = Duration::from_millis(250);
/// Throughput is what was delivered over this window.
const RATE_WINDOW: Duration = Duration::from_secs(10);
/// A drainer's lease on a link lasts this long unless renewed, which it is this often: a
/// gateway that dies is taken over from within `LEASE_TTL` and a renewal.
const LEASE_TTL: Duration = Duration::from_secs(10);
const LEASE_RENEW: Duration = Duration::from_secs(2);

/// The name a gateway asks for a link's lease under: its host and S3 address, so that a
/// gateway restarted in the same place renews the lease it held instead of waiting out its
/// previous run's (`LEASE_TTL`). Two gateways of a region never listen on one address of one
/// host; were two hosts given one name and one address, both would drain, which costs each
/// version a second send and loses nothing.
fn drainer_id(host: &str, listen: SocketAddr) -> String {
    let digest = blake3::hash(format!("{host}|{listen}").as_bytes());
    hex::encode(&digest.as_bytes()[..8])
}

/// Shows `message` as the link's last error.
fn note_error(link: &Link, message: String) {
    let mut status = lock(&link.status);
    status.last_error = Some(message);
    status.last_error_unix = Some(unix_now());
}

/// Notes as the link's `up` whether the target answered a bucket-record sync (a refusal is an
/// answer), and returns it.
fn note_answer<T>(link: &Link, sent: &Result<T, SendError>) -> bool {
    let up = !matches!(sent, Err(SendError::Unreachable(_)));
    lock(&link.status).now.up = up;
    up
}

/// This machine's host name (empty if it cannot be read).
fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that much.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    match rc {
        0 => String::from_utf8_lossy(&buf[..len]).into_owned(),
        _ => String::new(),
    }
}

/// One source -> target link, as `GET /_tessera/replication` shows it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LinkStatus {
    pub source: String,
    pub target: String,
    /// This gateway drains the link (it holds the lease of a majority of the nodes); another
    /// gateway of the region does when not. The backlog is counted either way.
    pub draining: bool,
    #[serde(flatten)]
    pub now: LinkState,
    /// Delivered over the last 10 seconds.
    pub entries_per_sec: f64,
    pub bytes_per_sec: f64,
    pub last_error: Option<String>,
    pub last_error_unix: Option<u64>,
    /// The backlog per bucket, counted as the whole.
    pub buckets: Vec<BucketBacklog>,
    /// When the backlog was counted, in milliseconds since the Unix epoch.
    pub counted_unix_millis: u64,
}

/// What a link's status and its samples share.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct LinkState {
    /// The target answered the last request sent to it (even with a refusal).
    pub up: bool,
    /// Changes queued for the target and not yet delivered, and the bytes of the objects among
    /// them, counted on the holders (each keeps a copy: the sum is divided by k+m).
    pub backlog_entries: u64,
    pub backlog_bytes: u64,
    /// Age of the oldest change not yet delivered: what this region would lose for the target
    /// if it were lost now (the recovery point).
    pub oldest_pending_secs: Option<f64>,
    /// Delivered since the gateway started (in a sample: during its period).
    pub delivered_entries: u64,
    pub delivered_bytes: u64,
}

/// A link at the end of one sampling period, for the console's charts
/// (`GET /_tessera/replication/history`).
#[derive(Clone, Copy, Debug, Serialize)]
pub struct LinkSample {
    pub end_unix: u64,
    #[serde(flatten)]
    pub state: LinkState,
}

/// A link's last hour.
#[derive(Serialize)]
pub struct LinkHistory {
    pub source: String,
    pub target: String,
    pub samples: Vec<LinkSample>,
}

/// One target region and what is known of the link to it.
struct Link {
    peer: Peer,
    status: Mutex<LinkStatus>,
    /// Entries that failed, with their failures so far and when to try them again.
    backoff: Mutex<HashMap<String, (u32, Instant)>>,
    /// Entries and bytes delivered by each pass of the last `RATE_WINDOW`.
    delivered: Mutex<VecDeque<(Instant, u64, u64)>>,
    /// How far the bucket table has been sent (`sync_buckets`).
    buckets: Mutex<BucketsSent>,
    /// The version of each key record the target took (`sync_keys`). Not a high-water mark:
    /// a record made through another gateway can reach this one's table after a newer one.
    keys: Mutex<HashMap<String, Version>>,
    history: LastHour<LinkSample>,
}

/// The bucket records a link has sent: the version of each that the target took (not a
/// high-water mark: a record made through another gateway can reach this one's table after a
/// newer one), and the deletions in `waiting`, which the target holds back until the bucket is
/// empty there.
#[derive(Default)]
struct BucketsSent {
    taken: HashMap<String, Version>,
    waiting: BTreeSet<String>,
}

impl BucketsSent {
    /// Whether the target took this version of the record.
    fn took(&self, record: &BucketRecord) -> bool {
        self.taken.get(&record.name) == Some(&record.version)
    }
}

/// The drain of this region's outboxes, one link per peer region.
pub struct Replication {
    cluster: Arc<Cluster>,
    links: Vec<Link>,
    /// This gateway, as it asks the nodes for the lease on draining a link (`drainer_id`).
    drainer: String,
    /// What access keys' secrets are sealed under on their way to a peer region.
    in_transit: SecretSeal,
}

impl Replication {
    /// The drain for every peer region of `region`, by the gateway that listens on `listen`;
    /// `master_key` reads objects under SSE-S3.
    pub fn new(
        cluster: Arc<Cluster>,
        region: &RegionConfig,
        master_key: Option<WrappingKey>,
        listen: SocketAddr,
    ) -> Result<Replication, OpError> {
        let links = (region.peers.iter())
            .map(|p| {
                Ok(Link {
                    peer: Peer::connect(region, &p.name, master_key.clone())?,
                    status: Mutex::new(LinkStatus {
                        source: region.name.clone(),
                        target: p.name.clone(),
                        ..LinkStatus::default()
                    }),
                    backoff: Mutex::default(),
                    delivered: Mutex::default(),
                    buckets: Mutex::default(),
                    keys: Mutex::default(),
                    history: LastHour::default(),
                })
            })
            .collect::<Result<_, OpError>>()?;
        Ok(Replication {
            cluster,
            links,
            drainer: drainer_id(&host_name(), listen),
            in_transit: SecretSeal::in_transit(&region.replication_secret),
        })
    }

    /// Every link's status.
    pub fn status(&self) -> Vec<LinkStatus> {
        self.links.iter().map(|l| lock(&l.status).clone()).collect()
    }

    /// The peer region `name`, unless its link is known to be down (a read that falls back to
    /// it would only wait for its timeout).
    pub fn reachable(&self, name: &str) -> Option<&Peer> {
        let link = self.links.iter().find(|l| l.peer.name == name)?;
        let status = lock(&link.status);
        let down = !status.now.up && status.last_error.is_some();
        (!down).then_some(&link.peer)
    }

    /// Every link's last hour.
    pub fn history(&self) -> Vec<LinkHistory> {
        (self.links.iter())
            .map(|l| {
                let status = lock(&l.status);
                LinkHistory {
                    source: status.source.clone(),
                    target: status.target.clone(),
                    samples: l.history.samples(),
                }
            })
            .collect()
    }

    /// Drains every link, each on its own: a target that is down holds up no other. Samples
    /// their state meanwhile, and keeps the lease of each link that this gateway drains.
    pub async fn run(self: Arc<Self>) {
        let drains = join_all((0..self.links.len()).map(|i| self.drain(i)));
        let leases = join_all(self.links.iter().map(|l| self.hold_lease(l)));
        futures::future::join3(drains, leases, self.sample()).await;
    }

    /// Asks every node for the link's lease, again and again: this gateway drains the link
    /// while a majority of the layout's nodes grant it (nodes that do not know leases, of a
    /// release before them, count as granting). A gateway that got only some gives them back
    /// and waits a random while, so that of two that asked at once one ends with all.
    async fn hold_lease(&self, link: &Link) {
        let nodes = self.cluster.all_nodes();
        let mut request = LeaseRequest {
            target: link.peer.name.clone(),
            drainer: self.drainer.clone(),
            ttl_ms: LEASE_TTL.as_millis() as u64,
            release: false,
        };
        loop {
            request.release = false;
            let asked = nodes
                .iter()
                .map(|n| self.cluster.client.outbox_lease(&n.addr, &request));
            let answers = join_all(asked).await;
            let granted = |a: &Result<LeaseAnswer, RpcError>| match a {
                Ok(answer) => answer.granted,
                Err(RpcError::Status(status, _)) => *status == http::StatusCode::NOT_FOUND,
                Err(_) => false,
            };
            let grants = answers.iter().filter(|a| granted(a)).count();
            let draining = grants * 2 > nodes.len();
            lock(&link.status).draining = draining;
            if draining || grants == 0 {
                tokio::time::sleep(LEASE_RENEW).await;
                continue;
            }
            request.release = true;
            let given_back = (nodes.iter().zip(&answers))
                .filter(|(_, a)| matches!(a, Ok(answer) if answer.granted))
                .map(|(n, _)| self.cluster.client.outbox_lease(&n.addr, &request));
            join_all(given_back).await;
            let wait = rand::random::<f64>() * 2.0 * LEASE_RENEW.as_secs_f64();
            tokio::time::sleep(Duration::from_secs_f64(wait)).await;
        }
    }

    /// Every `SAMPLE_EVERY`, each link's state and what it delivered since the last sample.
    async fn sample(&self) {
        let mut before: Vec<(u64, u64)> = vec![(0, 0); self.links.len()];
        let mut ticks = tokio::time::interval(SAMPLE_EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            for (link, before) in self.links.iter().zip(before.iter_mut()) {
                let mut state = lock(&link.status).now;
                let delivered = (state.delivered_entries, state.delivered_bytes);
                state.delivered_entries -= before.0;
                state.delivered_bytes -= before.1;
                link.history.push(LinkSample {
                    end_unix: unix_now(),
                    state,
                });
                *before = delivered;
            }
        }
    }

    async fn drain(&self, link: usize) {
        let link = &self.links[link];
        let mut counted = Instant::now() - COUNT_EVERY;
        let mut count_every = COUNT_EVERY;
        let mut down_for = 0;
        loop {
            let count = counted.elapsed() >= count_every;
            if count {
                counted = Instant::now();
                self.sync_buckets(link).await;
                self.sync_keys(link).await;
            }
            let (pass, counting) = self.pass(link, count).await;
            if let Some(took) = counting {
                count_every = COUNT_EVERY.max(took * COUNT_SHARE);
            }
            match pass {
                Pass::Sent => down_for = 0,
                Pass::Idle => {
                    down_for = 0;
                    tokio::time::sleep(IDLE).await;
                }
                Pass::Down => {
                    down_for += 1;
                    let until = Instant::now() + backoff(down_for).min(LINK_BACKOFF);
                    // A heartbeat costs the target one small request, a pass a page of
                    // versions: the drain resumes as soon as the heartbeat is answered.
                    while Instant::now() < until {
                        tokio::time::sleep(DOWN_HEARTBEAT).await;
                        if self.heartbeat(link).await {
                            break;
                        }
                    }
                }
            }
        }
    }

    /// One pass over a link: the first entries of every node's outbox that are due, sent, and
    /// reported. Entries waiting out a backoff are passed over, a page at a time, so that a
    /// version the target refuses holds up the others only until its next try.
    /// With `count`, also how long the counting listing took.
    async fn pass(&self, link: &Link, count: bool) -> (Pass, Option<Duration>) {
        let cluster = &self.cluster;
        let nodes: Vec<_> = (cluster.all_nodes().into_iter())
            .filter(|n| cluster.is_up(n))
            .collect();
        // A gateway that does not drain the link only counts its backlog (and the oldest
        // entry, from a page of one), once a second.
        let draining = lock(&link.status).draining;
        if !draining && !count {
            return (Pass::Idle, None);
        }
        let mut request = OutboxRequest {
            target: link.peer.name.clone(),
            limit: if draining { BATCH } else { 1 },
            after: None,
            count,
            records: draining,
        };
        let mut due = Vec::new();
        let mut counting = None;
        for page in 0..MAX_PAGES {
            request.count = count && page == 0;
            let listing = Instant::now();
            let asked = nodes
                .iter()
                .map(|n| cluster.client.outbox(&n.addr, &request));
            let pages = join_all(asked).await;
            if request.count {
                counting = Some(listing.elapsed());
            }
            let mut merged: BTreeMap<String, Listed> = BTreeMap::new();
            let mut backlog: BTreeMap<String, BucketBacklog> = BTreeMap::new();
            let mut more = false;
            for (node, page) in nodes.iter().zip(pages) {
                let Ok(page) = page else { continue };
                more |= page.items.len() >= BATCH;
                for counted in page.backlog.into_iter().flatten() {
                    let sum = backlog.entry(counted.bucket.clone()).or_default();
                    sum.entries += counted.entries;
                    sum.bytes += counted.bytes;
                }
                for item in page.items {
                    match merged.get_mut(&item.id) {
                        Some(listed) => listed.add(&node.addr, item),
                        None => {
                            let listed = Listed::new(&node.addr, item);
                            merged.insert(listed.item.id.clone(), listed);
                        }
                    }
                }
            }
            if page == 0 {
                let oldest =
                    (merged.values().next()).map(|l| l.item.entry.version.unix_millis() as u64);
                if count {
                    self.count(link, backlog, oldest);
                } else if oldest.is_none() {
                    lock(&link.status).now.oldest_pending_secs = None;
                }
            }
            request.after = merged.keys().next_back().cloned();
            let now = Instant::now();
            {
                let mut backoff = lock(&link.backoff);
                if page == 0 && !more {
                    // The whole outbox is in view: forget entries that are gone.
                    backoff.retain(|id, _| merged.contains_key(id));
                }
                for mut listed in merged.into_values() {
                    match backoff.get(&listed.item.id) {
                        Some((_, at)) if *at > now => continue,
                        // After a failure the version is looked up, not read from the
                        // records listed: a fragment may have been bad.
                        Some(_) => listed.records.clear(),
                        None => {}
                    }
                    due.push(listed);
                    if due.len() >= BATCH {
                        break;
                    }
                }
            }
            if !due.is_empty() || !more {
                break;
            }
        }
        if due.is_empty() || !draining {
            return (Pass::Idle, counting);
        }
        // The target refuses a version of a bucket whose record it has not had yet
        // (`NoSuchBucket`, and the entry would wait out a backoff): send the records first.
        if let Ok(table) = cluster.buckets(false).await {
            let sent = |bucket: &str| {
                table
                    .get(bucket)
                    .is_some_and(|b| lock(&link.buckets).took(b))
            };
            if !due.iter().all(|i| sent(&i.item.bucket)) {
                self.sync_buckets(link).await;
            }
        }
        let sent: Vec<(OutboxItem, Result<u64, SendError>)> = futures::stream::iter(due)
            .map(|listed| async move {
                let sent = self.send(link, &listed.item, listed.records).await;
                (listed.item, sent)
            })
            .buffer_unordered(IN_FLIGHT)
            .collect()
            .await;
        let pass = (self.report(link, nodes.iter().map(|n| n.addr.as_str()), sent)).await;
        (pass, counting)
    }

    /// Sends the target the bucket records that changed since the last that it took (the whole
    /// table after a restart), and the deletions it holds back. Buckets replicate by last writer
    /// wins, as in the system table.
    async fn sync_buckets(&self, link: &Link) {
        let Ok(table) = self.cluster.buckets(true).await else {
            return;
        };
        let records: Vec<BucketRecord> = {
            let sent = lock(&link.buckets);
            (table.values())
                .filter(|r| !sent.took(r) || sent.waiting.contains(&r.name))
                .cloned()
                .collect()
        };
        // Sent even when none changed: the link's heartbeat, which keeps `up` true to the
        // target's state while there is nothing else to send.
        let sent = link.peer.send_buckets(&records).await;
        note_answer(link, &sent);
        match sent {
            Ok(waiting) => {
                let mut sent = lock(&link.buckets);
                (sent.taken).extend(records.into_iter().map(|r| (r.name, r.version)));
                sent.waiting = waiting.into_iter().collect();
            }
            Err(e) => note_error(link, format!("bucket records: {e}")),
        }
    }

    /// Sends the target the access keys that changed since the last it took (the whole table
    /// after a restart), each secret sealed for the way (`SecretSeal::in_transit`). Every key
    /// replicates to every peer region, by last writer wins: one key works in every region.
    async fn sync_keys(&self, link: &Link) {
        let Ok(table) = self.cluster.keys(false).await else {
            return;
        };
        let records: Vec<KeyRecord> = {
            let sent = lock(&link.keys);
            (table.values())
                .filter(|k| sent.get(&k.id) != Some(&k.version))
                .filter_map(|k| self.cluster.secrets.reseal(k, &self.in_transit))
                .collect()
        };
        if records.is_empty() {
            return;
        }
        match link.peer.send_keys(&records).await {
            Ok(refused) if refused.is_empty() => {
                let mut sent = lock(&link.keys);
                sent.extend(records.into_iter().map(|k| (k.id, k.version)));
            }
            Ok(refused) => note_error(
                link,
                format!("key records: the peer could not open {refused:?} (another replication secret?)"),
            ),
            Err(e) => note_error(link, format!("key records: {e}")),
        }
    }

    /// Whether the target answers an empty bucket-record sync (a refusal is an answer); noted
    /// as the link's `up`.
    async fn heartbeat(&self, link: &Link) -> bool {
        note_answer(link, &link.peer.send_buckets(&[]).await)
    }

    /// Sends one entry, read from `records` if its holders listed enough of them; the bytes
    /// sent.
    async fn send(
        &self,
        link: &Link,
        item: &OutboxItem,
        records: Vec<(String, ObjectRecord)>,
    ) -> Result<u64, SendError> {
        if item.purge {
            return link.peer.purge(&item.bucket, &item.entry).await.map(|()| 0);
        }
        let bucket = match self.cluster.bucket(&item.bucket).await {
            Ok(bucket) => bucket,
            // The cached table can predate the bucket (made through another gateway a moment
            // ago): only the nodes can say it is gone.
            Err(OpError::NoSuchBucket) => match live_bucket(&self.cluster, &item.bucket).await {
                Ok(bucket) => bucket,
                // Deleted here since: its objects were deleted first, and those deletes are
                // queued.
                Err(OpError::NoSuchBucket) => return Ok(0),
                Err(e) => return Err(e.into()),
            },
            Err(e) => return Err(e.into()),
        };
        link.peer
            .send(&self.cluster, &bucket, &item.entry, records)
            .await
    }

    /// Tells every node what was delivered and refused, and notes it in the link's status.
    async fn report<'a>(
        &self,
        link: &Link,
        nodes: impl Iterator<Item = &'a str>,
        sent: Vec<(OutboxItem, Result<u64, SendError>)>,
    ) -> Pass {
        let mut report = OutboxReport {
            target: link.peer.name.clone(),
            ..OutboxReport::default()
        };
        let (mut bytes, mut answered) = (0, false);
        let mut last_error = None;
        {
            let mut waits = lock(&link.backoff);
            for (item, outcome) in sent {
                let id = item.id.clone();
                match outcome {
                    Ok(n) => {
                        bytes += n;
                        answered = true;
                        waits.remove(&id);
                        report.delivered.push(item.delivered());
                        continue;
                    }
                    Err(SendError::Refused(e)) => {
                        answered = true;
                        report.failed.push((id.clone(), e.clone()));
                        last_error = Some(e);
                    }
                    Err(SendError::Local(e)) => last_error = Some(e),
                    // The link's own backoff (`drain`) waits for the target, not the entry's:
                    // entries are tried again as soon as it answers.
                    Err(e @ SendError::Unreachable(_)) => {
                        last_error = Some(e.to_string());
                        continue;
                    }
                }
                let failures = waits.get(&id).map_or(0, |(n, _)| *n) + 1;
                waits.insert(id, (failures, Instant::now() + backoff(failures)));
            }
        }
        let delivered = report.delivered.len() as u64;
        let told = nodes.map(|addr| self.cluster.client.outbox_report(addr, &report));
        for failed in join_all(told).await.into_iter().filter_map(Result::err) {
            // Those entries stay on that node and are sent (as a no-op) and reported again.
            tracing::warn!(error = %failed, "a node was not told of delivered replication entries");
        }
        let now = Instant::now();
        let mut window = lock(&link.delivered);
        window.push_back((now, delivered, bytes));
        while window
            .front()
            .is_some_and(|(at, ..)| now - *at > RATE_WINDOW)
        {
            window.pop_front();
        }
        let mut status = lock(&link.status);
        status.now.up = answered;
        status.now.delivered_entries += delivered;
        status.now.delivered_bytes += bytes;
        if let Some(e) = last_error {
            tracing::warn!(target_region = %status.target, error = %e, "replication could not send a version");
            status.last_error = Some(e);
            status.last_error_unix = Some(unix_now());
        }
        match answered {
            true => Pass::Sent,
            false => Pass::Down,
        }
    }

    /// Updates the link's backlog from the nodes' counts.
    fn count(&self, link: &Link, backlog: BTreeMap<String, BucketBacklog>, oldest: Option<u64>) {
        let width = self.cluster.width().max(1) as u64;
        let buckets: Vec<BucketBacklog> = (backlog.into_iter())
            .map(|(bucket, sum)| BucketBacklog {
                bucket,
                entries: sum.entries.div_ceil(width),
                bytes: sum.bytes.div_ceil(width),
            })
            .collect();
        let now_millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        let window = lock(&link.delivered);
        let (entries, bytes) = (window.iter()).fold((0, 0), |(e, b), (_, n, m)| (e + n, b + m));
        let mut status = lock(&link.status);
        status.now.backlog_entries = buckets.iter().map(|b| b.entries).sum();
        status.now.backlog_bytes = buckets.iter().map(|b| b.bytes).sum();
        status.buckets = buckets;
        status.counted_unix_millis = now_millis;
        status.now.oldest_pending_secs =
            oldest.map(|at| now_millis.saturating_sub(at) as f64 / 1000.0);
        let secs = RATE_WINDOW.as_secs_f64();
        status.entries_per_sec = entries as f64 / secs;
        status.bytes_per_sec = bytes as f64 / secs;
    }
}

/// An outbox entry as the nodes listed it: one holder's copy of the entry, and the records of
/// its version that holders sent along with theirs (`OutboxRequest::records`), by address.
struct Listed {
    item: OutboxItem,
    records: Vec<(String, ObjectRecord)>,
    /// Some holder lists the entry as a purge and another does not: a holder missed the purge,
    /// and the version is looked up (which sees it purged) rather than read from the records.
    mixed: bool,
}

impl Listed {
    /// The first holder's copy of the entry.
    fn new(addr: &str, mut item: OutboxItem) -> Listed {
        let record = item.record.take();
        Listed {
            item,
            records: record.map(|r| (addr.to_string(), r)).into_iter().collect(),
            mixed: false,
        }
    }

    /// Adds another holder's copy of the entry.
    fn add(&mut self, addr: &str, mut item: OutboxItem) {
        if item.purge != self.item.purge {
            self.mixed = true;
            self.records.clear();
        }
        if let Some(record) = item.record.take().filter(|_| !self.mixed) {
            self.records.push((addr.to_string(), record));
        }
        // As before records were listed: the last holder's copy is the one sent and reported.
        self.item = item;
    }
}

/// What a pass did.
enum Pass {
    /// Sent entries, and the target answered.
    Sent,
    /// Nothing was due.
    Idle,
    /// Nothing the target answered: it is down or cut off.
    Down,
}

/// The wait after `failures` failures in a row.
fn backoff(failures: u32) -> Duration {
    let doubled = FIRST_BACKOFF.saturating_mul(1 << failures.saturating_sub(1).min(16));
    doubled.min(LAST_BACKOFF)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(purge: bool, listed: bool) -> OutboxItem {
        let record = crate::ops::testing::version(1000, 2, b"x", true)
            .swap_remove(0)
            .0;
        OutboxItem {
            id: "ab".into(),
            bucket: "b".into(),
            entry: node_rpc::record::ListEntry::of("k".into(), &record),
            revision: 0,
            purge,
            record: listed.then_some(record),
        }
    }

    #[test]
    fn an_entry_some_holders_list_as_a_purge_is_not_read_from_records() {
        let mut listed = Listed::new("n1", item(false, true));
        listed.add("n2", item(false, true));
        assert_eq!(listed.records.len(), 2);
        assert!(
            listed.item.record.is_none(),
            "records are kept beside the item"
        );
        listed.add("n3", item(true, false));
        listed.add("n4", item(false, true));
        assert!(listed.mixed);
        assert!(listed.records.is_empty(), "a holder missed the purge");
    }

    #[test]
    fn backoff_doubles_to_a_minute() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(4), Duration::from_secs(8));
        assert_eq!(backoff(7), Duration::from_secs(60));
        assert_eq!(backoff(1000), Duration::from_secs(60));
    }

    #[test]
    fn a_gateway_keeps_its_drainer_name_across_restarts_and_no_other_shares_it() {
        let at = |addr: &str| addr.parse::<SocketAddr>().unwrap();
        let first = drainer_id("host-a", at("10.0.0.1:9000"));
        assert_eq!(first, drainer_id("host-a", at("10.0.0.1:9000")));
        assert_ne!(first, drainer_id("host-a", at("10.0.0.1:9002")));
        assert_ne!(first, drainer_id("host-b", at("10.0.0.1:9000")));
        assert!(!host_name().is_empty());
    }
}
