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
use super::isolate::isolate;
use super::{prepare, RetryClass, Sink, SinkError};
use crate::config::SinkConfig;
use crate::dead_letter::{DeadLetters, Letter, Reason};
use crate::model::{Batch, BatchAck};
use crate::stats::Stats;
use std::sync::atomic::Ordering;
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
pub async fn run<S: Sink>(
    mut sink: S,
    ctx: WriterContext,
    mut batches: Receiver<Batch>,
    acks: Sender<BatchAck>,
) -> Result<(), WriterError> {
    let mut backoff = Backoff::new(ctx.cfg.retry_initial, ctx.cfg.retry_max);
    loop {
        let batch = tokio::select! {
            // Abort first: once the grace period is over, queued batches are left unacknowledged.
            biased;
            _ = ctx.abort.cancelled() => return Err(WriterError::Aborted),
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
        let started = std::time::Instant::now();
        let loaded = write_batch(&mut sink, &ctx, &batch, &mut backoff)
            .instrument(span)
            .await?;
        ctx.stats
            .batch_seconds
            .observe(started.elapsed().as_secs_f64());
        Stats::add(&ctx.stats.rows_loaded, loaded as u64);
        Stats::add(&ctx.stats.records_done, batch.records as u64);
        Stats::add(&ctx.stats.batches, 1);
        let ack = BatchAck {
            id: batch.id,
            offsets: batch.offsets,
            rows: loaded,
            bytes: batch.bytes,
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

/// What the writer needs besides the sink.
pub struct WriterContext {
    pub cfg: SinkConfig,
    /// Exactly-once mode: each batch then carries its checkpoint.
    pub pipeline: Option<String>,
    pub dead_letters: Option<Arc<DeadLetters>>,
    pub abort: CancellationToken,
    pub stats: Arc<Stats>,
}

/// Writes one batch; returns the number of rows loaded. Data errors are
/// isolated and the refused rows dead-lettered (when a dead-letter topic is
/// configured) before the rest commits with the batch's checkpoint.
async fn write_batch<S: Sink>(
    sink: &mut S,
    ctx: &WriterContext,
    batch: &Batch,
    backoff: &mut Backoff,
) -> Result<usize, WriterError> {
    let checkpoint = ctx.pipeline.as_ref().map(|p| checkpoint_of(p, batch));
    let mut subset: Option<Vec<usize>> = None; // None: every row
    loop {
        let prepared = match &subset {
            None => prepare(
                sink.schema(),
                ctx.cfg.mode,
                &ctx.cfg.key_columns,
                &batch.rows,
            ),
            Some(keep) => {
                let rows: Vec<_> = keep.iter().map(|&i| batch.rows[i].clone()).collect();
                prepare(sink.schema(), ctx.cfg.mode, &ctx.cfg.key_columns, &rows)
            }
        };
        let result = match prepared {
            Ok(p) => sink.write(&p, checkpoint.as_ref()).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => {
                backoff.reset();
                ctx.stats.sink_failing.store(false, Ordering::Relaxed);
                let rows = subset.as_ref().map_or(batch.rows.len(), Vec::len);
                tracing::debug!(rows, "wrote batch");
                return Ok(rows);
            }
            Err(e) if e.class() == RetryClass::Transient => {
                let delay = backoff.next_delay();
                Stats::add(&ctx.stats.retries, 1);
                ctx.stats.sink_failing.store(true, Ordering::Relaxed);
                warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "transient database error; retrying batch");
                tokio::select! {
                    // Abort first: a database that stays away must not hold shutdown hostage.
                    biased;
                    _ = ctx.abort.cancelled() => return Err(WriterError::Aborted),
                    _ = tokio::time::sleep(delay) => {}
                }
            }
            Err(e) if e.class() == RetryClass::Data && ctx.dead_letters.is_some() => {
                warn!(error = %e, "the database refused rows; isolating them");
                let candidates: Vec<usize> = subset
                    .clone()
                    .unwrap_or_else(|| (0..batch.rows.len()).collect());
                let isolated = isolate(sink, &ctx.cfg, &batch.rows, &candidates).await;
                match isolated {
                    Ok(isolated) => {
                        dead_letter_rows(ctx, batch, &isolated.bad).await?;
                        subset = Some(isolated.good);
                    }
                    // A transient error while isolating: retry the batch from the top.
                    Err(e) if e.class() == RetryClass::Transient => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Sends the records behind the refused rows to the dead-letter topic, once
/// per record, retrying until the broker has them (or shutdown aborts).
async fn dead_letter_rows(
    ctx: &WriterContext,
    batch: &Batch,
    bad: &[(usize, String)],
) -> Result<(), WriterError> {
    let Some(dlq) = &ctx.dead_letters else {
        return Ok(());
    };
    let mut seen = std::collections::BTreeSet::new();
    let letters: Vec<Letter> = bad
        .iter()
        .filter(|(row, _)| seen.insert(batch.row_source[*row]))
        .map(|(row, message)| Letter {
            record: batch.raw[batch.row_source[*row]].clone(),
            reason: Reason::Data,
            message: message.clone(),
        })
        .collect();
    let letters = Arc::new(letters);
    let mut delay = Duration::from_millis(100);
    loop {
        let (dlq, batch_letters) = (Arc::clone(dlq), Arc::clone(&letters));
        let sent = tokio::task::spawn_blocking(move || dlq.send(&batch_letters)).await;
        match sent {
            Ok(Ok(())) => {
                Stats::add(&ctx.stats.dead_lettered, letters.len() as u64);
                return Ok(());
            }
            Ok(Err(e)) => {
                warn!(error = %e, "dead-letter write failed; the batch waits and retries")
            }
            Err(e) => warn!(error = %e, "dead-letter task failed; retrying"),
        }
        tokio::select! {
            // Abort first: shutdown must not wait on an unreachable dead-letter topic.
            biased;
            _ = ctx.abort.cancelled() => return Err(WriterError::Aborted),
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(5));
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
