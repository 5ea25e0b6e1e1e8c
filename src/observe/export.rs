//! Where OTLP goes and how it is carried: OTLP/HTTP (protobuf) or OTLP/gRPC
//! (the collector's port 4317), chosen as the OpenTelemetry specification's
//! variables say, and a span exporter that carries its own runtime for gRPC.
//!
//! Contract: the protocol is the endpoint's when it says one (`grpc://host:port`
//! is gRPC over plain text), else `OTEL_EXPORTER_OTLP_{TRACES,METRICS}_PROTOCOL`,
//! else `OTEL_EXPORTER_OTLP_PROTOCOL` (`grpc` or `http/protobuf`), else
//! OTLP/HTTP. An endpoint given for the signal (config, or the signal's own
//! variable) is used as is; the shared base (`OTEL_EXPORTER_OTLP_ENDPOINT`)
//! gets the signal's path over HTTP (`/v1/traces`, `/v1/metrics`) and none
//! over gRPC, whose path is the service's name. What cannot be honoured —
//! `http/json`, gRPC over TLS (not built in) — fails start-up naming where
//! it was asked for.

use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use std::time::Duration;

/// What cannot be honoured, named by where it was asked for.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("{var}=`{value}`: expected grpc or http/protobuf")]
    Protocol { var: &'static str, value: String },
    #[error("{key}: OTLP over gRPC with TLS is not built in; use a plain-text endpoint (grpc:// or http://) or OTLP/HTTP")]
    GrpcTls { key: &'static str },
    #[error("the OTLP/gRPC exporter's runtime: {0}")]
    Runtime(std::io::Error),
    #[error("the OTLP/gRPC exporter: {0}")]
    Build(#[from] opentelemetry_otlp::ExporterBuildError),
}

/// How OTLP is carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// OTLP/HTTP with protobuf bodies.
    Http,
    /// OTLP/gRPC over plain-text HTTP/2.
    Grpc,
}

/// A resolved OTLP destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `http://…`: for HTTP the full URL, for gRPC the server's address.
    pub url: String,
    pub protocol: Protocol,
}

/// What is exported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Traces,
    Metrics,
}

impl Signal {
    fn path(self) -> &'static str {
        match self {
            Signal::Traces => "/v1/traces",
            Signal::Metrics => "/v1/metrics",
        }
    }

    fn protocol_var(self) -> &'static str {
        match self {
            Signal::Traces => "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            Signal::Metrics => "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
        }
    }
}

