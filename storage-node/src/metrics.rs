//! The storage node's Prometheus metrics (`docs/admin-api.md`, "Metrics"): calls by kind and
//! status with their latency, and fragment bytes written and read, recorded as calls are served
//! into one `static` of atomics; hints, scrubbing, disk space and RocksDB write stalls are read
//! when scraped.

use crate::protocol::ScrubStatus;
use http::Method;
use std::collections::BTreeMap;
use std::time::Duration;
use telemetry::{Counter, Exposition, Histogram, Kind, StatusCounts};

/// The node's metrics: one per process.
pub static METRICS: NodeMetrics = NodeMetrics::new();

/// The calls of the node protocol, by method and first path segment after `/v1/`, as labels.
const CALLS: [(Method, &str, &str); 29] = [
    (Method::GET, "health", "health"),
    (Method::PUT, "fragment", "fragment_write"),
    (Method::GET, "fragment", "fragment_read"),
    (Method::DELETE, "fragment", "fragment_delete"),
    (Method::POST, "commit", "commit"),
    (Method::POST, "commits", "commit_batch"),
    (Method::GET, "object", "lookup"),
    (Method::POST, "objects", "lookup_batch"),
    (Method::POST, "purge", "purge"),
    (Method::GET, "digests", "digests"),
    (Method::POST, "undo", "undo"),
    (Method::POST, "versions", "versions"),
    (Method::POST, "claim", "claim"),
    (Method::POST, "release", "release"),
    (Method::POST, "list", "list"),
    (Method::PUT, "bucket", "bucket_write"),
    (Method::GET, "buckets", "buckets"),
    (Method::PUT, "key", "key_write"),
    (Method::GET, "keys", "keys"),
    (Method::PUT, "upload", "upload_write"),
    (Method::GET, "upload", "upload_read"),
    (Method::GET, "uploads", "uploads"),
    (Method::DELETE, "upload", "upload_delete"),
    (Method::PUT, "part", "part_write"),
    (Method::GET, "parts", "parts"),
    (Method::PUT, "setting", "setting_write"),
    (Method::GET, "setting", "setting_read"),
    (Method::POST, "scrub", "scrub_start"),
    (Method::GET, "usage", "usage"),
];
/// The label of anything else (a refused or unknown call), counted last.
const OTHER: &str = "other";

#[derive(Debug)]
struct CallSeries {
    statuses: StatusCounts,
    /// From the call's arrival to its response's head.
    latency: Histogram,
}

#[derive(Debug)]
pub struct NodeMetrics {
    calls: [CallSeries; CALLS.len() + 1],
    pub fragments_written: Counter,
    pub fragment_bytes_written: Counter,
    pub fragment_reads: Counter,
    pub fragment_bytes_read: Counter,
    pub raw_reads_resumed: Counter,
}

/// What the node knows when scraped, beside what it counted.
pub struct Snapshot<'a> {
    pub node: &'a str,
    pub hints_for: BTreeMap<String, u64>,
    pub scrub: ScrubStatus,
    pub disk: std::io::Result<crate::server::DiskSpace>,
    pub write_stall_secs: Option<f64>,
    /// Background workers started again after a panic, since the node started.
    pub worker_restarts: u64,
}

impl NodeMetrics {
    const fn new() -> NodeMetrics {
        NodeMetrics {
            calls: [const {
                CallSeries {
                    statuses: StatusCounts::new(),
                    latency: Histogram::new(),
                }
            }; CALLS.len() + 1],
            fragments_written: Counter::new(),
            fragment_bytes_written: Counter::new(),
            fragment_reads: Counter::new(),
            fragment_bytes_read: Counter::new(),
            raw_reads_resumed: Counter::new(),
        }
    }

    /// Which series a call of `method` on `path` counts in.
    pub fn call_index(method: &Method, path: &str) -> usize {
        let mut segments = path.trim_start_matches('/').split('/');
        let (Some("v1"), Some(name)) = (segments.next(), segments.next()) else {
            return CALLS.len();
        };
        CALLS
            .iter()
            .position(|(m, n, _)| m == method && *n == name)
            .unwrap_or(CALLS.len())
    }

