//! The writer task: takes batches in order, writes each in one transaction,
//! retries transient errors with exponential backoff and jitter, and only then
//! acknowledges the batch to the committer.
//!
//! Guarantees: batches are written and acknowledged in the order received; a
//! batch is acknowledged only after its transaction committed; while a batch is
//! being retried nothing after it is written (so nothing is committed past it).
//! A data or fatal error stops the writer with that error: the batch is not
//! acknowledged, so its offsets are never committed and the records are
//! consumed again after a restart.

use super::checkpoint::Checkpoint;
use super::{prepare, RetryClass, Sink, SinkError};
use crate::config::SinkConfig;
use crate::model::{Batch, BatchAck};
use crate::stats::Stats;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::Receiver;
use tokio_util::sync::CancellationToken;
use tracing::{info_span, warn, Instrument};

#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error("shutdown grace period ran out while retrying a batch")]
    Aborted,
}

/// Runs until the batch channel closes (clean end) or an error stops it.
/// `pipeline` is set in exactly-once mode: each batch then carries its checkpoint.
pub async fn run<S: Sink>(
    mut sink: S,
    cfg: SinkConfig,
    pipeline: Option<String>,
    mut batches: Receiver<Batch>,
    acks: Sender<BatchAck>,
    abort: CancellationToken,
    stats: Arc<Stats>,
) -> Result<(), WriterError> {
    let mut backoff = Backoff::new(cfg.retry_initial, cfg.retry_max);
    loop {
        let batch = tokio::select! {
            // Abort first: once the grace period is over, queued batches are left unacknowledged.
            biased;
            _ = abort.cancelled() => return Err(WriterError::Aborted),
            batch = batches.recv() => match batch {
                Some(batch) => batch,
                None => return Ok(()),
            },
        };
        let span = info_span!(
            "batch",
            batch.id = batch.id,
            offsets = %batch.describe_offsets(),
            records = batch.records,
            rows = batch.rows.len(),
        );
        let checkpoint = pipeline.as_ref().map(|p| checkpoint_of(p, &batch));
        write_batch(
            &mut sink,
            &cfg,
            &batch,
            checkpoint.as_ref(),
            &mut backoff,
            &abort,
            &stats,
        )
        .instrument(span)
        .await?;
        Stats::add(&stats.rows_loaded, batch.rows.len() as u64);
        Stats::add(&stats.records_done, batch.records as u64);
        Stats::add(&stats.batches, 1);
        let ack = BatchAck {
            id: batch.id,
            offsets: batch.offsets,
            rows: batch.rows.len(),
        };
        if acks.send(ack).is_err() {
            // The source has stopped; nothing is left to commit.
            return Ok(());
        }
    }
}

/// The offsets a batch advances, under the generations it was built with.
fn checkpoint_of(pipeline: &str, batch: &Batch) -> Checkpoint {
    let entries = batch
        .offsets
        .iter()
        .map(|(tp, range)| {
            let generation = batch.generations.get(tp).copied().unwrap_or(-1);
            (tp.clone(), range.last + 1, generation)
        })
        .collect();
    Checkpoint {
        pipeline: pipeline.to_string(),
        entries,
    }
}

#[allow(clippy::too_many_arguments)]
async fn write_batch<S: Sink>(
    sink: &mut S,
    cfg: &SinkConfig,
    batch: &Batch,
    checkpoint: Option<&Checkpoint>,
    backoff: &mut Backoff,
    abort: &CancellationToken,
    stats: &Stats,
) -> Result<(), WriterError> {
    let prepared = prepare(sink.schema(), cfg.mode, &cfg.key_columns, &batch.rows)?;
    loop {
        match sink.write(&prepared, checkpoint).await {
            Ok(()) => {
                backoff.reset();
                tracing::debug!(rows = prepared.rows, "wrote batch");
                return Ok(());
            }
            Err(e) if e.class() == RetryClass::Transient => {
                let delay = backoff.next_delay();
                Stats::add(&stats.retries, 1);
                warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "transient database error; retrying batch");
                tokio::select! {
                    // Abort first: a database that stays away must not hold shutdown hostage.
                    biased;
                    _ = abort.cancelled() => return Err(WriterError::Aborted),
                    _ = tokio::time::sleep(delay) => {}
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Exponential backoff with "equal jitter": half the delay fixed, half random.
#[derive(Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            current: initial,
        }
    }

    pub fn next_delay(&mut self) -> Duration {
        let base = self.current;
        self.current = (self.current * 2).min(self.max);
        let half = base / 2;
        half + half.mul_f64(fastrand::f64())
    }

    pub fn reset(&mut self) {
        self.current = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_max_with_bounded_jitter() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(400));
        let delays: Vec<Duration> = (0..5).map(|_| b.next_delay()).collect();
        let bases = [100, 200, 400, 400, 400];
        for (d, base) in delays.iter().zip(bases) {
            let base = Duration::from_millis(base);
            assert!(
                *d >= base / 2 && *d <= base,
                "{d:?} outside [{:?}, {base:?}]",
                base / 2
            );
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
