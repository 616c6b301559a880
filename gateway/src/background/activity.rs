//! The gateway's recent activity, for the console's charts: every `SAMPLE_EVERY`, how much the
//! request, error and byte counters of `METRICS` grew, kept for the last hour
//! (`GET /_tessera/activity`). It is this gateway's own traffic, not the cluster's. The
//! replication links keep their hour the same way (`LastHour`).

use crate::metrics::{Totals, METRICS};
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often a sample is taken.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// Samples kept: an hour's.
const KEPT: usize = 360;

/// What the gateway did during one sampling period.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Sample {
    /// When the period ended, in seconds since the Unix epoch.
    pub end_unix: u64,
    pub requests: u64,
    /// Requests answered with a 4xx status, and with a 5xx one.
    pub client_errors: u64,
    pub server_errors: u64,
    pub received_bytes: u64,
    pub sent_bytes: u64,
}

/// The last hour of samples taken every `SAMPLE_EVERY`, oldest first.
pub struct LastHour<T> {
    samples: Mutex<VecDeque<T>>,
}

impl<T> Default for LastHour<T> {
    fn default() -> Self {
        LastHour {
            samples: Mutex::default(),
        }
    }
}

impl<T: Clone> LastHour<T> {
    pub fn samples(&self) -> Vec<T> {
        self.lock().iter().cloned().collect()
    }

    pub fn push(&self, sample: T) {
        let mut samples = self.lock();
        if samples.len() == KEPT {
            samples.pop_front();
        }
        samples.push_back(sample);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<T>> {
        self.samples.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The gateway's requests over the last hour.
pub type Activity = LastHour<Sample>;

/// Samples `METRICS` into `activity` forever.
pub async fn sample(activity: Arc<Activity>) {
    let mut before = METRICS.totals();
    let mut ticks = tokio::time::interval(SAMPLE_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let now = METRICS.totals();
        activity.push(growth(&before, &now, node_rpc::protocol::unix_now()));
        before = now;
    }
}

fn growth(before: &Totals, now: &Totals, end_unix: u64) -> Sample {
    Sample {
        end_unix,
        requests: now.requests.saturating_sub(before.requests),
        client_errors: now.client_errors.saturating_sub(before.client_errors),
        server_errors: now.server_errors.saturating_sub(before.server_errors),
        received_bytes: now.received_bytes.saturating_sub(before.received_bytes),
        sent_bytes: now.sent_bytes.saturating_sub(before.sent_bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_hour_is_kept_and_each_sample_is_the_growth() {
        let activity = Activity::default();
        let mut before = Totals::default();
        for i in 0..KEPT as u64 + 5 {
            let now = Totals {
                requests: before.requests + i,
                server_errors: before.server_errors + 1,
                ..before
            };
            activity.push(growth(&before, &now, i));
            before = now;
        }
        let samples = activity.samples();
        assert_eq!(samples.len(), KEPT);
        assert_eq!(samples[0].end_unix, 5, "the oldest went first");
        assert_eq!(samples[0].requests, 5);
        assert!(samples.iter().all(|s| s.server_errors == 1));
    }
}
