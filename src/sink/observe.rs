//! What the writer reports after a batch committed: counters per pipeline and
//! per partition, the end-to-end latency of each record, freshness and the
//! committed position that consumer lag is measured from.
//!
//! Contract: called once per committed batch, after the transaction; costs
//! one lock per partition of the batch and a fixed number of atomic adds,
//! whatever the batch's size.

use super::dialect::Dialect;
use super::SinkError;
use crate::model::{Batch, TopicPartition};
use crate::observe::stats::{now_ms, RetryKind, Stats, LATENCY_BUCKETS, ROW_BUCKETS};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// What a batch's transaction loaded.
#[derive(Debug, Default)]
pub struct Loaded {
    pub rows: usize,
    /// Rows the batch's deletes removed.
    pub deleted: u64,
    /// Rows per source partition.
    pub by_partition: BTreeMap<TopicPartition, u64>,
}

/// Records a committed batch: counters, latency, freshness, committed offsets.
pub fn committed(stats: &Stats, batch: &Batch, loaded: &Loaded, took: Duration) {
    let committed_ms = now_ms() as i64;
    stats.batch_seconds.observe(took.as_secs_f64());
    stats
        .batch_rows
        .observe_in(&ROW_BUCKETS, [loaded.rows as f64]);
    Stats::add(&stats.rows_loaded, loaded.rows as u64);
    Stats::add(&stats.rows_deleted, loaded.deleted);
    Stats::add(&stats.records_done, batch.records as u64);
    Stats::add(&stats.batches, 1);
    stats.end_to_end_seconds.observe_in(
        &LATENCY_BUCKETS,
        batch
            .timestamps
            .iter()
            .map(|t| (committed_ms - t).max(0) as f64 / 1000.0),
    );
    for (tp, range) in &batch.offsets {
        let p = stats.partition(tp);
        p.committed_next.store(range.last + 1, Ordering::Relaxed);
        if let Some(newest) = batch.tally.get(tp).and_then(|t| t.newest_ms) {
            p.newest_committed_ms.fetch_max(newest, Ordering::Relaxed);
        }
    }
    for (tp, rows) in &loaded.by_partition {
        Stats::add(&stats.partition(tp).rows_loaded, *rows);
    }
}

/// Which kind of transient error a retry was for; `dialect` says which of
/// the database's own errors are conflicts (serialization failure,
/// deadlock, lock wait, busy).
pub fn retry_kind(e: &SinkError, dialect: &dyn Dialect) -> RetryKind {
    if matches!(e, SinkError::Connect { .. }) {
        return RetryKind::Connection;
    }
    match e.sql() {
        Some(
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed,
        ) => RetryKind::Connection,
        Some(sqlx::Error::Database(db)) if dialect.is_conflict(db.as_ref()) => RetryKind::Conflict,
        _ => RetryKind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{OffsetRange, PartitionTally};

    #[test]
    fn a_committed_batch_moves_partition_figures() {
        let stats = Stats::default();
        let tp = TopicPartition::new("t", 1);
        let mut batch = Batch::default();
        batch
            .offsets
            .insert(tp.clone(), OffsetRange { first: 0, last: 9 });
        let tally = PartitionTally {
            rows: 10,
            newest_ms: Some(now_ms() as i64 - 2_000),
        };
        batch.tally.insert(tp.clone(), tally);
        batch.timestamps = vec![now_ms() as i64 - 2_000; 10];
        batch.records = 10;
        let loaded = Loaded {
            rows: 10,
            deleted: 2,
            by_partition: BTreeMap::from([(tp.clone(), 10)]),
        };
        committed(&stats, &batch, &loaded, Duration::from_millis(3));
        let p = stats.partition(&tp);
        assert_eq!(p.committed_next.load(Ordering::Relaxed), 10);
        assert_eq!(Stats::get(&p.rows_loaded), 10);
        assert_eq!(Stats::get(&stats.rows_deleted), 2);
        let (buckets, count, sum) = stats.end_to_end_seconds.snapshot();
        assert_eq!(count, 10);
        assert_eq!(buckets[6], 0, "two seconds old: not within 1 s");
        assert_eq!(buckets[7], 10, "within 2.5 s");
        assert!(sum >= 20.0, "{sum}");
    }
}
