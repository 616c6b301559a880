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
use futures::FutureExt;
use heal::Healer;
use lifecycle::Lifecycle;
use replication::Replication;
use serde::Serialize;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;

/// How long a worker that panicked waits before it starts again: long enough not to spin on a
/// fault that repeats, short enough that probing (and so writes' choice of holders) resumes soon.
const RESTART_PAUSE: Duration = Duration::from_secs(1);

/// What one worker is doing, as `GET /_tessera/workers` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct WorkerStatus {
    pub name: &'static str,
    pub running: bool,
    /// Times it panicked and was started again.
    pub restarts: u64,
    pub last_panic: Option<String>,
}

/// The gateway's workers. Each is supervised: a panic is logged and counted, and the worker
/// starts again. Dropping `Workers` stops them all.
pub struct Workers {
    status: Vec<Arc<Mutex<WorkerStatus>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Workers {
    /// Starts the liveness probe, anti-entropy, the lifecycle worker and the activity sampler.
    pub fn start(
        cluster: &Arc<Cluster>,
        healer: &Arc<Healer>,
        activity: &Arc<Activity>,
        replication: Option<&Arc<Replication>>,
        config: &GatewayConfig,
    ) -> Workers {
        let mut workers = Workers {
            status: Vec::new(),
            tasks: Vec::new(),
        };
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

    pub fn status(&self) -> Vec<WorkerStatus> {
        self.status
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).clone())
            .collect()
    }

    fn supervise<F, Fut>(&mut self, name: &'static str, run: F)
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let status = Arc::new(Mutex::new(WorkerStatus {
            name,
            running: true,
            restarts: 0,
            last_panic: None,
        }));
        let shown = status.clone();
        self.tasks.push(tokio::spawn(async move {
            loop {
                let Err(panic) = AssertUnwindSafe(run()).catch_unwind().await else {
                    // Only a worker with nothing to do ends (anti-entropy when it is off).
                    shown.lock().unwrap_or_else(|p| p.into_inner()).running = false;
                    return;
                };
                let what = listener::panic_message(panic.as_ref()).to_string();
                tracing::error!(worker = name, panic = %what, "worker panicked; starting it again");
                {
                    let mut status = shown.lock().unwrap_or_else(|p| p.into_inner());
                    status.restarts += 1;
                    status.last_panic = Some(what);
                }
                tokio::time::sleep(RESTART_PAUSE).await;
            }
        }));
        self.status.push(status);
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn a_worker_that_panics_is_started_again_and_counted() {
        let mut workers = Workers {
            status: Vec::new(),
            tasks: Vec::new(),
        };
        let runs = Arc::new(AtomicU32::new(0));
        let counted = runs.clone();
        workers.supervise("flaky", move || {
            let run = counted.fetch_add(1, Ordering::SeqCst);
            async move {
                if run == 0 {
                    panic!("first run fails");
                }
            }
        });
        // Not before the pause, and soon after it (printing the panic's backtrace, under
        // RUST_BACKTRACE, can take a loaded machine a second).
        tokio::time::sleep(RESTART_PAUSE / 2).await;
        assert!(runs.load(Ordering::SeqCst) <= 1, "started again at once");
        let deadline = tokio::time::Instant::now() + RESTART_PAUSE * 10;
        while workers.status()[0].running || runs.load(Ordering::SeqCst) < 2 {
            assert!(tokio::time::Instant::now() < deadline, "not started again");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let status = &workers.status()[0];
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        assert_eq!(status.restarts, 1);
        assert_eq!(status.last_panic.as_deref(), Some("first run fails"));
        assert!(!status.running, "the second run ended normally");
    }
}
