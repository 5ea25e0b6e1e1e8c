//! Live counters of one pipeline, shared by its stages and rendered by
//! [`crate::observe::metrics`] on `/metrics` (the demo prints some of them).
//!
//! Contract: every counter only grows (gauges are marked as such); updates are relaxed atomics (a scrape
//! may see one counter a batch ahead of another, never a torn value). Per
//! partition figures live in [`PartitionStats`], created on first use and kept
//! for the life of the process; the hot path (one record) takes one
//! uncontended lock to find its partition.

pub use super::recent::Recent;
pub use super::stage::{Stage, STAGE_BUCKETS};
use crate::model::{Origin, TopicPartition};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Default)]
pub struct Stats {
    /// Records consumed from Kafka.
    pub records_in: AtomicU64,
    /// Rows committed to the database.
    pub rows_loaded: AtomicU64,
    /// Rows deleted by tombstones (sink `delete` on), as the database counted them.
    pub rows_deleted: AtomicU64,
    /// Records whose batch the database committed (the progress that offsets reflect).
    pub records_done: AtomicU64,
    pub batches: AtomicU64,
    /// Tombstones skipped (the sink's `delete` is off).
    pub tombstones_skipped: AtomicU64,
    /// Records sent to the dead-letter topic.
    pub dead_lettered: AtomicU64,
    /// Dead-letter writes that failed and are being retried (the pipeline waits).
    pub dead_letter_retries: AtomicU64,
    /// Database writes retried after a transient error, by [`RetryKind`].
    pub retries: [AtomicU64; RetryKind::ALL.len()],
    /// Partitions this member owns now (gauge).
    pub assigned_partitions: AtomicU64,
    /// Whether the consumer has joined its group (an assignment arrived, maybe empty).
    pub joined: AtomicBool,
    /// When the poll loop last went round, ms since the epoch (liveness).
    pub heartbeat_ms: AtomicU64,
    /// Set while the writer is retrying a transient database error (readiness).
    pub sink_failing: AtomicBool,
    /// Batches handed to the writer and not yet finished (gauge, at most
    /// `batch.max_in_flight`).
    pub batches_in_flight: AtomicU64,
    /// Set while backpressure holds every partition paused.
    pub source_paused: AtomicBool,
    /// Batch write durations (database transaction, retries included).
    pub batch_seconds: Histogram,
    /// Records refused by a window as late.
    pub records_late: AtomicU64,
    /// Keyed-state lookups served by the cache, and loaded from the database.
    pub state_cache_hits: AtomicU64,
    pub state_loads: AtomicU64,
    /// Rows per committed batch.
    pub batch_rows: Histogram<{ ROW_BUCKETS.len() }>,
    /// Kafka timestamp of each record → the commit of its batch.
    pub end_to_end_seconds: Histogram<{ LATENCY_BUCKETS.len() }>,
    /// Per [`Stage`], the time each record spent in it (indexed by
    /// [`Stage::index`]).
    pub stage_seconds: [Histogram<{ STAGE_BUCKETS.len() }>; Stage::ALL.len()],
    /// Rebalance callbacks served (assignments and revocations).
    pub rebalances: AtomicU64,
    /// Times a newer owner fenced this member's pipeline (it rejoins its group).
    pub fenced: AtomicU64,
    /// Time the poll loop spent inside rebalance callbacks (revocations wait
    /// for in-flight batches; assignments claim partitions).
    pub rebalance_seconds: Histogram,
    /// Per partition, the high watermark from librdkafka's statistics
    /// (filled by the consumer context, read for idleness and lag).
    pub high_watermarks: HighWatermarks,
    /// Assigned partitions librdkafka's statistics last showed not being
    /// fetched (fetch not active, or their leader's connection not up).
    pub unfetched: Unfetched,
    /// The latest dead letters and database error, for the status page.
    pub recent: Recent,
    partitions: Mutex<BTreeMap<TopicPartition, Arc<PartitionStats>>>,
}

/// Per partition: the high watermark librdkafka last reported.
pub type HighWatermarks = Arc<Mutex<HashMap<TopicPartition, i64>>>;

/// Partitions librdkafka is not fetching right now (see [`Stats::unfetched`]).
pub type Unfetched = Arc<Mutex<std::collections::HashSet<TopicPartition>>>;

/// What one partition has done in this process.
#[derive(Debug, Default)]
pub struct PartitionStats {
    pub records_in: AtomicU64,
    pub rows_loaded: AtomicU64,
    pub dead_lettered: AtomicU64,
    /// Next offset to read after the last batch the database committed; -1 unknown.
    pub committed_next: AtomicI64,
    /// Kafka timestamp (ms) of the newest record committed; 0 unknown.
    pub newest_committed_ms: AtomicI64,
    /// When a batch of it last committed, ms since the epoch; 0 never.
    pub committed_at_ms: AtomicI64,
    /// Whether this member owns the partition now (lag and freshness are
    /// reported for owned partitions only).
    pub owned: AtomicBool,
}

