//! The write path: stream an upload through MD5, the client's checksum and the erasure encoder in
//! one pass, fan the frames out to the holders, and commit once a write quorum has them durable.

use crate::checksum::{Algorithm, Digests, Expected, Verified};
use crate::cluster::{Cluster, Holder};
use crate::error::S3Error;
use crate::payload::PayloadReader;
use bytes::Bytes;
use erasure::{Codec, StripeLayout};
use futures::future::join_all;
use std::future::Future;
use storage_node::body::ChannelBody;
use storage_node::record::{Inline, PartData};
use storage_node::RpcError;
use tokio::sync::mpsc::Sender;

/// Frames buffered per holder while the slowest holder catches up: bounds a request's memory to
/// about `(k+m) * FRAME_DEPTH` blocks.
const FRAME_DEPTH: usize = 4;

/// Where one part goes and how it is cut.
pub struct PartPlan<'a> {
    pub holders: &'a [Holder<'a>],
    pub layout: StripeLayout,
    pub number: u32,
    pub fragment_id: String,
    /// Keep the fragments inside the metadata records rather than in files.
    pub inline: bool,
}

/// A part whose fragments are durable on the holders marked in `stored`.
pub struct StoredPart {
    pub data: PartData,
    /// Fragment i, for an inline part.
    pub inline: Option<Vec<Inline>>,
    pub stored: Vec<bool>,
    pub verified: Verified,
}

impl StoredPart {
    /// The part as holder `fragment` records it (with its own inline fragment).
    pub fn for_holder(&self, fragment: usize) -> PartData {
        let mut data = self.data.clone();
        data.inline = self.inline.as_ref().map(|f| f[fragment].clone());
        data
    }
}

/// Reads the whole payload, verifies it against what the client claimed, and stores its fragments.
/// Nothing is left on any holder when the payload fails verification.
pub async fn store_part(
    cluster: &Cluster,
    codec: &Codec,
    plan: PartPlan<'_>,
    payload: &mut PayloadReader,
    expected: &Expected,
) -> Result<StoredPart, S3Error> {
    enough_holders(cluster, plan.holders.len())?;
    let algorithm = expected.algorithm();
    let (inline, stored, verified) = if plan.inline {
        let (fragments, verified) =
            encode_inline(codec, &plan, payload, expected, algorithm).await?;
        let fragments = fragments.iter().map(|f| Inline::encode(f)).collect();
        (Some(fragments), vec![true; plan.holders.len()], verified)
    } else {
        let (stored, verified) =
            stream_to_holders(cluster, codec, &plan, payload, expected, algorithm).await?;
        (None, stored, verified)
    };
    Ok(StoredPart {
        data: PartData {
            number: plan.number,
            size: plan.layout.size,
            md5: hex::encode(verified.md5),
            block_size: plan.layout.block_size as u32,
            fragment_id: plan.fragment_id,
            inline: None,
            checksum: verified.checksum.clone(),
        },
        inline,
        stored,
        verified,
    })
}

async fn encode_inline(
    codec: &Codec,
    plan: &PartPlan<'_>,
    payload: &mut PayloadReader,
    expected: &Expected,
    algorithm: Option<Algorithm>,
) -> Result<(Vec<Vec<u8>>, Verified), S3Error> {
    let mut encoder = codec.encoder(plan.layout);
    let mut digests = Digests::new(algorithm);
    let mut fragments = vec![Vec::new(); codec.width()];
    let mut collect = |_: u64, frames: Vec<Bytes>| {
        for (fragment, frame) in fragments.iter_mut().zip(frames) {
            fragment.extend_from_slice(&frame);
        }
    };
    while let Some(chunk) = payload.next().await? {
        digests.update(&chunk).await;
        encoder.push(&chunk, &mut collect).map_err(size_error)?;
    }
    encoder.finish(&mut collect).map_err(size_error)?;
    let verified = digests
        .verify(expected, checksum_trailer(payload, algorithm))
        .await?;
    Ok((fragments, verified))
}

