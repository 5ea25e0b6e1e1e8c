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

pub use super::backoff::Backoff;
use super::checkpoint::Checkpoint;
use super::ddl;
use super::dialect::Dialect;
use super::isolate::isolate;
use super::observe::{self, Loaded};
use super::order::BatchGuard;
use super::output::{stateless_output, Output};
use super::refused::{dead_letter, discount, drop_refused, Refused, Source};
use super::types::RowTypes;
pub use super::writer_context::{WriterContext, WriterError};
use super::{prepare, with_deletes, PreparedWrite, RetryClass, Sink, SinkError, Written};
use crate::dead_letter::Reason;
use crate::model::{Batch, BatchAck, Row, Spent};
use crate::observe::stats::Stats;
use crate::observe::trace;
use crate::state::{Engine, RowOrigin};
use std::borrow::Cow;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Sender;
use tokio::sync::mpsc::Receiver;
use tracing::{info_span, warn, Instrument};

/// Runs until the batch channel closes (clean end) or an error stops it.
pub async fn run(
    mut sink: Box<dyn Sink>,
    mut ctx: WriterContext,
    mut batches: Receiver<Batch>,
    acks: Sender<BatchAck>,
) -> Result<(), WriterError> {
    let mut backoff = Backoff::new(ctx.cfg.retry_initial, ctx.cfg.retry_max);
    let mut engine = ctx.engine.take();
    let mut types = RowTypes::new(sink.schema(), &ctx.cfg, sink.dialect().target());
    loop {
        let mut batch = tokio::select! {
            // Abort first: once the grace period is over, queued batches are left unacknowledged.
            biased;
            _ = ctx.abort.cancelled() => return Err(WriterError::Aborted),
            batch = batches.recv() => match batch {
                Some(batch) => batch,
                None => return Ok(()),
            },
        };
        let span = trace::batch_span(&ctx.names, &batch);
        // Children of the producers' spans; they end when the batch has committed.
        let processes = trace::process_spans(&ctx.names, &batch, &span);
        let trace = trace::context_of(&span);
        let started = std::time::Instant::now();
        let loaded = write_batch(
            &mut *sink,
            &ctx,
            &mut types,
            engine.as_mut(),
            &batch,
            &mut backoff,
        )
        .instrument(span)
        .await?;
        drop(processes);
        observe::committed(&ctx.stats, &batch, &loaded, started);
        // The slot frees once the ack is on its way; the rows and records
        // go back with it, to be freed on the thread that allocated them.
        let slot = batch.slot.take();
        let ack = BatchAck {
            id: batch.id,
            offsets: std::mem::take(&mut batch.offsets),
            rows: loaded.rows,
            bytes: batch.bytes,
            trace,
            spent: Some(Spent(batch)),
            committed_at: Some(std::time::Instant::now()),
        };
        let sent = acks.send(ack);
        drop(slot);
        if sent.is_err() {
            // The source has stopped; nothing is left to commit.
            return Ok(());
        }
    }
}

/// Writes one batch; returns the rows loaded. The stateful tail
/// runs first (records it refuses are dead-lettered); data errors are
/// isolated and the refused rows dead-lettered (when a dead-letter topic is
/// configured) before the rest commits with the batch's checkpoint and state.
async fn write_batch<S: Sink + ?Sized>(
    sink: &mut S,
    ctx: &WriterContext,
    types: &mut RowTypes,
    engine: Option<&mut Engine>,
    batch: &Batch,
    backoff: &mut Backoff,
) -> Result<Loaded, WriterError> {
    let checkpoint = ctx.checkpoint_of(batch);
    let Some(engine) = engine else {
        let order = ctx.cfg.order_column.as_deref();
        let output = stateless_output(&ctx.cfg.key_columns, order, batch);
        return write_rows(
            sink,
            ctx,
            types,
            batch,
            output,
            checkpoint.as_ref(),
            backoff,
        )
        .await;
    };
    let span = info_span!(
        "state",
        tidemill.state.loads = tracing::field::Empty,
        tidemill.state.cache_hits = tracing::field::Empty,
        tidemill.state.rejected = tracing::field::Empty,
    );
    let state_started = std::time::Instant::now();
    let output = loop {
        match apply_tail(engine, ctx, batch)
            .instrument(span.clone())
            .await
        {
            Ok(output) => break output,
            Err(WriterError::Sink(e)) if e.class(sink.dialect()) == RetryClass::Transient => {
                engine.rollback();
                retry_wait(ctx, backoff, &e, sink.dialect()).await?;
            }
            Err(e) => {
                engine.rollback();
                return Err(e);
            }
        }
    };
    drop(span);
    let state = state_started.elapsed();
    match write_rows(
        sink,
        ctx,
        types,
        batch,
        output,
        checkpoint.as_ref(),
        backoff,
    )
    .await
    {
        Ok(loaded) => {
            engine.commit(&batch.partitions);
            Ok(Loaded {
                state: Some(state),
                ..loaded
            })
        }
        Err(e) => {
            engine.rollback();
            Err(e)
        }
    }
}

