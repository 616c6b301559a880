//! Fragment uploads to several holders at once, fed frame by frame: the one fan-out that the
//! write path and repair share, with one back-pressure and timeout policy.
//!
//! Policy: while frames flow, a holder whose queue stays full for the node timeout is dropped
//! (its body then ends short, so it keeps nothing); once the last frame is queued, each holder
//! gets the node timeout to confirm its fragment. A timeout on the whole upload would fail every
//! large fragment, and none at all would let one stalled holder hold a request (or a heal) forever.

use crate::ops::cluster::Cluster;
use crate::ops::error::OpError;
use bytes::Bytes;
use erasure::StripeLayout;
use futures::future::join_all;
use node_rpc::body::ChannelBody;
use node_rpc::RpcError;
use std::future::Future;
use std::time::Duration;
use tokio::sync::mpsc::Sender;

/// Frames buffered per holder while the slowest holder catches up: bounds a request's memory to
/// about `(k+m) * FRAME_DEPTH` blocks.
const FRAME_DEPTH: usize = 4;

type FrameSender = Sender<Result<Bytes, std::io::Error>>;

/// The feeding end of the uploads, one queue per target. Dropped without `finish` (the feed
/// failed, or the client went away), it fails every upload, so that no holder keeps a fragment
/// whose payload was not all verified.
pub struct FanOut {
    senders: Vec<Option<FrameSender>>,
    timeout: Duration,
    finished: bool,
}

impl FanOut {
    /// Queues each target its frame, in target order. Returns how many targets are still taking
    /// frames.
    pub async fn send(&mut self, frames: Vec<Bytes>) -> usize {
        for (slot, frame) in self.senders.iter_mut().zip(frames) {
            if let Some(tx) = slot {
                match tokio::time::timeout(self.timeout, tx.send(Ok(frame))).await {
                    Ok(Ok(())) => {}
                    _ => *slot = None,
                }
            }
        }
        self.senders.iter().filter(|s| s.is_some()).count()
    }

    /// Every frame was queued: the bodies end here, complete.
    pub fn finish(mut self) {
        self.finished = true;
    }
}

impl Drop for FanOut {
    fn drop(&mut self) {
        if !self.finished {
            for tx in self.senders.iter().flatten() {
                let _ = tx.try_send(Err(std::io::Error::other("upload abandoned")));
            }
        }
    }
}

/// Uploads fragment `slot` of `fragment_id` to each target `(address, slot)`, fed by `feed`.
/// Returns what the feed returned and each target's outcome, in target order.
pub async fn upload<T, F, Fut>(
    cluster: &Cluster,
    targets: &[(&str, u8)],
    fragment_id: &str,
    layout: StripeLayout,
    feed: F,
) -> (Result<T, OpError>, Vec<Result<(), RpcError>>)
where
    F: FnOnce(FanOut) -> Fut,
    Fut: Future<Output = Result<T, OpError>>,
{
    let mut senders = Vec::with_capacity(targets.len());
    let mut uploads = Vec::with_capacity(targets.len());
    for &(addr, slot) in targets {
        let (tx, body) = ChannelBody::new(FRAME_DEPTH, Some(layout.fragment_len()));
        senders.push(Some(tx));
        uploads.push(
            cluster
                .client
                .put_fragment(addr, fragment_id, slot, layout, body.boxed()),
        );
    }
    let fanout = FanOut {
        senders,
        timeout: cluster.timeout,
        finished: false,
    };
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
        let result = feed(fanout).await;
        let _ = fed_tx.send(true);
        result
    };
    tokio::join!(feed, join_all(uploads))
}
