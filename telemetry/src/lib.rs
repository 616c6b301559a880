//! What Tessera's processes tell monitoring systems. Prometheus metrics: counters and histograms
//! updated with atomic operations only, so that recording on a request's path never takes a
//! lock, and their rendering in Prometheus's text exposition format (version 0.0.4), which every
//! scraper reads. And in `trace`: logging, and trace spans exported over OTLP.
//!
//! A process keeps its metrics in plain structs of these types (the gateway's and the node's are
//! each one `static`); values known only when asked (disk free, a worker's progress) are read at
//! scrape time and written straight into the `Exposition`.

mod exposition;
pub mod trace;

pub use exposition::{Exposition, Kind};

use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::time::Duration;

/// The content type of a `/metrics` answer.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A count that only goes up.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub const fn new() -> Counter {
        Counter(AtomicU64::new(0))
    }

    pub fn inc(&self) {
        self.add(1);
    }

    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Upper bounds (seconds) of the latency buckets: 1 ms to 60 s, about three per decade, which
/// covers a cached 4 KiB GET as well as a 5 GiB part.
pub const LATENCY_BOUNDS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0,
];

/// A latency histogram over `LATENCY_BOUNDS`: a count per bucket (not cumulative; the exposition
/// sums them), the count of observations and their sum in nanoseconds.
#[derive(Debug)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BOUNDS.len() + 1],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new()
    }
}

