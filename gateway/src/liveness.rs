//! Which storage nodes answer. A background probe asks every node for its health twice a second;
//! the write path sends the share of a holder that is down to a substitute (hinted handoff), and a
//! node that missed writes nobody kept for it, or whose scrubber found damaged fragment files, is
//! healed when it answers.

use crate::router::Gateway;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often every node is probed.
const PROBE_INTERVAL: Duration = Duration::from_millis(500);
/// Longest wait for a probe's answer: a node slower than this is treated as down for writes.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// What the gateway last saw of each node, by index into the layout's node list.
pub struct Liveness {
    up: Vec<AtomicBool>,
    /// Set when a write went on without the node and without a substitute keeping its share.
    missed: Vec<AtomicBool>,
    /// Fragment files the node's scrubber last reported damaged (`ScrubStatus::damaged`).
    damaged: Vec<AtomicU64>,
}

impl Liveness {
    /// Every node starts as up: the first probe corrects that within `PROBE_INTERVAL`.
    pub fn new(nodes: usize) -> Liveness {
        Liveness {
            up: (0..nodes).map(|_| AtomicBool::new(true)).collect(),
            missed: (0..nodes).map(|_| AtomicBool::new(false)).collect(),
            damaged: (0..nodes).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    pub fn is_up(&self, node: usize) -> bool {
        self.up[node].load(Ordering::Relaxed)
    }

    /// True while `node` lacks writes and its heal has not started.
    pub fn needs_heal(&self, node: usize) -> bool {
        self.missed[node].load(Ordering::Relaxed)
    }

    /// Notes that `node` lacks a write it should hold.
    pub fn missed(&self, node: usize) {
        self.missed[node].store(true, Ordering::Relaxed);
    }
}

/// Probes every node for as long as the gateway runs, and starts healing a node that comes back
/// after missing writes.
pub async fn watch(gw: Arc<Gateway>) {
    let cluster = &gw.cluster;
    let mut ticker = tokio::time::interval(PROBE_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let nodes = cluster.layout.nodes();
        let probes = nodes.iter().map(|n| async {
            tokio::time::timeout(PROBE_TIMEOUT, cluster.client.health(&n.addr))
                .await
                .ok()
                .and_then(Result::ok)
        });
        let answers = futures::future::join_all(probes).await;
        let live = &cluster.liveness;
        for (index, answer) in answers.into_iter().enumerate() {
            let was_up = live.up[index].swap(answer.is_some(), Ordering::Relaxed);
            let Some(health) = answer else {
                if was_up {
                    tracing::warn!(node = %nodes[index].id, "storage node is down");
                }
                continue;
            };
            if !was_up {
                tracing::info!(node = %nodes[index].id, "storage node is back");
            }
            // The scrubber found damaged fragment files (moved aside or missing): the node's
            // digests now differ from its peers' where they are, and a heal rebuilds them.
            let damaged = health.scrub.damaged();
            if live.damaged[index].swap(damaged, Ordering::Relaxed) != damaged && damaged > 0 {
                tracing::warn!(node = %nodes[index].id, damaged, "scrub found damaged fragments");
                live.missed(index);
            }
            if live.missed[index].load(Ordering::Relaxed) && heal(&gw, &nodes[index].id) {
                live.missed[index].store(false, Ordering::Relaxed);
            }
        }
    }
}

/// Starts healing a node; false when it could not start yet (another heal runs).
fn heal(gw: &Gateway, node: &str) -> bool {
    let started = gw.healer.start(
        gw.cluster.clone(),
        node.to_string(),
        gw.config.heal_bytes_per_sec,
    );
    match started {
        Ok(_) => tracing::info!(%node, "healing a node that missed writes"),
        Err(ref e) => tracing::debug!(%node, error = %e, "heal deferred"),
    }
    started.is_ok()
}
