//! The scrape of `/metrics`: the request series of `METRICS` named by operation, the counters,
//! and what the gateway knows now about nodes, heals and replication.

use crate::api::{Gateway, Operation};
use crate::background::replication::LinkStatus;
use crate::metrics::{METRICS, REQUEST_SERIES};
use telemetry::{Exposition, Kind};

/// What a request was, for its metrics' `operation` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestLabel {
    S3(Operation),
    /// A browser form upload (POST Object).
    PostObject,
    /// A CORS preflight (OPTIONS).
    Preflight,
    /// A call of the admin API under `/_tessera/`.
    Admin,
    /// Refused before its operation was known: a bad signature, an unknown key, a malformed
    /// path, a method the router does not serve.
    Refused,
}

const EXTRA_LABELS: [RequestLabel; 4] = [
    RequestLabel::PostObject,
    RequestLabel::Preflight,
    RequestLabel::Admin,
    RequestLabel::Refused,
];

// Every S3 operation has its own series, then each other kind of request.
const _: () = assert!(Operation::ALL.len() + EXTRA_LABELS.len() <= REQUEST_SERIES);

impl RequestLabel {
    /// Its series in `METRICS`.
    pub fn index(self) -> usize {
        match self {
            RequestLabel::S3(op) => op as usize,
            other => {
                Operation::ALL.len() + EXTRA_LABELS.iter().position(|l| *l == other).unwrap_or(0)
            }
        }
    }

    /// The `operation` label: the S3 operation's name, or the kind of request.
    pub fn name(self) -> &'static str {
        match self {
            RequestLabel::S3(op) => op.name(),
            RequestLabel::PostObject => "PostObject",
            RequestLabel::Preflight => "Preflight",
            RequestLabel::Admin => "Admin",
            RequestLabel::Refused => "Refused",
        }
    }

    fn all() -> impl Iterator<Item = RequestLabel> {
        Operation::ALL
            .iter()
            .map(|op| RequestLabel::S3(*op))
            .chain(EXTRA_LABELS)
    }
}

/// The exposition of every series of `METRICS`, with what `gw` knows now about nodes and heals.
pub fn render(gw: &Gateway) -> String {
    let mut out = Exposition::new();
    out.family(
        "tessera_s3_requests_total",
        Kind::Counter,
        "S3 requests answered, by operation and HTTP status.",
    );
    for label in RequestLabel::all() {
        let series = METRICS.series(label.index());
        out.statuses(
            "tessera_s3_requests_total",
            &[("operation", label.name())],
            &series.statuses,
        );
    }
    out.family(
        "tessera_s3_request_duration_seconds",
        Kind::Histogram,
        "Time from a request's arrival to its response's head, by operation.",
    );
    for label in RequestLabel::all() {
        let series = METRICS.series(label.index());
        if series.latency.count() > 0 {
            out.histogram(
                "tessera_s3_request_duration_seconds",
                &[("operation", label.name())],
                &series.latency,
            );
        }
    }
    out.single(
        "tessera_s3_received_bytes_total",
        Kind::Counter,
        "Request body bytes received from S3 clients (as sent, before decoding).",
        METRICS.received_bytes.get(),
    );
    out.single(
        "tessera_s3_sent_bytes_total",
        Kind::Counter,
        "Response body bytes sent to S3 clients.",
        METRICS.sent_bytes.get(),
    );
    out.single(
        "tessera_quorum_failures_total",
        Kind::Counter,
        "Quorum calls to storage nodes that fell short (the request failed with 503 or 507).",
        METRICS.quorum_failures.get(),
    );
    out.family(
        "tessera_hedged_reads_total",
        Kind::Counter,
        "Reads that asked one more node because the first were slow, by what was read.",
    )
    .sample(
        "tessera_hedged_reads_total",
        &[("read", "fragment")],
        METRICS.hedged_fragment_reads.get(),
    )
    .sample(
        "tessera_hedged_reads_total",
        &[("read", "lookup")],
        METRICS.hedged_lookups.get(),
    );
    out.single(
        "tessera_rebuilt_stripes_total",
        Kind::Counter,
        "Stripes of erasure-coded reads decoded from parity, because a data fragment was \
         missing, corrupt or slower than another holder's.",
        METRICS.rebuilt_stripes.get(),
    );
    render_cluster(&mut out, gw);
    out.finish()
}

