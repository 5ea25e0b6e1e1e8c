//! Trace context from Kafka to the database: the spans of a batch and the
//! producer traces they continue.
//!
//! Contract:
//! - With no OTLP exporter configured ([`enabled`] is false) nothing here runs
//!   per record: the source never looks at headers for trace context, batches
//!   carry no links, and the writer creates only its per-batch spans.
//! - With an exporter, the source parses a record's W3C `traceparent` /
//!   `tracestate` headers into a [`SpanContext`] — no span per record — and
//!   keeps only *sampled* contexts, at most [`MAX_LINKS`] per batch (the rest
//!   are counted). The writer's `batch` span links to each of them, and each
//!   gets a short `process` span whose parent is the producer's span, so the
//!   producer's trace shows tidemill's part. The `batch` span is a root: one
//!   trace per batch, sampled by ratio; `process` spans follow the producer's
//!   sampling decision (parent-based).
//! - Attributes follow the OpenTelemetry semantic conventions for messaging
//!   (`messaging.*`) and databases (`db.*`).

use crate::config::SinkMode;
use crate::model::Batch;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{SpanContext, TraceContextExt};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use rdkafka::message::{BorrowedHeaders, Headers};
use std::sync::atomic::{AtomicBool, Ordering};
use tracing::{info_span, Span};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Most record contexts a batch links to (and `process` spans it creates).
pub const MAX_LINKS: usize = 64;

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether spans are exported (an OTLP endpoint is configured).
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Set by [`crate::observe::telemetry::init`] once the exporter is installed.
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// The W3C trace headers of a record, borrowed.
struct TraceHeaders<'a> {
    parent: &'a str,
    state: Option<&'a str>,
}

impl Extractor for TraceHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            "traceparent" => Some(self.parent),
            "tracestate" => self.state,
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        vec!["traceparent", "tracestate"]
    }
}

/// Whether the record carries a `traceparent` header (no parsing).
pub fn has_traceparent(headers: Option<&BorrowedHeaders>) -> bool {
    headers.is_some_and(|h| h.iter().any(|h| h.key.eq_ignore_ascii_case("traceparent")))
}

/// The producer's span context, when the record carries a valid, sampled
/// `traceparent` (and optionally `tracestate`).
pub fn extract(headers: Option<&BorrowedHeaders>) -> Option<SpanContext> {
    let (mut parent, mut state) = (None, None);
    for h in headers?.iter() {
        let value = h.value.and_then(|v| std::str::from_utf8(v).ok());
        if h.key.eq_ignore_ascii_case("traceparent") {
            parent = value;
        } else if h.key.eq_ignore_ascii_case("tracestate") {
            state = value;
        }
    }
    let parent = parent?;
    if !flagged_sampled(parent) {
        // Most records of a producer sampling at a low ratio: no full parse.
        return None;
    }
    let carrier = TraceHeaders { parent, state };
    let cx = TraceContextPropagator::new().extract(&carrier);
    let sc = cx.span().span_context().clone();
    (sc.is_valid() && sc.is_sampled()).then_some(sc)
}

/// Whether a `traceparent`'s flags (its fourth field) have the sampled bit,
/// read without parsing the ids.
fn flagged_sampled(traceparent: &str) -> bool {
    traceparent
        .trim()
        .split('-')
        .nth(3)
        .and_then(|flags| u8::from_str_radix(flags, 16).ok())
        .is_some_and(|flags| flags & 1 == 1)
}

/// Names the writer's spans need besides the batch.
#[derive(Debug, Clone)]
pub struct SpanNames {
    pub pipeline: String,
    pub group: String,
}

/// The `batch` span: a root span linking to the sampled records it carries.
pub fn batch_span(names: &SpanNames, batch: &Batch) -> Span {
    let topics = join(batch.offsets.keys().map(|tp| tp.topic.as_str()), true);
    let partitions = join(
        batch.offsets.keys().map(|tp| tp.partition.to_string()),
        false,
    );
    let span = info_span!(
        parent: None,
        "batch",
        otel.kind = "consumer",
        pipeline = %names.pipeline,
        batch.id = batch.id,
        offsets = %batch.describe_offsets(),
        records = batch.records,
        rows = batch.rows.len(),
        messaging.system = "kafka",
        messaging.operation.type = "process",
        messaging.destination.name = %topics,
        messaging.consumer.group.name = %names.group,
        messaging.destination.partition.id = %partitions,
        messaging.kafka.offset.first = tracing::field::Empty,
        messaging.kafka.offset.last = tracing::field::Empty,
        messaging.batch.message_count = batch.records,
        tidemill.links = batch.links.len(),
        tidemill.links.dropped = batch.links_dropped,
        tidemill.links.cap = MAX_LINKS,
        tidemill.stage.kafka_ms = tracing::field::Empty,
        tidemill.stage.batching_ms = tracing::field::Empty,
        tidemill.stage.queue_ms = tracing::field::Empty,
    );
    if enabled() {
        record_stages(&span, batch);
    }
    if batch.offsets.len() == 1 {
        if let Some(range) = batch.offsets.values().next() {
            span.record("messaging.kafka.offset.first", range.first);
            span.record("messaging.kafka.offset.last", range.last);
        }
    }
    for link in &batch.links {
        span.add_link(link.context.clone());
    }
    span
}

