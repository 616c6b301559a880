//! The read path's second half: stream the asked range of a version `lookup` found to the client,
//! part by part through the fetch engine (`ops::fetch`), decrypting where it is encrypted; then
//! repair in the background what the read found stale, missing or corrupt (`ops::repair`).

use crate::ops::cluster::Cluster;
use crate::ops::encryption::{PartCipher, Sse, WrongKey};
use crate::ops::error::OpError;
use crate::ops::fetch::PartReader;
use crate::ops::lookup::Found;
use crate::s3::error::S3Error;
use bytes::Bytes;
use node_rpc::body::{ChannelBody, HttpBody};
use std::collections::BTreeSet;
use std::sync::Arc;
use tokio::sync::mpsc::Sender;
use tokio::sync::oneshot;

/// Decoded chunks queued ahead of a slow client, each at most one block (or one stripe, when it
/// had to be rebuilt).
const CHUNK_DEPTH: usize = 8;

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
) -> Result<HttpBody, OpError> {
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
                    let denied = S3Error::AccessDenied("the object's key does not open a part");
                    tx.fail(denied.into()).await;
                    break;
                }
            };
            let sent = send_range(&reader, local.0, local.1, cipher, &mut tx, &mut bad).await;
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
    started: Option<oneshot::Sender<Result<(), OpError>>>,
}

impl Out {
    /// Sends a chunk; false when the client went away.
    async fn send(&mut self, chunk: Bytes) -> bool {
        if let Some(started) = self.started.take() {
            let _ = started.send(Ok(()));
        }
        self.tx.send(Ok(chunk)).await.is_ok()
    }

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
/// slots that failed to serve.
async fn send_range(
    reader: &PartReader<'_>,
    start: u64,
    end: u64,
    mut cipher: Option<PartCipher>,
    tx: &mut Out,
    bad: &mut BTreeSet<u8>,
) -> Result<(), OpError> {
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
                return Ok(()); // the client went away
            }
        }
    }
    Ok(())
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
    use crate::ops::testing::{self, Nodes, BUCKET, KEY};
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn a_version_found_from_listed_records_streams_back_without_a_node_call() {
        let nodes = Arc::new(Nodes::default());
        let cluster = testing::cluster(nodes.clone());
        let holders = testing::holders(&cluster);
        let bytes = b"a small object, inside its records";
        let v = testing::version(10, 2, bytes, true);
        let records = [4, 1].map(|slot| (holders[slot].clone(), v[slot].0.clone()));
        let found = Found::from_records(&cluster, &BUCKET, KEY, None, records.to_vec()).unwrap();
        let end = bytes.len() as u64 - 1;
        let body = stream(Arc::new(cluster), found, 0, end, None)
            .await
            .unwrap();
        assert_eq!(body.collect().await.unwrap().to_bytes(), &bytes[..]);
        assert_eq!(nodes.calls(), Vec::<String>::new());
    }
}