impl PartitionStats {
    /// Whether this member owns the partition now.
    pub fn is_owned(&self) -> bool {
        self.owned.load(Ordering::Relaxed)
    }

    /// The next offset after the last committed batch, once known.
    pub fn committed(&self) -> Option<i64> {
        let next = self.committed_next.load(Ordering::Relaxed);
        (next >= 0).then_some(next)
    }

    /// Records in Kafka not yet committed: the high watermark minus the
    /// committed position, for an owned partition with both known.
    pub fn lag(&self, high: Option<i64>) -> Option<i64> {
        match (high, self.committed()) {
            (Some(high), Some(next)) if self.is_owned() => Some((high - next).max(0)),
            _ => None,
        }
    }

    /// Age of the newest committed record's Kafka timestamp at `now_ms`,
    /// in ms, for an owned partition that committed one.
    pub fn freshness_ms(&self, now_ms: i64) -> Option<i64> {
        let newest = self.newest_committed_ms.load(Ordering::Relaxed);
        (self.is_owned() && newest > 0).then(|| (now_ms - newest).max(0))
    }
}

/// Why a database write was retried, for `tidemill_db_retries_total{class}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryKind {
    /// The connection failed or timed out, or the pool had none to give.
    Connection,
    /// Serialization failure, deadlock, busy or locked database.
    Conflict,
    /// Any other transient error (failover, too many connections, …).
    Other,
}

impl RetryKind {
    pub const ALL: [RetryKind; 3] = [RetryKind::Connection, RetryKind::Conflict, RetryKind::Other];

    pub fn as_str(self) -> &'static str {
        match self {
            RetryKind::Connection => "connection",
            RetryKind::Conflict => "conflict",
            RetryKind::Other => "other",
        }
    }
}

/// Upper bounds of the duration buckets (batch writes, rebalances), in seconds.
pub const BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// Upper bounds of the end-to-end latency buckets, in seconds.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
];

/// Upper bounds of the batch-size buckets, in rows.
pub const ROW_BUCKETS: [f64; 8] = [1.0, 10.0, 50.0, 100.0, 500.0, 1000.0, 5000.0, 20000.0];