/// Streams each holder its fragment. The last stripe is held back until the payload has been
/// verified: a holder only commits a fragment file whose every frame arrived, so a failed
/// verification (or a broken client connection) leaves nothing behind.
async fn stream_to_holders(
    cluster: &Cluster,
    codec: &Codec,
    plan: &PartPlan<'_>,
    payload: &mut PayloadReader,
    expected: &Expected,
    algorithm: Option<Algorithm>,
) -> Result<(Vec<bool>, Verified), S3Error> {
    let mut senders = Vec::new();
    let mut uploads = Vec::new();
    for holder in plan.holders {
        let (tx, body) = ChannelBody::new(FRAME_DEPTH, Some(plan.layout.fragment_len()));
        senders.push(Some(tx));
        uploads.push(cluster.client.put_fragment(
            &holder.node.addr,
            &plan.fragment_id,
            holder.fragment,
            plan.layout,
            body.boxed(),
        ));
    }
    let feed = async move {
        let result = feed_holders(
            codec,
            plan,
            payload,
            expected,
            algorithm,
            &mut senders,
            cluster,
        )
        .await;
        if result.is_err() {
            for tx in senders.iter().flatten() {
                let _ = tx.try_send(Err(std::io::Error::other("upload abandoned")));
            }
        }
        result
    };
    // A holder gets the node timeout to confirm its fragment once the last frame is queued; while
    // frames flow, a stalled holder is caught by the timeout on each send instead. (A timeout on
    // the whole upload would fail every large fragment.)
    let (fed_tx, fed_rx) = tokio::sync::watch::channel(false);
    let uploads = uploads.into_iter().map(|upload| {
        let mut fed_rx = fed_rx.clone();
        async move {
            tokio::select! {
                outcome = upload => outcome,
                _ = async {
                    let _ = fed_rx.wait_for(|fed| *fed).await;
                    tokio::time::sleep(cluster.timeout).await;
                } => Err(RpcError::Timeout),
            }
        }
    });
    let feed = async move {
        let result = feed.await;
        let _ = fed_tx.send(true);
        result
    };
    let (verified, outcomes) = tokio::join!(feed, join_all(uploads));
    // Holders that refused (say, with full disks) make the feed give up first: report why.
    let verified = verified.map_err(|e| match e {
        S3Error::ServiceUnavailable(why) => S3Error::quorum_failed(why, &outcomes),
        other => other,
    })?;
    let stored: Vec<bool> = outcomes.iter().map(Result::is_ok).collect();
    let count = stored.iter().filter(|s| **s).count();
    if count < cluster.write_quorum {
        remove_fragments(cluster, plan.holders, &plan.fragment_id, &stored).await;
        let why = format!(
            "{count} of {} holders stored the data; {} needed",
            plan.holders.len(),
            cluster.write_quorum
        );
        return Err(S3Error::quorum_failed(why, &outcomes));
    }
    Ok((stored, verified))
}

/// Feeds every stripe to the holders' channels; the senders are dropped by the caller, which ends
/// the bodies.
async fn feed_holders(
    codec: &Codec,
    plan: &PartPlan<'_>,
    payload: &mut PayloadReader,
    expected: &Expected,
    algorithm: Option<Algorithm>,
    senders: &mut [Option<FrameSender>],
    cluster: &Cluster,
) -> Result<Verified, S3Error> {
    let mut encoder = codec.encoder(plan.layout);
    let mut digests = Digests::new(algorithm);
    let mut held: Option<Vec<Bytes>> = None;
    let mut ready = Vec::new();
    while let Some(chunk) = payload.next().await? {
        digests.update(&chunk).await;
        encoder
            .push(&chunk, &mut |_, frames| ready.push(frames))
            .map_err(size_error)?;
        for frames in ready.drain(..) {
            if let Some(previous) = held.replace(frames) {
                send_stripe(senders, plan.holders, previous, cluster).await?;
            }
        }
    }
    encoder
        .finish(&mut |_, frames| ready.push(frames))
        .map_err(size_error)?;
    let verified = digests
        .verify(expected, checksum_trailer(payload, algorithm))
        .await?;
    for frames in held.into_iter().chain(ready.drain(..)) {
        send_stripe(senders, plan.holders, frames, cluster).await?;
    }
    Ok(verified)
}

