//! Live counters of one pipeline, shared by its stages (the metrics issue
//! exports them; the demo and `run` print them).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Default)]
pub struct Stats {
    /// Records consumed from Kafka.
    pub records_in: AtomicU64,
    /// Rows committed to the database.
    pub rows_loaded: AtomicU64,
    /// Records whose batch the database committed (the progress that offsets reflect).
    pub records_done: AtomicU64,
    pub batches: AtomicU64,
    /// Tombstones skipped (deletes are not enabled).
    pub tombstones_skipped: AtomicU64,
    /// Records sent to the dead-letter topic.
    pub dead_lettered: AtomicU64,
    /// Dead-letter writes that failed and are being retried (the pipeline waits).
    pub dead_letter_retries: AtomicU64,
    /// Database writes retried after a transient error.
    pub retries: AtomicU64,
    /// Partitions this member owns now (gauge).
    pub assigned_partitions: AtomicU64,
    /// Whether the consumer has joined its group (an assignment arrived, maybe empty).
    pub joined: AtomicBool,
    /// When the poll loop last went round, ms since the epoch (liveness).
    pub heartbeat_ms: AtomicU64,
    /// Set while the writer is retrying a transient database error (readiness).
    pub sink_failing: AtomicBool,
    /// Batch write durations (database transaction, retries included).
    pub batch_seconds: Histogram,
    /// Records refused by a window as late.
    pub records_late: AtomicU64,
    /// Keyed-state lookups served by the cache, and loaded from the database.
    pub state_cache_hits: AtomicU64,
    pub state_loads: AtomicU64,
}

/// Upper bounds of the batch-duration buckets, in seconds.
pub const BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// A fixed-bucket histogram on atomics (Prometheus semantics: cumulative buckets).
#[derive(Debug, Default)]
pub struct Histogram {
    counts: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, seconds: f64) {
        for (bound, count) in BUCKETS.iter().zip(&self.counts) {
            if seconds <= *bound {
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
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

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
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
}