    /// The `call` label of a series.
    pub fn call_label(index: usize) -> &'static str {
        CALLS.get(index).map_or(OTHER, |(_, _, label)| label)
    }

    pub fn call(&self, index: usize, status: u16, elapsed: Duration) {
        let series = &self.calls[index.min(CALLS.len())];
        series.statuses.inc(status);
        series.latency.observe(elapsed);
    }

    pub fn render(&self, now: Snapshot<'_>) -> String {
        let labels = (0..=CALLS.len()).map(NodeMetrics::call_label);
        let node = [("node", now.node)];
        let mut out = Exposition::new();
        out.family(
            "tessera_node_calls_total",
            Kind::Counter,
            "Node protocol calls answered, by call and HTTP status.",
        );
        for (label, series) in labels.clone().zip(&self.calls) {
            out.statuses(
                "tessera_node_calls_total",
                &[("node", now.node), ("call", label)],
                &series.statuses,
            );
        }
        out.family(
            "tessera_node_call_duration_seconds",
            Kind::Histogram,
            "Time from a node call's arrival to its response's head, by call.",
        );
        for (label, series) in labels.zip(&self.calls) {
            if series.latency.count() > 0 {
                out.histogram(
                    "tessera_node_call_duration_seconds",
                    &[("node", now.node), ("call", label)],
                    &series.latency,
                );
            }
        }
        let counters = [
            (
                "tessera_fragments_written_total",
                "Fragment files received and committed.",
                &self.fragments_written,
            ),
            (
                "tessera_fragment_written_bytes_total",
                "Bytes of the fragment files committed.",
                &self.fragment_bytes_written,
            ),
            (
                "tessera_fragment_reads_total",
                "Fragment reads served (ranges of fragment files).",
                &self.fragment_reads,
            ),
            (
                "tessera_fragment_read_bytes_total",
                "Bytes of fragment files asked for by reads.",
                &self.fragment_bytes_read,
            ),
            (
                "tessera_raw_reads_resumed_total",
                "Raw fragment reads whose connection went back to serving calls after the range.",
                &self.raw_reads_resumed,
            ),
        ];
        for (name, help, counter) in counters {
            out.family(name, Kind::Counter, help)
                .sample(name, &node, counter.get());
        }
        let restarts = "tessera_node_worker_restarts_total";
        out.family(
            restarts,
            Kind::Counter,
            "Background workers (hinted handoff, sweeper, scrubber) started again after a panic.",
        )
        .sample(restarts, &node, now.worker_restarts);
        out.family(
            "tessera_hints_pending",
            Kind::Gauge,
            "Hints this node keeps for a node that missed writes, by that node.",
        );
        for (target, n) in &now.hints_for {
            out.sample(
                "tessera_hints_pending",
                &[("node", now.node), ("for", target)],
                n,
            );
        }
        render_scrub(&mut out, now.node, &now.scrub);
        if let Ok(disk) = now.disk {
            out.family(
                "tessera_disk_free_bytes",
                Kind::Gauge,
                "Free bytes on the data disk (for this node's user).",
            )
            .sample("tessera_disk_free_bytes", &node, disk.free);
            out.family(
                "tessera_disk_size_bytes",
                Kind::Gauge,
                "Size of the data disk.",
            )
            .sample("tessera_disk_size_bytes", &node, disk.size);
        }
        if let Some(secs) = now.write_stall_secs {
            out.family(
                "tessera_rocksdb_write_stall_seconds_total",
                Kind::Counter,
                "Time RocksDB held writes back (slowed or stopped) since the node started.",
            )
            .sample("tessera_rocksdb_write_stall_seconds_total", &node, secs);
        }
        out.finish()
    }
}

