//! The read path: find the newest version among a read quorum of holders, then stream the asked
//! range stripe by stripe from k fragments (data fragments first, so no decoding in the common
//! case), swapping in another holder's fragment whenever one is missing, slow to fail, or corrupt.

use crate::cluster::{Cluster, Holder};
use crate::error::S3Error;
use crate::frame::Frame;
use bytes::{Bytes, BytesMut};
use erasure::{Codec, StripeLayout};
use futures::future::join_all;
use futures::stream::{FuturesUnordered, StreamExt};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use storage_node::body::{ChannelBody, HttpBody};
use storage_node::client::{FragmentBody, NodeClient};
use storage_node::protocol::{Lookup, UndoRequest};
use storage_node::record::{BucketId, ObjectRecord, VersionRef};
use storage_node::RpcError;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc::Sender;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Decoded chunks queued ahead of a slow client, each at most one block (or one stripe, when it
/// had to be rebuilt).
const CHUNK_DEPTH: usize = 8;
/// How long a stripe's reads may take before one more holder is asked beside them. Well above a
/// healthy frame read (under a few ms here), well below the node timeout.
const HEDGE_AFTER: Duration = Duration::from_millis(150);
/// How long the first holders asked for a record may take before the others are asked too. Above
/// a record read under full load here (a few ms), far below the node timeout.
const LOOKUP_HEDGE: Duration = Duration::from_millis(20);

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
    /// the response instead of asking those holders again.
    pub late: JoinHandle<Vec<Answer>>,
    pub target: Target,
    /// Fragment files of the first part that holders sent along with their records (see
    /// `lookup_to_read`): fragment slot, length, and the stream of it, taken by the first read.
    prefetched: Mutex<Vec<(u8, u64, FragmentStream)>>,
}

impl Found {
    /// The codec of the version's layout (see `ObjectRecord::codec`).
    pub fn codec(&self) -> Result<Codec, S3Error> {
        self.record
            .codec()
            .map_err(|e| S3Error::Internal(format!("the record's layout: {e}")))
    }

    /// The stream of fragment `slot` of the first part that came with the lookup, if it covers
    /// exactly `[0, len)`.
    fn take_prefetched(&self, slot: u8, len: u64) -> Option<FragmentStream> {
        let mut prefetched = self.prefetched.lock().unwrap_or_else(|p| p.into_inner());
        let at = prefetched
            .iter()
            .position(|(s, l, _)| *s == slot && *l == len)?;
        Some(prefetched.swap_remove(at).2)
    }
}

/// One holder's answer for a key's record, by fragment slot.
type Answer = (u8, Result<Lookup, RpcError>);

#[derive(Clone)]
pub struct Source {
    pub addr: String,
    pub fragment: u8,
    pub record: ObjectRecord,
}

/// Reads one version of a key (`which`; `None`: the current one) from its holders. Asks the data
/// fragments' holders first (their inline fragments need no decoding), as many as a read needs:
/// a read quorum when small objects are kept as whole copies (one copy serves the read), else
/// k. Asks more only when those answers cannot serve the read (a holder failed, missed the newest
/// version, or is known to be down; or the newest version is erasure-coded and needs k), and all
/// the others when the first are not all in after `LOOKUP_HEDGE`. Returns as soon as a read
/// quorum has answered and as many of the answers as the newest version's k carry its record, so
/// a slow or paused holder does not hold up the request. `Ok(None)`: no such
/// version, or one that a holder knows was deleted for good. A delete marker comes back as found.
pub async fn lookup(
    cluster: &Cluster,
    bucket: &BucketId,
    key: &str,
    which: Option<VersionRef>,
) -> Result<Option<Found>, S3Error> {
    lookup_with(cluster, bucket, key, which, Wait::Enough).await
}

