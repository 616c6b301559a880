//! The read path's first half: find the newest version of a key among a read quorum of its
//! holders, and finish or undo a write that reached too few of them.

use crate::ops::cluster::{Cluster, Holder};
use crate::ops::error::OpError;
use crate::ops::fragment_stream::FragmentStream;
use crate::ops::node_calls::NodeCalls;
use erasure::Codec;
use futures::future::{join_all, FutureExt};
use futures::stream::{FuturesUnordered, StreamExt};
use node_rpc::protocol::{Lookup, OutboxState, UndoRequest};
use node_rpc::record::{BucketId, BucketRecord, ObjectRecord, Version, VersionRef};
use node_rpc::RpcError;
use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;

/// How long the first holders asked for a record may take before the others are asked too. Above
/// a record read under full load here (a few ms), far below the node timeout.
const LOOKUP_HEDGE: Duration = Duration::from_millis(20);
/// How often a read waiting to hear from every holder that is up looks again at which are.
const RECHECK_DOWN: Duration = Duration::from_millis(100);

/// The newest version of a key and the holders that have it.
pub struct Found {
    pub record: ObjectRecord,
    /// Holders with this exact version, each with its own record (carrying its inline fragments).
    pub sources: Vec<Source>,
    /// Fragment slots whose holders answered with an older version or none: to be repaired.
    pub stale: Vec<u8>,
    /// Holders not waited for (slow, or not needed): asked only if the sources fall short.
    pub unasked: Vec<(String, u8)>,
    /// The answers of the holders not waited for, still arriving: read repair checks them after
    /// the response instead of asking those holders again. `None` when none were (most reads: a
    /// task for nothing cost every GET a spawn).
    pub late: Option<JoinHandle<Vec<Answer>>>,
    pub target: Target,
    /// Fragment files of the first part that holders sent along with their records (see
    /// `lookup_to_read`): fragment slot, length, and the stream of it, taken by the first read.
    prefetched: Mutex<Vec<(u8, u64, FragmentStream)>>,
    /// The peer regions that the answering holders still have the version queued for, and the
    /// last refusal among them (see `ops::replica::status`); `None`: not known.
    pub outbox: Option<OutboxState>,
}

impl Found {
    /// The codec of the version's layout (see `ObjectRecord::codec`).
    pub fn codec(&self) -> Result<Codec, OpError> {
        self.record
            .codec()
            .map_err(|e| OpError::Internal(format!("the record's layout: {e}")))
    }

    /// The stream of fragment `slot` of the first part that came with the lookup, if it covers
    /// exactly `[0, len)`.
    pub(super) fn take_prefetched(&self, slot: u8, len: u64) -> Option<FragmentStream> {
        let mut prefetched = self.prefetched.lock().unwrap_or_else(|p| p.into_inner());
        let at = prefetched
            .iter()
            .position(|(s, l, _)| *s == slot && *l == len)?;
        Some(prefetched.swap_remove(at).2)
    }

    /// A version read from the records that its holders sent along with something else (the
    /// outbox's listing, `OutboxRequest::records`), each with its holder's address, without a
    /// lookup. `None` unless k holders sent it at the newest revision among them, each from the
    /// slot the layout gives it: a version on fewer is looked up, to be finished or undone.
    /// The holders that sent none are asked only if a fragment turns out bad.
    pub fn from_records(
        cluster: &Cluster,
        bucket: &BucketId,
        key: &str,
        which: Option<VersionRef>,
        records: Vec<(String, ObjectRecord)>,
    ) -> Option<Found> {
        let holders = cluster.holders(bucket, key);
        let revision = records.iter().map(|(_, r)| r.revision).max()?;
        let mut sources: Vec<Source> = (records.into_iter())
            .filter(|(addr, r)| {
                let holder = holders.get(r.slot as usize);
                r.revision == revision && holder.is_some_and(|h| h.node.addr == *addr)
            })
            .map(|(addr, record)| Source {
                addr,
                slot: record.slot,
                record,
            })
            .collect();
        sources.sort_by_key(|s| s.slot);
        sources.dedup_by_key(|s| s.slot);
        let record = sources.first()?.record.clone();
        let agree = sources.iter().all(|s| s.record.version == record.version);
        if !agree || sources.len() < record.data_shards as usize {
            return None;
        }
        let unasked = (holders.iter())
            .filter(|h| sources.iter().all(|s| s.slot != h.slot))
            .map(|h| (h.node.addr.clone(), h.slot))
            .collect();
        Some(Found {
            record,
            sources,
            stale: Vec::new(),
            unasked,
            late: None,
            target: Target {
                bucket: *bucket,
                key: key.to_string(),
                version: which,
            },
            prefetched: Mutex::default(),
            outbox: None,
        })
    }
}

/// The object a read is for, to repair it afterwards.
#[derive(Clone)]
pub struct Target {
    pub bucket: BucketId,
    pub key: String,
    /// The version asked for; `None`: the current one.
    pub version: Option<VersionRef>,
}

/// One holder's answer for a key's record, by fragment slot.
type Answer = (u8, Result<Lookup, RpcError>);

