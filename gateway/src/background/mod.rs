//! Work the gateway does on its own, on top of `ops`: probing the nodes, healing them (on demand,
//! when a node that missed writes returns, and as periodic anti-entropy), and applying lifecycle
//! rules.

pub mod heal;
pub mod lifecycle;
pub mod probe;

use crate::config::GatewayConfig;
use crate::ops::cluster::Cluster;
use heal::Healer;
use lifecycle::Lifecycle;
use std::sync::Arc;
use std::time::Duration;

/// Starts every worker; they run as long as the process does.
pub fn start(cluster: &Arc<Cluster>, healer: &Arc<Healer>, config: &GatewayConfig) {
    tokio::spawn(probe::watch(cluster.clone(), healer.clone()));
    tokio::spawn(heal::anti_entropy(
        healer.clone(),
        Duration::from_secs(config.anti_entropy_secs),
    ));
    tokio::spawn(lifecycle::run(Lifecycle {
        cluster: cluster.clone(),
        day_secs: config.lifecycle_day_secs,
        abandoned_upload_days: config.abandoned_upload_days,
    }));
}