/// `lookup` for a read of the whole object: the data holders also send their fragment files of
/// the first part along with their records (objects up to 16 MiB), which saves the stream's
/// first round trip to each of them.
pub async fn lookup_to_read(
    cluster: &Cluster,
    bucket: &BucketId,
    key: &str,
    which: Option<VersionRef>,
) -> Result<Option<Found>, S3Error> {
    find(cluster, bucket, key, which, Wait::Enough, true).await
}

/// How many holders' answers a lookup waits for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// A read quorum with k records of the newest version: enough to read it.
    Enough,
    /// Every holder's (or its timeout): also sees a newer version that fewer than k holders
    /// have, an unfinished write, so that healing finishes or undoes it.
    Everyone,
}

/// `lookup`, waiting for as many answers as `wait` says.
pub async fn lookup_with(
    cluster: &Cluster,
    bucket: &BucketId,
    key: &str,
    which: Option<VersionRef>,
    wait: Wait,
) -> Result<Option<Found>, S3Error> {
    find(cluster, bucket, key, which, wait, false).await
}

/// `lookup_with`; with `fragments`, the holders asked first send their first part's fragment
/// files too.
async fn find(
    cluster: &Cluster,
    bucket: &BucketId,
    key: &str,
    which: Option<VersionRef>,
    wait: Wait,
    fragments: bool,
) -> Result<Option<Found>, S3Error> {
    let holders = cluster.holders(bucket, key);
    // Owned futures, so that the answers not waited for can finish in the background: dropping
    // them would also close their pooled connections mid-request.
    let ask = |h: &Holder<'_>, fragments: bool| {
        let (client, addr, key) = (cluster.client.clone(), h.node.addr.clone(), key.to_string());
        let (slot, bucket) = (h.fragment, *bucket);
        async move {
            let answer = if fragments {
                client
                    .object_and_fragment(&addr, &bucket, &key, which)
                    .await
            } else {
                let answer = client.object(&addr, &bucket, &key, which).await;
                answer.map(|lookup| (lookup, None))
            };
            (slot, answer)
        }
    };
    let quorum = cluster.read_quorum();
    // Holders in fragment order, those known to be down last: the first are asked at once.
    let mut order: Vec<&Holder<'_>> = holders.iter().collect();
    order.sort_by_key(|h| !cluster.is_up(h.node));
    let mut waiting: VecDeque<&Holder<'_>> = order.into();
    let first = match wait {
        Wait::Enough if cluster.small_copies => quorum.min(holders.len()),
        Wait::Enough => cluster.layout.data_shards().max(quorum).min(holders.len()),
        Wait::Everyone => holders.len(),
    };
    let mut pending: FuturesUnordered<_> =
        waiting.drain(..first).map(|h| ask(h, fragments)).collect();
    let hedge = tokio::time::sleep(LOOKUP_HEDGE);
    tokio::pin!(hedge);
    let mut answered = Vec::new();
    let mut purged = BTreeSet::new();
    let mut prefetched = Vec::new();
    let everyone = wait == Wait::Everyone;
    while answered.len() < quorum || !readable(&answered) || (everyone && !pending.is_empty()) {
        let short = shortfall(&answered, pending.len(), quorum).min(waiting.len());
        pending.extend(waiting.drain(..short).map(|h| ask(h, fragments)));
        tokio::select! {
            next = pending.next() => {
                let Some((slot, answer)) = next else { break };
                if let Ok((lookup, fragment)) = answer {
                    purged.extend(lookup.purged);
                    let sent = lookup.record.as_ref().zip(lookup.fragment_len).zip(fragment);
                    if let Some(((record, len), (body, chunk))) = sent {
                        let stream = FragmentStream::Remote { body, chunk };
                        prefetched.push((record.version, record.fragment, len, stream));
                    }
                    answered.push((holders[slot as usize], lookup.record));
                }
            }
            () = &mut hedge, if !waiting.is_empty() => {
                pending.extend(waiting.drain(..).map(|h| ask(h, false)));
            }
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
        pending.extend(waiting.drain(..).map(|h| ask(h, false)));
    }
    // A fragment file sent along by a late answer is dropped as it comes: nothing reads it.
    let late = tokio::spawn(
        pending
            .map(|(slot, answer)| (slot, answer.map(|(lookup, _)| lookup)))
            .collect::<Vec<_>>(),
    );
    if answered.len() < quorum {
        return Err(S3Error::ServiceUnavailable(format!(
            "{} of {} holders answered; {} needed",
            answered.len(),
            holders.len(),
            quorum
        )));
    }
    // A version some holder purged is gone, even where a holder that missed the purge has it.
    for (_, record) in answered.iter_mut() {
        if record.as_ref().is_some_and(|r| purged.contains(&r.version)) {
            *record = None;
        }
    }
    let Some(newest) = newest(&answered).cloned() else {
        return Ok(None);
    };
    let answered_slots: Vec<u8> = answered.iter().map(|(h, _)| h.fragment).collect();
    let unasked = holders
        .iter()
        .filter(|h| !answered_slots.contains(&h.fragment))
        .map(|h| (h.node.addr.clone(), h.fragment))
        .collect();
    let mut sources = Vec::new();
    let mut stale = Vec::new();
    let mut older = Vec::new();
    for (holder, record) in answered {
        match record {
            Some(record) if record.version == newest.version => sources.push(Source {
                addr: holder.node.addr.clone(),
                fragment: record.fragment,
                record,
            }),
            other => {
                stale.push(holder.fragment);
                older.extend(other.map(|record| (holder, record)));
            }
        }
    }
    let prefetched = prefetched
        .into_iter()
        .filter(|(version, ..)| *version == newest.version)
        .map(|(_, slot, len, stream)| (slot, len, stream))
        .collect();
    let found = Found {
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
            record.fragment = slot;
            found.sources.push(Source {
                addr: holders[slot as usize].node.addr.clone(),
                fragment: slot,
                record,
            });
        }
        return found;
    }
    let k = found.record.data_shards as usize;
    let Some(previous) = older.iter().map(|(_, r)| r).max_by_key(|r| r.stamp()) else {
        return found;
    };
    if found.target.version.is_some() || found.stale.len() < holders.len() + 1 - k {
        return found;
    }
    let unfinished = found.record.version;
    let asked = found.sources.iter().map(|s| {
        let (client, addr, target) = (&cluster.client, s.addr.clone(), &found.target);
        async move {
            let answer = client
                .object_before(&addr, &target.bucket, &target.key, unfinished)
                .await;
            (addr, answer.ok().and_then(|lookup| lookup.record))
        }
    });
    let kept = join_all(asked).await;
    let sources: Vec<Source> = older
        .iter()
        .map(|(h, record)| (h.node.addr.clone(), record.clone()))
        .chain(kept.into_iter().filter_map(|(addr, r)| Some((addr, r?))))
        .filter(|(_, record)| record.version == previous.version)
        .map(|(addr, record)| Source {
            addr,
            fragment: record.fragment,
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
            cluster.client.clone(),
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
        late: tokio::spawn(async { Vec::new() }),
        target: found.target,
        prefetched: Mutex::default(),
    }
}