/// The protocol the variables ask for `signal`, if they ask.
pub fn asked_protocol(
    signal: Signal,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Option<Protocol>, EndpointError> {
    for var in [signal.protocol_var(), "OTEL_EXPORTER_OTLP_PROTOCOL"] {
        match env(var).as_deref().map(str::trim) {
            None | Some("") => continue,
            Some("grpc") => return Ok(Some(Protocol::Grpc)),
            Some("http/protobuf") => return Ok(Some(Protocol::Http)),
            Some(other) => {
                return Err(EndpointError::Protocol {
                    var,
                    value: other.to_string(),
                })
            }
        }
    }
    Ok(None)
}

/// The destination of `signal`: `given` (named `key` in errors) used as is,
/// else `base` with the signal's path over HTTP.
pub fn endpoint(
    given: Option<(String, &'static str)>,
    base: Option<String>,
    signal: Signal,
    asked: Option<Protocol>,
) -> Result<Option<Endpoint>, EndpointError> {
    let (raw, key, from_base) = match (given, base) {
        (Some((url, key)), _) => (url, key, false),
        (None, Some(url)) => (url, "OTEL_EXPORTER_OTLP_ENDPOINT", true),
        (None, None) => return Ok(None),
    };
    let raw = raw.trim().to_string();
    let (url, protocol) = if let Some(rest) = raw.strip_prefix("grpc://") {
        (format!("http://{rest}"), Protocol::Grpc)
    } else if raw.starts_with("grpcs://") {
        return Err(EndpointError::GrpcTls { key });
    } else {
        (raw, asked.unwrap_or(Protocol::Http))
    };
    if protocol == Protocol::Grpc && url.starts_with("https://") {
        return Err(EndpointError::GrpcTls { key });
    }
    let url = match protocol {
        Protocol::Http if from_base => format!("{}{}", url.trim_end_matches('/'), signal.path()),
        _ => url,
    };
    Ok(Some(Endpoint { url, protocol }))
}

/// A span exporter driven on a runtime of its own: the SDK's batch processor
/// exports from a plain thread, where tonic's HTTP/2 connection finds no
/// Tokio reactor (a known trap: spans silently stop).
#[derive(Debug)]
pub struct OnRuntime {
    inner: opentelemetry_otlp::SpanExporter,
    runtime: tokio::runtime::Runtime,
}

impl OnRuntime {
    /// A gRPC span exporter to `url`, its channel made on its own runtime.
    pub fn grpc(url: &str) -> Result<Self, EndpointError> {
        use opentelemetry_otlp::WithExportConfig;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("otlp-grpc")
            .build()
            .map_err(EndpointError::Runtime)?;
        let inner = {
            let _entered = runtime.enter();
            opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(url)
                .with_timeout(Duration::from_secs(10))
                .build()?
        };
        Ok(Self { inner, runtime })
    }
}

impl SpanExporter for OnRuntime {
    fn export(
        &self,
        batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        let result = self.runtime.block_on(self.inner.export(batch));
        std::future::ready(result)
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let _entered = self.runtime.enter();
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        let _entered = self.runtime.enter();
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn the_signals_variable_wins_over_the_shared_one_and_json_is_refused() {
        let env = [
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "grpc"),
        ];
        let asked = |s| asked_protocol(s, &vars(&env)).expect("valid");
        assert_eq!(asked(Signal::Metrics), Some(Protocol::Grpc));
        assert_eq!(asked(Signal::Traces), Some(Protocol::Http));
        assert_eq!(
            asked_protocol(Signal::Traces, &vars(&[])).expect("valid"),
            None
        );
        let json = asked_protocol(
            Signal::Traces,
            &vars(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")]),
        );
        assert!(
            matches!(
                json,
                Err(EndpointError::Protocol {
                    var: "OTEL_EXPORTER_OTLP_PROTOCOL",
                    ..
                })
            ),
            "{json:?}"
        );
    }

    #[test]
    fn a_grpc_base_gets_no_path_and_an_http_base_gets_the_signals() {
        let base = Some("http://collector:4317/".to_string());
        let grpc = endpoint(None, base.clone(), Signal::Traces, Some(Protocol::Grpc));
        assert_eq!(
            grpc.expect("valid"),
            Some(Endpoint {
                url: "http://collector:4317/".into(),
                protocol: Protocol::Grpc
            })
        );
        let http = endpoint(None, base, Signal::Metrics, None)
            .expect("valid")
            .expect("set");
        assert_eq!(
            (http.url.as_str(), http.protocol),
            ("http://collector:4317/v1/metrics", Protocol::Http)
        );
    }

    #[test]
    fn the_endpoints_scheme_says_grpc_whatever_the_variables_say() {
        let given = Some((
            "grpc://collector:4317".to_string(),
            "telemetry.otlp_endpoint",
        ));
        let e = endpoint(given, None, Signal::Traces, Some(Protocol::Http))
            .expect("valid")
            .expect("set");
        assert_eq!(
            (e.url.as_str(), e.protocol),
            ("http://collector:4317", Protocol::Grpc)
        );
        let given = Some((
            "http://c:4318/v1/traces".to_string(),
            "telemetry.otlp_endpoint",
        ));
        let e = endpoint(given, None, Signal::Traces, None)
            .expect("valid")
            .expect("set");
        assert_eq!(
            (e.url.as_str(), e.protocol),
            ("http://c:4318/v1/traces", Protocol::Http)
        );
        assert_eq!(
            endpoint(None, None, Signal::Traces, None).expect("valid"),
            None
        );
    }

    #[test]
    fn grpc_over_tls_is_refused_naming_where_it_was_asked() {
        let given = Some((
            "grpcs://collector:4317".to_string(),
            "telemetry.otlp_endpoint",
        ));
        let e = endpoint(given, None, Signal::Traces, None);
        assert!(
            matches!(
                e,
                Err(EndpointError::GrpcTls {
                    key: "telemetry.otlp_endpoint"
                })
            ),
            "{e:?}"
        );
        let base = Some("https://collector:4317".to_string());
        let e = endpoint(None, base, Signal::Traces, Some(Protocol::Grpc));
        assert!(
            matches!(
                e,
                Err(EndpointError::GrpcTls {
                    key: "OTEL_EXPORTER_OTLP_ENDPOINT"
                })
            ),
            "{e:?}"
        );
    }
}
