//! Writing metrics in Prometheus's text exposition format: a `# HELP` and `# TYPE` line per
//! family, then one line per sample, label values escaped.

use crate::{Histogram, StatusCounts};
use std::fmt::{Display, Write as _};

/// A metric family's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// A `/metrics` answer being written.
#[derive(Debug, Default)]
pub struct Exposition(String);

impl Exposition {
    pub fn new() -> Exposition {
        Exposition::default()
    }

    /// Starts a family; its samples follow. `name` is a valid metric name (a constant in the
    /// caller), `help` one line.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) -> &mut Self {
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        let _ = writeln!(self.0, "# HELP {name} {}", help.replace('\n', " "));
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
        self
    }

    /// One sample: `name{labels} value`.
    pub fn sample(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        value: impl Display,
    ) -> &mut Self {
        self.0.push_str(name);
        self.labels(labels, None);
        let _ = writeln!(self.0, " {value}");
        self
    }

    /// A family with one sample and no labels.
    pub fn single(&mut self, name: &str, kind: Kind, help: &str, value: impl Display) -> &mut Self {
        self.family(name, kind, help).sample(name, &[], value)
    }

    /// A counter family's samples by status: `name{labels..., status="200"} n`.
    pub fn statuses(&mut self, name: &str, labels: &[(&str, &str)], counts: &StatusCounts) {
        for (status, n) in counts.iter() {
            let status = match status {
                0 => "other".to_string(),
                s => s.to_string(),
            };
            self.0.push_str(name);
            self.labels(labels, Some(("status", &status)));
            let _ = writeln!(self.0, " {n}");
        }
    }

    /// A histogram's samples: `name_bucket{..., le=...}` for each bound, `name_sum` and
    /// `name_count`. `name` is the family's name.
    pub fn histogram(&mut self, name: &str, labels: &[(&str, &str)], histogram: &Histogram) {
        for (bound, n) in histogram.cumulative() {
            let le = if bound.is_infinite() {
                "+Inf".to_string()
            } else {
                bound.to_string()
            };
            let _ = write!(self.0, "{name}_bucket");
            self.labels(labels, Some(("le", &le)));
            let _ = writeln!(self.0, " {n}");
        }
        let _ = write!(self.0, "{name}_sum");
        self.labels(labels, None);
        let _ = writeln!(self.0, " {}", histogram.sum_secs());
        let _ = write!(self.0, "{name}_count");
        self.labels(labels, None);
        let _ = writeln!(self.0, " {}", histogram.count());
    }

    pub fn finish(self) -> String {
        self.0
    }

    fn labels(&mut self, labels: &[(&str, &str)], extra: Option<(&str, &str)>) {
        let mut all = labels.iter().copied().chain(extra).peekable();
        if all.peek().is_none() {
            return;
        }
        self.0.push('{');
        for (i, (name, value)) in all.enumerate() {
            if i > 0 {
                self.0.push(',');
            }
            let _ = write!(self.0, "{name}=\"");
            for c in value.chars() {
                match c {
                    '\\' => self.0.push_str("\\\\"),
                    '"' => self.0.push_str("\\\""),
                    '\n' => self.0.push_str("\\n"),
                    c => self.0.push(c),
                }
            }
            self.0.push('"');
        }
        self.0.push('}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn families_samples_and_escaped_labels() {
        let mut out = Exposition::new();
        out.family("t_requests_total", Kind::Counter, "Requests.\nAll of them.")
            .sample("t_requests_total", &[("op", "a\"b\\c\nd")], 3);
        out.single("t_up", Kind::Gauge, "Up.", 1);
        assert_eq!(
            out.finish(),
            "# HELP t_requests_total Requests. All of them.\n\
             # TYPE t_requests_total counter\n\
             t_requests_total{op=\"a\\\"b\\\\c\\nd\"} 3\n\
             # HELP t_up Up.\n# TYPE t_up gauge\nt_up 1\n"
        );
    }

    #[test]
    fn histograms_and_statuses_render_every_series() {
        let h = Histogram::new();
        h.observe(Duration::from_millis(3));
        let counts = StatusCounts::new();
        counts.inc(503);
        let mut out = Exposition::new();
        out.histogram("t_seconds", &[("op", "Get")], &h);
        out.statuses("t_total", &[("op", "Get")], &counts);
        let text = out.finish();
        assert!(text.contains("t_seconds_bucket{op=\"Get\",le=\"0.0025\"} 0\n"));
        assert!(text.contains("t_seconds_bucket{op=\"Get\",le=\"0.005\"} 1\n"));
        assert!(text.contains("t_seconds_bucket{op=\"Get\",le=\"+Inf\"} 1\n"));
        assert!(text.contains("t_seconds_sum{op=\"Get\"} 0.003\n"));
        assert!(text.contains("t_seconds_count{op=\"Get\"} 1\n"));
        assert!(text.contains("t_total{op=\"Get\",status=\"503\"} 1\n"));
    }
}