/// The stages the batch's oldest record passed before the writer took it
/// (`tidemill_stage_seconds`' `kafka`, `batching` and `queue`); the writer's
/// own stages are the `state`, write and commit child spans.
fn record_stages(span: &Span, batch: &Batch) {
    let waits = batch.timestamps.iter().zip(&batch.fetched_ms);
    if let Some(kafka) = waits.map(|(ts, fetched)| fetched - ts).max() {
        span.record("tidemill.stage.kafka_ms", kafka.max(0));
    }
    if let Some(first) = batch.fetched_ms.iter().min() {
        span.record(
            "tidemill.stage.batching_ms",
            (batch.closed_ms - first).max(0),
        );
    }
    if let Some(closed) = batch.closed_at {
        span.record(
            "tidemill.stage.queue_ms",
            closed.elapsed().as_millis() as i64,
        );
    }
}

/// One `process` span per linked record, each a child of the producer's span
/// and linked back to the batch span. Empty when tracing is off.
pub fn process_spans(names: &SpanNames, batch: &Batch, batch_span: &Span) -> Vec<Span> {
    if !enabled() || batch.links.is_empty() {
        return Vec::new();
    }
    let batch_cx = batch_span.context().span().span_context().clone();
    let now = crate::observe::stats::now_ms() as i64;
    batch
        .links
        .iter()
        .map(|link| {
            let age = link.timestamp_ms.map(|t| now - t);
            let span = info_span!(
                parent: None,
                "process",
                otel.kind = "consumer",
                pipeline = %names.pipeline,
                messaging.system = "kafka",
                messaging.operation.type = "process",
                messaging.destination.name = %link.tp.topic,
                messaging.consumer.group.name = %names.group,
                messaging.destination.partition.id = %link.tp.partition,
                messaging.kafka.offset = link.offset,
                tidemill.batch.id = batch.id,
                tidemill.record.age_ms = age,
            );
            let parent =
                opentelemetry::Context::new().with_remote_span_context(link.context.clone());
            // Fails only when the span is disabled (filtered out): nothing to parent then.
            let _ = span.set_parent(parent);
            if batch_cx.is_valid() {
                span.add_link(batch_cx.clone());
            }
            span
        })
        .collect()
}

/// The span context of `span`, when tracing is on and it is valid.
pub fn context_of(span: &Span) -> Option<SpanContext> {
    if !enabled() {
        return None;
    }
    let sc = span.context().span().span_context().clone();
    sc.is_valid().then_some(sc)
}

/// `kafka.commit` on the source thread: a child of the last acknowledged
/// batch's span, linked to the other batches it covers (bounded).
pub fn kafka_commit_span(group: &str, batches: &[SpanContext]) -> Span {
    let span = info_span!(
        parent: None,
        "kafka.commit",
        messaging.system = "kafka",
        messaging.operation.type = "settle",
        messaging.consumer.group.name = %group,
        tidemill.commit.mode = "async",
        tidemill.batches = batches.len(),
    );
    if let Some((last, rest)) = batches.split_last() {
        let _ =
            span.set_parent(opentelemetry::Context::new().with_remote_span_context(last.clone()));
        for sc in rest.iter().rev().take(MAX_LINKS) {
            span.add_link(sc.clone());
        }
    }
    span
}

/// `db.write`: the transaction's statements (rows, state, checkpoint).
pub fn db_write_span(system: &'static str, mode: SinkMode, table: &str, rows: usize) -> Span {
    let operation = match mode {
        SinkMode::Insert => "INSERT",
        SinkMode::Upsert => "UPSERT",
    };
    info_span!(
        "db.write",
        otel.kind = "client",
        db.system = system,
        db.system.name = system,
        db.operation.name = operation,
        db.collection.name = %table,
        rows,
    )
}

/// `db.commit`: the transaction's commit.
pub fn db_commit_span(system: &'static str, table: &str) -> Span {
    info_span!(
        "db.commit",
        otel.kind = "client",
        db.system = system,
        db.system.name = system,
        db.operation.name = "COMMIT",
        db.collection.name = %table,
    )
}

/// Distinct values in order, comma-separated (`dedup` for sorted repeats).
fn join<S: AsRef<str>>(items: impl Iterator<Item = S>, dedup: bool) -> String {
    let mut out = String::new();
    let mut last: Option<String> = None;
    for item in items {
        let item = item.as_ref();
        if dedup && last.as_deref() == Some(item) {
            continue;
        }
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str(item);
        last = Some(item.to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sampled_traceparent_becomes_a_remote_context() {
        let carrier = TraceHeaders {
            parent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            state: Some("vendor=x"),
        };
        let cx = TraceContextPropagator::new().extract(&carrier);
        let sc = cx.span().span_context().clone();
        assert!(sc.is_valid() && sc.is_remote() && sc.is_sampled());
        assert_eq!(
            sc.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(sc.trace_state().header(), "vendor=x");
    }

    #[test]
    fn only_sampled_traceparents_are_parsed() {
        let id = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7";
        assert!(flagged_sampled(&format!("{id}-01")));
        assert!(flagged_sampled(&format!("{id}-03")));
        assert!(!flagged_sampled(&format!("{id}-00")));
        assert!(!flagged_sampled("garbage"));
    }

    #[test]
    fn topics_are_listed_once() {
        assert_eq!(join(["a", "a", "b"].into_iter(), true), "a,b");
        assert_eq!(join(["0", "0"].into_iter(), false), "0,0");
    }
}
