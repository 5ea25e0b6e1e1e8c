//! Logging and tracing set-up: `tracing` everywhere, printed as human-readable
//! or JSON lines (with the span's `trace_id`/`span_id` when tracing is on, see
//! [`log_ids`]), and exported over OTLP when an endpoint is configured (off
//! by default, so the cost with tracing off is the `tracing` macros only).
//!
//! Contract: config wins; what config leaves unset comes from the standard
//! variables — `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used as is),
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (`/v1/traces` appended over HTTP),
//! the protocol variables ([`crate::observe::export`]: OTLP/HTTP or gRPC),
//! `OTEL_TRACES_SAMPLER_ARG` (the ratio) and `OTEL_SERVICE_NAME`. Once an
//! exporter is installed, [`crate::observe::trace::enabled`] turns true.

mod log_ids;

use crate::config::{LogFormat, TelemetryConfig};
use crate::observe::export::{self, Endpoint, EndpointError, OnRuntime, Protocol, Signal};
pub use crate::observe::metrics::otlp::MetricsExport;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use std::time::Duration;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("telemetry.log_level `{level}`: {source}")]
    Filter {
        level: String,
        source: tracing_subscriber::filter::ParseError,
    },
    #[error("telemetry.otlp_endpoint: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    #[error("{var}=`{value}`: expected a sampling ratio between 0.0 and 1.0")]
    SamplerArg { var: &'static str, value: String },
    #[error("{var}=`{value}`: expected a positive number of milliseconds")]
    Interval { var: &'static str, value: String },
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    #[error("a global tracing subscriber is already set: {0}")]
    Init(#[from] tracing_subscriber::util::TryInitError),
}

/// Flushes spans on drop; keep it alive for the life of the process.
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            if let Err(e) = provider.shutdown() {
                eprintln!("tidemill: flushing traces failed: {e}");
            }
        }
    }
}

/// Installs the global subscriber. `RUST_LOG`, when set, wins over `log_level`.
pub fn init(cfg: &TelemetryConfig) -> Result<TelemetryGuard, TelemetryError> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directive) if !directive.is_empty() => EnvFilter::try_new(&directive),
        _ => EnvFilter::try_new(&cfg.log_level),
    }
    .map_err(|source| TelemetryError::Filter {
        level: cfg.log_level.clone(),
        source,
    })?;
    let (json_format, capture) = log_ids::json_with_ids();
    let fmt = match cfg.log_format {
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .with_target(false)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .event_format(json_format)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    let export = Export::resolve(cfg, |var| std::env::var(var).ok())?;
    let provider = match &export.endpoint {
        Some(endpoint) => Some(tracer_provider(&export, endpoint)?),
        None => None,
    };
    let otel = provider
        .as_ref()
        .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer("tidemill")));
    tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .with(otel)
        .with(capture)
        .try_init()?;
    crate::observe::trace::set_enabled(provider.is_some());
    Ok(TelemetryGuard { provider })
}

/// Where and how spans are exported: config first, then `OTEL_*` variables.
#[derive(Debug, Clone, PartialEq)]
pub struct Export {
    pub endpoint: Option<Endpoint>,
    pub sampling_ratio: f64,
    pub service_name: String,
}

