//! Refused records on their way to the dead-letter topic from the writer:
//! the stateful tail's rejects and the rows the database refused.
//!
//! Contract: each refused record is sent once per batch, with its original
//! bytes when they were kept; the batch waits (retrying with backoff) until
//! the broker has every letter, or shutdown aborts it. Without a dead-letter
//! topic a refused record stops the pipeline instead of being dropped.

use super::checkpoint::standing;
use super::writer_context::{WriterContext, WriterError};
use super::SinkError;
use crate::dead_letter::{DeadLetters, Letter, Reason};
use crate::model::{Batch, Origin, RawRecord, TopicPartition};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tracing::{info_span, warn, Instrument};

/// Where an output row (or a refused record) came from, for dead letters.
#[derive(Debug, Clone, Copy)]
pub(super) enum Source {
    /// Index into the batch's raw records.
    Raw(usize),
    /// A row the state emitted with no record kept: (partition index, offset).
    Emitted(u32, i64),
}

/// One refused record: where it came from, why, and (for a value that does
/// not fit its type) which column.
#[derive(Debug, Clone)]
pub(super) struct Refused {
    pub source: Source,
    pub reason: Reason,
    pub message: String,
    pub column: Option<String>,
}

impl Refused {
    pub fn new(source: Source, reason: Reason, message: String) -> Self {
        Self {
            source,
            reason,
            message,
            column: None,
        }
    }
}

/// Sends refused records to the dead-letter topic, once per record, retrying
/// until the broker has them (or shutdown aborts). Without a dead-letter
/// topic, a refused record stops the pipeline rather than being dropped.
pub(super) async fn dead_letter(
    ctx: &WriterContext,
    batch: &Batch,
    refused: &[Refused],
) -> Result<(), WriterError> {
    if refused.is_empty() {
        return Ok(());
    }
    let Some(dlq) = &ctx.dead_letters else {
        let first = &refused[0];
        return Err(WriterError::Poison {
            reason: first.reason.as_str(),
            message: first.message.clone(),
        });
    };
    if !stands(ctx, batch).await? {
        return Ok(());
    }
    let mut seen = std::collections::BTreeSet::new();
    let letters: Vec<Letter> = refused
        .iter()
        .filter(|r| match r.source {
            Source::Raw(i) => seen.insert(i),
            Source::Emitted(..) => true,
        })
        .map(|r| Letter {
            record: record_of(batch, r.source),
            reason: r.reason,
            message: r.message.clone(),
            column: r.column.clone(),
        })
        .collect();
    let span = info_span!(
        "dead_letter",
        messaging.system = "kafka",
        messaging.operation.type = "send",
        records = letters.len(),
    );
    send_letters(ctx, dlq, letters).instrument(span).await
}

/// Whether `batch` can still commit, asked of the checkpoint table before
/// its letters go out (exactly-once). A batch a newer owner has fenced — this
/// member was paused while its partitions moved, and may have judged its
/// records against state the new owner had already advanced — sends no
/// letters: the owner that commits the records sends its own, so a good
/// record is never dead-lettered by a batch that cannot land. Fenced is the
/// error; a batch that already committed sends nothing again (`false`) and
/// its transaction then says so. If the table cannot be read, the letters
/// go (a spurious letter is better than a lost one).
async fn stands(ctx: &WriterContext, batch: &Batch) -> Result<bool, WriterError> {
    let (Some(offsets), Some(checkpoint)) = (&ctx.offsets, ctx.checkpoint_of(batch)) else {
        return Ok(true);
    };
    let stored = match offsets.stored(&checkpoint.pipeline).await {
        Ok(stored) => stored,
        Err(e) => {
            warn!(error = %e, "cannot read the checkpoint before dead-lettering; sending anyway");
            return Ok(true);
        }
    };
    match standing(&checkpoint, &stored) {
        None => Ok(true),
        Some(e @ SinkError::Fenced { .. }) => {
            warn!(batch = batch.id, error = %e, "batch fenced; its dead letters are not sent");
            Err(e.into())
        }
        Some(e) => {
            warn!(batch = batch.id, error = %e, "batch already committed; its dead letters were sent then");
            Ok(false)
        }
    }
}

/// Dead-letters the rows the database refused on their own (row index and
/// message) and takes them off their partitions' counts.
pub(super) async fn drop_refused(
    ctx: &WriterContext,
    batch: &Batch,
    origins: &[Source],
    by_partition: &mut BTreeMap<TopicPartition, u64>,
    bad: &[(usize, String)],
) -> Result<(), WriterError> {
    let refused: Vec<Refused> = bad
        .iter()
        .map(|(row, message)| Refused::new(origins[*row], Reason::Data, message.clone()))
        .collect();
    dead_letter(ctx, batch, &refused).await?;
    discount(by_partition, batch, &refused);
    Ok(())
}

/// The partition a row or refused record came from.
pub(super) fn partition_of(batch: &Batch, source: Source) -> TopicPartition {
    match source {
        Source::Raw(i) => batch.raw.get(i).map_or_else(
            || TopicPartition::new("", -1),
            |r| TopicPartition::new(&r.origin.topic, r.origin.partition),
        ),
        Source::Emitted(part, _) => batch
            .partitions
            .get(part as usize)
            .cloned()
            .unwrap_or_else(|| TopicPartition::new("", -1)),
    }
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
                for letter in letters.iter() {
                    let reason = letter.reason.as_str();
                    ctx.stats
                        .dead_letter_sent(&letter.record.origin, reason, &letter.message);
                }
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

/// Takes refused rows off their partitions' row counts.
pub(super) fn discount(
    by_partition: &mut BTreeMap<TopicPartition, u64>,
    batch: &Batch,
    refused: &[Refused],
) {
    for r in refused {
        let tp = partition_of(batch, r.source);
        if let Some(n) = by_partition.get_mut(&tp) {
            *n = n.saturating_sub(1);
        }
    }
}