/// With `auto_evolve`: adds a column for each new field of `rows` (retrying
/// transient errors) so the batch is then written with them.
async fn evolve<S: Sink + ?Sized>(
    sink: &mut S,
    ctx: &WriterContext,
    rows: &[Row],
    backoff: &mut Backoff,
) -> Result<bool, WriterError> {
    let fields = ddl::new_fields(sink.schema(), rows);
    if fields.is_empty() {
        return Ok(false);
    }
    loop {
        match sink.add_columns(&fields).await {
            Ok(()) => return Ok(true),
            Err(e) if e.class(sink.dialect()) == RetryClass::Transient => {
                retry_wait(ctx, backoff, &e, sink.dialect()).await?
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Runs the stateful tail and dead-letters the records it refused.
async fn apply_tail(
    engine: &mut Engine,
    ctx: &WriterContext,
    batch: &Batch,
) -> Result<Output<'static>, WriterError> {
    let applied = engine.apply(batch).await.map_err(SinkError::from)?;
    Stats::add(&ctx.stats.state_loads, applied.loads);
    Stats::add(&ctx.stats.state_cache_hits, applied.hits);
    let span = tracing::Span::current();
    span.record("tidemill.state.loads", applied.loads);
    span.record("tidemill.state.cache_hits", applied.hits);
    span.record("tidemill.state.rejected", applied.rejected.len());
    let source = |o: &RowOrigin| match o.raw {
        Some(i) => Source::Raw(i as usize),
        None => Source::Emitted(o.part, o.offset),
    };
    let late = applied.rejected.iter().filter(|r| r.late).count();
    Stats::add(&ctx.stats.records_late, late as u64);
    let refused: Vec<Refused> = applied
        .rejected
        .iter()
        .map(|r| {
            let reason = if r.late {
                Reason::Late
            } else {
                Reason::Transform
            };
            Refused::new(source(&r.origin), reason, r.message.clone())
        })
        .collect();
    dead_letter(ctx, batch, &refused).await?;
    let mut per_part = vec![0u64; batch.partitions.len()];
    for o in &applied.origins {
        if let Some(n) = per_part.get_mut(o.part as usize) {
            *n += 1;
        }
    }
    Ok(Output {
        origins: applied.origins.iter().map(source).collect(),
        rows: Cow::Owned(applied.rows),
        writes: Some(applied.writes),
        by_partition: batch.partitions.iter().cloned().zip(per_part).collect(),
        deletes: Vec::new(),
        truncate: false,
        moves: Cow::Borrowed(&[]),
    })
}

/// Writes rows (with the checkpoint and state) in one transaction, retrying
/// transient errors and isolating refused rows.
async fn write_rows<S: Sink + ?Sized>(
    sink: &mut S,
    ctx: &WriterContext,
    types: &mut RowTypes,
    batch: &Batch,
    mut output: Output<'_>,
    checkpoint: Option<&Checkpoint>,
    backoff: &mut Backoff,
) -> Result<Loaded, WriterError> {
    fit_columns(sink, ctx, types, batch, &mut output, backoff).await?;
    let rows: &[Row] = &output.rows;
    let order = ctx.cfg.order_column.as_deref();
    let guard = BatchGuard::new(
        &ctx.cfg.key_columns,
        order,
        &output.deletes,
        crate::state::time::now_ms(),
    );
    let mut subset: Option<Vec<usize>> = None; // None: every row
    loop {
        let kept: Vec<Row>;
        let written: &[Row] = match &subset {
            None => rows,
            Some(keep) => {
                kept = keep.iter().map(|&i| rows[i].clone()).collect();
                &kept
            }
        };
        let started = std::time::Instant::now();
        let result = attempt(sink, ctx, &guard, &output, written, checkpoint).await;
        let result = match result {
            // An earlier attempt committed; its answer was lost with the
            // connection: the batch is written (its deletes were counted then).
            Err(SinkError::AlreadyCommitted { partitions }) => {
                warn!(batch = batch.id, %partitions, "batch already committed; not writing it again");
                Ok(Written::default())
            }
            other => other,
        };
        match result {
            Ok(written) => {
                backoff.reset();
                ctx.stats.sink_failing.store(false, Ordering::Relaxed);
                let rows = subset.as_ref().map_or(rows.len(), Vec::len);
                let write_us = started.elapsed().as_micros() as u64;
                tracing::debug!(batch = batch.id, rows, write_us, "wrote batch");
                return Ok(Loaded {
                    rows,
                    deleted: written.deleted,
                    by_partition: std::mem::take(&mut output.by_partition),
                    state: None,
                    commit: written.commit,
                });
            }
            Err(e) if e.class(sink.dialect()) == RetryClass::Transient => {
                retry_wait(ctx, backoff, &e, sink.dialect()).await?
            }
            Err(e) if e.class(sink.dialect()) == RetryClass::Data && ctx.dead_letters.is_some() => {
                warn!(error = %e, "the database refused rows; isolating them");
                let candidates: Vec<usize> =
                    subset.clone().unwrap_or_else(|| (0..rows.len()).collect());
                let origins = &output.origins;
                let by_partition = &mut output.by_partition;
                match isolate(sink, &ctx.cfg, rows, &candidates).await {
                    // The rows all pass on their own: what the database refuses is
                    // not a row (e.g. the batch's state); retrying cannot help.
                    Ok(isolated) if isolated.bad.is_empty() => return Err(e.into()),
                    Ok(isolated) => {
                        drop_refused(ctx, batch, origins, by_partition, &isolated.bad).await?;
                        subset = Some(isolated.good);
                    }
                    // A transient error while isolating: retry the batch from the top.
                    Err(e) if e.class(sink.dialect()) == RetryClass::Transient => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// One attempt at the batch's transaction with `written` (every row, or
/// those isolation kept): its deletes, rows, the ordering guard's markers
/// and checks, its state and checkpoint.
async fn attempt<S: Sink + ?Sized>(
    sink: &mut S,
    ctx: &WriterContext,
    guard: &BatchGuard,
    output: &Output<'_>,
    written: &[Row],
    checkpoint: Option<&Checkpoint>,
) -> Result<Written, SinkError> {
    let (keys, mode) = (&ctx.cfg.key_columns, ctx.cfg.mode);
    let prepared = prepare(sink.schema(), mode, keys, written)?;
    let prepared = with_deletes(guard.delete_columns(), prepared, &output.deletes);
    let write = PreparedWrite {
        truncate: output.truncate,
        moves: &output.moves,
        ..guard.attach(prepared, written, &output.moves)
    };
    sink.write(&write, checkpoint, output.writes.as_ref()).await
}

/// Adds the columns new fields need (`auto_evolve`), converts the rows to
/// their columns' types, and dead-letters the rows whose values do not fit
/// (off their partitions' counts), before anything is written.
async fn fit_columns<S: Sink + ?Sized>(
    sink: &mut S,
    ctx: &WriterContext,
    types: &mut RowTypes,
    batch: &Batch,
    output: &mut Output<'_>,
    backoff: &mut Backoff,
) -> Result<(), WriterError> {
    if ctx.cfg.auto_evolve && evolve(sink, ctx, &output.rows, backoff).await? {
        // New columns: their values are checked from now on too.
        *types = RowTypes::new(sink.schema(), &ctx.cfg, sink.dialect().target());
    }
    let unfit = output.convert(types);
    Stats::add(&ctx.stats.tombstones_skipped, output.convert_deletes(types));
    output.convert_moves(types);
    if let Some(first) = unfit.first() {
        warn!(rows = unfit.len(), first = %first.message, "values do not fit their columns; dead-lettering the rows");
    }
    dead_letter(ctx, batch, &unfit).await?;
    discount(&mut output.by_partition, batch, &unfit);
    Ok(())
}

/// Counts a transient failure and waits out the backoff (or shutdown's abort).
async fn retry_wait(
    ctx: &WriterContext,
    backoff: &mut Backoff,
    e: &SinkError,
    dialect: &dyn Dialect,
) -> Result<(), WriterError> {
    let delay = backoff.next_delay();
    observe::db_retry(&ctx.stats, e, dialect);
    warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "transient database error; retrying batch");
    tokio::select! {
        // Abort first: a database that stays away must not hold shutdown hostage.
        biased;
        _ = ctx.abort.cancelled() => Err(WriterError::Aborted),
        _ = tokio::time::sleep(delay) => Ok(()),
    }
}
