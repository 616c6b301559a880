//! The read path's second half: stream the asked range of a version `lookup` found to the client,
//! part by part through the fetch engine (`ops::fetch`), decrypting where it is encrypted (a small
//! range held inline in the records is built whole instead); then repair in the background what
//! the read found stale, missing or corrupt (`ops::repair`).

use crate::ops::cluster::Cluster;
use crate::ops::encryption::{PartCipher, Sse, WrongKey};
use crate::ops::error::OpError;
use crate::ops::fetch::PartReader;
use crate::ops::lookup::Found;
use crate::s3::error::S3Error;
use bytes::Bytes;
use erasure::Codec;
use node_rpc::body::{full, ChannelBody, HttpBody};
use node_rpc::record::PartData;
use std::collections::BTreeSet;
use std::sync::Arc;
use tokio::sync::mpsc::Sender;
use tokio::sync::oneshot;

/// Decoded chunks queued ahead of a slow client, each at most one block (or one stripe, when it
/// had to be rebuilt).
const CHUNK_DEPTH: usize = 8;

/// The longest response built whole before it is answered, when every byte of it comes from the
/// records the lookup brought (inline parts): most GETs are of small objects, and building theirs
/// in the request spares each a task, a channel and a wake-up. Bounded because an object of many
/// inline parts can be large; such reads stream like any other.
const WHOLE_MAX: u64 = 256 << 10;

/// Streams object bytes `[start, end]` (inclusive) as a response body, once the first of them are
/// read: a read that cannot start is an error the caller can answer with a status. A failure
/// part-way through ends the body with an error, so the client sees a broken transfer rather than
/// short data. Afterwards, holders found stale, missing a fragment or holding a corrupt one are
/// repaired in the background. An encrypted object is decrypted with the keys of `sse`. A range
/// of at most `WHOLE_MAX` bytes held inline is read whole first instead, and a failure is an error.
pub async fn stream(
    cluster: Arc<Cluster>,
    found: Found,
    start: u64,
    end: u64,
    sse: Option<Sse>,
) -> Result<HttpBody, OpError> {
    let codec = found.codec()?;
    let len = end + 1 - start;
    if len <= WHOLE_MAX && all_inline(&found, start, end) {
        return whole(cluster, &codec, found, start, end, sse).await;
    }
    let (tx, body) = ChannelBody::new(CHUNK_DEPTH, Some(len));
    let (started, first) = oneshot::channel();
    tokio::spawn(async move {
        let mut tx = Out {
            tx,
            started: Some(started),
        };
        let mut bad = BTreeSet::new();
        let sent = send_parts(
            &cluster,
            &codec,
            &found,
            (start, end),
            sse,
            &mut tx,
            &mut bad,
        )
        .await;
        if let Err(e) = sent {
            tx.fail(e).await;
        }
        drop(tx);
        follow_up(&cluster, found, bad).await;
    });
    // No answer: the task ended without sending (the client went away).
    first.await.unwrap_or(Ok(()))?;
    Ok(body.boxed())
}

/// Reads bytes `[start, end]` whole, in the request, and leaves what the read found to repair to
/// a task, if there is any.
async fn whole(
    cluster: Arc<Cluster>,
    codec: &Codec,
    found: Found,
    start: u64,
    end: u64,
    sse: Option<Sse>,
) -> Result<HttpBody, OpError> {
    let mut chunks = Vec::new();
    let mut bad = BTreeSet::new();
    let read = send_parts(
        &cluster,
        codec,
        &found,
        (start, end),
        sse,
        &mut chunks,
        &mut bad,
    )
    .await;
    if needs_follow_up(&found, &bad) {
        tokio::spawn(async move { follow_up(&cluster, found, bad).await });
    }
    read.inspect_err(|e| tracing::warn!(error = ?e, "read failed"))?;
    let bytes = match chunks.as_slice() {
        [one] => one.clone(),
        many => Bytes::from(many.concat()),
    };
    Ok(full(bytes))
}

/// Whether every part that bytes `[start, end]` touch is inline.
fn all_inline(found: &Found, start: u64, end: u64) -> bool {
    parts_in(found, start, end).all(|(_, part, _)| part.inline.is_some())
}

/// The parts of `found` that bytes `[start, end]` touch: each with its index and the range of its
/// own bytes asked for (inclusive).
fn parts_in(
    found: &Found,
    start: u64,
    end: u64,
) -> impl Iterator<Item = (usize, &PartData, (u64, u64))> {
    let mut offset = 0u64;
    (found.record.parts.iter().enumerate()).filter_map(move |(index, part)| {
        let (part_start, part_end) = (offset, offset + part.size);
        offset = part_end;
        if part_end <= start || part_start > end || part.size == 0 {
            return None;
        }
        let local = (
            start.max(part_start) - part_start,
            end.min(part_end - 1) - part_start,
        );
        Some((index, part, local))
    })
}

