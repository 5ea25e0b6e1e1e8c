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
use crate::model::{Batch, BatchAck, Origin, RawRecord, Row, TopicPartition};
use crate::state::{Engine, RowOrigin, StateWrites};
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
    #[error("a record cannot be processed ({reason}): {message} (no dead-letter topic is configured, so the pipeline stops rather than drop it)")]
    Poison {
        reason: &'static str,
        message: String,
    },
}

/// Runs until the batch channel closes (clean end) or an error stops it.
pub async fn run<S: Sink>(
    mut sink: S,
    mut ctx: WriterContext,
    mut batches: Receiver<Batch>,
    acks: Sender<BatchAck>,
) -> Result<(), WriterError> {
    let mut backoff = Backoff::new(ctx.cfg.retry_initial, ctx.cfg.retry_max);
    let mut engine = ctx.engine.take();
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
        let loaded = write_batch(&mut sink, &ctx, engine.as_mut(), &batch, &mut backoff)
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
        .map(|(tp, range)| (tp, Some(range.last + 1)))
        .chain(batch.idle.iter().map(|(tp, _)| (tp, None)))
        .map(|(tp, next)| {
            let generation = batch.generations.get(tp).copied().unwrap_or(-1);
            (tp.clone(), next, generation)
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
    /// The stateful tail of the transforms, applied here before each write.
    pub engine: Option<Engine>,
}

/// A batch's output: rows, where each came from, the state it changes.
struct Output {
    rows: Vec<Row>,
    origins: Vec<Source>,
    writes: Option<StateWrites>,
}

/// Where an output row (or a refused record) came from, for dead letters.
#[derive(Debug, Clone, Copy)]
enum Source {
    /// Index into the batch's raw records.
    Raw(usize),
    /// A row the state emitted with no record kept: (partition index, offset).
    Emitted(u32, i64),
}

/// Writes one batch; returns the number of rows loaded. The stateful tail
/// runs first (records it refuses are dead-lettered); data errors are
/// isolated and the refused rows dead-lettered (when a dead-letter topic is
/// configured) before the rest commits with the batch's checkpoint and state.
async fn write_batch<S: Sink>(
    sink: &mut S,
    ctx: &WriterContext,
    engine: Option<&mut Engine>,
    batch: &Batch,
    backoff: &mut Backoff,
) -> Result<usize, WriterError> {
    let checkpoint = ctx.pipeline.as_ref().map(|p| checkpoint_of(p, batch));
    let Some(engine) = engine else {
        let output = Output {
            rows: batch.rows.clone(),
            origins: batch.row_source.iter().map(|&i| Source::Raw(i)).collect(),
            writes: None,
        };
        return write_rows(sink, ctx, batch, &output, checkpoint.as_ref(), backoff).await;
    };
    let output = loop {
        match apply_tail(engine, ctx, batch).await {
            Ok(output) => break output,
            Err(WriterError::Sink(e)) if e.class() == RetryClass::Transient => {
                engine.rollback();
                retry_wait(ctx, backoff, &e).await?;
            }
            Err(e) => {
                engine.rollback();
                return Err(e);
            }
        }
    };
    match write_rows(sink, ctx, batch, &output, checkpoint.as_ref(), backoff).await {
        Ok(rows) => {
            engine.commit(&batch.partitions);
            Ok(rows)
        }
        Err(e) => {
            engine.rollback();
            Err(e)
        }
    }
}

/// Runs the stateful tail and dead-letters the records it refused.
async fn apply_tail(
    engine: &mut Engine,
    ctx: &WriterContext,
    batch: &Batch,
) -> Result<Output, WriterError> {
    let applied = engine.apply(batch).await?;
    Stats::add(&ctx.stats.state_loads, applied.loads);
    Stats::add(&ctx.stats.state_cache_hits, applied.hits);
    let source = |o: &RowOrigin| match o.raw {
        Some(i) => Source::Raw(i as usize),
        None => Source::Emitted(o.part, o.offset),
    };
    let late = applied.rejected.iter().filter(|r| r.late).count();
    Stats::add(&ctx.stats.records_late, late as u64);
    let refused: Vec<(Source, Reason, String)> = applied
        .rejected
        .iter()
        .map(|r| {
            let reason = if r.late {
                Reason::Late
            } else {
                Reason::Transform
            };
            (source(&r.origin), reason, r.message.clone())
        })
        .collect();
    dead_letter(ctx, batch, &refused).await?;
    Ok(Output {
        origins: applied.origins.iter().map(source).collect(),
        rows: applied.rows,
        writes: Some(applied.writes),
    })
}

/// Writes rows (with the checkpoint and state) in one transaction, retrying
/// transient errors and isolating refused rows.
async fn write_rows<S: Sink>(
    sink: &mut S,
    ctx: &WriterContext,
    batch: &Batch,
    output: &Output,
    checkpoint: Option<&Checkpoint>,
    backoff: &mut Backoff,
) -> Result<usize, WriterError> {
    let rows = &output.rows;
    let mut subset: Option<Vec<usize>> = None; // None: every row
    loop {
        let prepared = match &subset {
            None => prepare(sink.schema(), ctx.cfg.mode, &ctx.cfg.key_columns, rows),
            Some(keep) => {
                let kept: Vec<_> = keep.iter().map(|&i| rows[i].clone()).collect();
                prepare(sink.schema(), ctx.cfg.mode, &ctx.cfg.key_columns, &kept)
            }
        };
        let result = match prepared {
            Ok(p) => sink.write(&p, checkpoint, output.writes.as_ref()).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => {
                backoff.reset();
                ctx.stats.sink_failing.store(false, Ordering::Relaxed);
                let rows = subset.as_ref().map_or(rows.len(), Vec::len);
                tracing::debug!(rows, "wrote batch");
                return Ok(rows);
            }
            Err(e) if e.class() == RetryClass::Transient => retry_wait(ctx, backoff, &e).await?,
            Err(e) if e.class() == RetryClass::Data && ctx.dead_letters.is_some() => {
                warn!(error = %e, "the database refused rows; isolating them");
                let candidates: Vec<usize> =
                    subset.clone().unwrap_or_else(|| (0..rows.len()).collect());
                match isolate(sink, &ctx.cfg, rows, &candidates).await {
                    // The rows all pass on their own: what the database refuses is
                    // not a row (e.g. the batch's state); retrying cannot help.
                    Ok(isolated) if isolated.bad.is_empty() => return Err(e.into()),
                    Ok(isolated) => {
                        let refused: Vec<(Source, Reason, String)> = isolated
                            .bad
                            .iter()
                            .map(|(row, message)| {
                                (output.origins[*row], Reason::Data, message.clone())
                            })
                            .collect();
                        dead_letter(ctx, batch, &refused).await?;
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

/// Counts a transient failure and waits out the backoff (or shutdown's abort).
async fn retry_wait(
    ctx: &WriterContext,
    backoff: &mut Backoff,
    e: &SinkError,
) -> Result<(), WriterError> {
    let delay = backoff.next_delay();
    Stats::add(&ctx.stats.retries, 1);
    ctx.stats.sink_failing.store(true, Ordering::Relaxed);
    warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "transient database error; retrying batch");
    tokio::select! {
        // Abort first: a database that stays away must not hold shutdown hostage.
        biased;
        _ = ctx.abort.cancelled() => Err(WriterError::Aborted),
        _ = tokio::time::sleep(delay) => Ok(()),
    }
}

/// Sends refused records to the dead-letter topic, once per record, retrying
/// until the broker has them (or shutdown aborts). Without a dead-letter
/// topic, a refused record stops the pipeline rather than being dropped.
async fn dead_letter(
    ctx: &WriterContext,
    batch: &Batch,
    refused: &[(Source, Reason, String)],
) -> Result<(), WriterError> {
    if refused.is_empty() {
        return Ok(());
    }
    let Some(dlq) = &ctx.dead_letters else {
        let (_, reason, message) = &refused[0];
        return Err(WriterError::Poison {
            reason: reason.as_str(),
            message: message.clone(),
        });
    };
    let mut seen = std::collections::BTreeSet::new();
    let letters: Vec<Letter> = refused
        .iter()
        .filter(|(source, ..)| match source {
            Source::Raw(i) => seen.insert(*i),
            Source::Emitted(..) => true,
        })
        .map(|(source, reason, message)| Letter {
            record: record_of(batch, *source),
            reason: *reason,
            message: message.clone(),
        })
        .collect();
    send_letters(ctx, dlq, letters).await
}

/// The record behind a source: kept bytes, or an empty record naming the partition.
fn record_of(batch: &Batch, source: Source) -> RawRecord {
    match source {
        Source::Raw(i) => batch.raw[i].clone(),
        Source::Emitted(part, offset) => {
            let tp = batch
                .partitions
                .get(part as usize)
                .cloned()
                .unwrap_or_else(|| TopicPartition::new("", -1));
            RawRecord {
                origin: Origin {
                    topic: tp.topic,
                    partition: tp.partition,
                    offset,
                    timestamp_ms: None,
                },
                key: None,
                value: None,
                headers: Vec::new(),
            }
        }
    }
}

async fn send_letters(
    ctx: &WriterContext,
    dlq: &Arc<DeadLetters>,
    letters: Vec<Letter>,
) -> Result<(), WriterError> {
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
