//! What the writer stage works with besides its sink — its context — and how
//! it stops ([`WriterError`]); shared by the writer and the dead-lettering of
//! the records it refuses.

use super::SinkError;
use crate::config::SinkConfig;
use crate::dead_letter::DeadLetters;
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
    pub dead_letters: Option<Arc<DeadLetters>>,
    pub abort: CancellationToken,
    pub stats: Arc<Stats>,
    /// The stateful tail of the transforms, applied here before each write.
    pub engine: Option<Engine>,
    /// Pipeline and group names for the spans.
    pub names: SpanNames,
}
