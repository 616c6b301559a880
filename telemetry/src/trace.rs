//! Distributed traces over OTLP: when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, each S3 request is a
//! span with a child span per node call, and a node continues the trace from the W3C
//! `traceparent` header of the call, so that one trace id covers the gateway and the nodes.
//!
//! The spans are `tracing` spans of the target `TARGET`, turned into OpenTelemetry spans by
//! `tracing-opentelemetry`. Unless tracing is on, that target is disabled in the process's
//! filter: creating one of its spans is then a check of a cached flag, and nothing is exported.

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use std::collections::HashMap;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The `tracing` target of the spans that become trace spans.
pub const TARGET: &str = "tessera_trace";
/// The variable that turns tracing on: the collector's OTLP/HTTP base URL (`/v1/traces` is
/// appended). `OTEL_EXPORTER_OTLP_PROTOCOL` picks `http/protobuf` (default) or `http/json`.
pub const ENDPOINT_VAR: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    #[default]
    Text,
    /// One JSON object per line, with the fields of the spans it happened in (a request's
    /// `trace_id` among them, when tracing is on).
    Json,
}

/// Keeps the tracer provider; dropping it flushes the spans not yet exported.
pub struct Tracing(Option<SdkTracerProvider>);

impl Drop for Tracing {
    fn drop(&mut self) {
        if let Some(provider) = self.0.take() {
            let _ = provider.shutdown();
        }
    }
}

/// Installs the process's logging (`filter`'s directives, as in `RUST_LOG`, on stderr) and,
/// when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, the export of trace spans as `service`. Must be
/// called inside a Tokio runtime, which the exporter runs on.
pub fn init(service: &str, filter: &str, format: LogFormat) -> Result<Tracing, String> {
    let provider = match std::env::var_os(ENDPOINT_VAR) {
        Some(_) => Some(provider(service)?),
        None => None,
    };
    let trace_spans = if provider.is_some() { "info" } else { "off" };
    let filter = EnvFilter::try_new(filter)
        .map_err(|e| format!("log filter {filter:?}: {e}"))?
        .add_directive(
            format!("{TARGET}={trace_spans}")
                .parse()
                .map_err(|e| format!("{e}"))?,
        );
    // Colours only on a terminal: `tessera dev` sends each process's log to a file.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let logs = match format {
        LogFormat::Text => logs.boxed(),
        LogFormat::Json => logs.json().with_current_span(false).boxed(),
    };
    let spans = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("tessera"))
            .with_filter(
                tracing_subscriber::filter::Targets::new()
                    .with_target(TARGET, tracing::Level::TRACE),
            )
    });
    tracing_subscriber::registry()
        .with(filter)
        .with(logs)
        .with(spans)
        .try_init()
        .map_err(|e| e.to_string())?;
    Ok(Tracing(provider))
}

fn provider(service: &str) -> Result<SdkTracerProvider, String> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
        .map_err(|e| format!("the OTLP exporter: {e}"))?;
    let processor =
        opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor::builder(
            exporter,
            opentelemetry_sdk::runtime::Tokio,
        )
        .build();
    let resource = Resource::builder()
        .with_attribute(KeyValue::new("service.name", service.to_string()))
        .build();
    Ok(SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_resource(resource)
        .build())
}

/// The W3C `traceparent` of `span`, for the calls made within it; `None` when tracing is off.
pub fn traceparent(span: &tracing::Span) -> Option<String> {
    if span.is_disabled() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&span.context(), &mut carrier);
    carrier.remove("traceparent")
}

/// Makes `span` continue the trace of a call's `traceparent` header. Call it before anything
/// else asks for the span's context.
pub fn continue_trace(span: &tracing::Span, traceparent: Option<&str>) {
    let Some(traceparent) = traceparent.filter(|_| !span.is_disabled()) else {
        return;
    };
    let carrier = HashMap::from([("traceparent".to_string(), traceparent.to_string())]);
    let parent = TraceContextPropagator::new().extract(&carrier);
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
}

/// Names `span` once what it is became known (an S3 request's operation, decided after it began).
/// Its `otel.name` field cannot do that once the span's context was asked for.
pub fn rename(span: &tracing::Span, name: &'static str) {
    if !span.is_disabled() {
        span.context().span().update_name(name);
    }
}

/// The trace id of `span` in hex, for its `trace_id` field; `None` when tracing is off.
pub fn trace_id(span: &tracing::Span) -> Option<String> {
    if span.is_disabled() {
        return None;
    }
    let context = span.context();
    let id = context.span().span_context().trace_id();
    (id != opentelemetry::trace::TraceId::INVALID).then(|| id.to_string())
}
