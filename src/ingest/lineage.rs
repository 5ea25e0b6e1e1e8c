//! Lineage columns stamped into each row a record becomes: its Kafka topic,
//! partition, offset and timestamp, when it was read, and for a change
//! stream where its source committed it. Times are RFC 3339 in UTC (the
//! type layer reads them into timestamp columns exactly); an unknown value
//! (no Kafka timestamp, a source that does not say) is null.

use super::decode::debezium::Source;
use super::Incoming;
use crate::codec::rfc3339_utc;
use crate::config::LineageConfig;
use crate::model::Row;
use serde_json::Value;

/// The configured lineage columns (resolved once, at start-up) and the
/// clock `ingested_at` reads.
#[derive(Debug, Clone)]
pub struct Stamp {
    columns: Vec<(&'static str, String)>,
    reads_clock: bool,
    /// Wall-clock milliseconds since the epoch (a test gives a fixed one).
    clock: fn() -> i64,
}

fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn time(ms: Option<i64>) -> Value {
    ms.map_or(Value::Null, |ms| {
        Value::String(rfc3339_utc(i128::from(ms) * 1_000_000))
    })
}

impl Stamp {
    /// `None` when no column is configured.
    pub fn new(cfg: LineageConfig) -> Option<Self> {
        let columns: Vec<(&'static str, String)> = cfg
            .columns()
            .into_iter()
            .map(|(key, column)| (key, column.to_string()))
            .collect();
        (!columns.is_empty()).then_some(Self {
            reads_clock: cfg.ingested_at.is_some(),
            columns,
            clock: wall_clock_ms,
        })
    }

    pub fn with_clock(mut self, clock: fn() -> i64) -> Self {
        self.clock = clock;
        self
    }

    /// Writes the lineage columns into every row of one record.
    pub fn stamp(&self, rows: &mut [Row], rec: &Incoming<'_>, source: Option<&Source>) {
        if rows.is_empty() {
            return;
        }
        let read_at = self.reads_clock.then(|| (self.clock)());
        let values = self.columns.iter().map(|(key, column)| {
            let value = match *key {
                "topic" => Value::String(rec.tp.topic.clone()),
                "partition" => Value::from(rec.tp.partition),
                "offset" => Value::from(rec.offset),
                "timestamp" => time(rec.timestamp_ms),
                "ingested_at" => time(read_at),
                "source_database" => source.and_then(|s| s.database.clone()).into(),
                "source_table" => source.and_then(|s| s.table.clone()).into(),
                "source_position" => source.and_then(|s| s.position.clone()).into(),
                _ => time(source.and_then(|s| s.committed_ms)),
            };
            (column, value)
        });
        let values: Vec<(&String, Value)> = values.collect();
        for row in rows.iter_mut() {
            for (column, value) in &values {
                row.insert((*column).clone(), value.clone());
            }
        }
    }
}
