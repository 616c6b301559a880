//! The scrubber: every `scrub_interval_secs` a pass re-reads each fragment file this node's
//! records name and checks every block's hash, at no more than `scrub_bytes_per_sec`, so that
//! bitrot in data nobody reads is found while the other holders can still rebuild it. A corrupt
//! file is moved aside and a missing one counted (`Store::scrub_fragment`); either makes this
//! node's shard digests differ from its peers', and the gateway, which sees the counts change in
//! the node's health, heals the node. Inline fragments live in RocksDB, whose own block checksums
//! are verified on every read.

use crate::protocol::{unix_now, ScrubStatus};
use crate::store::{Scrubbed, Store, StoreError};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// The setting under which the scrubber keeps its status, so that a restart resumes the pass
/// where it was and keeps the counts.
const STATE: &str = "scrub";
/// Fragment files asked of the store at a time.
const BATCH: usize = 64;
/// The status is saved at least this often during a pass.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(5);
/// Wait after a pass failed on an error (a disk or database error) before trying again.
const RETRY_AFTER: Duration = Duration::from_secs(60);

/// How the scrubber runs; see `NodeConfig::scrub_interval_secs` and `scrub_bytes_per_sec`.
#[derive(Clone, Copy, Debug)]
pub struct ScrubSettings {
    /// Zero: never.
    pub interval: Duration,
    pub bytes_per_sec: u64,
    /// k of the cluster, for part records (which do not carry it).
    pub data_shards: usize,
}

/// The running scrubber: its status, and a way to start a pass before it is due.
#[derive(Clone)]
pub struct Scrubber {
    status: Arc<Mutex<ScrubStatus>>,
    wake: mpsc::SyncSender<()>,
}

impl Scrubber {
    pub fn status(&self) -> ScrubStatus {
        update(&self.status, |_| {})
    }

    /// Starts a pass now, unless one is under way (which goes on). Returns the status once the
    /// pass has begun, so that a caller sees it running.
    pub fn start_pass(&self) -> ScrubStatus {
        let before = self.status();
        if before.running {
            return before;
        }
        // A full channel already holds a request that the scrubber has yet to take.
        let _ = self.wake.try_send(());
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let now = self.status();
            if now.running || now.passes > before.passes || Instant::now() > deadline {
                return now;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Starts the scrubber on a thread of its own (its reads block, and it must not hold up a runtime
/// thread). With a zero interval it runs only the passes asked of it.
pub fn start(store: Arc<Store>, settings: ScrubSettings) -> Result<Scrubber, StoreError> {
    let mut status: ScrubStatus = match store.setting(STATE)? {
        Some(bytes) => serde_json::from_slice(&bytes)?,
        None => ScrubStatus::default(),
    };
    if status.pass_started_unix == 0 {
        status.pass_started_unix = unix_now();
        save(&store, &status)?;
    }
    let status = Arc::new(Mutex::new(status));
    let (wake, requests) = mpsc::sync_channel(1);
    let shared = status.clone();
    std::thread::Builder::new()
        .name("scrubber".into())
        .spawn(move || scrub_forever(&store, settings, &shared, &requests))?;
    Ok(Scrubber { status, wake })
}

fn scrub_forever(
    store: &Store,
    settings: ScrubSettings,
    status: &Mutex<ScrubStatus>,
    requests: &mpsc::Receiver<()>,
) {
    loop {
        let current = update(status, |_| {});
        if !current.running {
            let wait = if settings.interval.is_zero() {
                Duration::from_secs(60)
            } else {
                let due = current.pass_started_unix + settings.interval.as_secs().max(1);
                Duration::from_secs(due.saturating_sub(unix_now()).min(60))
            };
            if !wait.is_zero() {
                match requests.recv_timeout(wait) {
                    Ok(()) => {}
                    Err(mpsc::RecvTimeoutError::Timeout) => continue,
                    // The node is shutting down: nobody will read the status any more.
                    Err(mpsc::RecvTimeoutError::Disconnected) => return,
                }
            }
        }
        if let Err(e) = pass(store, settings, status) {
            tracing::warn!(error = %e, "scrub pass stopped; it resumes later");
            std::thread::sleep(RETRY_AFTER);
        }
    }
}

/// Runs (or resumes) one pass to its end.
fn pass(
    store: &Store,
    settings: ScrubSettings,
    status: &Mutex<ScrubStatus>,
) -> Result<(), StoreError> {
    let begun = update(status, |s| {
        if !s.running {
            s.running = true;
            s.pass_started_unix = unix_now();
            s.files_checked = 0;
            s.bytes_checked = 0;
            s.position = None;
        }
    });
    save(store, &begun)?;
    let mut position = begun.position.as_deref().and_then(|p| hex::decode(p).ok());
    // The rate limit counts from here: a resumed pass does not owe for what it read before.
    let (started, mut read) = (Instant::now(), 0u64);
    let mut saved = Instant::now();
    loop {
        let batch = store.scrub_batch(position.as_deref(), BATCH, settings.data_shards)?;
        if batch.is_empty() {
            break;
        }
        for target in batch {
            let verdict = store.scrub_fragment(&target, |n| {
                read += n as u64;
                let due =
                    Duration::from_secs_f64(read as f64 / settings.bytes_per_sec.max(1) as f64);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    std::thread::sleep(wait);
                }
            })?;
            let name = format!("{}.{}", target.fragment_id, target.fragment);
            match verdict {
                Scrubbed::Corrupt => {
                    tracing::warn!(fragment = %name, "scrub: corrupt fragment file moved aside")
                }
                Scrubbed::Missing => {
                    tracing::warn!(fragment = %name, "scrub: fragment file missing")
                }
                Scrubbed::Good(_) | Scrubbed::Gone => {}
            }
            update(status, |s| {
                s.files_checked += 1;
                match verdict {
                    Scrubbed::Good(bytes) => s.bytes_checked += bytes,
                    Scrubbed::Corrupt => s.corrupt += 1,
                    Scrubbed::Missing => s.missing += 1,
                    Scrubbed::Gone => {}
                }
                s.position = Some(hex::encode(&target.position));
            });
            position = Some(target.position);
        }
        if saved.elapsed() >= CHECKPOINT_EVERY {
            save(store, &update(status, |_| {}))?;
            saved = Instant::now();
        }
    }
    let finished = update(status, |s| {
        s.running = false;
        s.passes += 1;
        s.last_pass_finished_unix = Some(unix_now());
        s.last_pass_files = s.files_checked;
        s.last_pass_bytes = s.bytes_checked;
        s.position = None;
    });
    tracing::info!(
        files = finished.files_checked,
        bytes = finished.bytes_checked,
        corrupt = finished.corrupt,
        missing = finished.missing,
        "scrub pass finished"
    );
    save(store, &finished)
}

fn update(status: &Mutex<ScrubStatus>, f: impl FnOnce(&mut ScrubStatus)) -> ScrubStatus {
    let mut s = status.lock().expect("scrub status lock");
    f(&mut s);
    s.clone()
}

fn save(store: &Store, status: &ScrubStatus) -> Result<(), StoreError> {
    store.put_setting(STATE, &serde_json::to_vec(status)?)
}
