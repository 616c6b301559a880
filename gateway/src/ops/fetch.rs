//! The fetch engine under reads and repairs: keeps k verified frame streams of one part open
//! over a run of stripes, data fragments first (no decoding in the common case), and swaps in
//! another holder's fragment whenever one is missing, slow, failing or corrupt.

use crate::ops::cluster::Cluster;
use crate::ops::error::OpError;
use crate::ops::fragment_stream::FragmentStream;
use crate::ops::frame::Frame;
use crate::ops::lookup::{Found, Source};
use bytes::Bytes;
use erasure::{Codec, StripeLayout};
use futures::stream::{FuturesUnordered, StreamExt};
use std::borrow::Cow;
use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;

/// How long a stripe's reads may take before one more holder is asked beside them. Well above a
/// healthy frame read (under a few ms here), well below the node timeout.
const HEDGE_AFTER: Duration = Duration::from_millis(150);

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
            layout: part.layout(codec.data_shards()),
        }
    }

    /// The data of one stripe from frames the fetcher has checked: the data blocks' pieces as they
    /// arrived when all k are there, else the stripe rebuilt.
    pub fn stripe_data(
        &self,
        stripe: u64,
        frames: Vec<Option<Frame>>,
    ) -> Result<Vec<Bytes>, OpError> {
        let k = self.codec.data_shards();
        if frames[..k].iter().all(Option::is_some) {
            return Ok(frames[..k]
                .iter()
                .flatten()
                .enumerate()
                .flat_map(|(i, f)| f.block_prefix(self.layout.block_data_len(stripe, i)))
                .collect());
        }
        crate::metrics::METRICS.rebuilt_stripes.inc();
        let joined = joined(&frames);
        let refs: Vec<Option<&[u8]>> = joined.iter().map(|f| f.as_deref()).collect();
        let data = self
            .codec
            .rebuild_stripe_data(&self.layout, stripe, &refs)
            .map_err(|e| OpError::Unavailable(e.to_string()))?;
        Ok(vec![Bytes::from(data)])
    }

    /// Substitutes that keep, as hints, this part's fragment files for holders that are behind
    /// (a node keeps a hinted fragment file under the holder's slot and the file's own name): with
    /// a zone down and the returning holders not yet handed their share, they may hold the only
    /// other copies of fragments the read needs. Inline parts travel in the commits, which only
    /// the holders serve.
    fn keepers(&self) -> Vec<Source> {
        if self.found.record.parts[self.index].inline.is_some() {
            return Vec::new();
        }
        let (cluster, target) = (self.cluster, &self.found.target);
        let nodes = cluster.layout.nodes();
        let mut keepers = Vec::new();
        for holder in cluster.holders(&target.bucket, &target.key) {
            let Some(index) = cluster.node_index(&holder.node.id) else {
                continue;
            };
            for keeper in cluster.liveness.keepers_of(index) {
                keepers.push(self.stand_in(&nodes[keeper].addr, holder.slot));
            }
        }
        keepers
    }

    /// A source of `slot`'s fragment at `addr` whose own record the read does not have: the
    /// version's record with that slot (a part's fragment files share one name).
    fn stand_in(&self, addr: &str, slot: u8) -> Source {
        let mut record = self.found.record.clone();
        record.slot = slot;
        Source {
            addr: addr.to_string(),
            slot,
            record,
        }
    }

    /// Data holders up that the lookup did not wait for, as sources (`stand_in`). The lookup
    /// returns once it has k records, and under load a data holder's often comes in a moment after
    /// a parity holder's: reading that parity fragment instead decodes every stripe of the read (a
    /// sixth of all stripes under 64 MiB GETs at 8 in flight, before these were tried first). A
    /// holder without the fragment fails its read at once, and a slow one is hedged, like any
    /// source.
    fn unheard_data_holders(&self) -> Vec<Source> {
        let (found, k) = (self.found, self.codec.data_shards());
        if found.record.parts[self.index].inline.is_some() {
            return Vec::new();
        }
        let target = &found.target;
        self.cluster
            .holders(&target.bucket, &target.key)
            .into_iter()
            .filter(|h| (h.slot as usize) < k && h.hint_for.is_none())
            .filter(|h| found.unasked.iter().any(|(_, slot)| *slot == h.slot))
            .filter(|h| self.cluster.is_up(h.node))
            .map(|h| self.stand_in(&h.node.addr, h.slot))
            .collect()
    }

    /// Reads stripes up to `last` (inclusive), in order: from the data holders first.
    pub fn fetcher(&self, last: u64) -> Fetcher<'a, '_> {
        // Borrowed: a source's record carries its inline fragments, and copying them for every
        // read showed in small GETs' profiles.
        let mut spare: Vec<Cow<'a, Source>> =
            self.found.sources.iter().map(Cow::Borrowed).collect();
        spare.sort_by_key(|s| s.slot);
        let unheard = self.unheard_data_holders();
        let unasked = (self.found.unasked.iter())
            .filter(|(_, slot)| unheard.iter().all(|s| s.slot != *slot))
            .cloned()
            .collect();
        let parity = spare
            .iter()
            .position(|s| s.slot as usize >= self.codec.data_shards())
            .unwrap_or(spare.len());
        spare.splice(parity..parity, unheard.into_iter().map(Cow::Owned));
        Fetcher {
            reader: self,
            end_offset: self.layout.frame_offset(last) + self.layout.frame_len(last) as u64,
            active: Vec::new(),
            spare: spare.into(),
            unasked,
            keepers: self.keepers().into_iter().map(Cow::Owned).collect(),
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
    spare: VecDeque<Cow<'a, Source>>,
    unasked: VecDeque<(String, u8)>,
    /// Substitutes keeping hinted fragment files for holders that are behind.
    keepers: VecDeque<Cow<'a, Source>>,
    /// Sources whose read failed without a corrupt frame (unreachable, stalled, cut off): each is
    /// opened once more when no other source is left. With only k holders up (a zone lost) a
    /// passing stall or a broken pooled connection must not fail the whole read.
    again: VecDeque<Cow<'a, Source>>,
    retried: BTreeSet<u8>,
    /// Slots that could not serve a valid frame.
    pub bad: BTreeSet<u8>,
}

impl<'a> Fetcher<'a, '_> {
    /// One stripe's frames: at least k of them present and hash-verified. A read that fails, is
    /// corrupt or outlasts the node timeout is replaced by another source; when the stripe is not
    /// complete after `HEDGE_AFTER`, one more source is started beside the slow ones (a hedged
    /// read), and the first k good frames win.
    pub async fn frames(&mut self, stripe: u64) -> Result<Vec<Option<Frame>>, OpError> {
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
            .map(|(slot, stream)| read.next(reader, slot, Start::Stream(stream)))
            .collect();
        let hedge = tokio::time::sleep(HEDGE_AFTER);
        tokio::pin!(hedge);
        let mut hedged = false;
        loop {
            while have + reads.len() < k {
                let source = self.next_source().await.ok_or_else(|| {
                    crate::metrics::METRICS.quorum_failures.inc();
                    OpError::Unavailable(format!(
                        "only {have} good fragments of {k} needed for stripe {stripe}"
                    ))
                })?;
                reads.push(read.next(reader, source.slot, Start::Open(Box::new(source))));
            }
            tokio::select! {
                Some((slot, stream, frame)) = reads.next() => {
                    let (Some(frame), Some(stream)) = (frame, stream) else {
                        self.bad.insert(slot);
                        self.retry_later(slot);
                        continue;
                    };
                    if !frame.is_intact(reader.layout.frames, stripe, slot) {
                        tracing::warn!(slot, stripe, "corrupt block found on read");
                        self.bad.insert(slot);
                        continue;
                    }
                    // A slot read twice (a hedged read, or a retry, beside the first) counts
                    // once: k frames must be k different slots.
                    if frames[slot as usize].is_some() {
                        continue;
                    }
                    frames[slot as usize] = Some(frame);
                    self.active.push((slot, stream));
                    have += 1;
                    if have >= k {
                        return Ok(frames);
                    }
                }
                () = &mut hedge, if !hedged => {
                    hedged = true;
                    crate::metrics::METRICS.hedged_fragment_reads.inc();
                    if let Some(source) = self.next_source().await {
                        reads.push(read.next(reader, source.slot, Start::Open(Box::new(source))));
                    }
                }
            }
        }
    }

    /// Queues a source whose read failed to be opened again, unless it already was.
    fn retry_later(&mut self, slot: u8) {
        if !self.retried.insert(slot) {
            return;
        }
        let found: &'a Found = self.reader.found;
        if let Some(source) = found.sources.iter().find(|s| s.slot == slot) {
            self.again.push_back(Cow::Borrowed(source));
        }
    }

    /// The next holder to read from: one known to have the version, else one not yet asked, else
    /// a substitute keeping a holder's fragment, else one whose read failed, for a second try.
    async fn next_source(&mut self) -> Option<Cow<'a, Source>> {
        if let Some(source) = self.spare.pop_front() {
            return Some(source);
        }
        let found = self.reader.found;
        while let Some((addr, slot)) = self.unasked.pop_front() {
            let target = &found.target;
            let calls = &self.reader.cluster.calls;
            let answer = calls
                .object(&addr, target.bucket, &target.key, target.version)
                .await;
            match answer.map(|lookup| lookup.record) {
                Ok(Some(record)) if record.version == found.record.version => {
                    return Some(Cow::Owned(Source {
                        addr,
                        slot: record.slot,
                        record,
                    }))
                }
                _ => {
                    self.bad.insert(slot);
                }
            }
        }
        self.keepers.pop_front().or_else(|| self.again.pop_front())
    }
}

