//! JSON log lines that carry the OpenTelemetry ids of the span they were
//! logged in, so a log line leads to its trace in Jaeger (and back).
//!
//! Contract: when a tracer is installed and the event happens inside a span
//! the OpenTelemetry layer knows, the line gains top-level `trace_id` (32 hex
//! digits) and `span_id` (16 hex digits) fields, the same ids the exported
//! span carries; otherwise the line is tracing-subscriber's JSON unchanged.
//! Looking the ids up never blocks on I/O: it reads the span's extensions.

use opentelemetry::trace::TraceContextExt as _;
use std::fmt;
use std::sync::{Arc, OnceLock};
use tracing::dispatcher::WeakDispatch;
use tracing::{Dispatch, Event, Subscriber};
use tracing_subscriber::fmt::format::{Format, Json, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::Layer;
use tracing_subscriber::registry::LookupSpan;

/// The JSON event format plus `trace_id`/`span_id`.
pub struct JsonWithIds {
    inner: Format<Json>,
    dispatch: Arc<OnceLock<WeakDispatch>>,
}

/// Remembers the dispatch the subscriber was registered as: the formatter
/// needs it to ask the OpenTelemetry layer for a span's context (the
/// dispatcher's re-entrancy guard hides the current one while an event is
/// being formatted).
pub struct DispatchCapture(Arc<OnceLock<WeakDispatch>>);

/// A formatter and the layer that feeds it; install both in one subscriber.
pub fn json_with_ids() -> (JsonWithIds, DispatchCapture) {
    let cell = Arc::new(OnceLock::new());
    let inner = tracing_subscriber::fmt::format()
        .json()
        .with_current_span(true);
    (
        JsonWithIds {
            inner,
            dispatch: Arc::clone(&cell),
        },
        DispatchCapture(cell),
    )
}

impl<S: Subscriber> Layer<S> for DispatchCapture {
    fn on_register_dispatch(&self, subscriber: &Dispatch) {
        // First registration wins; a subscriber is registered once.
        let _ = self.0.set(subscriber.downgrade());
    }
}

impl<S, N> FormatEvent<S, N> for JsonWithIds
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> FormatFields<'w> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let ids = self.ids(ctx);
        let mut line = String::new();
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        match (ids, line.strip_prefix('{')) {
            (Some((trace_id, span_id)), Some(rest)) => {
                let sep = if rest.starts_with('}') { "" } else { "," };
                write!(
                    writer,
                    "{{\"trace_id\":\"{trace_id}\",\"span_id\":\"{span_id}\"{sep}{rest}"
                )
            }
            _ => writer.write_str(&line),
        }
    }
}

impl JsonWithIds {
    /// The ids of the event's span (its explicit parent, else the current
    /// span), if OpenTelemetry has a valid context for it.
    fn ids<S, N>(&self, ctx: &FmtContext<'_, S, N>) -> Option<(String, String)>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
        N: for<'w> FormatFields<'w> + 'static,
    {
        let span = ctx.event_scope()?.next()?;
        let dispatch = self.dispatch.get()?.upgrade()?;
        let cx = tracing_opentelemetry::get_otel_context(&span.id(), &dispatch)?;
        let otel_span = cx.span();
        let sc = otel_span.span_context();
        sc.is_valid()
            .then(|| (sc.trace_id().to_string(), sc.span_id().to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::TracerProvider as _;
    use std::sync::Mutex;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    use tracing_subscriber::layer::SubscriberExt as _;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("buffer").extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn lines(buf: &Buf) -> Vec<serde_json::Value> {
        let text = String::from_utf8(buf.0.lock().expect("buffer").clone()).expect("utf-8");
        text.lines()
            .map(|l| serde_json::from_str(l).expect("each line is JSON"))
            .collect()
    }

    /// JSON lines into `buf`, with an OpenTelemetry layer when given.
    fn subscriber<L>(buf: &Buf, otel: Option<L>) -> impl Subscriber + Send + Sync
    where
        L: Layer<tracing_subscriber::Registry> + Send + Sync,
    {
        let (format, capture) = json_with_ids();
        let writer = buf.clone();
        tracing_subscriber::registry()
            .with(otel)
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .event_format(format)
                    .with_writer(move || writer.clone()),
            )
            .with(capture)
    }

    #[test]
    fn a_line_logged_in_a_span_carries_that_spans_trace_and_span_ids() {
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let buf = Buf::default();
        let otel = tracing_opentelemetry::layer().with_tracer(provider.tracer("test"));
        let subscriber = subscriber(&buf, Some(otel));
        let expected = tracing::subscriber::with_default(subscriber, || {
            tracing::info!(rows = 1, "outside any span");
            let span = tracing::info_span!("batch", partition = 3);
            let _entered = span.enter();
            tracing::info!(rows = 5, "wrote batch");
            let cx = span.context();
            let otel = cx.span();
            let sc = otel.span_context();
            (sc.trace_id().to_string(), sc.span_id().to_string())
        });
        let lines = lines(&buf);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].get("trace_id").is_none(), "{}", lines[0]);
        assert_eq!(lines[0]["fields"]["message"], "outside any span");
        assert_eq!(lines[1]["trace_id"], expected.0.as_str());
        assert_eq!(lines[1]["span_id"], expected.1.as_str());
        assert_eq!(lines[1]["trace_id"].as_str().map(str::len), Some(32));
        assert_eq!(lines[1]["fields"]["rows"], 5);
        assert_eq!(lines[1]["span"]["partition"], 3);
    }

    #[test]
    fn without_a_tracer_lines_are_plain_json() {
        let buf = Buf::default();
        let subscriber = subscriber::<tracing_subscriber::layer::Identity>(&buf, None);
        tracing::subscriber::with_default(subscriber, || {
            let _span = tracing::info_span!("batch").entered();
            tracing::warn!("no tracer");
        });
        let lines = lines(&buf);
        assert_eq!(lines.len(), 1);
        assert!(lines[0].get("trace_id").is_none());
        assert_eq!(lines[0]["level"], "WARN");
    }
}
