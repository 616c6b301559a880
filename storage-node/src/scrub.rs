//! The scrubber: every `scrub_interval_secs` a pass re-reads each fragment file this node's
//! records name and checks every block's hash, at no more than `scrub_bytes_per_sec`, so that
//! bitrot in data nobody reads is found while the other holders can still rebuild it. A corrupt
//! file is moved aside and a missing one counted (`Store::scrub_fragment`); either makes this
//! node's shard digests differ from its peers', and the gateway, which sees the counts change in
//! the node's health, heals the node. The damaged files are remembered until a good copy is back
//! in their place, so that the status tells how many were repaired and how many still wait.
//! Inline fragments live in RocksDB, whose own block checksums are verified on every read.

use crate::protocol::{unix_now, ScrubStatus};
use crate::store::{Damaged, Repair, Scrubbed, Store, StoreError};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// The setting under which the scrubber keeps its status, so that a restart resumes the pass
/// where it was and keeps the counts.
const STATE: &str = "scrub";
/// The setting under which it keeps the damaged files that wait for a repair.
const DAMAGED: &str = "scrub-damaged";
/// The most damaged files tracked until their repair (a disk that rots by the thousand is
/// replaced, not repaired file by file).
const MAX_DAMAGED: usize = 10_000;
/// How often, while some wait, the damaged files are looked at for a repair.
const REPAIR_CHECK_EVERY: Duration = Duration::from_secs(2);
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
pub fn start(
    store: Arc<Store>,
    settings: ScrubSettings,
    watch: supervisor::Watch,
) -> Result<Scrubber, StoreError> {
    let mut status: ScrubStatus = match store.setting(STATE)? {
        Some(bytes) => serde_json::from_slice(&bytes)?,
        None => ScrubStatus::default(),
    };
    if status.pass_started_unix == 0 {
        status.pass_started_unix = unix_now();
        save(&store, &status)?;
    }
    let damaged: Vec<Damaged> = match store.setting(DAMAGED)? {
        Some(bytes) => serde_json::from_slice(&bytes)?,
        None => Vec::new(),
    };
    let status = Arc::new(Mutex::new(status));
    let (wake, requests) = mpsc::sync_channel(1);
    let shared = status.clone();
    std::thread::Builder::new()
        .name("scrubber".into())
        .spawn(move || {
            let mut scrubber = Work {
                store: &store,
                settings,
                status: &shared,
                damaged,
            };
            watch.run_blocking(|| scrubber.forever(&requests))
        })?;
    Ok(Scrubber { status, wake })
}

/// The scrubber's thread: the store, its settings, the status it shares, and the damaged files
/// waiting for a repair.
struct Work<'a> {
    store: &'a Store,
    settings: ScrubSettings,
    status: &'a Mutex<ScrubStatus>,
    damaged: Vec<Damaged>,
}

impl Work<'_> {
    fn forever(&mut self, requests: &mpsc::Receiver<()>) {
        loop {
            if let Err(e) = self.check_repairs() {
                tracing::warn!(error = %e, "scrub: could not check repairs");
            }
            let current = update(self.status, |_| {});
            if !current.running {
                let mut wait = if self.settings.interval.is_zero() {
                    Duration::from_secs(60)
                } else {
                    let due = current.pass_started_unix + self.settings.interval.as_secs().max(1);
                    Duration::from_secs(due.saturating_sub(unix_now()).min(60))
                };
                if !self.damaged.is_empty() {
                    wait = wait.min(REPAIR_CHECK_EVERY);
                }
                if !wait.is_zero() {
                    match requests.recv_timeout(wait) {
                        Ok(()) => {}
                        Err(mpsc::RecvTimeoutError::Timeout) => continue,
                        // The node is shutting down: nobody will read the status any more.
                        Err(mpsc::RecvTimeoutError::Disconnected) => return,
                    }
                }
            }
            if let Err(e) = self.pass() {
                tracing::warn!(error = %e, "scrub pass stopped; it resumes later");
                std::thread::sleep(RETRY_AFTER);
            }
        }
    }

    /// Runs (or resumes) one pass to its end.
    fn pass(&mut self) -> Result<(), StoreError> {
        let (store, settings) = (self.store, self.settings);
        let begun = update(self.status, |s| {
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
                let name = format!("{}.{}", target.fragment_id, target.slot);
                match verdict {
                    Scrubbed::Corrupt => {
                        tracing::warn!(fragment = %name, "scrub: corrupt fragment file moved aside")
                    }
                    Scrubbed::Missing => {
                        tracing::warn!(fragment = %name, "scrub: fragment file missing")
                    }
                    Scrubbed::Good(_) | Scrubbed::Gone => {}
                }
                if matches!(verdict, Scrubbed::Corrupt | Scrubbed::Missing) {
                    self.note_damaged(Damaged::of(&target))?;
                }
                update(self.status, |s| {
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
                self.check_repairs()?;
                save(store, &update(self.status, |_| {}))?;
                saved = Instant::now();
            }
        }
        self.check_repairs()?;
        let finished = update(self.status, |s| {
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
            awaiting_repair = finished.awaiting_repair,
            "scrub pass finished"
        );
        save(store, &finished)
    }

    /// Remembers a damaged file until its repair (once, however often a pass finds it).
    fn note_damaged(&mut self, damaged: Damaged) -> Result<(), StoreError> {
        if self.damaged.len() >= MAX_DAMAGED || self.damaged.contains(&damaged) {
            return Ok(());
        }
        self.damaged.push(damaged);
        self.save_damaged()
    }

    /// Counts the damaged files that have a good copy in their place again as repaired, and
    /// forgets those no longer needed.
    fn check_repairs(&mut self) -> Result<(), StoreError> {
        let before = self.damaged.len();
        let (mut repaired, mut kept, mut failed) = (0, Vec::with_capacity(before), None);
        for damaged in std::mem::take(&mut self.damaged) {
            // After an error the rest are kept as they are, to be looked at next time.
            let state = match failed {
                Some(_) => Ok(Repair::Awaiting),
                None => self.store.repair_state(&damaged),
            };
            match state {
                Ok(Repair::Rebuilt) => repaired += 1,
                Ok(Repair::Superseded) => {}
                Ok(Repair::Awaiting) => kept.push(damaged),
                Err(e) => {
                    kept.push(damaged);
                    failed = Some(e);
                }
            }
        }
        self.damaged = kept;
        let waiting = self.damaged.len() as u64;
        let shown = update(self.status, |_| {}).awaiting_repair;
        if self.damaged.len() != before || shown != waiting {
            if repaired > 0 {
                tracing::info!(repaired, waiting, "scrub: damaged fragment files repaired");
            }
            let status = update(self.status, |s| {
                s.repaired += repaired;
                s.awaiting_repair = waiting;
            });
            self.save_damaged()?;
            save(self.store, &status)?;
        }
        failed.map_or(Ok(()), Err)
    }

    fn save_damaged(&self) -> Result<(), StoreError> {
        let bytes = if self.damaged.is_empty() {
            Vec::new()
        } else {
            serde_json::to_vec(&self.damaged)?
        };
        self.store.put_setting(DAMAGED, &bytes)
    }
}

fn update(status: &Mutex<ScrubStatus>, f: impl FnOnce(&mut ScrubStatus)) -> ScrubStatus {
    let mut s = status.lock().expect("scrub status lock");
    f(&mut s);
    s.clone()
}

fn save(store: &Store, status: &ScrubStatus) -> Result<(), StoreError> {
    store.put_setting(STATE, &serde_json::to_vec(status)?)
}
