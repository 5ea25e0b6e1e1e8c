//! What the writer stage works with besides its sink — its context — and how
//! it stops ([`WriterError`]); shared by the writer and the dead-lettering of
//! the records it refuses.

use super::checkpoint::{Checkpoint, Entry, OffsetStore};
use super::SinkError;
use crate::config::SinkConfig;
use crate::dead_letter::DeadLetters;
use crate::model::Batch;
use crate::observe::stats::Stats;
use crate::observe::trace::SpanNames;
use crate::state::Engine;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

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

/// What the writer needs besides the sink.
pub struct WriterContext {
    pub cfg: SinkConfig,
    /// Exactly-once mode: each batch then carries its checkpoint.
    pub pipeline: Option<String>,
    /// Exactly-once mode: the checkpoint table, asked whether a batch can
    /// still commit before its dead letters are sent.
    pub offsets: Option<OffsetStore>,
    pub dead_letters: Option<Arc<DeadLetters>>,
    pub abort: CancellationToken,
    pub stats: Arc<Stats>,
    /// The stateful tail of the transforms, applied here before each write.
    pub engine: Option<Engine>,
    /// Pipeline and group names for the spans.
    pub names: SpanNames,
}

impl WriterContext {
    /// The offsets `batch` advances, under the generations it was built
    /// with; `None` outside exactly-once mode.
    pub fn checkpoint_of(&self, batch: &Batch) -> Option<Checkpoint> {
        let pipeline = self.pipeline.as_ref()?;
        let entries = batch
            .offsets
            .iter()
            .map(|(tp, range)| (tp, Some(*range)))
            .chain(batch.idle.iter().map(|(tp, _)| (tp, None)))
            .map(|(tp, offsets)| Entry {
                tp: tp.clone(),
                offsets,
                generation: batch.generations.get(tp).copied().unwrap_or(-1),
            })
            .collect();
        Some(Checkpoint {
            pipeline: pipeline.clone(),
            entries,
        })
    }
}
