//! The read path's second half: stream the asked range of a version `lookup` found, stripe by
//! stripe from k fragments (data fragments first, so no decoding in the common case), swapping in
//! another holder's fragment whenever one is missing, slow to fail, or corrupt.

use crate::ops::cluster::Cluster;
use crate::ops::encryption::{PartCipher, Sse, WrongKey};
use crate::ops::frame::Frame;
use crate::ops::lookup::Found;
use crate::ops::lookup::Source;
use crate::s3::error::S3Error;
use bytes::{Bytes, BytesMut};
use erasure::{Codec, StripeLayout};
use futures::stream::{FuturesUnordered, StreamExt};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use node_rpc::body::{ChannelBody, HttpBody};
use node_rpc::client::FragmentBody;
use node_rpc::record::{BucketId, VersionRef};
use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc::Sender;
use tokio::sync::oneshot;

/// Decoded chunks queued ahead of a slow client, each at most one block (or one stripe, when it
/// had to be rebuilt).
const CHUNK_DEPTH: usize = 8;

/// How long a stripe's reads may take before one more holder is asked beside them. Well above a
/// healthy frame read (under a few ms here), well below the node timeout.
const HEDGE_AFTER: Duration = Duration::from_millis(150);

/// Streams object bytes `[start, end]` (inclusive) as a response body, once the first of them are
/// read: a read that cannot start is an error the caller can answer with a status. A failure
/// part-way through ends the body with an error, so the client sees a broken transfer rather than
/// short data. Afterwards, holders found stale, missing a fragment or holding a corrupt one are
/// repaired in the background. An encrypted object is decrypted with the keys of `sse`.
pub async fn stream(
    cluster: Arc<Cluster>,
    found: Found,
    start: u64,
    end: u64,
    sse: Option<Sse>,
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
            let cipher = match sse.as_ref().map(|sse| sse.open(part)).transpose() {
                Ok(cipher) => cipher,
                Err(WrongKey) => {
                    tx.fail(S3Error::AccessDenied(
                        "the object's key does not open a part",
                    ))
                    .await;
                    break;
                }
            };
            let sent = reader
                .send_range(local.0, local.1, cipher, &mut tx, &mut bad)
                .await;
            if let Err(e) = sent {
                tx.fail(e).await;
                break;
            }
        }
        drop(tx);
        let revised = crate::ops::repair::revise_sources(&cluster, &found).await;
        if revised > 0 {
            tracing::info!(key = %found.target.key, revised, "read repair of records behind");
        }
        bad.extend(found.stale.iter().copied());
        bad.extend(stale_late(&mut found).await);
        if !bad.is_empty() {
            let slots: Vec<u8> = bad.into_iter().collect();
            match crate::ops::repair::repair(&cluster, &found, &slots).await {
                Ok(bytes) => tracing::info!(key = %found.target.key, ?slots, bytes, "read repair"),
                Err(e) => {
                    tracing::warn!(key = %found.target.key, ?slots, error = ?e, "read repair failed")
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
                tracing::warn!(error = ?e, "read failed");
                let _ = started.send(Err(e));
            }
            None => {
                tracing::warn!(error = ?e, "read failed part-way");
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
            layout: part.layout(codec.data_shards()),
        }
    }

    /// Sends the part's bytes `[start, end]`, decrypted when it has a cipher; notes in `bad` the
    /// slots that failed to serve.
    async fn send_range(
        &self,
        start: u64,
        end: u64,
        mut cipher: Option<PartCipher>,
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
                if a >= b {
                    continue;
                }
                let mut chunk = piece.slice((a - lo) as usize..(b - lo) as usize);
                if let Some(cipher) = &mut cipher {
                    chunk = cipher.apply(stripe_start + a, &chunk);
                }
                if !tx.send(chunk).await {
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
        crate::metrics::METRICS.rebuilt_stripes.inc();
        let joined = joined(&frames);
        let refs: Vec<Option<&[u8]>> = joined.iter().map(|f| f.as_deref()).collect();
        let data = self
            .codec
            .rebuild_stripe_data(&self.layout, stripe, &refs)
            .map_err(|e| S3Error::ServiceUnavailable(e.to_string()))?;
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
                let mut record = self.found.record.clone();
                record.fragment = holder.slot;
                keepers.push(Source {
                    addr: nodes[keeper].addr.clone(),
                    fragment: holder.slot,
                    record,
                });
            }
        }
        keepers
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
            keepers: self.keepers().into(),
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
    /// Substitutes keeping hinted fragment files for holders that are behind.
    keepers: VecDeque<Source>,
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
                    crate::metrics::METRICS.quorum_failures.inc();
                    S3Error::ServiceUnavailable(format!(
                        "only {have} good fragments of {k} needed for stripe {stripe}"
                    ))
                })?;
                reads.push(read.next(reader, source.fragment, Start::Open(Box::new(source))));
            }
            tokio::select! {
                Some((fragment, stream, frame)) = reads.next() => {
                    let (Some(frame), Some(stream)) = (frame, stream) else {
                        self.bad.insert(fragment);
                        self.retry_later(fragment);
                        continue;
                    };
                    if !frame.is_intact(reader.layout.frames, stripe, fragment) {
                        tracing::warn!(fragment, stripe, "corrupt block found on read");
                        self.bad.insert(fragment);
                        continue;
                    }
                    // A slot read twice (a hedged read, or a retry, beside the first) counts
                    // once: k frames must be k different slots.
                    if frames[fragment as usize].is_some() {
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
                    crate::metrics::METRICS.hedged_fragment_reads.inc();
                    if let Some(source) = self.next_source().await {
                        reads.push(read.next(reader, source.fragment, Start::Open(Box::new(source))));
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
    /// a substitute keeping a holder's fragment, else one whose read failed, for a second try.
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
        self.keepers.pop_front().or_else(|| self.again.pop_front())
    }
}

/// Where a read of one stripe's frame starts: a stream already open, or a source to open.
enum Start {
    Stream(FragmentStream),
    Open(Box<Source>),
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
                tracing::warn!(addr = %source.addr, error = ?e, "fragment unavailable");
                None
            }
        }
    }
}

/// A fragment's frames, read in order.
pub(super) enum FragmentStream {
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
