//! Metrics over OTLP — HTTP (protobuf) or gRPC, as [`crate::observe::export`]
//! resolves it: the same [`Family`]s `/metrics` shows, pushed to a collector
//! every `telemetry.metrics_interval`.
//!
//! Contract: counters are cumulative monotonic sums (start time = process
//! start), gauges are gauges, histograms are cumulative explicit-bucket
//! histograms with the Prometheus bounds. Export runs on its own thread and
//! never blocks the pipelines; a failed export is logged and the next one
//! sends the (cumulative) figures again, so nothing is lost but resolution.
//! At shutdown one last export is attempted.

use super::{collect, Family, Kind, Registry, Value};
use crate::observe::export::{Endpoint, Protocol};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric::Data, number_data_point, AggregationTemporality, Gauge, Histogram, HistogramDataPoint,
    Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message as _;
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("metrics export to {endpoint}: {source}")]
    Http {
        endpoint: String,
        source: reqwest::Error,
    },
    #[error("metrics export to {endpoint}: HTTP {status}")]
    Status { endpoint: String, status: u16 },
    #[error("metrics export to {endpoint}: {source}")]
    Grpc {
        endpoint: String,
        source: Box<tonic::Status>,
    },
    #[error("metrics export to {endpoint}: {source}")]
    Channel {
        endpoint: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Where, how often and as whom metrics are pushed.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsExport {
    pub endpoint: Endpoint,
    pub interval: Duration,
    pub service_name: String,
}

/// Stops the exporter (after one last export) when dropped.
pub struct ExporterHandle {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for ExporterHandle {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts the export thread.
pub fn spawn(export: MetricsExport, registry: Registry) -> std::io::Result<ExporterHandle> {
    let (stop, stopped) = mpsc::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("otlp-metrics".into())
        .spawn(move || run(&export, &registry, &stopped))?;
    Ok(ExporterHandle {
        stop: Some(stop),
        thread: Some(thread),
    })
}

fn run(export: &MetricsExport, registry: &Registry, stopped: &mpsc::Receiver<()>) {
    let start = unix_nanos();
    let mut client = match Client::new(&export.endpoint) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the OTLP metrics client; metrics export off");
            return;
        }
    };
    loop {
        // A message never comes: the sender is dropped at shutdown, which ends the wait.
        let last = !matches!(
            stopped.recv_timeout(export.interval),
            Err(mpsc::RecvTimeoutError::Timeout)
        );
        let body = request(
            &collect(registry),
            &export.service_name,
            start,
            unix_nanos(),
        );
        if let Err(e) = client.send(&export.endpoint.url, body) {
            tracing::warn!(error = %e, "metrics export failed; the next one resends the totals");
        }
        if last {
            return;
        }
    }
}

/// How long one export may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The export thread's client: blocking HTTP, or a gRPC channel driven on a
/// runtime of the thread's own.
enum Client {
    Http(reqwest::blocking::Client),
    Grpc(Box<Grpc>),
}

/// A gRPC channel and the runtime that drives it.
struct Grpc {
    runtime: tokio::runtime::Runtime,
    client: MetricsServiceClient<tonic::transport::Channel>,
}

impl Client {
    fn new(endpoint: &Endpoint) -> Result<Self, ExportError> {
        let channel_err = |source: Box<dyn std::error::Error + Send + Sync>| ExportError::Channel {
            endpoint: endpoint.url.clone(),
            source,
        };
        match endpoint.protocol {
            Protocol::Http => reqwest::blocking::Client::builder()
                .timeout(TIMEOUT)
                .build()
                .map(Client::Http)
                .map_err(|source| ExportError::Http {
                    endpoint: endpoint.url.clone(),
                    source,
                }),
            Protocol::Grpc => {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| channel_err(Box::new(e)))?;
                let channel = {
                    let _entered = runtime.enter();
                    tonic::transport::Endpoint::from_shared(endpoint.url.clone())
                        .map_err(|e| channel_err(Box::new(e)))?
                        .timeout(TIMEOUT)
                        .connect_lazy()
                };
                Ok(Client::Grpc(Box::new(Grpc {
                    runtime,
                    client: MetricsServiceClient::new(channel),
                })))
            }
        }
    }

    fn send(
        &mut self,
        endpoint: &str,
        request: ExportMetricsServiceRequest,
    ) -> Result<(), ExportError> {
        match self {
            Client::Http(client) => post(client, endpoint, request.encode_to_vec()),
            Client::Grpc(grpc) => grpc
                .runtime
                .block_on(grpc.client.export(request))
                .map(|_| ())
                .map_err(|source| ExportError::Grpc {
                    endpoint: endpoint.to_string(),
                    source: Box::new(source),
                }),
        }
    }
}

fn post(
    client: &reqwest::blocking::Client,
    endpoint: &str,
    body: Vec<u8>,
) -> Result<(), ExportError> {
    let response = client
        .post(endpoint)
        .header("content-type", "application/x-protobuf")
        .body(body)
        .send()
        .map_err(|source| ExportError::Http {
            endpoint: endpoint.to_string(),
            source,
        })?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(ExportError::Status {
            endpoint: endpoint.to_string(),
            status: status.as_u16(),
        })
    }
}

fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn string_kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_string())),
        }),
        ..Default::default()
    }
}

/// One export request holding every family.
pub fn request(
    families: &[Family],
    service: &str,
    start: u64,
    now: u64,
) -> ExportMetricsServiceRequest {
    let metrics = families.iter().map(|f| metric(f, start, now)).collect();
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![string_kv("service.name", service)],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: "tidemill".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                }),
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn metric(f: &Family, start: u64, now: u64) -> Metric {
    let attrs = |labels: &[(&str, String)]| labels.iter().map(|(k, v)| string_kv(k, v)).collect();
    let numbers = || {
        f.points
            .iter()
            .filter_map(|p| match p.value {
                Value::Int(v) => Some(NumberDataPoint {
                    attributes: attrs(&p.labels),
                    start_time_unix_nano: start,
                    time_unix_nano: now,
                    value: Some(number_data_point::Value::AsInt(v)),
                    ..Default::default()
                }),
                Value::Histogram(_) => None,
            })
            .collect()
    };
    let data = match f.kind {
        Kind::Counter => Data::Sum(Sum {
            data_points: numbers(),
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: true,
        }),
        Kind::Gauge => Data::Gauge(Gauge {
            data_points: numbers(),
        }),
        Kind::Histogram => Data::Histogram(Histogram {
            data_points: f
                .points
                .iter()
                .filter_map(|p| match &p.value {
                    Value::Histogram((bounds, cumulative, count, sum)) => {
                        Some(HistogramDataPoint {
                            attributes: attrs(&p.labels),
                            start_time_unix_nano: start,
                            time_unix_nano: now,
                            count: *count,
                            sum: Some(*sum),
                            bucket_counts: per_bucket(cumulative, *count),
                            explicit_bounds: bounds.to_vec(),
                            ..Default::default()
                        })
                    }
                    Value::Int(_) => None,
                })
                .collect(),
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
        }),
    };
    Metric {
        name: f.name.to_string(),
        description: f.help.to_string(),
        unit: unit(f.name).to_string(),
        data: Some(data),
        ..Default::default()
    }
}

/// OTLP buckets count what falls in each (the last one above every bound);
/// Prometheus buckets are cumulative.
fn per_bucket(cumulative: &[u64], count: u64) -> Vec<u64> {
    let mut out = Vec::with_capacity(cumulative.len() + 1);
    let mut below = 0;
    for &c in cumulative {
        out.push(c.saturating_sub(below));
        below = c;
    }
    out.push(count.saturating_sub(below));
    out
}

fn unit(name: &str) -> &'static str {
    if name.ends_with("_seconds") {
        "s"
    } else {
        "1"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::stats::Stats;
    use std::sync::Arc;

    #[test]
    fn cumulative_buckets_become_per_bucket_counts_with_an_overflow_bucket() {
        assert_eq!(per_bucket(&[1, 1, 4], 6), vec![1, 0, 3, 2]);
        assert_eq!(per_bucket(&[], 0), vec![0]);
    }

    #[test]
    fn the_request_carries_counters_as_monotonic_sums_and_histograms_with_bounds() {
        let s = Arc::new(Stats::default());
        Stats::add(&s.rows_loaded, 42);
        s.batch_seconds.observe(0.02);
        s.batch_seconds.observe(20.0);
        let families = collect(&vec![("orders".to_string(), s)]);
        let req = request(&families, "mill", 1, 2);
        let rm = &req.resource_metrics[0];
        assert_eq!(
            rm.resource.as_ref().map(|r| r.attributes[0].clone()),
            Some(string_kv("service.name", "mill"))
        );
        let metrics = &rm.scope_metrics[0].metrics;
        let find = |n: &str| metrics.iter().find(|m| m.name == n).expect(n);
        match &find("tidemill_rows_loaded_total").data {
            Some(Data::Sum(sum)) => {
                assert!(sum.is_monotonic);
                let p = &sum.data_points[0];
                assert_eq!(p.value, Some(number_data_point::Value::AsInt(42)));
                assert_eq!(p.attributes, vec![string_kv("pipeline", "orders")]);
                assert_eq!((p.start_time_unix_nano, p.time_unix_nano), (1, 2));
            }
            other => panic!("not a sum: {other:?}"),
        }
        let hist = find("tidemill_batch_duration_seconds");
        assert_eq!(hist.unit, "s");
        match &hist.data {
            Some(Data::Histogram(h)) => {
                let p = &h.data_points[0];
                assert_eq!(p.count, 2);
                assert_eq!(p.explicit_bounds.len() + 1, p.bucket_counts.len());
                assert_eq!(p.bucket_counts.iter().sum::<u64>(), 2);
                assert_eq!(
                    p.bucket_counts.last(),
                    Some(&1),
                    "20 s is above every bound"
                );
            }
            other => panic!("not a histogram: {other:?}"),
        }
        assert!(matches!(
            find("tidemill_assigned_partitions").data,
            Some(Data::Gauge(_))
        ));
    }
}
