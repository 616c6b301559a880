//! Keeping a process going past its own bugs. A request handler that panics fails its request
//! alone, with a log line (`caught`); a background worker that panics is logged, noted in its
//! status (which the admin API shows) and started again after a pause (`Workers`), so that a bug
//! met once does not end probing, hint delivery, scrubbing or replication for the rest of the
//! process's life.

use futures::FutureExt;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::task::JoinHandle;

/// How long a worker that panicked waits before it starts again: long enough not to spin on a
/// fault that repeats, short enough that its work resumes soon.
pub const RESTART_PAUSE: Duration = Duration::from_secs(1);

/// Runs a request's handler; a panic in it is logged (with what `request` says, called only
/// then) and returned as its message, for the caller to answer with a 500. The connection and
/// the process go on.
pub async fn caught<F: Future>(
    request: impl FnOnce() -> String,
    handler: F,
) -> Result<F::Output, String> {
    AssertUnwindSafe(handler)
        .catch_unwind()
        .await
        .map_err(|panic| {
            let message = panic_message(panic.as_ref()).to_string();
            tracing::error!(request = %request(), panic = %message, "request handler panicked");
            message
        })
}

/// What a caught panic said.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

/// What one worker is doing, as the admin API shows it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct WorkerStatus {
    pub name: String,
    /// False once the worker ended on its own (one with nothing to do).
    pub running: bool,
    /// Times it panicked and was started again.
    pub restarts: u64,
    /// What the last panic said, and when (seconds since the Unix epoch).
    pub last_panic: Option<String>,
    pub last_panic_at: Option<u64>,
}

/// One worker's status, shared by its supervisor and `Workers::status`.
#[derive(Clone)]
pub struct Watch(Arc<Mutex<WorkerStatus>>);

impl Watch {
    fn status(&self) -> MutexGuard<'_, WorkerStatus> {
        // A panic never happens with the lock held; if one did, the status is still readable.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn panicked(&self, payload: &(dyn std::any::Any + Send)) {
        let what = panic_message(payload).to_string();
        let mut status = self.status();
        tracing::error!(worker = %status.name, panic = %what, "worker panicked; starting it again");
        status.restarts += 1;
        status.last_panic = Some(what);
        status.last_panic_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .ok()
            .map(|d| d.as_secs());
    }

    /// Runs `run` on this thread, and again after a pause each time it panics: for a worker with
    /// a thread of its own (registered with `Workers::watch`).
    pub fn run_blocking(&self, mut run: impl FnMut()) {
        while let Err(panic) = std::panic::catch_unwind(AssertUnwindSafe(&mut run)) {
            self.panicked(panic.as_ref());
            std::thread::sleep(RESTART_PAUSE);
        }
        self.status().running = false;
    }
}

/// A process's supervised workers. Dropping `Workers` stops the tasks among them.
#[derive(Default)]
pub struct Workers {
    watches: Vec<Watch>,
    tasks: Vec<JoinHandle<()>>,
}

impl Workers {
    /// Registers a worker under `name` and returns its status, for a worker that runs on a thread
    /// of its own under `Watch::run_blocking`.
    pub fn watch(&mut self, name: &str) -> Watch {
        let watch = Watch(Arc::new(Mutex::new(WorkerStatus {
            name: name.to_string(),
            running: true,
            ..WorkerStatus::default()
        })));
        self.watches.push(watch.clone());
        watch
    }

    /// Runs the task `run` makes as a worker named `name`, and a new one after a pause each time
    /// one panics.
    pub fn supervise<F, Fut>(&mut self, name: &str, run: F)
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let watch = self.watch(name);
        self.tasks.push(tokio::spawn(async move {
            while let Err(panic) = AssertUnwindSafe(run()).catch_unwind().await {
                watch.panicked(panic.as_ref());
                tokio::time::sleep(RESTART_PAUSE).await;
            }
            watch.status().running = false;
        }));
    }

    pub fn status(&self) -> Vec<WorkerStatus> {
        self.watches.iter().map(|w| w.status().clone()).collect()
    }

    /// Restarts of all the workers, for a metric.
    pub fn restarts(&self) -> u64 {
        self.watches.iter().map(|w| w.status().restarts).sum()
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
    use std::io::Write;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Log lines written while a test runs, to check what was logged.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn install(&self) -> tracing::subscriber::DefaultGuard {
            let writer = self.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_writer(move || writer.clone())
                .with_ansi(false)
                .finish();
            tracing::subscriber::set_default(subscriber)
        }

        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_panicking_handler_fails_its_request_with_a_log_line() {
        let log = Captured::default();
        let _guard = log.install();
        let request = || "GET /b/k".to_string();
        let answer = caught(request, async { panic!("a bug in a handler") }).await;
        assert_eq!(answer.unwrap_err(), "a bug in a handler");
        let line = log.text();
        assert!(line.contains("ERROR"), "{line}");
        assert!(line.contains("request handler panicked"), "{line}");
        assert!(
            line.contains("GET /b/k") && line.contains("a bug in a handler"),
            "{line}"
        );
        let formatted = caught(String::new, async { panic!("{} {}", "with", 2) }).await;
        assert_eq!(formatted.unwrap_err(), "with 2");
        let unused = || unreachable!("described only after a panic");
        assert_eq!(caught(unused, async { 7 }).await, Ok(7));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_worker_that_panics_is_started_again_and_its_status_shows_the_panic() {
        let log = Captured::default();
        let _guard = log.install();
        let mut workers = Workers::default();
        let runs = Arc::new(AtomicU32::new(0));
        let counted = runs.clone();
        workers.supervise("flaky", move || {
            let run = counted.fetch_add(1, Ordering::SeqCst);
            async move {
                if run < 2 {
                    panic!("round {run} went wrong");
                }
                std::future::pending::<()>().await;
            }
        });
        // Not again at once, and soon after the pause.
        tokio::time::sleep(RESTART_PAUSE / 2).await;
        assert_eq!(runs.load(Ordering::SeqCst), 1, "started again at once");
        let deadline = tokio::time::Instant::now() + RESTART_PAUSE * 10;
        while runs.load(Ordering::SeqCst) < 3 {
            assert!(tokio::time::Instant::now() < deadline, "not started again");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(RESTART_PAUSE * 2).await;
        assert_eq!(
            runs.load(Ordering::SeqCst),
            3,
            "two panics, then a run that lasts"
        );
        let [status] = &workers.status()[..] else {
            panic!("one worker")
        };
        assert_eq!(status.name, "flaky");
        assert!(status.running);
        assert_eq!(status.restarts, 2);
        assert_eq!(status.last_panic.as_deref(), Some("round 1 went wrong"));
        assert!(status.last_panic_at.is_some());
        assert_eq!(workers.restarts(), 2);
        assert!(log.text().contains("worker panicked"), "{}", log.text());
    }

    #[test]
    fn a_thread_worker_runs_again_and_a_worker_that_ends_is_shown_stopped() {
        let mut workers = Workers::default();
        let watch = workers.watch("scrubber");
        let mut runs = 0;
        watch.run_blocking(|| {
            runs += 1;
            assert!(runs > 1, "the first run panics");
        });
        assert_eq!(runs, 2);
        let status = &workers.status()[0];
        assert_eq!((status.restarts, status.running), (1, false));
        assert!(status
            .last_panic
            .as_deref()
            .unwrap()
            .contains("the first run panics"));
    }
}
