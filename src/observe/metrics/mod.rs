//! Metrics: every pipeline's [`Stats`], read once per scrape or export into
//! [`Family`]s, then rendered as Prometheus text on `/metrics`
//! ([`prometheus`]) and pushed over OTLP/HTTP when configured ([`otlp`]) —
//! hand-rolled, no metrics crate, so both show the same numbers.
//!
//! Contract: one family per metric name; series are labelled
//! `pipeline`, and per partition also `topic` and `partition`. Counters only
//! grow for the life of the process. Lag and freshness gauges are reported for
//! partitions this member owns, once they are known: lag needs a high
//! watermark from librdkafka's statistics (`statistics.interval.ms`) and a
//! committed position (a batch committed, or the checkpoint resumed from).

use crate::observe::stats::{
    now_ms, Histogram, PartitionStats, RetryKind, Stage, Stats, BUCKETS, LATENCY_BUCKETS,
    ROW_BUCKETS, STAGE_BUCKETS,
};
use std::sync::atomic::Ordering;
use std::sync::Arc;

pub mod otlp;
mod prometheus;

pub use prometheus::metrics;

/// The pipelines reported on: (name, counters).
pub type Registry = Vec<(String, Arc<Stats>)>;

/// A counter's name, help text and reader.
type Counter = (&'static str, &'static str, fn(&Stats) -> u64);

const COUNTERS: [Counter; 15] = [
    (
        "tidemill_records_in_total",
        "Records consumed from Kafka.",
        |s| Stats::get(&s.records_in),
    ),
    (
        "tidemill_rows_loaded_total",
        "Rows committed to the database.",
        |s| Stats::get(&s.rows_loaded),
    ),
    (
        "tidemill_rows_deleted_total",
        "Rows deleted by tombstones (sink delete on).",
        |s| Stats::get(&s.rows_deleted),
    ),
    (
        "tidemill_records_committed_total",
        "Records whose batch the database committed.",
        |s| Stats::get(&s.records_done),
    ),
    ("tidemill_batches_total", "Batches committed.", |s| {
        Stats::get(&s.batches)
    }),
    (
        "tidemill_dead_lettered_total",
        "Records sent to the dead-letter topic.",
        |s| Stats::get(&s.dead_lettered),
    ),
    (
        "tidemill_tombstones_skipped_total",
        "Tombstones skipped (sink delete off).",
        |s| Stats::get(&s.tombstones_skipped),
    ),
    (
        "tidemill_records_late_total",
        "Records refused by an event-time window as late.",
        |s| Stats::get(&s.records_late),
    ),
    (
        "tidemill_state_cache_hits_total",
        "Keyed-state lookups served by the in-memory cache.",
        |s| Stats::get(&s.state_cache_hits),
    ),
    (
        "tidemill_state_loads_total",
        "Keyed-state lookups loaded from the database (cache misses).",
        |s| Stats::get(&s.state_loads),
    ),
    (
        "tidemill_rebalances_total",
        "Rebalance callbacks served (assignments and revocations).",
        |s| Stats::get(&s.rebalances),
    ),
    (
        "tidemill_fenced_total",
        "Times a newer owner fenced this member (its batch rolled back; it rejoined the group).",
        |s| Stats::get(&s.fenced),
    ),
    (
        "tidemill_assigned_partitions",
        "Partitions owned by this member.",
        |s| Stats::get(&s.assigned_partitions),
    ),
    (
        "tidemill_batches_in_flight",
        "Batches handed to the writer and not yet finished (at most batch.max_in_flight).",
        |s| Stats::get(&s.batches_in_flight),
    ),
    (
        "tidemill_source_paused",
        "1 while backpressure holds every partition paused (the writer or the in-flight byte budget is behind).",
        |s| u64::from(s.source_paused.load(Ordering::Relaxed)),
    ),
];

/// A per-partition series: name, type, help, reader (`None`: not reported).
type PartitionSeries = (
    &'static str,
    &'static str,
    &'static str,
    fn(&PartitionStats, Option<i64>, i64) -> Option<i64>,
);

/// Reader arguments: the partition, its high watermark, now in ms.
const PARTITION_SERIES: [PartitionSeries; 7] = [
    (
        "tidemill_partition_records_in_total",
        "counter",
        "Records consumed from Kafka, per partition.",
        |p, _, _| Some(p.records_in.load(Ordering::Relaxed) as i64),
    ),
    (
        "tidemill_partition_rows_loaded_total",
        "counter",
        "Rows committed to the database, per source partition.",
        |p, _, _| Some(p.rows_loaded.load(Ordering::Relaxed) as i64),
    ),
    (
        "tidemill_partition_dead_lettered_total",
        "counter",
        "Records sent to the dead-letter topic, per source partition.",
        |p, _, _| Some(p.dead_lettered.load(Ordering::Relaxed) as i64),
    ),
    (
        "tidemill_partition_committed_offset",
        "gauge",
        "Next offset to read after the last batch the database committed.",
        |p, _, _| p.committed(),
    ),
    (
        "tidemill_partition_high_watermark",
        "gauge",
        "High watermark last reported by librdkafka's statistics.",
        |p, high, _| high.filter(|_| p.is_owned()),
    ),
    (
        "tidemill_consumer_lag",
        "gauge",
        "Records in Kafka not yet committed to the database (high watermark minus committed offset).",
        |p, high, _| p.lag(high),
    ),
    (
        "tidemill_freshness_seconds",
        "gauge",
        "Age of the newest committed record's Kafka timestamp, in seconds (whole seconds).",
        |p, _, now| p.freshness_ms(now).map(|ms| ms / 1000),
    ),
];