#[derive(Clone)]
pub struct Source {
    pub addr: String,
    /// The fragment slot it keeps.
    pub slot: u8,
    pub record: ObjectRecord,
}

/// What a lookup asks of a key's holders, and how many answers it waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ask {
    /// Records, until a read quorum has answered with k records of the newest version: enough
    /// to read it.
    Quorum,
    /// `Quorum`, for a read of the whole object: the holders asked first also send their
    /// fragment files of the first part along with their records (objects up to 16 MiB), which
    /// saves the stream's first round trip to each of them; unless the bucket's objects are
    /// expected small (see `lookup`).
    QuorumAndFragments,
    /// Every holder's record (or its timeout): also sees a newer version that fewer than k
    /// holders have, an unfinished write, so that healing finishes or undoes it.
    Everyone,
}

/// Reads one version of a key (`which`; `None`: the current one) from its holders. Asks the data
/// fragments' holders first (their inline fragments need no decoding), as many as a read needs:
/// a read quorum when small objects are coded with R data shards (those R answers serve the
/// read) unless the bucket's recent lookups found mostly larger objects (`ops::lookup_width`),
/// else k. Asks more only when those answers cannot serve the read (a holder failed,
/// missed the newest version, or is known to be down; or the newest version is coded with more
/// data shards than answers), and all the others when the first are not all in after
/// `LOOKUP_HEDGE`. Unless `ask` is `Everyone`, returns as soon as a read quorum has answered and
/// as many of the answers as the newest version's k carry its record, so a slow or paused holder
/// does not hold up the request. `Ok(None)`: no such version, or one that a holder knows was
/// deleted for good. A delete marker comes back as found.
pub async fn lookup(
    cluster: &Cluster,
    bucket: &BucketId,
    key: &str,
    which: Option<VersionRef>,
    ask: Ask,
) -> Result<Option<Found>, OpError> {
    let holders = cluster.holders(bucket, key);
    let fragments = ask == Ask::QuorumAndFragments;
    let everyone = ask == Ask::Everyone;
    let expect_small = cluster.small_objects() && !cluster.lookup_width.expects_large(bucket);
    // Owned futures, so that the answers not waited for can finish in the background: dropping
    // them would also close their pooled connections mid-request.
    let ask_one = |h: &Holder<'_>, fragments: bool| {
        let (calls, addr, slot) = (&cluster.calls, &h.node.addr, h.slot);
        let answer = match fragments {
            true => calls.object_and_fragment(addr, *bucket, key, which),
            false => {
                let record = calls.object(addr, *bucket, key, which);
                record.map(|a| a.map(|lookup| (lookup, None))).boxed()
            }
        };
        answer.map(move |answer| (slot, answer))
    };
    let read_quorum = cluster.read_quorum();
    let quorum = read_quorum.needed;
    // While a substitute may keep the only copies of a holder's share of some acknowledged write
    // (see `Liveness::reads_settled`), any R holders may all lack it: the read then hears from
    // every holder that is up, and among them is one that took the write itself
    // (docs/architecture.md, "Reads after hinted writes").
    let hear_all_up = !everyone && !cluster.liveness.reads_settled();
    // Holders in slot order, those known to be down last: the first are asked at once.
    let mut order: Vec<&Holder<'_>> = holders.iter().collect();
    order.sort_by_key(|h| !cluster.is_up(h.node));
    let mut waiting: VecDeque<&Holder<'_>> = order.into();
    let first = if everyone {
        holders.len()
    } else if expect_small {
        quorum.min(holders.len())
    } else {
        cluster.layout.data_shards().max(quorum).min(holders.len())
    };
    // A small object's fragments are in its record, so where small ones are expected the first
    // lookups are plain: those, a node client gathers under load (`node_rpc::gather`).
    let first_fragments = fragments && !expect_small;
    let mut outstanding: BTreeSet<u8> = waiting.iter().take(first).map(|h| h.slot).collect();
    let mut pending: FuturesUnordered<_> = waiting
        .drain(..first)
        .map(|h| ask_one(h, first_fragments))
        .collect();
    if hear_all_up {
        // Every holder is asked at once; only the first send their fragment files along.
        outstanding.extend(waiting.iter().map(|h| h.slot));
        pending.extend(waiting.drain(..).map(|h| ask_one(h, false)));
    }
    let hedge = tokio::time::sleep(LOOKUP_HEDGE);
    tokio::pin!(hedge);
    // A holder that goes down while a read waits for it is no longer waited for.
    let mut recheck = tokio::time::interval(RECHECK_DOWN);
    let up_outstanding = |outstanding: &BTreeSet<u8>| {
        outstanding
            .iter()
            .any(|&slot| cluster.is_up(holders[slot as usize].node))
    };
    let mut answered = Vec::new();
    let mut purged = BTreeSet::new();
    let mut prefetched = Vec::new();
    let mut outboxes = Vec::new();
    while answered.len() < quorum
        || !readable(&answered)
        || (everyone && !pending.is_empty())
        || (hear_all_up && up_outstanding(&outstanding))
    {
        let short = shortfall(&answered, pending.len(), quorum).min(waiting.len());
        outstanding.extend(waiting.iter().take(short).map(|h| h.slot));
        pending.extend(waiting.drain(..short).map(|h| ask_one(h, fragments)));
        tokio::select! {
            next = pending.next() => {
                let Some((slot, answer)) = next else { break };
                outstanding.remove(&slot);
                if let Ok((lookup, fragment)) = answer {
                    purged.extend(lookup.purged);
                    let sent = lookup.record.as_ref().zip(lookup.fragment_len).zip(fragment);
                    if let Some(((record, len), stream)) = sent {
                        prefetched.push((record.version, record.slot, len, stream));
                    }
                    if let (Some(record), Some(outbox)) = (&lookup.record, lookup.outbox) {
                        outboxes.push((record.version, outbox));
                    }
                    answered.push((holders[slot as usize], lookup.record));
                }
            }
            () = &mut hedge, if !waiting.is_empty() => {
                crate::metrics::METRICS.hedged_lookups.inc();
                outstanding.extend(waiting.iter().map(|h| h.slot));
                pending.extend(waiting.drain(..).map(|h| ask_one(h, false)));
            }
            _ = recheck.tick(), if hear_all_up => {}
        }
    }
    // Answers that disagree may show a write that never reached its quorum, or a holder that
    // missed one: the holders not asked are asked too, after the response, so that read repair
    // brings every holder up to date rather than only those that happened to answer.
    let newest_version = newest(&answered).map(|r| r.version);
    if answered
        .iter()
        .any(|(_, r)| r.as_ref().map(|r| r.version) != newest_version)
    {
        pending.extend(waiting.drain(..).map(|h| ask_one(h, false)));
    }
    // A fragment file sent along by a late answer is dropped as it comes: nothing reads it.
    let late = (!pending.is_empty()).then(|| {
        tokio::spawn(
            pending
                .map(|(slot, answer)| (slot, answer.map(|(lookup, _)| lookup)))
                .collect::<Vec<_>>(),
        )
    });
    read_quorum.require(answered.len(), holders.len(), "holders answered")?;
    // A version some holder purged is gone, even where a holder that missed the purge has it.
    for (_, record) in answered.iter_mut() {
        if record.as_ref().is_some_and(|r| purged.contains(&r.version)) {
            *record = None;
        }
    }
    let newest = newest(&answered).cloned();
    if !everyone && cluster.small_objects() {
        let large = newest.as_ref().map_or(0, |r| r.data_shards as usize) > quorum;
        cluster.lookup_width.learn(bucket, large);
    }
    let Some(newest) = newest else {
        return Ok(None);
    };
    // This gateway's next versions order after what it has seen, even with its clock behind
    // the gateway that wrote it.
    Version::observe(newest.version);
    let answered_slots: Vec<u8> = answered.iter().map(|(h, _)| h.slot).collect();
    let unasked = holders
        .iter()
        .filter(|h| !answered_slots.contains(&h.slot))
        .map(|h| (h.node.addr.clone(), h.slot))
        .collect();
    let mut sources = Vec::new();
    let mut stale = Vec::new();
    let mut older = Vec::new();
    for (holder, record) in answered {
        match record {
            Some(record) if record.version == newest.version => sources.push(Source {
                addr: holder.node.addr.clone(),
                slot: record.slot,
                record,
            }),
            other => {
                stale.push(holder.slot);
                older.extend(other.map(|record| (holder, record)));
            }
        }
    }
    let prefetched = prefetched
        .into_iter()
        .filter(|(version, ..)| *version == newest.version)
        .map(|(_, slot, len, stream)| (slot, len, stream))
        .collect();
    let mut outbox = OutboxState::default();
    for (_, state) in outboxes.into_iter().filter(|(v, _)| *v == newest.version) {
        for target in state.targets {
            if !outbox.targets.contains(&target) {
                outbox.targets.push(target);
            }
        }
        outbox.failed = outbox.failed.or(state.failed);
    }
    let found = Found {
        outbox: Some(outbox),
        record: newest,
        sources,
        stale,
        unasked,
        late,
        target: Target {
            bucket: *bucket,
            key: key.to_string(),
            version: which,
        },
        prefetched: Mutex::new(prefetched),
    };
    if found.sources.len() >= found.record.data_shards as usize || found.record.deleted {
        return Ok(Some(found));
    }
    Ok(Some(unfinished(cluster, found, older, &holders).await))
}

