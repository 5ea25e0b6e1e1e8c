//! The messages passed between pipeline stages, in one place.
//!
//! Flow: the source turns each Kafka message into a record; decode and
//! transform turn a record into zero or more [`Row`]s; the batcher gathers rows
//! and the offsets they came from into a [`Batch`]; the sink writes a batch in
//! one transaction and answers with a [`BatchAck`]; the committer turns acks
//! into Kafka commits.
//!
//! Invariant carried by these types: a batch's [`Batch::offsets`] name every
//! Kafka offset the batch accounts for — including records that produced no
//! row (filtered out) — so a commit after the batch's ack never skips a record
//! that is not yet in the database.
//!
//! Deletes (tombstones, with the sink's `delete` on) travel in
//! [`Batch::deletes`], each placed between the rows that arrived before and
//! after it, so the sink can keep the order of operations per key.

use opentelemetry::trace::SpanContext;
use std::collections::BTreeMap;
use std::fmt;

/// A sampled record's producer trace context and where the record was: the
/// batch's span links to it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordLink {
    pub context: SpanContext,
    pub tp: TopicPartition,
    pub offset: i64,
    pub timestamp_ms: Option<i64>,
}

/// A Kafka topic and partition.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        Self {
            topic: topic.into(),
            partition,
        }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.topic, self.partition)
    }
}

/// Where a record came from: enough to find it again in Kafka.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// Kafka timestamp in milliseconds since the epoch, when the broker has one.
    pub timestamp_ms: Option<i64>,
}

/// A consumed record as it arrived — key, value bytes and headers untouched —
/// kept with the rows it became so a row the database rejects can be
/// dead-lettered with its original bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRecord {
    pub origin: Origin,
    pub key: Option<Vec<u8>>,
    /// `None` is a tombstone (a record with a null value).
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// One row for the sink: column name → JSON value. Types are converted by the
/// sink against the target table's own schema.
pub type Row = serde_json::Map<String, serde_json::Value>;

/// An inclusive range of offsets of one partition accounted for by a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetRange {
    pub first: i64,
    pub last: i64,
}

/// A unit of work for the sink: rows to write in one transaction, and the
/// offsets that become committable once that transaction has committed.
#[derive(Debug, Default)]
pub struct Batch {
    /// Monotonic per pipeline; acks name it.
    pub id: u64,
    pub rows: Vec<Row>,
    /// For each row, the index of the record it came from in `raw` (kept only
    /// when a dead-letter topic is configured; empty otherwise).
    pub row_source: Vec<usize>,
    /// The records that produced rows (same condition).
    pub raw: Vec<RawRecord>,
    pub offsets: BTreeMap<TopicPartition, OffsetRange>,
    /// Exactly-once mode: the generation this member claimed for each partition
    /// of the batch; the database refuses the batch if a newer one was claimed.
    pub generations: BTreeMap<TopicPartition, i64>,
    /// Approximate size of the source payloads, for batching limits.
    pub bytes: usize,
    /// Records accounted for (rows can be more or fewer after transforms).
    pub records: usize,
    /// For each row, where it came from (kept only when the pipeline has
    /// stateful transforms, which run in the writer; empty otherwise).
    pub meta: Vec<RowMeta>,
    /// The partitions `meta` and `idle` refer to, by index.
    pub partitions: Vec<TopicPartition>,
    /// Owned partitions that had no record for a while: (partition, ms idle).
    /// Their watermarks advance; their checkpoints are fenced but not moved.
    pub idle: Vec<(TopicPartition, i64)>,
    /// A change stream's truncate: the table is emptied before the batch's
    /// rows from this index on are written (the rows and deletes before it
    /// are superseded). The last truncate of the batch.
    pub truncate_at: Option<usize>,
    /// Per partition: rows produced and the newest Kafka timestamp, for metrics.
    pub tally: BTreeMap<TopicPartition, PartitionTally>,
    /// Each record's Kafka timestamp (ms), for the end-to-end latency histogram.
    pub timestamps: Vec<i64>,
    /// When each record of `timestamps` was fetched (ms since the epoch),
    /// for the `kafka` and `batching` stages.
    pub fetched_ms: Vec<i64>,
    /// When the batch was closed and handed on (the `batching` stage ends,
    /// `queue` begins).
    pub closed_at: Option<std::time::Instant>,
    pub closed_ms: i64,
    /// Sampled producer trace contexts of records in this batch (tracing on
    /// only), at most `trace::MAX_LINKS`; the rest are counted in
    /// `links_dropped`.
    pub links: Vec<RecordLink>,
    pub links_dropped: u32,
    /// Rows to delete (from tombstones), in arrival order among the rows.
    pub deletes: Vec<Delete>,
    /// A change stream's primary-key changes: each row copied to its new key
    /// before anything else of the batch (a batch holds one only as its
    /// first change; its delete of the old key is in `deletes`).
    pub moves: Vec<Move>,
    /// One of the source's `batch.max_in_flight` slots, freed by the writer
    /// just after it sent the batch's ack: bounds the rows held in memory.
    pub slot: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// A delete from a tombstone: the key columns of the row to remove.
#[derive(Debug, Clone, PartialEq)]
pub struct Delete {
    /// Key column → value, taken from the Kafka message key.
    pub key: Row,
    /// How many of the batch's rows arrived before it: it applies after
    /// `rows[..after]` and before `rows[after..]`.
    pub after: usize,
}

/// A primary-key change (Debezium's delete of the old key, naming the new
/// one): the row is copied to the new key, so a value the change's create
/// does not carry (an unchanged out-of-line value) is kept.
#[derive(Debug, Clone, PartialEq)]
pub struct Move {
    /// The old key's columns (and, with the ordering guard, its position).
    pub from: Row,
    /// The new key's columns.
    pub to: Row,
}

/// What one partition contributed to a batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PartitionTally {
    pub rows: u64,
    /// Newest Kafka timestamp (ms) among its records, if any had one.
    pub newest_ms: Option<i64>,
}

