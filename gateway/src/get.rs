//! The read path: find the newest version among a read quorum of holders, then stream the asked
//! range stripe by stripe from k fragments (data fragments first, so no decoding in the common
//! case), swapping in another holder's fragment whenever one is missing, slow to fail, or corrupt.

use crate::cluster::{Cluster, Holder};
use crate::error::S3Error;
use bytes::{Bytes, BytesMut};
use erasure::{Codec, StripeLayout, HASH_LEN};
use futures::future::join_all;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::collections::VecDeque;
use std::sync::Arc;
use storage_node::body::{ChannelBody, HttpBody};
use storage_node::record::{BucketId, ObjectRecord};
use tokio::sync::mpsc::Sender;

/// Decoded chunks queued ahead of a slow client, each at most one stripe.
const CHUNK_DEPTH: usize = 2;

/// The newest version of a key and the holders that have it.
pub struct Found {
    pub record: ObjectRecord,
    /// Holders with this exact version, each with its own record (carrying its inline fragments).
    pub sources: Vec<Source>,
}

#[derive(Clone)]
pub struct Source {
    pub addr: String,
    pub fragment: u8,
    pub record: ObjectRecord,
}

/// Reads the key's record from its holders. `Ok(None)`: no live version.
pub async fn find(
    cluster: &Cluster,
    bucket: &BucketId,
    key: &str,
) -> Result<Option<Found>, S3Error> {
    let holders = cluster.holders(bucket, key);
    let answers = join_all(
        holders
            .iter()
            .map(|h| cluster.client.object(&h.node.addr, bucket, key)),
    )
    .await;
    let answered = answers.iter().filter(|a| a.is_ok()).count();
    if answered < cluster.read_quorum() {
        return Err(S3Error::ServiceUnavailable(format!(
            "{answered} of {} holders answered; {} needed",
            holders.len(),
            cluster.read_quorum()
        )));
    }
    let records: Vec<(Holder, ObjectRecord)> = holders
        .into_iter()
        .zip(answers)
        .filter_map(|(h, a)| a.ok().flatten().map(|r| (h, r)))
        .collect();
    let Some(newest) = records
        .iter()
        .map(|(_, r)| r)
        .max_by_key(|r| r.version)
        .cloned()
    else {
        return Ok(None);
    };
    if newest.deleted {
        return Ok(None);
    }
    let sources = records
        .into_iter()
        .filter(|(_, r)| r.version == newest.version)
        .map(|(h, record)| Source {
            addr: h.node.addr.clone(),
            fragment: record.fragment,
            record,
        })
        .collect();
    Ok(Some(Found {
        record: newest,
        sources,
    }))
}

/// Streams object bytes `[start, end]` (inclusive) as a response body. A failure part-way through
/// ends the body with an error, so the client sees a broken transfer rather than short data.
pub fn stream(cluster: Arc<Cluster>, codec: Codec, found: Found, start: u64, end: u64) -> HttpBody {
    let len = end + 1 - start;
    let (tx, body) = ChannelBody::new(CHUNK_DEPTH, Some(len));
    tokio::spawn(async move {
        if len == 0 {
            return;
        }
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
            let reader = PartReader {
                cluster: &cluster,
                codec: &codec,
                index,
                sources: &found.sources,
                layout: StripeLayout {
                    size: part.size,
                    data_shards: codec.data_shards(),
                    block_size: part.block_size as usize,
                },
            };
            if let Err(e) = reader.send_range(local.0, local.1, &tx).await {
                tracing::warn!(error = %e, "read failed part-way");
                let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
                return;
            }
        }
    });
    body.boxed()
}

struct PartReader<'a> {
    cluster: &'a Cluster,
    codec: &'a Codec,
    /// The part's position in each source's record.
    index: usize,
    sources: &'a [Source],
    layout: StripeLayout,
}

type ChunkSender = Sender<Result<Bytes, std::io::Error>>;