/// A newest version that fewer than k holders have: a write whose commit never reached its
/// quorum, because its gateway died or holders failed part-way.
///
/// File fragments are all stored before any holder commits, so the holders that missed the commit
/// serve theirs, and read repair then finishes the write. Inline fragments travel only inside the
/// commits. When so many holders answered without the version that it cannot have been
/// acknowledged (fewer than k have it, so fewer than a write quorum, unless a hint is pending),
/// the read goes back to the version it replaced, which holders keep for a while for this, and
/// undoes it there once its writer has certainly given up.
async fn unfinished(
    cluster: &Cluster,
    mut found: Found,
    older: Vec<(Holder<'_>, ObjectRecord)>,
    holders: &[Holder<'_>],
) -> Found {
    if !found.record.has_inline_parts() {
        for &slot in &found.stale {
            let mut record = found.record.clone();
            record.slot = slot;
            found.sources.push(Source {
                addr: holders[slot as usize].node.addr.clone(),
                slot,
                record,
            });
        }
        return found;
    }
    let k = found.record.data_shards as usize;
    add_hinted(cluster, &mut found, holders).await;
    if found.sources.len() >= k {
        return found;
    }
    let Some(previous) = older.iter().map(|(_, r)| r).max_by_key(|r| r.stamp()) else {
        return found;
    };
    // A holder that is behind answers without the version because a substitute still keeps it
    // for it: its answer says nothing of whether the write was acknowledged.
    let lacking_for_sure = found
        .stale
        .iter()
        .filter(|&&slot| {
            let id = &holders[slot as usize].node.id;
            !cluster
                .node_index(id)
                .is_some_and(|i| cluster.liveness.is_behind(i))
        })
        .count();
    let may_undo =
        cluster.liveness.has_probed() && never_acknowledged(lacking_for_sure, holders.len(), k);
    if found.target.version.is_some() || !may_undo {
        return found;
    }
    let unfinished = found.record.version;
    let asked = found.sources.iter().map(|s| {
        let (addr, target) = (s.addr.clone(), &found.target);
        let before = (cluster.calls).object_before(&addr, target.bucket, &target.key, unfinished);
        before.map(|answer| (addr, answer.ok().and_then(|lookup| lookup.record)))
    });
    let kept = join_all(asked).await;
    let sources: Vec<Source> = older
        .iter()
        .map(|(h, record)| (h.node.addr.clone(), record.clone()))
        .chain(kept.into_iter().filter_map(|(addr, r)| Some((addr, r?))))
        .filter(|(_, record)| record.version == previous.version)
        .map(|(addr, record)| Source {
            addr,
            slot: record.slot,
            record,
        })
        .collect();
    if sources.len() < k {
        return found;
    }
    if !found.record.versioned {
        let undo = UndoRequest {
            bucket: found.target.bucket,
            key: found.target.key.clone(),
            version: unfinished,
            settled_secs: 2 * cluster.timeout.as_secs() + 1,
        };
        let holding = found.sources.iter().map(|s| s.addr.clone()).collect();
        tokio::spawn(undo_when_settled(
            cluster.calls.clone(),
            cluster.all_nodes().iter().map(|n| n.addr.clone()).collect(),
            holding,
            undo,
        ));
    }
    Found {
        record: previous.clone(),
        sources,
        // The holders of the unfinished version are not repaired over it: it is newer.
        stale: Vec::new(),
        unasked: Vec::new(),
        late: None,
        target: found.target,
        prefetched: Mutex::default(),
        // Not asked of the holders of the version gone back to.
        outbox: None,
    }
}

/// Adds the version's records that nodes keep as hints for holders that lack it (behind, up or
/// down): an inline version acknowledged with substitutes has those holders' fragments there
/// until the hand-over, and a read that counts them needs no more holders than the write left.
async fn add_hinted(cluster: &Cluster, found: &mut Found, holders: &[Holder<'_>]) {
    let version = found.record.version;
    let nodes = cluster.all_nodes();
    let mut asks = Vec::new();
    for holder in holders {
        let has_it = found.sources.iter().any(|s| s.slot == holder.slot);
        let index = cluster.node_index(&holder.node.id);
        let Some(index) = index.filter(|&i| !has_it && cluster.liveness.is_behind(i)) else {
            continue;
        };
        for keeper in cluster.liveness.keepers_of(index) {
            let (addr, target) = (&nodes[keeper].addr, &found.target);
            let (slot, id) = (holder.slot, &holder.node.id);
            asks.push(async move {
                let lookup = (cluster.calls)
                    .hinted_record(addr, id, target.bucket, &target.key, version)
                    .await;
                (slot, addr.clone(), lookup.ok().and_then(|l| l.record))
            });
        }
    }
    for (slot, addr, hinted) in join_all(asks).await {
        let Some(hinted) = hinted.filter(|r| r.version == version && r.slot == slot) else {
            continue;
        };
        if found.sources.iter().any(|s| s.slot == slot) {
            continue;
        }
        // The slot's fragments under the revision the read serves: tags or retention may have
        // changed since. (A source's record of an older revision would be revised at `addr`,
        // which is not a holder.)
        let mut record = found.record.clone();
        record.slot = slot;
        for (part, kept) in record.parts.iter_mut().zip(hinted.parts) {
            part.inline = kept.inline;
        }
        found.sources.push(Source { addr, slot, record });
    }
}

/// Undoes an unfinished inline write on the holders that have it, unless a hint is pending
/// anywhere: a holder that was down may be about to receive that version from a substitute, and
/// with it a write quorum. Each holder also refuses while its writer could still be committing.
async fn undo_when_settled(
    calls: Arc<dyn NodeCalls>,
    nodes: Vec<String>,
    holding: Vec<String>,
    undo: UndoRequest,
) {
    for addr in &nodes {
        match calls.hints(addr).await {
            Ok(0) => {}
            _ => return,
        }
    }
    for addr in holding {
        match calls.undo(&addr, undo.clone()).await {
            Ok(true) => {
                tracing::warn!(%addr, key = %undo.key, version = %undo.version, "undid an unfinished write")
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(%addr, error = %e, "undoing an unfinished write failed"),
        }
    }
}

fn newest<'a>(answered: &'a [(Holder, Option<ObjectRecord>)]) -> Option<&'a ObjectRecord> {
    answered
        .iter()
        .filter_map(|(_, r)| r.as_ref())
        .max_by_key(|r| r.stamp())
}

/// True when a version that `lacking` of a key's `width` holders answered without (none of them
/// behind, see `Liveness::is_behind`) cannot have been acknowledged: it is then on at most
/// `width - lacking` holders, fewer than k, and every write quorum is at least k.
fn never_acknowledged(lacking: usize, width: usize, k: usize) -> bool {
    lacking + k > width
}

/// How many answers a read still lacks: none when there is no live version, else the newest
/// version's k less the holders that have it.
fn lacking(answered: &[(Holder, Option<ObjectRecord>)]) -> usize {
    match newest(answered) {
        Some(n) if !n.deleted => {
            let with_newest = answered
                .iter()
                .filter(|(_, r)| r.as_ref().is_some_and(|r| r.version == n.version))
                .count();
            (n.data_shards as usize).saturating_sub(with_newest)
        }
        _ => 0,
    }
}

/// True when the answers so far can serve a read: no live version, or k holders with the newest.
fn readable(answered: &[(Holder, Option<ObjectRecord>)]) -> bool {
    lacking(answered) == 0
}

/// How many more holders to ask, at least, for the answers so far and the `pending` ones still
/// to come to make a readable quorum, even if every one of them answers with the newest record.
fn shortfall(answered: &[(Holder, Option<ObjectRecord>)], pending: usize, quorum: usize) -> usize {
    let answers = quorum.saturating_sub(answered.len() + pending);
    answers.max(lacking(answered).saturating_sub(pending))
}

/// The `x-amz-version-id` S3 shows for a version: none in a bucket that never had versioning.
pub fn version_id(bucket: &BucketRecord, version: VersionRef) -> Option<String> {
    bucket.versioning.map(|_| version.to_string())
}

/// The version of a key a GET, HEAD or copy reads: the current one, or the one `which` names;
/// `whole` for a GET of all of it (see `Ask::QuorumAndFragments`).
/// A delete marker is an error: 404 NoSuchKey when current (naming the marker in a versioned
/// bucket), 405 MethodNotAllowed when asked for by its version id.
pub async fn find_version(
    cluster: &Cluster,
    bucket: &BucketRecord,
    key: &str,
    which: Option<VersionRef>,
    whole: bool,
) -> Result<Found, OpError> {
    let ask = match whole {
        true => Ask::QuorumAndFragments,
        false => Ask::Quorum,
    };
    let found = lookup(cluster, &bucket.id, key, which, ask).await?;
    match found {
        None if which.is_some() && bucket.versioning.is_some() => Err(OpError::NoSuchVersion),
        None => Err(OpError::NoSuchKey),
        Some(found) if found.record.deleted => {
            let version_id = version_id(bucket, found.record.version_ref());
            match (which, version_id) {
                (Some(_), Some(version_id)) => Err(OpError::DeleteMarkerVersion { version_id }),
                (None, Some(version_id)) => Err(OpError::DeleteMarker {
                    version_id: Some(version_id),
                }),
                (_, None) => Err(OpError::NoSuchKey),
            }
        }
        Some(found) => Ok(found),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use node_rpc::record::Version;
    use placement::NodeInfo;
    use std::ops::Range;

    use crate::ops::testing::{self, Node, Nodes, BUCKET, KEY};
    use std::time::Instant;

    /// Made-up holders, the cluster that reads from them, and the key's holders in slot order.
    fn setup() -> (Arc<Nodes>, Cluster, Vec<String>) {
        let nodes = Arc::new(Nodes::default());
        let cluster = testing::cluster(nodes.clone());
        let holders = testing::holders(&cluster);
        (nodes, cluster, holders)
    }

    /// Gives the holders of `slots` their own record of `version` (one per slot).
    fn give(
        nodes: &Nodes,
        holders: &[String],
        version: &[(ObjectRecord, Bytes)],
        slots: Range<usize>,
    ) {
        for slot in slots {
            let node = Node {
                record: Some(version[slot].0.clone()),
                fragments: [(slot as u8, version[slot].1.clone())].into(),
                ..Node::default()
            };
            nodes.set(&holders[slot], node);
        }
    }

    fn count(nodes: &Nodes, call: &str) -> usize {
        let prefix = format!("{call} ");
        nodes
            .calls()
            .iter()
            .filter(|c| c.starts_with(&prefix))
            .count()
    }

    fn slots(found: &Found) -> Vec<u8> {
        let mut slots: Vec<u8> = found.sources.iter().map(|s| s.slot).collect();
        slots.sort();
        slots
    }

    /// Holders' records of `version` as a listing sends them: (address, record) for `slots`.
    fn listed(
        holders: &[String],
        version: &[(ObjectRecord, Bytes)],
        slots: &[usize],
    ) -> Vec<(String, ObjectRecord)> {
        (slots.iter())
            .map(|&slot| (holders[slot].clone(), version[slot].0.clone()))
            .collect()
    }

    #[tokio::test]
    async fn a_version_k_holders_listed_is_found_from_their_records_without_a_call() {
        let (nodes, cluster, holders) = setup();
        let v = testing::version(10, 2, b"small", true);
        let records = listed(&holders, &v, &[4, 1]);
        let found = Found::from_records(&cluster, &BUCKET, KEY, None, records).unwrap();
        assert_eq!(slots(&found), [1, 4]);
        let unasked: Vec<u8> = found.unasked.iter().map(|(_, slot)| *slot).collect();
        assert_eq!(unasked, [0, 2, 3, 5], "asked only if a fragment is bad");
        assert_eq!(nodes.calls(), Vec::<String>::new());
    }

    #[tokio::test]
    async fn listed_records_are_not_read_short_of_k_at_the_newest_revision_or_from_another_holder()
    {
        let (_nodes, cluster, holders) = setup();
        let v = testing::version(10, 2, b"small", true);
        let read = |records| Found::from_records(&cluster, &BUCKET, KEY, None, records);
        assert!(read(listed(&holders, &v, &[3])).is_none(), "one of k = 2");
        let mut elsewhere = listed(&holders, &v, &[0, 1]);
        elsewhere[1].0 = holders[5].clone();
        assert!(
            read(elsewhere).is_none(),
            "slot 1's record from the holder of slot 5"
        );
        let mut retagged = listed(&holders, &v, &[0, 1, 2]);
        retagged[2].1.revision = 1;
        assert!(read(retagged.clone()).is_none(), "one holder at revision 1");
        retagged[0].1.revision = 1;
        let found = read(retagged).expect("two holders at revision 1");
        assert_eq!(slots(&found), [0, 2]);
        assert_eq!(found.record.revision, 1);
    }

    #[tokio::test]
    async fn a_lookup_fails_without_a_read_quorum_of_answers() {
        let (nodes, cluster, holders) = setup();
        let v = testing::version(10, 2, b"small", true);
        give(&nodes, &holders, &v, 0..6);
        for addr in &holders[1..] {
            let down = Node {
                down: true,
                ..Node::default()
            };
            nodes.set(addr, down);
        }
        match lookup(&cluster, &BUCKET, KEY, None, Ask::Quorum).await {
            Err(OpError::Unavailable(why)) => {
                assert!(
                    why.starts_with("1 of 6 holders answered; 2 needed"),
                    "{why}"
                )
            }
            Err(e) => panic!("{e:?}"),
            Ok(_) => panic!("read with one answer of six"),
        }
        give(&nodes, &holders, &v, 1..2);
        let found = lookup(&cluster, &BUCKET, KEY, None, Ask::Quorum).await;
        let found = found.unwrap().expect("two answers are a read quorum");
        assert_eq!(found.record.version, v[0].0.version);
        assert_eq!(slots(&found), [0, 1]);
    }

    #[tokio::test]
    async fn a_lookup_asks_as_many_holders_as_a_read_needs_and_the_rest_after_the_hedge() {
        let (nodes, cluster, holders) = setup();
        // A small object, coded with k = R = 2: the two data holders are asked first.
        let v = testing::version(10, 2, b"small", true);
        give(&nodes, &holders, &v, 0..6);
        let found = lookup(&cluster, &BUCKET, KEY, None, Ask::Quorum).await;
        assert_eq!(slots(&found.unwrap().unwrap()), [0, 1]);
        assert_eq!(count(&nodes, "object"), 2, "{:?}", nodes.calls());

        // The first holder is slow: the others are asked once the hedge delay has passed, and
        // two of them serve the read long before the slow one would answer.
        let slow = Node {
            delay: Duration::from_secs(60),
            ..Node::default()
        };
        nodes.set(
            &holders[0],
            Node {
                record: Some(v[0].0.clone()),
                ..slow
            },
        );
        let start = Instant::now();
        let found = lookup(&cluster, &BUCKET, KEY, None, Ask::Quorum).await;
        let found = found.unwrap().unwrap();
        let took = start.elapsed();
        assert!(
            took >= LOOKUP_HEDGE && took < Duration::from_secs(10),
            "{took:?}"
        );
        assert_eq!(count(&nodes, "object"), 2 + 6, "all asked after the hedge");
        assert!(!slots(&found).contains(&0) && found.sources.len() >= 2);
        assert!(
            found.unasked.iter().any(|(_, slot)| *slot == 0),
            "the slow one left for later"
        );
    }

    #[tokio::test]
    async fn a_holder_that_missed_the_newest_version_is_stale_and_another_is_asked() {
        let (nodes, cluster, holders) = setup();
        let old = testing::version(5, 2, b"old", true);
        let new = testing::version(10, 2, b"new", true);
        give(&nodes, &holders, &new, 0..6);
        give(&nodes, &holders, &old, 1..2);
        let found = lookup(&cluster, &BUCKET, KEY, None, Ask::Quorum).await;
        let found = found.unwrap().unwrap();
        assert_eq!(found.record.version, new[0].0.version);
        assert_eq!(slots(&found), [0, 2]);
        assert_eq!(found.stale, [1]);
    }

    #[tokio::test]
    async fn an_unfinished_write_in_files_is_finished_by_reading_every_holder() {
        let (nodes, cluster, holders) = setup();
        // The new version's files are on every holder, but only two committed its record.
        let old = testing::version(5, 4, &[1; 5000], false);
        let new = testing::version(10, 4, &[2; 5000], false);
        give(&nodes, &holders, &new, 0..2);
        give(&nodes, &holders, &old, 2..6);
        let found = lookup(&cluster, &BUCKET, KEY, None, Ask::Quorum).await;
        let found = found.unwrap().unwrap();
        assert_eq!(found.record.version, new[0].0.version);
        assert_eq!(found.stale, [2, 3, 4, 5]);
        assert_eq!(slots(&found), [0, 1, 2, 3, 4, 5]);
        assert!(found
            .sources
            .iter()
            .all(|s| s.record.version == new[0].0.version));
    }

    /// An inline version that only the holders of slots 0 and 1 committed, over `old`, which they
    /// still keep and the others have.
    fn unfinished_inline(nodes: &Nodes, holders: &[String]) -> [Vec<(ObjectRecord, Bytes)>; 2] {
        let old = testing::version(5, 4, b"old bytes", true);
        let new = testing::version(10, 4, b"new bytes", true);
        give(nodes, holders, &old, 2..6);
        for slot in 0..2 {
            let node = Node {
                record: Some(new[slot].0.clone()),
                before: Some(old[slot].0.clone()),
                ..Node::default()
            };
            nodes.set(&holders[slot], node);
        }
        [old, new]
    }

    /// Lets the undo the lookup may have started run to its end.
    async fn settle() {
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    #[tokio::test]
    async fn an_inline_write_on_fewer_than_k_holders_goes_back_and_is_undone() {
        let (nodes, cluster, holders) = setup();
        let [old, _] = unfinished_inline(&nodes, &holders);
        let found = lookup(&cluster, &BUCKET, KEY, None, Ask::Quorum).await;
        let found = found.unwrap().unwrap();
        assert_eq!(
            found.record.version, old[0].0.version,
            "the version it replaced"
        );
        assert_eq!(slots(&found), [0, 1, 2, 3, 4, 5]);
        assert!(
            found.stale.is_empty(),
            "nothing is repaired over the newer version"
        );
        settle().await;
        assert_eq!(
            count(&nodes, "hints"),
            6,
            "every node was asked for pending hints"
        );
        let undone: Vec<String> = nodes
            .calls()
            .into_iter()
            .filter(|c| c.starts_with("undo "))
            .collect();
        assert_eq!(
            undone,
            [
                format!("undo {}", holders[0]),
                format!("undo {}", holders[1])
            ]
        );
    }

    #[tokio::test]
    async fn a_pending_hint_anywhere_holds_the_undo_back() {
        let (nodes, cluster, holders) = setup();
        let [old, _] = unfinished_inline(&nodes, &holders);
        let mut keeping = nodes.nodes.lock().unwrap()[&holders[4]].clone();
        keeping.hints = 1;
        nodes.set(&holders[4], keeping);
        let found = lookup(&cluster, &BUCKET, KEY, None, Ask::Quorum).await;
        assert_eq!(found.unwrap().unwrap().record.version, old[0].0.version);
        settle().await;
        assert_eq!(count(&nodes, "undo"), 0);
    }

    #[tokio::test]
    async fn a_version_asked_for_by_id_is_never_gone_back_from() {
        let (nodes, cluster, holders) = setup();
        let [_, new] = unfinished_inline(&nodes, &holders);
        let which = Some(new[0].0.version_ref());
        let found = lookup(&cluster, &BUCKET, KEY, which, Ask::Quorum).await;
        let found = found.unwrap().unwrap();
        assert_eq!(found.record.version, new[0].0.version);
        settle().await;
        assert_eq!(count(&nodes, "undo") + count(&nodes, "before"), 0);
    }

    /// The nodes of the holders of `behind` are behind, the holder of slot `s - 2` keeping
    /// each one's hints (node i listens on port i + 1).
    fn fall_behind(cluster: &Cluster, holders: &[String], behind: Range<usize>) {
        let mut keepers = vec![Vec::new(); 6];
        for slot in behind {
            keepers[node_id(&holders[slot])].push(node_id(&holders[slot - 2]));
        }
        cluster
            .liveness
            .finish_round(cluster.liveness.now(), keepers);
    }

    #[tokio::test]
    async fn inline_fragments_kept_as_hints_count_for_holders_that_are_behind() {
        let (nodes, cluster, holders) = setup();
        let [_, new] = unfinished_inline(&nodes, &holders);
        fall_behind(&cluster, &holders, 2..4);
        for slot in 2..4 {
            let mut keeper = nodes.nodes.lock().unwrap()[&holders[slot - 2]].clone();
            keeper
                .hinted
                .insert(format!("n{}", node_id(&holders[slot])), new[slot].0.clone());
            nodes.set(&holders[slot - 2], keeper);
        }
        let found = lookup(&cluster, &BUCKET, KEY, None, Ask::Quorum).await;
        let found = found.unwrap().unwrap();
        assert_eq!(
            found.record.version, new[0].0.version,
            "acknowledged with hints"
        );
        assert_eq!(slots(&found), [0, 1, 2, 3]);
        settle().await;
        assert_eq!(count(&nodes, "undo") + count(&nodes, "before"), 0);
    }

    #[tokio::test]
    async fn a_version_that_holders_behind_lack_is_not_taken_for_unfinished() {
        let (nodes, cluster, holders) = setup();
        let [_, new] = unfinished_inline(&nodes, &holders);
        // Two of the four holders without it may yet be handed it: only two lack it for sure,
        // and a version on four of six may have been acknowledged.
        fall_behind(&cluster, &holders, 2..4);
        let found = lookup(&cluster, &BUCKET, KEY, None, Ask::Quorum).await;
        let found = found.unwrap().unwrap();
        assert_eq!(found.record.version, new[0].0.version);
        settle().await;
        assert_eq!(count(&nodes, "undo"), 0);
    }

    /// The node number in `addr` (node i listens on port i + 1).
    fn node_id(addr: &str) -> usize {
        addr.rsplit(':').next().unwrap().parse::<usize>().unwrap() - 1
    }

    fn node() -> NodeInfo {
        NodeInfo {
            id: "n".into(),
            zone: "z".into(),
            addr: "127.0.0.1:1".into(),
            weight: 100,
        }
    }

    /// A live record of `micros`, coded with k = `data_shards`.
    fn record(micros: u64, data_shards: u8) -> ObjectRecord {
        ObjectRecord {
            deleted: false,
            data_shards,
            parity_shards: 6 - data_shards,
            ..ObjectRecord::tombstone(Version { micros, salt: 0 }, false)
        }
    }

    fn answers<'a>(
        node: &'a NodeInfo,
        records: &[Option<ObjectRecord>],
    ) -> Vec<(Holder<'a>, Option<ObjectRecord>)> {
        records
            .iter()
            .enumerate()
            .map(|(slot, r)| {
                let holder = Holder {
                    node,
                    slot: slot as u8,
                    hint_for: None,
                };
                (holder, r.clone())
            })
            .collect()
    }

    #[test]
    fn the_newest_version_and_revision_wins() {
        let node = node();
        let mut retagged = record(10, 4);
        retagged.revision = 1;
        let got = answers(
            &node,
            &[
                Some(record(10, 4)),
                None,
                Some(retagged),
                Some(record(5, 4)),
            ],
        );
        let stamp = newest(&got).map(ObjectRecord::stamp);
        assert_eq!(
            stamp,
            Some((
                Version {
                    micros: 10,
                    salt: 0
                },
                1
            ))
        );
    }

    #[test]
    fn an_erasure_coded_version_needs_k_holders_and_a_copy_one() {
        let node = node();
        let coded = answers(
            &node,
            &[Some(record(10, 4)), Some(record(10, 4)), Some(record(5, 4))],
        );
        assert_eq!(lacking(&coded), 2);
        assert!(!readable(&coded));
        let copy = answers(&node, &[Some(record(10, 1)), Some(record(5, 1))]);
        assert_eq!(lacking(&copy), 0);
        assert!(readable(&copy));
        let deleted = answers(
            &node,
            &[Some(ObjectRecord::tombstone(
                Version { micros: 9, salt: 0 },
                false,
            ))],
        );
        assert!(readable(&deleted));
        assert!(readable(&answers(&node, &[None, None])));
    }

    #[test]
    fn a_short_read_asks_enough_more_holders() {
        let node = node();
        // Nothing yet and nothing pending: a read quorum of 2.
        assert_eq!(shortfall(&[], 0, 2), 2);
        // One copy answered, one pending: enough if it answers.
        let copy = answers(&node, &[Some(record(10, 1))]);
        assert_eq!(shortfall(&copy, 1, 2), 0);
        // Coded version on one holder, one pending: three more records of it are still needed.
        let coded = answers(&node, &[Some(record(10, 4)), None]);
        assert_eq!(shortfall(&coded, 1, 2), 2);
    }

    #[test]
    fn only_a_version_fewer_than_k_can_have_is_never_acknowledged() {
        // 4+2: a version that three holders lack is on at most three, fewer than any quorum.
        assert!(never_acknowledged(3, 6, 4));
        assert!(!never_acknowledged(2, 6, 4));
        // A small object coded 2+4: when five holders lack it, one at most has it.
        assert!(never_acknowledged(5, 6, 2));
        assert!(!never_acknowledged(4, 6, 2));
        // A whole copy (k = 1, written by earlier releases) only when every holder lacks it.
        assert!(!never_acknowledged(5, 6, 1));
        assert!(never_acknowledged(6, 6, 1));
    }
}