/// Where a row came from, for the stateful transforms that run in the writer.
#[derive(Debug, Clone, PartialEq)]
pub struct RowMeta {
    /// Index into [`Batch::partitions`].
    pub part: u32,
    pub offset: i64,
    pub timestamp_ms: Option<i64>,
    /// The Kafka key (a string; `0x…` hex when not UTF-8), or null.
    pub key: serde_json::Value,
    /// Index into [`Batch::raw`], when raw records are kept.
    pub raw: Option<u32>,
}

impl Batch {
    /// Accounts for one consumed offset of `tp`.
    pub fn track(&mut self, tp: &TopicPartition, offset: i64) {
        match self.offsets.get_mut(tp) {
            Some(range) => {
                range.first = range.first.min(offset);
                range.last = range.last.max(offset);
            }
            None => {
                self.offsets.insert(
                    tp.clone(),
                    OffsetRange {
                        first: offset,
                        last: offset,
                    },
                );
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty() && self.idle.is_empty()
    }

    /// The index of a partition in [`Batch::partitions`], adding it if new.
    pub fn part_index(&mut self, tp: &TopicPartition) -> u32 {
        let i = match self.partitions.iter().position(|p| p == tp) {
            Some(i) => i,
            None => {
                self.partitions.push(tp.clone());
                self.partitions.len() - 1
            }
        };
        u32::try_from(i).expect("a batch holds fewer than 2^32 partitions")
    }

    /// `topic/partition:first-last` pairs, for logs and span attributes.
    pub fn describe_offsets(&self) -> String {
        let mut out = String::new();
        for (tp, range) in &self.offsets {
            if !out.is_empty() {
                out.push(',');
            }
            out.push_str(&format!("{tp}:{}-{}", range.first, range.last));
        }
        out
    }
}

/// The sink's answer: the batch is durably in the database.
#[derive(Debug)]
pub struct BatchAck {
    pub id: u64,
    pub offsets: BTreeMap<TopicPartition, OffsetRange>,
    pub rows: usize,
    /// The batch's payload bytes, released from the in-flight budget.
    pub bytes: usize,
    /// The batch span's context (tracing on only): `kafka.commit` continues it.
    pub trace: Option<opentelemetry::trace::SpanContext>,
    /// The written batch itself, freed where the ack is read.
    pub spent: Option<Spent>,
    /// When the database committed the batch (the `offsets` stage begins).
    pub committed_at: Option<std::time::Instant>,
}

/// A batch the writer is done with, travelling back with its ack to the
/// source thread, which allocated its rows and records and frees them there:
/// with mimalloc a block freed by another thread takes the slow, atomic path
/// and its owner collects it again later (~10% of the CPU of a W2 drain
/// before this hand-back). Its slot is already free; it is dropped when the
/// source reads the ack, at the latest one poll later.
pub struct Spent(pub Batch);

impl fmt::Debug for Spent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Spent(batch {}, {} rows)", self.0.id, self.0.rows.len())
    }
}

/// The future a database adapter returns (rows, checkpoint and state tables):
/// boxed, so an adapter is a trait object and the stages above drive any
/// backend without knowing which — one allocation per call, nothing next to
/// a database round trip.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn track_widens_the_range_per_partition() {
        let mut batch = Batch::default();
        let tp = TopicPartition::new("t", 0);
        batch.track(&tp, 5);
        batch.track(&tp, 7);
        batch.track(&TopicPartition::new("t", 1), 3);
        assert_eq!(batch.offsets[&tp], OffsetRange { first: 5, last: 7 });
        assert_eq!(batch.describe_offsets(), "t/0:5-7,t/1:3-3");
    }
}