type FrameSender = Sender<Result<Bytes, std::io::Error>>;

/// Queues one stripe's frames, each holder its fragment's. A holder whose queue stays full for the
/// node timeout is dropped (its body then ends short, so it keeps nothing).
async fn send_stripe(
    senders: &mut [Option<FrameSender>],
    holders: &[Holder<'_>],
    frames: Vec<Bytes>,
    cluster: &Cluster,
) -> Result<(), S3Error> {
    for (slot, holder) in senders.iter_mut().zip(holders) {
        if let Some(tx) = slot {
            let frame = frames[holder.fragment as usize].clone();
            match tokio::time::timeout(cluster.timeout, tx.send(Ok(frame))).await {
                Ok(Ok(())) => {}
                _ => *slot = None,
            }
        }
    }
    let alive = senders.iter().filter(|s| s.is_some()).count();
    let quorum = cluster.write_quorum;
    if alive < quorum {
        return Err(S3Error::ServiceUnavailable(format!(
            "only {alive} holders are taking the data; {quorum} needed"
        )));
    }
    Ok(())
}

/// Best-effort removal of fragments that will never be committed.
pub async fn remove_fragments(
    cluster: &Cluster,
    holders: &[Holder<'_>],
    fragment_id: &str,
    stored: &[bool],
) {
    let removals = holders
        .iter()
        .zip(stored)
        .filter(|(_, s)| **s)
        .map(|(h, _)| {
            cluster
                .client
                .delete_fragment(&h.node.addr, fragment_id, h.fragment)
        });
    join_all(removals).await;
}

/// Commits to the given holders (those that stored the data) and requires a write quorum.
pub async fn commit_quorum<'a, F, Fut>(
    cluster: &Cluster,
    holders: &[Holder<'a>],
    stored: &[bool],
    commit: F,
) -> Result<(), S3Error>
where
    F: Fn(Holder<'a>) -> Fut,
    Fut: Future<Output = Result<bool, RpcError>>,
{
    enough_holders(cluster, stored.iter().filter(|s| **s).count())?;
    let calls = holders
        .iter()
        .zip(stored)
        .filter(|(_, s)| **s)
        .map(|(h, _)| commit(*h));
    let answers = join_all(calls).await;
    let mut outcomes = answers.iter();
    for (holder, stored) in holders.iter().zip(stored) {
        // Only holders that stored the data were asked to commit, in order.
        if !stored || outcomes.next().is_some_and(Result::is_err) {
            cluster.note_missed(holder);
        }
    }
    let ok = answers.iter().filter(|a| a.is_ok()).count();
    if ok < cluster.write_quorum {
        let why = answers
            .iter()
            .find_map(|a| a.as_ref().err().map(ToString::to_string))
            .unwrap_or_default();
        let why = format!(
            "{ok} of {} holders committed; {} needed ({why})",
            holders.len(),
            cluster.write_quorum
        );
        return Err(S3Error::quorum_failed(why, &answers));
    }
    Ok(())
}

/// Refuses a write before anything is written when fewer than a write quorum of holders (and
/// substitutes) can take it, so that a refused write leaves nothing behind.
fn enough_holders(cluster: &Cluster, available: usize) -> Result<(), S3Error> {
    if available < cluster.write_quorum {
        return Err(S3Error::ServiceUnavailable(format!(
            "{available} holders can take the write; {} needed",
            cluster.write_quorum
        )));
    }
    Ok(())
}

fn checksum_trailer(payload: &PayloadReader, algorithm: Option<Algorithm>) -> Option<&str> {
    algorithm.and_then(|a| payload.trailer(&a.header()))
}

fn size_error(e: erasure::ErasureError) -> S3Error {
    match e {
        erasure::ErasureError::SizeMismatch { .. } => S3Error::IncompleteBody,
        other => S3Error::Internal(other.to_string()),
    }
}