/// Node liveness as this gateway sees it, and the heal it runs.
fn render_cluster(out: &mut Exposition, gw: &Gateway) {
    let liveness = &gw.cluster.liveness;
    let nodes = gw.cluster.layout.nodes();
    out.family(
        "tessera_node_up",
        Kind::Gauge,
        "Whether the gateway's last probe of a storage node was answered.",
    );
    for (i, node) in nodes.iter().enumerate() {
        let labels = [("node", node.id.as_str()), ("zone", node.zone.as_str())];
        out.sample("tessera_node_up", &labels, u8::from(liveness.is_up(i)));
    }
    out.family(
        "tessera_node_needs_heal",
        Kind::Gauge,
        "Whether a storage node missed writes or lost fragments and waits for a heal.",
    );
    for (i, node) in nodes.iter().enumerate() {
        let labels = [("node", node.id.as_str()), ("zone", node.zone.as_str())];
        out.sample(
            "tessera_node_needs_heal",
            &labels,
            u8::from(liveness.needs_heal(i)),
        );
    }
    let heal = gw.healer.progress().unwrap_or_default();
    let node = [("node", heal.node.as_str())];
    out.family(
        "tessera_heal_running",
        Kind::Gauge,
        "Whether this gateway is healing a node (label: the node, empty when none ever ran).",
    )
    .sample("tessera_heal_running", &node, u8::from(heal.running));
    let heal_counts = [
        (
            "tessera_heal_keys_checked",
            "Keys of differing shards looked at by the current or last heal.",
            heal.keys_checked,
        ),
        (
            "tessera_heal_keys_repaired",
            "Keys rebuilt by the current or last heal.",
            heal.keys_repaired,
        ),
        (
            "tessera_heal_rebuilt_bytes",
            "Fragment bytes rebuilt by the current or last heal.",
            heal.bytes_rebuilt,
        ),
        (
            "tessera_heal_errors",
            "Keys the current or last heal failed to rebuild.",
            heal.errors,
        ),
        (
            "tessera_heal_versions_listed",
            "Versions the current or last heal has listed: its progress against the total.",
            heal.versions_listed,
        ),
        (
            "tessera_heal_versions_total",
            "Versions of the buckets the current or last heal walks, counted before the walk.",
            heal.versions_total,
        ),
    ];
    for (name, help, value) in heal_counts {
        out.family(name, Kind::Gauge, help)
            .sample(name, &node, value);
    }
    render_replication(out, gw);
}

/// Each link to a peer region, as this gateway's drain knows it (`background::replication`).
fn render_replication(out: &mut Exposition, gw: &Gateway) {
    let Some(replication) = &gw.replication else {
        return;
    };
    let links = replication.status();
    type Value = fn(&LinkStatus) -> f64;
    let series: [(&str, Kind, &str, Value); 7] = [
        (
            "tessera_replication_draining",
            Kind::Gauge,
            "Whether this gateway drains the link (holds its lease); one gateway of a region does.",
            |l| f64::from(u8::from(l.draining)),
        ),
        (
            "tessera_replication_link_up",
            Kind::Gauge,
            "Whether the peer region answered the last replication request sent to it.",
            |l| f64::from(u8::from(l.now.up)),
        ),
        (
            "tessera_replication_backlog_entries",
            Kind::Gauge,
            "Changes queued for the peer region and not yet delivered.",
            |l| l.now.backlog_entries as f64,
        ),
        (
            "tessera_replication_backlog_bytes",
            Kind::Gauge,
            "Bytes of the objects queued for the peer region and not yet delivered.",
            |l| l.now.backlog_bytes as f64,
        ),
        (
            "tessera_replication_oldest_pending_seconds",
            Kind::Gauge,
            "Age of the oldest change not yet delivered to the peer region (0: none).",
            |l| l.now.oldest_pending_secs.unwrap_or(0.0),
        ),
        (
            "tessera_replication_delivered_entries_total",
            Kind::Counter,
            "Changes this gateway delivered to the peer region.",
            |l| l.now.delivered_entries as f64,
        ),
        (
            "tessera_replication_delivered_bytes_total",
            Kind::Counter,
            "Object bytes this gateway delivered to the peer region.",
            |l| l.now.delivered_bytes as f64,
        ),
    ];
    for (name, kind, help, value) in series {
        out.family(name, kind, help);
        for link in &links {
            let labels = [
                ("source", link.source.as_str()),
                ("target", link.target.as_str()),
            ];
            out.sample(name, &labels, value(link));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_label_has_its_own_series() {
        let mut seen = std::collections::HashSet::new();
        for label in RequestLabel::all() {
            assert!(seen.insert(label.index()), "{label:?} shares a series");
            assert!(label.index() < REQUEST_SERIES);
        }
        assert_eq!(seen.len(), Operation::ALL.len() + EXTRA_LABELS.len());
    }
}
