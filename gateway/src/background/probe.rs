//! The liveness probe: asks every node for its health twice a second and records what it sees in
//! the cluster's `Liveness`; a node that missed writes nobody kept for it, or whose scrubber found
//! damaged fragment files, is healed when it answers.

use crate::background::heal::Healer;
use crate::ops::cluster::Cluster;
use std::sync::Arc;
use std::time::Duration;

/// How often every node is probed.
const PROBE_INTERVAL: Duration = Duration::from_millis(500);
/// Longest wait for a probe's answer: a node slower than this is treated as down for writes.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Probes every node for as long as the gateway runs, and starts healing a node that comes back
/// after missing writes.
pub async fn watch(cluster: Arc<Cluster>, healer: Arc<Healer>) {
    let mut ticker = tokio::time::interval(PROBE_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let live = &cluster.liveness;
        let started = live.now();
        let nodes = cluster.layout.nodes();
        let probes = nodes.iter().map(|n| async {
            tokio::time::timeout(PROBE_TIMEOUT, cluster.client.health(&n.addr))
                .await
                .ok()
                .and_then(Result::ok)
        });
        let answers = futures::future::join_all(probes).await;
        let mut keepers = vec![Vec::new(); nodes.len()];
        for (keeper, health) in answers.iter().enumerate() {
            let hints = health.iter().flat_map(|h| &h.hints_for);
            for (target, _) in hints.filter(|(_, count)| **count > 0) {
                if let Some(index) = cluster.node_index(target) {
                    keepers[index].push(keeper);
                }
            }
        }
        for (index, answer) in answers.into_iter().enumerate() {
            let was_up = live.set_up(index, answer.is_some());
            let Some(health) = answer else {
                if was_up {
                    tracing::warn!(node = %nodes[index].id, "storage node is down");
                }
                continue;
            };
            if !was_up {
                tracing::info!(node = %nodes[index].id, "storage node is back");
            }
            live.set_frame_formats(index, &health.frame_formats);
            // The scrubber found damaged fragment files (moved aside or missing): the node's
            // digests now differ from its peers' where they are, and a heal rebuilds them.
            let damaged = health.scrub.damaged();
            if live.set_damaged(index, damaged) != damaged && damaged > 0 {
                tracing::warn!(node = %nodes[index].id, damaged, "scrub found damaged fragments");
                live.missed(index);
            }
            // Taken before the heal compares anything, so that a write ending without the node
            // from then on notes it again, for another heal.
            if live.take_missed(index) && !heal(&healer, &nodes[index].id) {
                live.missed(index);
            }
        }
        live.finish_round(started, keepers);
    }
}

/// Starts healing a node; false when it could not start yet (another heal runs).
fn heal(healer: &Arc<Healer>, node: &str) -> bool {
    let started = healer.start(node.to_string());
    match started {
        Ok(_) => tracing::info!(%node, "healing a node that missed writes"),
        Err(ref e) => tracing::debug!(%node, error = ?e, "heal deferred"),
    }
    started.is_ok()
}
