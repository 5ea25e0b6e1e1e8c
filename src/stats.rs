//! Live counters of one pipeline, shared by its stages (the metrics issue
//! exports them; the demo and `run` print them).

use std::sync::atomic::{AtomicU64, Ordering};

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
}

impl Stats {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
