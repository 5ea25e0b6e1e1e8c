//! The one place that moves the consumer's committed offsets: it executes the
//! [`CommitRequest`] the committer hands out and tells the committer how Kafka
//! took it. A failure leaves the offsets pending (retried on a later tick);
//! an asynchronous commit counts once Kafka confirms it.

use crate::commit::{CommitRequest, Committer, Sent};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};
use std::time::Instant;
use tracing::warn;

#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// Transient: retried on the next call (rebalance in progress, broker away).
    #[error("kafka commit of {offsets} failed: {source}")]
    Kafka { offsets: String, source: KafkaError },
}

/// Commits whatever the committer has pending; how many partitions it sent.
pub fn commit<K: ConsumerContext>(
    consumer: &BaseConsumer<K>,
    committer: &mut Committer,
    mode: CommitMode,
    now: Instant,
) -> Result<usize, CommitError> {
    let Some(request) = committer.request(now) else {
        return Ok(0);
    };
    let fail = |source| CommitError::Kafka {
        offsets: request.to_string(),
        source,
    };
    let tpl = list(&request).map_err(fail)?;
    match consumer.commit(&tpl, mode) {
        // An async commit only fails here when it cannot be queued.
        Ok(()) => {
            let how = match mode {
                CommitMode::Sync => Sent::Confirmed,
                CommitMode::Async => Sent::Queued,
            };
            committer.sent(&request, how, now);
            Ok(request.offsets.len())
        }
        Err(source) => {
            warn!(offsets = %request, error = %source, "offset commit failed; will retry");
            Err(fail(source))
        }
    }
}

fn list(request: &CommitRequest) -> Result<TopicPartitionList, KafkaError> {
    let mut tpl = TopicPartitionList::with_capacity(request.offsets.len());
    for (tp, next) in &request.offsets {
        tpl.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(*next))?;
    }
    Ok(tpl)
}
