//! The node's background work (hinted handoff, the sweeper, the scrubber), supervised: a worker
//! that panics is logged, counted (`tessera_node_worker_restarts_total`) and started again after
//! a pause, so that a bug met in one round does not end hint delivery, cleanup or scrubbing for
//! the rest of the node's life.

use crate::metrics::METRICS;
use futures::FutureExt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

/// The pause before a worker that panicked is started again.
const RESTART_PAUSE: Duration = Duration::from_secs(1);

/// Runs the task `run` makes, and a new one each time one panics.
pub fn supervise<F, Fut>(name: &'static str, run: F)
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        while let Err(panic) = AssertUnwindSafe(run()).catch_unwind().await {
            restarting(name, panic.as_ref());
            tokio::time::sleep(RESTART_PAUSE).await;
        }
    });
}

/// Runs `run` on this thread again each time it panics.
pub fn supervise_blocking(name: &'static str, mut run: impl FnMut()) {
    while let Err(panic) = std::panic::catch_unwind(AssertUnwindSafe(&mut run)) {
        restarting(name, panic.as_ref());
        std::thread::sleep(RESTART_PAUSE);
    }
}

fn restarting(name: &str, panic: &(dyn std::any::Any + Send)) {
    let what = listener::panic_message(panic);
    tracing::error!(worker = name, panic = %what, "node worker panicked; starting it again");
    METRICS.worker_restarts.inc();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[tokio::test]
    async fn a_task_that_panics_is_started_again_and_counted() {
        let before = METRICS.worker_restarts.get();
        let runs = Arc::new(AtomicUsize::new(0));
        let counted = runs.clone();
        supervise("test", move || {
            let runs = counted.clone();
            async move {
                if runs.fetch_add(1, Ordering::SeqCst) < 2 {
                    panic!("a bug");
                }
            }
        });
        tokio::time::sleep(RESTART_PAUSE * 5).await;
        assert_eq!(
            runs.load(Ordering::SeqCst),
            3,
            "two panics, then a run that ends"
        );
        assert!(METRICS.worker_restarts.get() >= before + 2);
    }

    #[test]
    fn a_thread_that_panics_runs_again() {
        let mut runs = 0;
        supervise_blocking("test", || {
            runs += 1;
            assert!(runs > 1, "the first run panics");
        });
        assert_eq!(runs, 2);
    }
}