impl PartReader<'_> {
    async fn send_range(&self, start: u64, end: u64, tx: &ChunkSender) -> Result<(), S3Error> {
        let (first, last) = self.layout.stripes_for_range(start, end);
        let mut fetcher = Fetcher::new(self, last);
        for stripe in first..=last {
            let frames = fetcher.frames(stripe).await?;
            let refs: Vec<Option<&[u8]>> = frames.iter().map(|f| f.as_deref()).collect();
            let decoded = self
                .codec
                .decode_stripe(&self.layout, stripe, &refs)
                .map_err(|e| S3Error::ServiceUnavailable(e.to_string()))?;
            let stripe_start = self.layout.data_offset(stripe);
            let from = start.saturating_sub(stripe_start) as usize;
            let to = ((end + 1 - stripe_start) as usize).min(decoded.data.len());
            let data = Bytes::from(decoded.data).slice(from..to);
            if tx.send(Ok(data)).await.is_err() {
                return Ok(()); // the client went away
            }
        }
        Ok(())
    }
}

/// Keeps k verified frame streams open over a run of stripes, replacing any that fail.
struct Fetcher<'a, 'r> {
    reader: &'r PartReader<'a>,
    end_offset: u64,
    active: Vec<(u8, FragmentStream)>,
    spare: VecDeque<&'r Source>,
}

impl<'a, 'r> Fetcher<'a, 'r> {
    fn new(reader: &'r PartReader<'a>, last: u64) -> Fetcher<'a, 'r> {
        let mut spare: Vec<&Source> = reader.sources.iter().collect();
        spare.sort_by_key(|s| s.fragment);
        Fetcher {
            reader,
            end_offset: reader.layout.frame_offset(last) + reader.layout.frame_len(last) as u64,
            active: Vec::new(),
            spare: spare.into(),
        }
    }

    /// One stripe's frames: at least k of them present and hash-verified.
    async fn frames(&mut self, stripe: u64) -> Result<Vec<Option<Bytes>>, S3Error> {
        let k = self.reader.codec.data_shards();
        let mut frames = vec![None; self.reader.codec.width()];
        let mut have = 0;
        let mut pending = std::mem::take(&mut self.active);
        loop {
            while have + pending.len() < k {
                let Some(source) = self.spare.pop_front() else {
                    return Err(S3Error::ServiceUnavailable(format!(
                        "only {have} good fragments of {k} needed for stripe {stripe}"
                    )));
                };
                if let Some(stream) = self.open(source, stripe).await {
                    pending.push((source.fragment, stream));
                }
            }
            let len = self.reader.layout.frame_len(stripe);
            let reads = join_all(pending.iter_mut().map(|(_, s)| s.read_frame(len))).await;
            for ((fragment, stream), read) in pending.drain(..).zip(reads) {
                let Some(frame) = read else { continue };
                let (block, hash) = frame.split_at(frame.len() - HASH_LEN);
                if erasure::block_hash(stripe, fragment as usize, block) != hash {
                    tracing::warn!(fragment, stripe, "corrupt block found on read");
                    continue;
                }
                frames[fragment as usize] = Some(frame);
                self.active.push((fragment, stream));
                have += 1;
            }
            if have >= k {
                return Ok(frames);
            }
        }
    }

    async fn open(&self, source: &Source, stripe: u64) -> Option<FragmentStream> {
        let part = source.record.parts.get(self.reader.index)?;
        let offset = self.reader.layout.frame_offset(stripe);
        if let Some(inline) = &part.inline {
            let bytes =
                Bytes::copy_from_slice(inline.get(offset as usize..self.end_offset as usize)?);
            return Some(FragmentStream::Inline(bytes));
        }
        let body = self
            .reader
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
            Ok(body) => Some(FragmentStream::Remote {
                body,
                buf: BytesMut::new(),
            }),
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
    Remote { body: Incoming, buf: BytesMut },
}

impl FragmentStream {
    /// The next `len` bytes, or `None` if the stream broke or ended.
    async fn read_frame(&mut self, len: usize) -> Option<Bytes> {
        match self {
            FragmentStream::Inline(bytes) => (bytes.len() >= len).then(|| bytes.split_to(len)),
            FragmentStream::Remote { body, buf } => {
                while buf.len() < len {
                    let frame = body.frame().await?.ok()?;
                    if let Ok(data) = frame.into_data() {
                        buf.extend_from_slice(&data);
                    }
                }
                Some(buf.split_to(len).freeze())
            }
        }
    }
}