/// A fixed-bucket histogram on atomics (Prometheus semantics: cumulative
/// buckets). `N` bounds; which ones is the caller's to know (see [`BUCKETS`]).
#[derive(Debug)]
pub struct Histogram<const N: usize = { BUCKETS.len() }> {
    counts: [AtomicU64; N],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl<const N: usize> Default for Histogram<N> {
    fn default() -> Self {
        Self {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    pub fn observe(&self, seconds: f64) {
        self.observe_in(&BUCKETS, [seconds]);
    }
}

impl<const N: usize> Histogram<N> {
    /// Observes many values against `bounds`, counting locally first so a
    /// batch of thousands costs `N` atomic adds, not thousands.
    pub fn observe_in(&self, bounds: &[f64; N], values: impl IntoIterator<Item = f64>) {
        // One slot per bucket plus +Inf, made cumulative once at the end.
        let mut own = [0u64; N];
        let (mut count, mut sum) = (0u64, 0f64);
        for v in values {
            let first = bounds.partition_point(|b| *b < v);
            if let Some(c) = own.get_mut(first) {
                *c += 1;
            }
            count += 1;
            sum += v.max(0.0);
        }
        if count == 0 {
            return;
        }
        // Cumulative: a value counts in its own bucket and every one above.
        let mut local = own;
        for i in 1..N {
            local[i] += local[i - 1];
        }
        for (c, n) in self.counts.iter().zip(local) {
            if n > 0 {
                c.fetch_add(n, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(count, Ordering::Relaxed);
        self.sum_micros
            .fetch_add((sum * 1e6) as u64, Ordering::Relaxed);
    }

    /// Observes one value `weight` times (a batch's duration, once per record).
    pub fn observe_weighted(&self, bounds: &[f64; N], value: f64, weight: u64) {
        if weight == 0 {
            return;
        }
        let first = bounds.partition_point(|b| *b < value);
        for c in &self.counts[first..] {
            c.fetch_add(weight, Ordering::Relaxed);
        }
        self.count.fetch_add(weight, Ordering::Relaxed);
        let sum = value.max(0.0) * weight as f64;
        self.sum_micros
            .fetch_add((sum * 1e6) as u64, Ordering::Relaxed);
    }

    /// (cumulative count per bucket, total count, sum in seconds)
    pub fn snapshot(&self) -> (Vec<u64>, u64, f64) {
        let buckets = self
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        let count = self.count.load(Ordering::Relaxed);
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        (buckets, count, sum)
    }
}

/// Milliseconds since the epoch, for heartbeats.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

impl Stats {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Sets a gauge (the fields documented as such).
    pub fn set(gauge: &AtomicU64, value: u64) {
        gauge.store(value, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// The figures of one partition, created on first use.
    pub fn partition(&self, tp: &TopicPartition) -> Arc<PartitionStats> {
        let mut map = self.lock_partitions();
        if let Some(p) = map.get(tp) {
            return Arc::clone(p);
        }
        let p = Arc::new(PartitionStats {
            committed_next: AtomicI64::new(-1),
            ..PartitionStats::default()
        });
        map.insert(tp.clone(), Arc::clone(&p));
        p
    }

    /// Every partition seen so far, in order.
    pub fn partitions(&self) -> Vec<(TopicPartition, Arc<PartitionStats>)> {
        self.lock_partitions()
            .iter()
            .map(|(tp, p)| (tp.clone(), Arc::clone(p)))
            .collect()
    }

    /// Retries of every kind.
    pub fn retries_total(&self) -> u64 {
        self.retries.iter().map(Stats::get).sum()
    }

    /// Observes `seconds` in `stage` for each of `records` records.
    pub fn observe_stage(&self, stage: Stage, seconds: f64, records: u64) {
        self.stage_seconds[stage.index()].observe_weighted(&STAGE_BUCKETS, seconds, records);
    }

    /// Observes one value per record in `stage`.
    pub fn observe_stage_each(&self, stage: Stage, seconds: impl IntoIterator<Item = f64>) {
        self.stage_seconds[stage.index()].observe_in(&STAGE_BUCKETS, seconds);
    }

    /// Counts a dead letter the broker has, per pipeline and partition, and
    /// notes it for the status page.
    pub fn dead_letter_sent(&self, origin: &Origin, reason: &'static str, message: &str) {
        Stats::add(&self.dead_lettered, 1);
        let tp = TopicPartition::new(&origin.topic, origin.partition);
        Stats::add(&self.partition(&tp).dead_lettered, 1);
        self.recent.letter(now_ms(), origin, reason, message);
    }

    pub fn add_retry(&self, kind: RetryKind) {
        let i = RetryKind::ALL.iter().position(|k| *k == kind).unwrap_or(0);
        Stats::add(&self.retries[i], 1);
    }

    fn lock_partitions(
        &self,
    ) -> std::sync::MutexGuard<'_, BTreeMap<TopicPartition, Arc<PartitionStats>>> {
        // Only counters live behind this lock: a panic elsewhere cannot leave
        // them inconsistent, so a poisoned lock is still usable.
        self.partitions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::default();
        h.observe(0.003);
        h.observe(0.2);
        let (buckets, count, sum) = h.snapshot();
        assert_eq!((buckets[0], buckets[5], buckets[9]), (1, 2, 2));
        assert_eq!(buckets[4], 1, "0.2 s is above the 0.1 s bucket");
        assert_eq!(count, 2);
        assert!((sum - 0.203).abs() < 1e-6);
    }

    #[test]
    fn many_observations_count_like_one_at_a_time() {
        let h: Histogram<{ LATENCY_BUCKETS.len() }> = Histogram::default();
        h.observe_in(&LATENCY_BUCKETS, [0.005, 0.01, 0.3, 1000.0]);
        let (buckets, count, _) = h.snapshot();
        assert_eq!(count, 4);
        assert_eq!(buckets[0], 2, "0.01 is inside its own bound");
        assert_eq!(buckets[5], 3);
        assert_eq!(
            buckets[LATENCY_BUCKETS.len() - 1],
            3,
            "1000 s is only in +Inf"
        );
    }

    #[test]
    fn a_weighted_observation_counts_like_that_many_single_ones() {
        let (one, many) = (Histogram::default(), Histogram::default());
        for _ in 0..3 {
            one.observe(0.2);
        }
        many.observe_weighted(&BUCKETS, 0.2, 3);
        many.observe_weighted(&BUCKETS, 9.0, 0);
        assert_eq!(one.snapshot(), many.snapshot());
    }

    #[test]
    fn partitions_are_created_once() {
        let s = Stats::default();
        let tp = TopicPartition::new("t", 3);
        Stats::add(&s.partition(&tp).records_in, 2);
        Stats::add(&s.partition(&tp).records_in, 1);
        let all = s.partitions();
        assert_eq!(all.len(), 1);
        assert_eq!(Stats::get(&all[0].1.records_in), 3);
        assert_eq!(all[0].1.committed_next.load(Ordering::Relaxed), -1);
    }
}