/// Where a read of one stripe's frame starts: a stream already open, or a source to open.
enum Start<'a> {
    Stream(FragmentStream),
    Open(Box<Cow<'a, Source>>),
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
        slot: u8,
        start: Start<'_>,
    ) -> (u8, Option<FragmentStream>, Option<Frame>) {
        let stream = match start {
            Start::Stream(stream) => Some(stream),
            Start::Open(source) => self.open(reader, &source).await,
        };
        let Some(mut stream) = stream else {
            return (slot, None, None);
        };
        let frame = tokio::time::timeout(self.timeout, stream.read_frame(self.len))
            .await
            .ok()
            .flatten();
        (slot, Some(stream), frame)
    }

    async fn open(self, reader: &PartReader<'_>, source: &Source) -> Option<FragmentStream> {
        let part = source.record.parts.get(reader.index)?;
        let offset = reader.layout.frame_offset(self.stripe);
        if reader.index == 0 && offset == 0 {
            if let Some(stream) = reader.found.take_prefetched(source.slot, self.end_offset) {
                return Some(stream);
            }
        }
        if let Some(inline) = &part.inline {
            let bytes = Bytes::from(inline.decode().ok()?);
            let range = offset as usize..self.end_offset as usize;
            bytes.get(range.clone())?;
            return Some(FragmentStream::Inline(bytes.slice(range)));
        }
        let len = self.end_offset - offset;
        let calls = &reader.cluster.calls;
        let opened = calls
            .fragment(&source.addr, &part.fragment_id, source.slot, offset, len)
            .await;
        opened
            .inspect_err(
                |e| tracing::warn!(addr = %source.addr, error = ?e, "fragment unavailable"),
            )
            .ok()
    }
}