/// Sends bytes `[start, end]` part by part, decrypted where `sse` says; notes in `bad` the slots
/// that failed to serve.
async fn send_parts(
    cluster: &Cluster,
    codec: &Codec,
    found: &Found,
    (start, end): (u64, u64),
    sse: Option<Sse>,
    tx: &mut impl Sink,
    bad: &mut BTreeSet<u8>,
) -> Result<(), OpError> {
    for (index, part, local) in parts_in(found, start, end) {
        let reader = PartReader::new(cluster, codec, found, index);
        let cipher = match sse.as_ref().map(|sse| sse.open(part)).transpose() {
            Ok(cipher) => cipher,
            Err(WrongKey) => {
                let denied = S3Error::AccessDenied("the object's key does not open a part");
                return Err(denied.into());
            }
        };
        if !send_range(&reader, local.0, local.1, cipher, tx, bad).await? {
            return Ok(()); // the client went away
        }
    }
    Ok(())
}

/// Whether `follow_up` has anything to do after a read that found `bad`.
fn needs_follow_up(found: &Found, bad: &BTreeSet<u8>) -> bool {
    let behind = crate::ops::repair::behind(found).next().is_some();
    behind || !bad.is_empty() || !found.stale.is_empty() || found.late.is_some()
}

/// After a read: commits the newest revision to the sources behind it, and repairs the slots
/// found stale (by the lookup, or by the holders it did not wait for) or bad.
async fn follow_up(cluster: &Cluster, mut found: Found, mut bad: BTreeSet<u8>) {
    let revised = crate::ops::repair::revise_sources(cluster, &found).await;
    if revised > 0 {
        tracing::info!(key = %found.target.key, revised, "read repair of records behind");
    }
    bad.extend(found.stale.iter().copied());
    bad.extend(stale_late(&mut found).await);
    if !bad.is_empty() {
        let slots: Vec<u8> = bad.into_iter().collect();
        match crate::ops::repair::repair(cluster, &found, &slots).await {
            Ok(bytes) => tracing::info!(key = %found.target.key, ?slots, bytes, "read repair"),
            Err(e) => {
                tracing::warn!(key = %found.target.key, ?slots, error = ?e, "read repair failed")
            }
        }
    }
}

/// Where a read's bytes go: a streamed body, or a whole one being built.
trait Sink {
    /// Sends a chunk; false when the client went away.
    async fn send(&mut self, chunk: Bytes) -> bool;
}

impl Sink for Vec<Bytes> {
    async fn send(&mut self, chunk: Bytes) -> bool {
        self.push(chunk);
        true
    }
}

/// The sending end of a read's response body; it also tells `stream`'s caller that the first
/// bytes are ready, or why they never will be.
struct Out {
    tx: Sender<Result<Bytes, std::io::Error>>,
    started: Option<oneshot::Sender<Result<(), OpError>>>,
}

impl Sink for Out {
    async fn send(&mut self, chunk: Bytes) -> bool {
        if let Some(started) = self.started.take() {
            let _ = started.send(Ok(()));
        }
        self.tx.send(Ok(chunk)).await.is_ok()
    }
}

