//! The gateway's Prometheus metrics (`docs/admin-api.md`, "Metrics"): requests by S3 operation
//! and status with their latency, body bytes in and out, and what node calls met (quorums that
//! fell short, hedged reads), recorded where the work happens into one `static` of atomics;
//! node liveness and heal progress are read when scraped.
//!
//! It sits beside the layers rather than in one: `s3` counts body bytes, `ops` quorum failures
//! and hedges, `api` requests. So it names no layer: `api::scrape` names the request series and
//! renders the scrape.

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use node_rpc::body::HttpBody;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use telemetry::{Counter, Histogram, StatusCounts};

/// The gateway's metrics: one per process.
pub static METRICS: GatewayMetrics = GatewayMetrics::new();

/// How many request series there are: the API layer gives each kind of request its own.
pub const REQUEST_SERIES: usize = 64;

#[derive(Debug)]
pub struct RequestSeries {
    pub statuses: StatusCounts,
    /// From the request's arrival to its response's head (a body then streams).
    pub latency: Histogram,
}

/// The sums of the request series and the byte counters.
#[derive(Clone, Copy, Debug, Default)]
pub struct Totals {
    pub requests: u64,
    pub client_errors: u64,
    pub server_errors: u64,
    pub received_bytes: u64,
    pub sent_bytes: u64,
}

/// Every series the gateway records as it works.
#[derive(Debug)]
pub struct GatewayMetrics {
    requests: [RequestSeries; REQUEST_SERIES],
    pub received_bytes: Counter,
    pub sent_bytes: Counter,
    pub quorum_failures: Counter,
    pub hedged_fragment_reads: Counter,
    pub hedged_lookups: Counter,
    pub rebuilt_stripes: Counter,
}

impl GatewayMetrics {
    const fn new() -> GatewayMetrics {
        GatewayMetrics {
            requests: [const {
                RequestSeries {
                    statuses: StatusCounts::new(),
                    latency: Histogram::new(),
                }
            }; REQUEST_SERIES],
            received_bytes: Counter::new(),
            sent_bytes: Counter::new(),
            quorum_failures: Counter::new(),
            hedged_fragment_reads: Counter::new(),
            hedged_lookups: Counter::new(),
            rebuilt_stripes: Counter::new(),
        }
    }

    /// One answered request, of the kind that has series `series`.
    pub fn request(&self, series: usize, status: u16, elapsed: Duration) {
        let series = &self.requests[series];
        series.statuses.inc(status);
        series.latency.observe(elapsed);
    }

    pub fn series(&self, series: usize) -> &RequestSeries {
        &self.requests[series]
    }

    /// Every request, error and byte counted so far.
    pub fn totals(&self) -> Totals {
        let mut totals = Totals {
            received_bytes: self.received_bytes.get(),
            sent_bytes: self.sent_bytes.get(),
            ..Totals::default()
        };
        for series in &self.requests {
            for (status, n) in series.statuses.iter() {
                totals.requests += n;
                match status {
                    400..=499 => totals.client_errors += n,
                    500..=599 => totals.server_errors += n,
                    _ => {}
                }
            }
        }
        totals
    }
}

/// A body that adds the length of each data frame it yields to a counter.
pub struct Counted {
    inner: HttpBody,
    counter: &'static Counter,
}

impl Counted {
    pub fn wrap(inner: HttpBody, counter: &'static Counter) -> HttpBody {
        use http_body_util::BodyExt;
        Counted { inner, counter }.boxed()
    }
}

impl Body for Counted {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                self.counter.add(data.len() as u64);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn counted_bodies_add_their_bytes() {
        static COUNTER: Counter = Counter::new();
        let body = Counted::wrap(node_rpc::body::full(vec![7u8; 1000]), &COUNTER);
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(bytes.len(), 1000);
        assert_eq!(COUNTER.get(), 1000);
    }
}