/// How a family's points are to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only grows for the life of the process.
    Counter,
    Gauge,
    Histogram,
}

/// One point of a family: its labels and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// `pipeline` first; per partition also `topic` and `partition`.
    pub labels: Vec<(&'static str, String)>,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int(i64),
    Histogram(Snapshot),
}

/// Every point of one metric name.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    pub points: Vec<Point>,
}

/// Reads every pipeline's figures once: what `/metrics` and the OTLP export show.
pub fn collect(registry: &Registry) -> Vec<Family> {
    let mut out = Vec::new();
    for (name, help, get) in COUNTERS {
        let kind = if name.ends_with("_total") {
            Kind::Counter
        } else {
            Kind::Gauge
        };
        let points = registry
            .iter()
            .map(|(pipeline, s)| Point {
                labels: vec![("pipeline", pipeline.clone())],
                value: Value::Int(get(s) as i64),
            })
            .collect();
        out.push(Family {
            name,
            help,
            kind,
            points,
        });
    }
    out.push(retries(registry));
    out.extend(partitions(registry));
    out.extend(histograms(registry));
    out
}

fn retries(registry: &Registry) -> Family {
    let mut points = Vec::new();
    for (pipeline, s) in registry {
        for (kind, n) in RetryKind::ALL.iter().zip(&s.retries) {
            points.push(Point {
                labels: vec![
                    ("pipeline", pipeline.clone()),
                    ("class", kind.as_str().to_string()),
                ],
                value: Value::Int(Stats::get(n) as i64),
            });
        }
    }
    Family {
        name: "tidemill_db_retries_total",
        help: "Database writes retried after a transient error, by class.",
        kind: Kind::Counter,
        points,
    }
}

fn partitions(registry: &Registry) -> Vec<Family> {
    let now = now_ms() as i64;
    let snapshot: Vec<_> = registry
        .iter()
        .map(|(pipeline, s)| {
            let highs = s
                .high_watermarks
                .lock()
                .map(|h| h.clone())
                .unwrap_or_default();
            (pipeline, s.partitions(), highs)
        })
        .collect();
    let mut out = Vec::new();
    for (name, kind, help, get) in PARTITION_SERIES {
        let mut points = Vec::new();
        for (pipeline, parts, highs) in &snapshot {
            for (tp, p) in parts {
                if let Some(v) = get(p, highs.get(tp).copied(), now) {
                    points.push(Point {
                        labels: vec![
                            ("pipeline", (*pipeline).clone()),
                            ("topic", tp.topic.to_string()),
                            ("partition", tp.partition.to_string()),
                        ],
                        value: Value::Int(v),
                    });
                }
            }
        }
        let kind = if kind == "counter" {
            Kind::Counter
        } else {
            Kind::Gauge
        };
        out.push(Family {
            name,
            help,
            kind,
            points,
        });
    }
    out
}

fn histograms(registry: &Registry) -> Vec<Family> {
    let series: [HistogramSeries; 4] = [
        (
            "tidemill_batch_duration_seconds",
            "Batch write time, retries included.",
            |s| snapshot(&s.batch_seconds, &BUCKETS),
        ),
        ("tidemill_batch_rows", "Rows per committed batch.", |s| {
            snapshot(&s.batch_rows, &ROW_BUCKETS)
        }),
        (
            "tidemill_end_to_end_latency_seconds",
            "From each record's Kafka timestamp to the commit of its batch.",
            |s| snapshot(&s.end_to_end_seconds, &LATENCY_BUCKETS),
        ),
        (
            "tidemill_rebalance_pause_seconds",
            "Time the poll loop spent in a rebalance callback (revocations drain in-flight batches).",
            |s| snapshot(&s.rebalance_seconds, &BUCKETS),
        ),
    ];
    let mut out: Vec<Family> = series
        .into_iter()
        .map(|(name, help, get)| Family {
            name,
            help,
            kind: Kind::Histogram,
            points: registry
                .iter()
                .map(|(pipeline, s)| Point {
                    labels: vec![("pipeline", pipeline.clone())],
                    value: Value::Histogram(get(s)),
                })
                .collect(),
        })
        .collect();
    out.push(stages(registry));
    out
}

/// `tidemill_stage_seconds{pipeline, stage}`: where each record's time went.
fn stages(registry: &Registry) -> Family {
    let points = registry
        .iter()
        .flat_map(|(pipeline, s)| {
            Stage::ALL.into_iter().map(move |stage| Point {
                labels: vec![
                    ("pipeline", pipeline.clone()),
                    ("stage", stage.as_str().to_string()),
                ],
                value: Value::Histogram(snapshot(&s.stage_seconds[stage.index()], &STAGE_BUCKETS)),
            })
        })
        .collect();
    Family {
        name: "tidemill_stage_seconds",
        help: "Time each record spent in a stage: kafka (timestamp to fetched), batching, queue, \
               state, write and commit add up to the end-to-end latency; offsets (committed to \
               its Kafka commit) follows it.",
        kind: Kind::Histogram,
        points,
    }
}

/// (upper bounds, cumulative counts, count, sum)
pub type Snapshot = (&'static [f64], Vec<u64>, u64, f64);

/// A histogram's name, help text and reader.
type HistogramSeries = (&'static str, &'static str, fn(&Stats) -> Snapshot);

fn snapshot<const N: usize>(h: &Histogram<N>, bounds: &'static [f64; N]) -> Snapshot {
    let (buckets, count, sum) = h.snapshot();
    (bounds, buckets, count, sum)
}

#[cfg(test)]
mod tests;