impl Export {
    pub fn resolve(
        cfg: &TelemetryConfig,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, TelemetryError> {
        let set = |v: Option<String>| v.filter(|v| !v.trim().is_empty());
        let given = set(cfg.otlp_endpoint.clone())
            .map(|e| (e, "telemetry.otlp_endpoint"))
            .or_else(|| {
                set(env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
                    .map(|e| (e, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
            });
        let asked = export::asked_protocol(Signal::Traces, &env)?;
        let base = set(env("OTEL_EXPORTER_OTLP_ENDPOINT"));
        let endpoint = export::endpoint(given, base, Signal::Traces, asked)?;
        let sampling_ratio = match (cfg.sampling_ratio, set(env("OTEL_TRACES_SAMPLER_ARG"))) {
            (Some(ratio), _) => ratio,
            (None, Some(value)) => match value.trim().parse::<f64>() {
                Ok(r) if (0.0..=1.0).contains(&r) => r,
                _ => {
                    return Err(TelemetryError::SamplerArg {
                        var: "OTEL_TRACES_SAMPLER_ARG",
                        value,
                    })
                }
            },
            (None, None) => 1.0,
        };
        let service_name = set(cfg.service_name.clone())
            .or_else(|| set(env("OTEL_SERVICE_NAME")))
            .unwrap_or_else(|| "tidemill".into());
        Ok(Self {
            endpoint,
            sampling_ratio,
            service_name,
        })
    }
}

/// Where metrics are pushed, if anywhere: `telemetry.otlp_metrics_endpoint`,
/// then `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`, then `OTEL_EXPORTER_OTLP_ENDPOINT`
/// with `/v1/metrics` appended, then the traces endpoint's sibling
/// (`…/v1/traces` → `…/v1/metrics`). `OTEL_METRICS_EXPORTER=none` turns it off.
pub fn metrics_export(
    cfg: &TelemetryConfig,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<MetricsExport>, TelemetryError> {
    let set = |v: Option<String>| v.filter(|v| !v.trim().is_empty());
    if set(env("OTEL_METRICS_EXPORTER")).is_some_and(|v| v.trim() == "none") {
        return Ok(None);
    }
    let given = set(cfg.otlp_metrics_endpoint.clone())
        .map(|e| (e, "telemetry.otlp_metrics_endpoint"))
        .or_else(|| {
            set(env("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"))
                .map(|e| (e, "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"))
        });
    let asked = export::asked_protocol(Signal::Metrics, &env)?;
    let base = set(env("OTEL_EXPORTER_OTLP_ENDPOINT"));
    let traces = Export::resolve(cfg, &env)?;
    let endpoint = match export::endpoint(given, base, Signal::Metrics, asked)? {
        Some(e) => Some(e),
        // Next to the configured traces: the same gRPC server, or the HTTP sibling path.
        None if set(cfg.otlp_endpoint.clone()).is_some() => {
            traces.endpoint.and_then(|t| match t.protocol {
                Protocol::Grpc => Some(t),
                Protocol::Http => t.url.strip_suffix("/v1/traces").map(|b| Endpoint {
                    url: format!("{b}/v1/metrics"),
                    protocol: Protocol::Http,
                }),
            })
        }
        None => None,
    };
    let Some(endpoint) = endpoint else {
        return Ok(None);
    };
    let interval = match (
        cfg.metrics_interval,
        set(env("OTEL_METRIC_EXPORT_INTERVAL")),
    ) {
        (Some(d), _) => d,
        (None, Some(ms)) => match ms.trim().parse::<u64>() {
            Ok(ms) if ms > 0 => Duration::from_millis(ms),
            _ => {
                return Err(TelemetryError::Interval {
                    var: "OTEL_METRIC_EXPORT_INTERVAL",
                    value: ms,
                })
            }
        },
        (None, None) => Duration::from_secs(60),
    };
    Ok(Some(MetricsExport {
        endpoint,
        interval,
        service_name: traces.service_name,
    }))
}

fn tracer_provider(cfg: &Export, endpoint: &Endpoint) -> Result<SdkTracerProvider, TelemetryError> {
    let builder = SdkTracerProvider::builder();
    let builder = match endpoint.protocol {
        Protocol::Http => builder.with_batch_exporter(
            opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_endpoint(&endpoint.url)
                .build()?,
        ),
        Protocol::Grpc => builder.with_batch_exporter(OnRuntime::grpc(&endpoint.url)?),
    };
    Ok(builder
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            cfg.sampling_ratio,
        ))))
        .with_resource(
            Resource::builder()
                .with_service_name(cfg.service_name.clone())
                .build(),
        )
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn otel_variables_fill_what_config_leaves_unset() {
        let vars = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
            ("OTEL_SERVICE_NAME", "mill-7"),
        ];
        let export = Export::resolve(&TelemetryConfig::default(), env(&vars)).expect("valid");
        assert_eq!(
            export,
            Export {
                endpoint: Some(Endpoint {
                    url: "http://collector:4318/v1/traces".into(),
                    protocol: Protocol::Http,
                }),
                sampling_ratio: 0.25,
                service_name: "mill-7".into(),
            }
        );
    }

    #[test]
    fn config_wins_over_otel_variables() {
        let cfg = TelemetryConfig {
            otlp_endpoint: Some("http://mine:4318/v1/traces".into()),
            sampling_ratio: Some(0.5),
            service_name: Some("configured".into()),
            ..TelemetryConfig::default()
        };
        let vars = [
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://other/v1/traces",
            ),
            ("OTEL_TRACES_SAMPLER_ARG", "0.1"),
            ("OTEL_SERVICE_NAME", "env"),
        ];
        let export = Export::resolve(&cfg, env(&vars)).expect("valid");
        assert_eq!(
            export.endpoint.map(|e| e.url).as_deref(),
            Some("http://mine:4318/v1/traces")
        );
        assert_eq!(
            (export.sampling_ratio, export.service_name.as_str()),
            (0.5, "configured")
        );
    }

