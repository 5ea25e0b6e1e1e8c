//! Metrics over OTLP/HTTP (protobuf): the same [`Family`]s `/metrics` shows,
//! pushed to a collector every `telemetry.metrics_interval`.
//!
//! Contract: counters are cumulative monotonic sums (start time = process
//! start), gauges are gauges, histograms are cumulative explicit-bucket
//! histograms with the Prometheus bounds. Export runs on its own thread and
//! never blocks the pipelines; a failed export is logged and the next one
//! sends the (cumulative) figures again, so nothing is lost but resolution.
//! At shutdown one last export is attempted.

use super::{collect, Family, Kind, Registry, Value};
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
}

/// Where, how often and as whom metrics are pushed.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsExport {
    pub endpoint: String,
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
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build();
    let client = match client {
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
        )
        .encode_to_vec();
        if let Err(e) = post(&client, &export.endpoint, body) {
            tracing::warn!(error = %e, "metrics export failed; the next one resends the totals");
        }
        if last {
            return;
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