impl Histogram {
    pub const fn new() -> Histogram {
        Histogram {
            buckets: [const { AtomicU64::new(0) }; LATENCY_BOUNDS.len() + 1],
            count: AtomicU64::new(0),
            sum_nanos: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let bucket = LATENCY_BOUNDS.partition_point(|&bound| bound < secs);
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// `(upper bound, observations at or below it)` for each bound, then `+Inf`.
    fn cumulative(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        let bounds = LATENCY_BOUNDS.iter().copied().chain([f64::INFINITY]);
        bounds
            .zip(self.buckets.iter())
            .scan(0, |total, (bound, n)| {
                *total += n.load(Ordering::Relaxed);
                Some((bound, *total))
            })
    }

    fn sum_secs(&self) -> f64 {
        Duration::from_nanos(self.sum_nanos.load(Ordering::Relaxed)).as_secs_f64()
    }
}

/// Counts by HTTP status, without a lock: a fixed set of slots, each claimed by the first status
/// counted in it. A process answers with a few statuses per operation; should more than
/// `SLOTS` ever show up, the rest are counted under status 0, rendered as "other".
#[derive(Debug)]
pub struct StatusCounts {
    slots: [(AtomicU16, Counter); StatusCounts::SLOTS],
}

impl Default for StatusCounts {
    fn default() -> Self {
        StatusCounts::new()
    }
}

impl StatusCounts {
    const SLOTS: usize = 16;

    pub const fn new() -> StatusCounts {
        StatusCounts {
            slots: [const { (AtomicU16::new(0), Counter::new()) }; StatusCounts::SLOTS],
        }
    }

    pub fn inc(&self, status: u16) {
        // Status 0 marks a free slot, so a (never sent) status 0 goes to the overflow slot.
        let status = status.max(1);
        for (slot, count) in &self.slots[..Self::SLOTS - 1] {
            let claimed = match slot.load(Ordering::Acquire) {
                0 => match slot.compare_exchange(0, status, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => status,
                    Err(other) => other,
                },
                s => s,
            };
            if claimed == status {
                count.inc();
                return;
            }
        }
        self.slots[Self::SLOTS - 1].1.inc();
    }

    /// `(status, count)` for every status counted; status 0 is the overflow.
    pub fn iter(&self) -> impl Iterator<Item = (u16, u64)> + '_ {
        let last = Self::SLOTS - 1;
        self.slots
            .iter()
            .enumerate()
            .filter_map(move |(i, (slot, count))| {
                let status = if i == last {
                    0
                } else {
                    slot.load(Ordering::Acquire)
                };
                let n = count.get();
                (n > 0 && (status != 0 || i == last)).then_some((status, n))
            })
    }
}

/// The answer to a scrape of `/metrics`, the same on every process: 405 for anything but GET,
/// 401 (with `WWW-Authenticate: Bearer`) without the bearer of `token` when there is one, else
/// the text `render` writes.
pub fn scrape(
    method: &http::Method,
    headers: &http::HeaderMap,
    token: Option<&str>,
    render: impl FnOnce() -> String,
) -> http::Response<String> {
    use http::{header, StatusCode};
    let authorization = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
    let (status, content_type, body) = if method != http::Method::GET {
        (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".to_string(),
        )
    } else if token.is_some_and(|token| !bearer_matches(authorization, token)) {
        let why = "metrics need the bearer token of `tessera admin metrics-token`\n";
        (StatusCode::UNAUTHORIZED, "text/plain", why.to_string())
    } else {
        (StatusCode::OK, CONTENT_TYPE, render())
    };
    let mut response = http::Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    if status == StatusCode::UNAUTHORIZED {
        headers.insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
    }
    response
}

/// Whether an `Authorization` header carries `Bearer <token>` (compared in constant time), as
/// Prometheus sends it for a scrape job's `authorization: {credentials: ...}`.
pub fn bearer_matches(authorization: Option<&[u8]>, token: &str) -> bool {
    use subtle::ConstantTimeEq;
    let Some(given) = authorization.and_then(|a| a.strip_prefix(b"Bearer ")) else {
        return false;
    };
    given.ct_eq(token.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_bounds_inclusive() {
        let h = Histogram::new();
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(1));
        h.observe(Duration::from_millis(30));
        h.observe(Duration::from_secs(100));
        let buckets: Vec<(f64, u64)> = h.cumulative().collect();
        assert_eq!(buckets[0], (0.001, 2));
        assert_eq!(buckets[4], (0.025, 2));
        assert_eq!(buckets[5], (0.05, 3));
        assert_eq!(buckets[15], (60.0, 3));
        assert_eq!(buckets[16], (f64::INFINITY, 4));
        assert_eq!(h.count(), 4);
        assert!((h.sum_secs() - 100.0315).abs() < 1e-9);
    }

    #[test]
    fn statuses_claim_slots_and_overflow_into_other() {
        let counts = StatusCounts::new();
        counts.inc(200);
        counts.inc(404);
        counts.inc(200);
        assert_eq!(counts.iter().collect::<Vec<_>>(), [(200, 2), (404, 1)]);
        for status in 300..330 {
            counts.inc(status);
        }
        let all: Vec<(u16, u64)> = counts.iter().collect();
        assert_eq!(all.len(), StatusCounts::SLOTS);
        assert_eq!(
            all.last(),
            Some(&(0, 30 - (StatusCounts::SLOTS as u64 - 3)))
        );
        assert_eq!(all.iter().map(|(_, n)| n).sum::<u64>(), 33);
    }

    #[test]
    fn statuses_counted_from_many_threads_add_up() {
        let counts = std::sync::Arc::new(StatusCounts::new());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let counts = counts.clone();
                std::thread::spawn(move || {
                    for i in 0..10_000u16 {
                        counts.inc(200 + (i + t) % 5);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let all: Vec<(u16, u64)> = counts.iter().collect();
        assert_eq!(all.len(), 5, "each status claimed one slot: {all:?}");
        assert_eq!(all.iter().map(|(_, n)| n).sum::<u64>(), 40_000);
    }

    #[test]
    fn scrapes_need_get_and_the_token() {
        let mut headers = http::HeaderMap::new();
        let render = || "t_up 1\n".to_string();
        let answer = scrape(&http::Method::GET, &headers, Some("abc"), render);
        assert_eq!(answer.status(), 401);
        assert_eq!(answer.headers()["www-authenticate"], "Bearer");
        headers.insert("authorization", "Bearer abc".parse().unwrap());
        let answer = scrape(&http::Method::GET, &headers, Some("abc"), render);
        assert_eq!(
            (answer.status().as_u16(), answer.body().as_str()),
            (200, "t_up 1\n")
        );
        assert_eq!(answer.headers()["content-type"], CONTENT_TYPE);
        assert_eq!(
            scrape(&http::Method::POST, &headers, Some("abc"), render).status(),
            405
        );
        let public = scrape(&http::Method::GET, &http::HeaderMap::new(), None, render);
        assert_eq!(public.status(), 200);
    }

    #[test]
    fn bearer_tokens_must_match_exactly() {
        assert!(bearer_matches(Some(b"Bearer abc"), "abc"));
        assert!(!bearer_matches(Some(b"Bearer abcd"), "abc"));
        assert!(!bearer_matches(Some(b"Bearer ab"), "abc"));
        assert!(!bearer_matches(Some(b"Basic abc"), "abc"));
        assert!(!bearer_matches(None, "abc"));
    }
}