fn render_scrub(out: &mut Exposition, node: &str, scrub: &ScrubStatus) {
    let node = [("node", node)];
    let values = [
        (
            "tessera_scrub_running",
            Kind::Gauge,
            "Whether a scrub pass is under way.",
            u64::from(scrub.running),
        ),
        (
            "tessera_scrub_passes_total",
            Kind::Counter,
            "Scrub passes finished since the node was first started.",
            scrub.passes,
        ),
        (
            "tessera_scrub_checked_files",
            Kind::Gauge,
            "Fragment files checked by the current or last pass.",
            scrub.files_checked,
        ),
        (
            "tessera_scrub_checked_bytes",
            Kind::Gauge,
            "Fragment bytes checked by the current or last pass.",
            scrub.bytes_checked,
        ),
        (
            "tessera_scrub_corrupt_fragments_total",
            Kind::Counter,
            "Fragment files scrubbing found corrupt (and moved aside).",
            scrub.corrupt,
        ),
        (
            "tessera_scrub_missing_fragments_total",
            Kind::Counter,
            "Fragment files scrubbing found missing.",
            scrub.missing,
        ),
        (
            "tessera_scrub_repaired_fragments_total",
            Kind::Counter,
            "Damaged fragment files found by scrubbing and since rebuilt.",
            scrub.repaired,
        ),
        (
            "tessera_scrub_awaiting_repair_fragments",
            Kind::Gauge,
            "Damaged fragment files found by scrubbing and not yet rebuilt.",
            scrub.awaiting_repair,
        ),
        (
            "tessera_scrub_pass_started_timestamp_seconds",
            Kind::Gauge,
            "When the current or last pass began (Unix time).",
            scrub.pass_started_unix,
        ),
    ];
    for (name, kind, help, value) in values {
        out.family(name, kind, help).sample(name, &node, value);
    }
    if let Some(finished) = scrub.last_pass_finished_unix {
        out.family(
            "tessera_scrub_last_pass_finished_timestamp_seconds",
            Kind::Gauge,
            "When the last finished pass ended (Unix time).",
        )
        .sample(
            "tessera_scrub_last_pass_finished_timestamp_seconds",
            &node,
            finished,
        );
    }
}

/// RocksDB's cumulative write stall, from its `rocksdb.dbstats` text (`Cumulative stall:
/// 00:00:1.234 H:M:S, ...`): reading it costs nothing on the write path, unlike the statistics
/// object that would count it as a ticker.
pub fn write_stall_secs(dbstats: &str) -> Option<f64> {
    let line = dbstats
        .lines()
        .find_map(|l| l.trim().strip_prefix("Cumulative stall:"))?;
    let hms = line.split_whitespace().next()?;
    let mut parts = hms.split(':');
    let (h, m, s) = (parts.next()?, parts.next()?, parts.next()?);
    Some(h.parse::<f64>().ok()? * 3600.0 + m.parse::<f64>().ok()? * 60.0 + s.parse::<f64>().ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_labelled_by_method_and_path() {
        let label = |method, path| NodeMetrics::call_label(NodeMetrics::call_index(&method, path));
        assert_eq!(label(Method::PUT, "/v1/fragment/abc/3"), "fragment_write");
        assert_eq!(label(Method::GET, "/v1/fragment/abc/3"), "fragment_read");
        assert_eq!(label(Method::GET, "/v1/object/00/11"), "lookup");
        assert_eq!(label(Method::POST, "/v1/health"), OTHER);
        assert_eq!(label(Method::GET, "/metrics"), OTHER);
        assert_eq!(label(Method::GET, "/"), OTHER);
    }

    #[test]
    fn the_write_stall_is_read_from_dbstats() {
        let stats = "\n** DB Stats **\nUptime(secs): 12.0 total, 12.0 interval\n\
                     Cumulative writes: 10 writes, 10 keys\n\
                     Cumulative stall: 01:02:3.500 H:M:S, 0.1 percent\n\
                     Interval stall: 00:00:0.000 H:M:S, 0.0 percent\n";
        assert_eq!(write_stall_secs(stats), Some(3723.5));
        assert_eq!(write_stall_secs("nothing"), None);
    }
}