    #[test]
    fn metrics_go_next_to_the_traces_unless_told_otherwise() {
        let cfg = TelemetryConfig {
            otlp_endpoint: Some("http://c:4318/v1/traces".into()),
            ..TelemetryConfig::default()
        };
        let m = metrics_export(&cfg, env(&[])).expect("valid").expect("on");
        assert_eq!(m.endpoint.url, "http://c:4318/v1/metrics");
        assert_eq!(m.interval, Duration::from_secs(60));
        let vars = [
            ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://m/v1/metrics"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "5000"),
        ];
        let m = metrics_export(&cfg, env(&vars))
            .expect("valid")
            .expect("on");
        assert_eq!(
            (m.endpoint.url.as_str(), m.interval),
            ("http://m/v1/metrics", Duration::from_secs(5))
        );
        let off = metrics_export(&cfg, env(&[("OTEL_METRICS_EXPORTER", "none")]));
        assert_eq!(off.expect("valid"), None);
        assert_eq!(
            metrics_export(&TelemetryConfig::default(), env(&[])).expect("valid"),
            None
        );
        let bad = metrics_export(&cfg, env(&[("OTEL_METRIC_EXPORT_INTERVAL", "soon")]));
        assert!(matches!(bad, Err(TelemetryError::Interval { .. })));
    }

    #[test]
    fn metrics_follow_a_grpc_traces_endpoint_to_the_same_server() {
        let cfg = TelemetryConfig {
            otlp_endpoint: Some("grpc://collector:4317".into()),
            ..TelemetryConfig::default()
        };
        let grpc = Endpoint {
            url: "http://collector:4317".into(),
            protocol: Protocol::Grpc,
        };
        let traces = Export::resolve(&cfg, env(&[])).expect("valid");
        assert_eq!(traces.endpoint.as_ref(), Some(&grpc));
        let m = metrics_export(&cfg, env(&[])).expect("valid").expect("on");
        assert_eq!(m.endpoint, grpc);
        let vars = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ];
        let m = metrics_export(&TelemetryConfig::default(), env(&vars))
            .expect("valid")
            .expect("on");
        assert_eq!(m.endpoint, grpc, "a gRPC base gets no path");
        let bad = Export::resolve(
            &TelemetryConfig::default(),
            env(&[("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json")]),
        );
        assert!(
            matches!(bad, Err(TelemetryError::Endpoint(_))),
            "http/json is refused, not ignored"
        );
    }

    #[test]
    fn nothing_set_means_no_export_and_a_bad_ratio_is_an_error() {
        let export = Export::resolve(&TelemetryConfig::default(), env(&[])).expect("valid");
        assert_eq!((export.endpoint, export.sampling_ratio), (None, 1.0));
        let bad = Export::resolve(
            &TelemetryConfig::default(),
            env(&[("OTEL_TRACES_SAMPLER_ARG", "2")]),
        );
        assert!(matches!(bad, Err(TelemetryError::SamplerArg { .. })));
    }
}