impl Out {
    async fn fail(&mut self, e: OpError) {
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

/// Sends bytes `[start, end]` of `reader`'s part, decrypted when it has a cipher; notes in `bad` the
/// slots that failed to serve. False when the client went away.
async fn send_range(
    reader: &PartReader<'_>,
    start: u64,
    end: u64,
    mut cipher: Option<PartCipher>,
    tx: &mut impl Sink,
    bad: &mut BTreeSet<u8>,
) -> Result<bool, OpError> {
    let (first, last) = reader.layout.stripes_for_range(start, end);
    let mut fetcher = reader.fetcher(last);
    for stripe in first..=last {
        let frames = fetcher.frames(stripe).await;
        bad.append(&mut fetcher.bad);
        let pieces = reader.stripe_data(stripe, frames?)?;
        let stripe_start = reader.layout.data_offset(stripe);
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
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// Slots among the holders `find` did not wait for whose record is missing or older: checked
/// after the response, so that read repair also reaches holders that were slow to answer.
async fn stale_late(found: &mut Found) -> Vec<u8> {
    let answers = match found.late.as_mut() {
        Some(late) => late.await.unwrap_or_default(),
        None => Vec::new(),
    };
    answers
        .into_iter()
        .filter_map(|(slot, answer)| match answer.map(|lookup| lookup.record) {
            Ok(Some(r)) if r.version >= found.record.version => None,
            Ok(_) => Some(slot),
            Err(_) => None, // down: nothing to repair it with now
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::lookup::{lookup, Ask};
    use crate::ops::testing::{self, Nodes, BUCKET, KEY};
    use http_body_util::BodyExt;
    use node_rpc::record::{Inline, ObjectRecord};
    use std::time::Duration;
    use tokio::net::TcpListener;

    /// Reads bytes `[start, end]` of a version found from the records of `slots`, each as
    /// `alter` leaves it.
    async fn read(
        bytes: &[u8],
        slots: &[usize],
        (start, end): (u64, u64),
        alter: impl Fn(usize, &mut ObjectRecord),
    ) -> (Result<Bytes, OpError>, Arc<Nodes>) {
        let nodes = Arc::new(Nodes::default());
        let cluster = testing::cluster(nodes.clone());
        let holders = testing::holders(&cluster);
        let v = testing::version(10, 2, bytes, true);
        let records = (slots.iter()).map(|&slot| {
            let mut record = v[slot].0.clone();
            alter(slot, &mut record);
            (holders[slot].clone(), record)
        });
        let found = Found::from_records(&cluster, &BUCKET, KEY, None, records.collect()).unwrap();
        let body = stream(Arc::new(cluster), found, start, end, None).await;
        let read = match body {
            Ok(body) => Ok(body.collect().await.unwrap().to_bytes()),
            Err(e) => Err(e),
        };
        (read, nodes)
    }

    fn object(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[tokio::test]
    async fn a_version_found_from_listed_records_reads_back_without_a_node_call() {
        let bytes = b"a small object, inside its records";
        let end = bytes.len() as u64 - 1;
        let (read, nodes) = read(bytes, &[4, 1], (0, end), |_, _| ()).await;
        assert_eq!(read.unwrap(), &bytes[..]);
        assert_eq!(nodes.calls(), Vec::<String>::new());
    }

    #[tokio::test]
    async fn a_small_read_past_a_corrupt_inline_fragment_is_rebuilt_from_another() {
        let bytes = object(5000);
        let corrupt = |slot, record: &mut ObjectRecord| {
            if slot == 0 {
                let part = &mut record.parts[0];
                let mut fragment = part.inline.as_ref().unwrap().decode().unwrap();
                fragment[10] ^= 1;
                part.inline = Some(Inline::encode(&fragment));
            }
        };
        for (start, end) in [(0, 4999), (1000, 3500), (4999, 4999)] {
            let (read, _) = read(&bytes, &[0, 1, 2], (start, end), corrupt).await;
            assert!(read.unwrap() == bytes[start as usize..=end as usize]);
        }
    }

    #[tokio::test]
    async fn a_small_read_with_fewer_than_k_good_fragments_fails_before_any_byte() {
        let bytes = object(5000);
        let corrupt = |slot, record: &mut ObjectRecord| {
            if slot == 0 {
                record.parts[0].inline = Some(Inline::encode(b"not the fragment"));
            }
        };
        let (read, _) = read(&bytes, &[0, 1], (0, 4999), corrupt).await;
        assert!(matches!(read, Err(OpError::Unavailable(_))), "{read:?}");
    }

    #[tokio::test]
    async fn a_small_read_that_meets_a_stale_holder_repairs_it() {
        let mut listeners = Vec::new();
        for _ in 0..6 {
            listeners.push(TcpListener::bind("127.0.0.1:0").await.unwrap());
        }
        let addrs: Vec<String> = (listeners.iter())
            .map(|l| l.local_addr().unwrap().to_string())
            .collect();
        let nodes = Arc::new(Nodes::default());
        let cluster = testing::cluster_at(&addrs, nodes.clone());
        let holders = testing::holders(&cluster);
        let (old, new) = (testing::version(5, 2, b"old", true), object(3000));
        let versions = testing::version(10, 2, &new, true);
        for (slot, addr) in holders.iter().enumerate() {
            let version = if slot == 1 { &old } else { &versions };
            let record = Some(version[slot].0.clone());
            nodes.set(
                addr,
                testing::Node {
                    record,
                    ..Default::default()
                },
            );
        }
        let found = lookup(&cluster, &BUCKET, KEY, None, Ask::Quorum).await;
        let found = found.unwrap().unwrap();
        assert_eq!(found.stale, [1]);
        let body = stream(Arc::new(cluster), found, 0, 2999, None)
            .await
            .unwrap();
        assert!(body.collect().await.unwrap().to_bytes() == new);
        // Read repair commits the version to that holder, over the network.
        let stale = &listeners[addrs.iter().position(|a| *a == holders[1]).unwrap()];
        let repair = tokio::time::timeout(Duration::from_secs(10), stale.accept()).await;
        assert!(repair.is_ok(), "no read repair reached the stale holder");
    }

    #[tokio::test]
    async fn an_inline_range_longer_than_whole_max_streams() {
        let bytes = object(WHOLE_MAX as usize + 5000);
        let end = bytes.len() as u64 - 1;
        for range in [(0, end), (3, end - 3), (0, WHOLE_MAX - 1)] {
            let (read, nodes) = read(&bytes, &[1, 5], range, |_, _| ()).await;
            assert!(read.unwrap() == bytes[range.0 as usize..=range.1 as usize]);
            assert_eq!(nodes.calls(), Vec::<String>::new());
        }
    }
}
