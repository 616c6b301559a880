//! Work the gateway does on its own, on top of `ops`: probing the nodes, healing them (on demand,
//! when a node that missed writes returns, and as periodic anti-entropy), applying lifecycle
//! rules, sampling its own activity for the console, and sending this region's changes to its
//! peer regions (draining the outboxes, and resync).

pub mod activity;
pub mod heal;
pub mod lifecycle;
pub mod peer;
pub mod probe;
pub mod replication;
pub mod resync;

use crate::config::GatewayConfig;
use crate::ops::cluster::Cluster;
use activity::Activity;
use heal::Healer;
use lifecycle::Lifecycle;
use replication::Replication;
use std::sync::Arc;
use std::time::Duration;
use supervisor::Workers;

/// Starts the gateway's workers, each supervised (a panic is logged, shown in its status and the
/// worker starts again): the liveness probe, anti-entropy, the lifecycle worker, the activity
/// sampler and replication. Dropping what it returns stops them all.
pub fn start_workers(
    cluster: &Arc<Cluster>,
    healer: &Arc<Healer>,
    activity: &Arc<Activity>,
    replication: Option<&Arc<Replication>>,
    config: &GatewayConfig,
) -> Workers {
    let mut workers = Workers::default();
    let (probed, probing) = (cluster.clone(), healer.clone());
    workers.supervise("probe", move || {
        probe::watch(probed.clone(), probing.clone())
    });
    let every = Duration::from_secs(config.anti_entropy_secs);
    let healing = healer.clone();
    workers.supervise("anti-entropy", move || {
        heal::anti_entropy(healing.clone(), every)
    });
    let (expiring, day_secs) = (cluster.clone(), config.lifecycle_day_secs);
    let abandoned_upload_days = config.abandoned_upload_days;
    workers.supervise("lifecycle", move || {
        lifecycle::run(Lifecycle {
            cluster: expiring.clone(),
            day_secs,
            abandoned_upload_days,
        })
    });
    let sampled = activity.clone();
    workers.supervise("activity", move || activity::sample(sampled.clone()));
    if let Some(replication) = replication.cloned() {
        workers.supervise("replication", move || replication.clone().run());
    }
    workers
}
