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
use crate::observe::stats::{now_ms, RetryKind, Stage, Stats, LATENCY_BUCKETS, ROW_BUCKETS};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// What a batch's transaction loaded.
#[derive(Debug, Default)]
pub struct Loaded {
    pub rows: usize,
    /// Rows the batch's deletes removed.
    pub deleted: u64,
    /// Rows per source partition.
    pub by_partition: BTreeMap<TopicPartition, u64>,
    /// Time spent loading and applying keyed state (stateful pipelines).
    pub state: Option<Duration>,
    /// Time the database's commit took.
    pub commit: Duration,
}

/// Records a committed batch that the writer started at `started`:
/// counters, latency and where it went, freshness, committed offsets.
pub fn committed(stats: &Stats, batch: &Batch, loaded: &Loaded, started: Instant) {
    let committed_ms = now_ms() as i64;
    let took = started.elapsed();
    stats.batch_seconds.observe(took.as_secs_f64());
    stages(stats, batch, loaded, started, took);
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
        p.committed_at_ms.store(committed_ms, Ordering::Relaxed);
        if let Some(newest) = batch.tally.get(tp).and_then(|t| t.newest_ms) {
            p.newest_committed_ms.fetch_max(newest, Ordering::Relaxed);
        }
    }
    for (tp, rows) in &loaded.by_partition {
        Stats::add(&stats.partition(tp).rows_loaded, *rows);
    }
}

/// Where each record of the batch spent its time, up to the commit: the
/// legs of [`Stage`] before `offsets`, which add up to its end-to-end latency.
fn stages(stats: &Stats, batch: &Batch, loaded: &Loaded, started: Instant, took: Duration) {
    let fetched = batch.timestamps.iter().zip(&batch.fetched_ms);
    let seconds = |ms: i64| ms.max(0) as f64 / 1000.0;
    stats.observe_stage_each(Stage::Kafka, fetched.map(|(ts, f)| seconds(f - ts)));
    stats.observe_stage_each(
        Stage::Batching,
        batch
            .fetched_ms
            .iter()
            .map(|f| seconds(batch.closed_ms - f)),
    );
    let records = batch.records as u64;
    if let Some(closed) = batch.closed_at {
        let queue = started.saturating_duration_since(closed);
        stats.observe_stage(Stage::Queue, queue.as_secs_f64(), records);
    }
    let state = loaded.state.unwrap_or_default();
    if loaded.state.is_some() {
        stats.observe_stage(Stage::State, state.as_secs_f64(), records);
    }
    let write = took.saturating_sub(state).saturating_sub(loaded.commit);
    stats.observe_stage(Stage::Write, write.as_secs_f64(), records);
    stats.observe_stage(Stage::Commit, loaded.commit.as_secs_f64(), records);
}

/// Which kind of transient error a retry was for; `dialect` says which of
/// the database's own errors are conflicts (serialization failure,
/// deadlock, lock wait, busy).
/// A transient database error about to be retried: counted by kind
/// (`tidemill_db_retries_total`), readiness failing, and the error noted for
/// the status page — the same for the writer and for a pipeline's preparation.
pub fn db_retry(stats: &Stats, e: &SinkError, dialect: &dyn Dialect) {
    let kind = retry_kind(e, dialect);
    stats.add_retry(kind);
    stats.sink_failing.store(true, Ordering::Relaxed);
    stats
        .recent
        .db_error(now_ms(), kind.as_str(), &e.to_string());
}

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
        Some(sqlx::Error::Database(db)) if dialect.is_connection_loss(db.as_ref()) => {
            RetryKind::Connection
        }
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
            ..Loaded::default()
        };
        committed(&stats, &batch, &loaded, Instant::now());
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

    #[test]
    fn each_record_is_counted_once_in_every_stage_it_passed_and_they_add_up() {
        let stats = Stats::default();
        let now = now_ms() as i64;
        let mut batch = Batch {
            records: 4,
            timestamps: vec![now - 900, now - 800, now - 700, now - 600],
            fetched_ms: vec![now - 500, now - 450, now - 400, now - 350],
            closed_ms: now - 300,
            closed_at: Instant::now().checked_sub(Duration::from_millis(300)),
            ..Batch::default()
        };
        batch.offsets.insert(
            TopicPartition::new("t", 0),
            OffsetRange { first: 0, last: 3 },
        );
        let started = Instant::now()
            .checked_sub(Duration::from_millis(100))
            .expect("the clock is past 100 ms");
        let loaded = Loaded {
            rows: 4,
            state: Some(Duration::from_millis(20)),
            commit: Duration::from_millis(30),
            ..Loaded::default()
        };
        committed(&stats, &batch, &loaded, started);
        let sum = |stage: Stage| {
            let (_, count, sum) = stats.stage_seconds[stage.index()].snapshot();
            assert_eq!(count, 4, "{}", stage.as_str());
            sum
        };
        assert!(
            (sum(Stage::Kafka) - 1.3).abs() < 1e-6,
            "400, 350, 300, 250 ms"
        );
        assert!(
            (sum(Stage::Batching) - 0.5).abs() < 1e-6,
            "200, 150, 100, 50 ms"
        );
        assert!((sum(Stage::State) - 0.08).abs() < 1e-6);
        assert!((sum(Stage::Commit) - 0.12).abs() < 1e-6);
        let queue = sum(Stage::Queue) / 4.0;
        assert!((0.19..0.3).contains(&queue), "about 200 ms: {queue}");
        let write = sum(Stage::Write) / 4.0;
        assert!((0.05..0.2).contains(&write), "the rest of 100 ms: {write}");
        let (_, _, end_to_end) = stats.end_to_end_seconds.snapshot();
        let legs: f64 = Stage::ALL[..6].iter().map(|s| sum(*s)).sum();
        assert!(
            (legs - end_to_end).abs() < 0.05 * 4.0,
            "legs {legs} s, end to end {end_to_end} s"
        );
    }
}