/// Frames each in one buffer, for decoding.
pub(crate) fn joined(frames: &[Option<Frame>]) -> Vec<Option<Bytes>> {
    frames
        .iter()
        .map(|f| f.as_ref().map(Frame::joined))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::lookup::{lookup, Ask};
    use crate::ops::testing::{self, Node, Nodes, BUCKET, KEY};
    use std::sync::Arc;
    use std::time::Instant;

    /// Bytes of three and a half stripes of 4 x 1 KiB.
    fn object() -> Vec<u8> {
        (0..14_000u32).map(|i| (i * 7 % 251) as u8).collect()
    }

    /// Made-up holders of `object()` coded 4+2 in fragment files, each changed by `node`.
    fn holders_of_object(node: impl Fn(usize, Node) -> Node) -> (Arc<Nodes>, Cluster) {
        let nodes = Arc::new(Nodes::default());
        let cluster = testing::cluster(nodes.clone());
        let version = testing::version(10, 4, &object(), false);
        for (slot, addr) in testing::holders(&cluster).iter().enumerate() {
            let (record, file) = version[slot].clone();
            let made = Node {
                record: Some(record),
                fragments: [(slot as u8, file)].into(),
                ..Node::default()
            };
            nodes.set(addr, node(slot, made));
        }
        (nodes, cluster)
    }

    /// Reads the whole object the way a GET does, stripe by stripe; with the slots that failed.
    async fn read_all(cluster: &Cluster) -> Result<(Vec<u8>, BTreeSet<u8>), OpError> {
        let found = lookup(cluster, &BUCKET, KEY, None, Ask::Quorum)
            .await?
            .unwrap();
        let codec = found.codec()?;
        let reader = PartReader::new(cluster, &codec, &found, 0);
        let stripes = reader.layout.stripe_count();
        let mut fetcher = reader.fetcher(stripes - 1);
        let mut out = Vec::new();
        for stripe in 0..stripes {
            let frames = fetcher.frames(stripe).await?;
            for piece in reader.stripe_data(stripe, frames)? {
                out.extend_from_slice(&piece);
            }
        }
        Ok((out, fetcher.bad))
    }

    #[tokio::test]
    async fn a_stalled_fragment_read_is_hedged_with_another_holder() {
        let (_, cluster) = holders_of_object(|slot, node| Node {
            fragment_delay: Duration::from_secs(if slot == 0 { 60 } else { 0 }),
            ..node
        });
        let start = Instant::now();
        let (bytes, bad) = read_all(&cluster).await.unwrap();
        assert!(bytes == object(), "rebuilt with a parity fragment");
        let took = start.elapsed();
        assert!(
            took >= HEDGE_AFTER && took < Duration::from_secs(10),
            "{took:?}"
        );
        assert!(bad.is_empty(), "slow is not bad: {bad:?}");
    }

    #[tokio::test]
    async fn a_data_holder_the_lookup_did_not_wait_for_is_read_before_parity() {
        let slow = Duration::from_millis(60);
        let (nodes, cluster) = holders_of_object(|slot, node| Node {
            delay: if slot == 0 { slow } else { Duration::ZERO },
            ..node
        });
        let holders = testing::holders(&cluster);
        let (bytes, bad) = read_all(&cluster).await.unwrap();
        assert!(bytes == object());
        assert!(bad.is_empty(), "{bad:?}");
        let fragment_reads: BTreeSet<String> = (nodes.calls().into_iter())
            .filter(|c| c.starts_with("fragment "))
            .collect();
        let data_holders: BTreeSet<String> = holders[..4]
            .iter()
            .map(|a| format!("fragment {a}"))
            .collect();
        assert_eq!(
            fragment_reads, data_holders,
            "the slow holder's record came after the lookup returned, its fragment in time"
        );
    }

    #[tokio::test]
    async fn a_corrupt_frame_is_replaced_and_its_slot_noted() {
        let (_, cluster) = holders_of_object(|slot, mut node| {
            if slot == 1 {
                let mut file = node.fragments[&1].to_vec();
                file[100] ^= 1;
                node.fragments.insert(1, file.into());
            }
            node
        });
        let start = Instant::now();
        let (bytes, bad) = read_all(&cluster).await.unwrap();
        assert!(bytes == object());
        assert_eq!(bad, BTreeSet::from([1]));
        assert!(
            start.elapsed() < HEDGE_AFTER,
            "replaced at once, not after the hedge"
        );
    }

    #[tokio::test]
    async fn a_stripe_fewer_than_k_holders_can_serve_fails() {
        let (_, cluster) = holders_of_object(|slot, node| Node {
            down: slot >= 3,
            ..node
        });
        match read_all(&cluster).await {
            Err(OpError::Unavailable(why)) => {
                assert!(why.ends_with("of 4 needed for stripe 0"), "{why}")
            }
            Err(e) => panic!("{e:?}"),
            Ok(_) => panic!("read from three fragments of 4+2"),
        }
    }
}