/// Undoes an unfinished inline write on the holders that have it, unless a hint is pending
/// anywhere: a holder that was down may be about to receive that version from a substitute, and
/// with it a write quorum. Each holder also refuses while its writer could still be committing.
async fn undo_when_settled(
    client: NodeClient,
    nodes: Vec<String>,
    holding: Vec<String>,
    undo: UndoRequest,
) {
    for addr in &nodes {
        match client.health(addr).await {
            Ok(health) if health.hints == 0 => {}
            _ => return,
        }
    }
    for addr in holding {
        match client.undo(&addr, &undo).await {
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

/// Streams object bytes `[start, end]` (inclusive) as a response body, once the first of them are
/// read: a read that cannot start is an error the caller can answer with a status. A failure
/// part-way through ends the body with an error, so the client sees a broken transfer rather than
/// short data. Afterwards, holders found stale, missing a fragment or holding a corrupt one are
/// repaired in the background.
pub async fn stream(
    cluster: Arc<Cluster>,
    found: Found,
    start: u64,
    end: u64,
) -> Result<HttpBody, S3Error> {
    let codec = found.codec()?;
    let len = end + 1 - start;
    let (tx, body) = ChannelBody::new(CHUNK_DEPTH, Some(len));
    let (started, first) = oneshot::channel();
    tokio::spawn(async move {
        let mut found = found;
        let mut tx = Out {
            tx,
            started: Some(started),
        };
        let mut bad = BTreeSet::new();
        let mut offset = 0u64;
        for (index, part) in found.record.parts.iter().enumerate() {
            let (part_start, part_end) = (offset, offset + part.size);
            offset = part_end;
            if part_end <= start || part_start > end || part.size == 0 {
                continue;
            }
            let local = (
                start.max(part_start) - part_start,
                end.min(part_end - 1) - part_start,
            );
            let reader = PartReader::new(&cluster, &codec, &found, index);
            let sent = reader.send_range(local.0, local.1, &mut tx, &mut bad).await;
            if let Err(e) = sent {
                tx.fail(e).await;
                break;
            }
        }
        drop(tx);
        bad.extend(found.stale.iter().copied());
        bad.extend(stale_late(&mut found).await);
        if !bad.is_empty() {
            let slots: Vec<u8> = bad.into_iter().collect();
            match crate::repair::repair(&cluster, &found, &slots).await {
                Ok(bytes) => tracing::info!(key = %found.target.key, ?slots, bytes, "read repair"),
                Err(e) => {
                    tracing::warn!(key = %found.target.key, ?slots, error = %e, "read repair failed")
                }
            }
        }
    });
    // No answer: the task ended without sending (the client went away).
    first.await.unwrap_or(Ok(()))?;
    Ok(body.boxed())
}

/// The sending end of a read's response body; it also tells `stream`'s caller that the first
/// bytes are ready, or why they never will be.
struct Out {
    tx: Sender<Result<Bytes, std::io::Error>>,
    started: Option<oneshot::Sender<Result<(), S3Error>>>,
}

impl Out {
    /// Sends a chunk; false when the client went away.
    async fn send(&mut self, chunk: Bytes) -> bool {
        if let Some(started) = self.started.take() {
            let _ = started.send(Ok(()));
        }
        self.tx.send(Ok(chunk)).await.is_ok()
    }

    async fn fail(&mut self, e: S3Error) {
        match self.started.take() {
            Some(started) => {
                tracing::warn!(error = %e, "read failed");
                let _ = started.send(Err(e));
            }
            None => {
                tracing::warn!(error = %e, "read failed part-way");
                let _ = self
                    .tx
                    .send(Err(std::io::Error::other(e.to_string())))
                    .await;
            }
        }
    }
}

/// Slots among the holders `find` did not wait for whose record is missing or older: checked
/// after the response, so that read repair also reaches holders that were slow to answer.
async fn stale_late(found: &mut Found) -> Vec<u8> {
    let answers = (&mut found.late).await.unwrap_or_default();
    answers
        .into_iter()
        .filter_map(|(slot, answer)| match answer.map(|lookup| lookup.record) {
            Ok(Some(r)) if r.version >= found.record.version => None,
            Ok(_) => Some(slot),
            Err(_) => None, // down: nothing to repair it with now
        })
        .collect()
}

/// The object a read is for, to repair it afterwards.
#[derive(Clone)]
pub struct Target {
    pub bucket: BucketId,
    pub key: String,
    /// The version asked for; `None`: the current one.
    pub version: Option<VersionRef>,
}

/// Reads the stripes of one part of an object version from its sources.
pub(crate) struct PartReader<'a> {
    cluster: &'a Cluster,
    codec: &'a Codec,
    /// The part's position in each source's record.
    index: usize,
    found: &'a Found,
    pub layout: StripeLayout,
}

impl<'a> PartReader<'a> {
    pub fn new(cluster: &'a Cluster, codec: &'a Codec, found: &'a Found, index: usize) -> Self {
        let part = &found.record.parts[index];
        PartReader {
            cluster,
            codec,
            index,
            found,
            layout: StripeLayout {
                size: part.size,
                data_shards: codec.data_shards(),
                block_size: part.block_size as usize,
            },
        }
    }

    /// Sends the part's bytes `[start, end]`; notes in `bad` the slots that failed to serve.
    async fn send_range(
        &self,
        start: u64,
        end: u64,
        tx: &mut Out,
        bad: &mut BTreeSet<u8>,
    ) -> Result<(), S3Error> {
        let (first, last) = self.layout.stripes_for_range(start, end);
        let mut fetcher = self.fetcher(last);
        for stripe in first..=last {
            let frames = fetcher.frames(stripe).await;
            bad.append(&mut fetcher.bad);
            let pieces = self.stripe_data(stripe, frames?)?;
            let stripe_start = self.layout.data_offset(stripe);
            let from = start.saturating_sub(stripe_start);
            let to = end + 1 - stripe_start;
            let mut at = 0u64;
            for piece in pieces {
                let (lo, hi) = (at, at + piece.len() as u64);
                at = hi;
                let (a, b) = (from.max(lo), to.min(hi));
                if a < b
                    && !tx
                        .send(piece.slice((a - lo) as usize..(b - lo) as usize))
                        .await
                {
                    return Ok(()); // the client went away
                }
            }
        }
        Ok(())
    }

    /// The data of one stripe from frames the fetcher has checked: the data blocks' pieces as they
    /// arrived when all k are there, else the stripe rebuilt.
    fn stripe_data(&self, stripe: u64, frames: Vec<Option<Frame>>) -> Result<Vec<Bytes>, S3Error> {
        let k = self.codec.data_shards();
        if frames[..k].iter().all(Option::is_some) {
            return Ok(frames[..k]
                .iter()
                .flatten()
                .enumerate()
                .flat_map(|(i, f)| f.block_prefix(self.layout.block_data_len(stripe, i)))
                .collect());
        }
        let joined = joined(&frames);
        let refs: Vec<Option<&[u8]>> = joined.iter().map(|f| f.as_deref()).collect();
        let data = self
            .codec
            .rebuild_stripe_data(&self.layout, stripe, &refs)
            .map_err(|e| S3Error::ServiceUnavailable(e.to_string()))?;
        Ok(vec![Bytes::from(data)])
    }

    /// Reads stripes up to `last` (inclusive), in order.
    pub fn fetcher(&self, last: u64) -> Fetcher<'a, '_> {
        let mut spare: Vec<Source> = self.found.sources.clone();
        spare.sort_by_key(|s| s.fragment);
        Fetcher {
            reader: self,
            end_offset: self.layout.frame_offset(last) + self.layout.frame_len(last) as u64,
            active: Vec::new(),
            spare: spare.into(),
            unasked: self.found.unasked.clone().into(),
            again: VecDeque::new(),
            retried: BTreeSet::new(),
            bad: BTreeSet::new(),
        }
    }
}

/// Keeps k verified frame streams open over a run of stripes, replacing any that fail, are
/// corrupt, or stall for longer than the node timeout.
pub(crate) struct Fetcher<'a, 'r> {
    reader: &'r PartReader<'a>,
    end_offset: u64,
    active: Vec<(u8, FragmentStream)>,
    spare: VecDeque<Source>,
    unasked: VecDeque<(String, u8)>,
    /// Sources whose read failed without a corrupt frame (unreachable, stalled, cut off): each is
    /// opened once more when no other source is left. With only k holders up (a zone lost) a
    /// passing stall or a broken pooled connection must not fail the whole read.
    again: VecDeque<Source>,
    retried: BTreeSet<u8>,
    /// Slots that could not serve a valid frame.
    pub bad: BTreeSet<u8>,
}

impl Fetcher<'_, '_> {
    /// One stripe's frames: at least k of them present and hash-verified. A read that fails, is
    /// corrupt or outlasts the node timeout is replaced by another source; when the stripe is not
    /// complete after `HEDGE_AFTER`, one more source is started beside the slow ones (a hedged
    /// read), and the first k good frames win.
    pub async fn frames(&mut self, stripe: u64) -> Result<Vec<Option<Frame>>, S3Error> {
        let reader = self.reader;
        let k = reader.codec.data_shards();
        let read = Read {
            stripe,
            end_offset: self.end_offset,
            len: reader.layout.frame_len(stripe),
            timeout: reader.cluster.timeout,
        };
        let mut frames: Vec<Option<Frame>> = (0..reader.codec.width()).map(|_| None).collect();
        let mut have = 0;
        let mut reads: FuturesUnordered<_> = self
            .active
            .drain(..)
            .map(|(fragment, stream)| read.next(reader, fragment, Start::Stream(stream)))
            .collect();
        let hedge = tokio::time::sleep(HEDGE_AFTER);
        tokio::pin!(hedge);
        let mut hedged = false;
        loop {
            while have + reads.len() < k {
                let source = self.next_source().await.ok_or_else(|| {
                    S3Error::ServiceUnavailable(format!(
                        "only {have} good fragments of {k} needed for stripe {stripe}"
                    ))
                })?;
                reads.push(read.next(reader, source.fragment, Start::Open(source)));
            }
            tokio::select! {
                Some((fragment, stream, frame)) = reads.next() => {
                    let (Some(frame), Some(stream)) = (frame, stream) else {
                        self.bad.insert(fragment);
                        self.retry_later(fragment);
                        continue;
                    };
                    if !frame.is_intact(stripe, fragment) {
                        tracing::warn!(fragment, stripe, "corrupt block found on read");
                        self.bad.insert(fragment);
                        continue;
                    }
                    frames[fragment as usize] = Some(frame);
                    self.active.push((fragment, stream));
                    have += 1;
                    if have >= k {
                        return Ok(frames);
                    }
                }
                () = &mut hedge, if !hedged => {
                    hedged = true;
                    if let Some(source) = self.next_source().await {
                        reads.push(read.next(reader, source.fragment, Start::Open(source)));
                    }
                }
            }
        }
    }

    /// Queues a source whose read failed to be opened again, unless it already was.
    fn retry_later(&mut self, fragment: u8) {
        if !self.retried.insert(fragment) {
            return;
        }
        let sources = &self.reader.found.sources;
        if let Some(source) = sources.iter().find(|s| s.fragment == fragment) {
            self.again.push_back(source.clone());
        }
    }

    /// The next holder to read from: one known to have the version, else one not yet asked, else
    /// one whose read failed, for a second try.
    async fn next_source(&mut self) -> Option<Source> {
        if let Some(source) = self.spare.pop_front() {
            return Some(source);
        }
        let found = self.reader.found;
        while let Some((addr, slot)) = self.unasked.pop_front() {
            let target = &found.target;
            let answer = self
                .reader
                .cluster
                .client
                .object(&addr, &target.bucket, &target.key, target.version)
                .await;
            match answer.map(|lookup| lookup.record) {
                Ok(Some(record)) if record.version == found.record.version => {
                    return Some(Source {
                        addr,
                        fragment: record.fragment,
                        record,
                    })
                }
                _ => {
                    self.bad.insert(slot);
                }
            }
        }
        self.again.pop_front()
    }
}

/// Where a read of one stripe's frame starts: a stream already open, or a source to open.
enum Start {
    Stream(FragmentStream),
    Open(Source),
}

/// One stripe's frame reads: what every read of the stripe shares.
#[derive(Clone, Copy)]
struct Read {
    stripe: u64,
    /// Where the streams opened for this run of stripes end.
    end_offset: u64,
    len: usize,
    timeout: Duration,
}

impl Read {
    /// Opens the source if need be, and reads the stripe's frame; the stream comes back for the
    /// next stripe. `None`s: the source could not be opened, or the stream broke, ended or took
    /// longer than the timeout.
    async fn next(
        self,
        reader: &PartReader<'_>,
        fragment: u8,
        start: Start,
    ) -> (u8, Option<FragmentStream>, Option<Frame>) {
        let stream = match start {
            Start::Stream(stream) => Some(stream),
            Start::Open(source) => self.open(reader, &source).await,
        };
        let Some(mut stream) = stream else {
            return (fragment, None, None);
        };
        let frame = tokio::time::timeout(self.timeout, stream.read_frame(self.len))
            .await
            .ok()
            .flatten();
        (fragment, Some(stream), frame)
    }

    async fn open(self, reader: &PartReader<'_>, source: &Source) -> Option<FragmentStream> {
        let part = source.record.parts.get(reader.index)?;
        let offset = reader.layout.frame_offset(self.stripe);
        if reader.index == 0 && offset == 0 {
            if let Some(stream) = reader
                .found
                .take_prefetched(source.fragment, self.end_offset)
            {
                return Some(stream);
            }
        }
        if let Some(inline) = &part.inline {
            let bytes = Bytes::from(inline.decode().ok()?);
            let range = offset as usize..self.end_offset as usize;
            bytes.get(range.clone())?;
            return Some(FragmentStream::Inline(bytes.slice(range)));
        }
        let body = reader
            .cluster
            .client
            .get_fragment(
                &source.addr,
                &part.fragment_id,
                source.fragment,
                offset,
                self.end_offset - offset,
            )
            .await;
        match body {
            Ok(FragmentBody::Http(body)) => Some(FragmentStream::Remote {
                body,
                chunk: Bytes::new(),
            }),
            Ok(FragmentBody::Raw(io)) => Some(FragmentStream::Raw(io)),
            Err(e) => {
                tracing::warn!(addr = %source.addr, error = %e, "fragment unavailable");
                None
            }
        }
    }
}

/// A fragment's frames, read in order.
enum FragmentStream {
    Inline(Bytes),
    /// `chunk`: what is left of the last piece of the body received.
    Remote {
        body: Incoming,
        chunk: Bytes,
    },
    /// A connection that carries only the fragment's bytes: each frame is read straight into a
    /// buffer of its own.
    Raw(TokioIo<Upgraded>),
}

impl FragmentStream {
    /// The next `len` bytes, or `None` if the stream broke or ended.
    async fn read_frame(&mut self, len: usize) -> Option<Frame> {
        match self {
            FragmentStream::Inline(bytes) => {
                (bytes.len() >= len).then(|| Frame::from(bytes.split_to(len)))
            }
            FragmentStream::Remote { body, chunk } => {
                let mut frame = Frame::default();
                while frame.len() < len {
                    if chunk.is_empty() {
                        if let Ok(data) = body.frame().await?.ok()?.into_data() {
                            *chunk = data;
                        }
                        continue;
                    }
                    let take = (len - frame.len()).min(chunk.len());
                    frame.push(chunk.split_to(take));
                }
                Some(frame)
            }
            FragmentStream::Raw(io) => {
                let mut buf = BytesMut::with_capacity(len);
                let mut frame = (&mut *io).take(len as u64);
                while buf.len() < len {
                    if frame.read_buf(&mut buf).await.ok()? == 0 {
                        return None;
                    }
                }
                Some(Frame::from(buf.freeze()))
            }
        }
    }
}

/// Frames each in one buffer, for decoding.
pub(crate) fn joined(frames: &[Option<Frame>]) -> Vec<Option<Bytes>> {
    frames
        .iter()
        .map(|f| f.as_ref().map(Frame::joined))
        .collect()
}
