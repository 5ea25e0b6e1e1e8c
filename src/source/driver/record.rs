//! What the driver takes from each message besides its payload: the original
//! bytes (for dead letters) and the producer's
//! trace context (only while spans are exported, and only when sampled).

use super::Driver;
use crate::model::{Origin, RawRecord, TopicPartition};
use crate::trace::{self, RecordLink};
use rdkafka::message::{BorrowedMessage, Headers, Message};

impl Driver {
    /// Carries the record's sampled producer context with the batch (bounded).
    pub(super) fn link_trace(
        &mut self,
        msg: &BorrowedMessage<'_>,
        tp: TopicPartition,
        timestamp_ms: Option<i64>,
    ) {
        let headers = msg.headers();
        if !self.batcher.wants_link() {
            if trace::has_traceparent(headers) {
                self.batcher.link_dropped();
            }
            return;
        }
        if let Some(context) = trace::extract(headers) {
            self.batcher.link(RecordLink {
                context,
                tp,
                offset: msg.offset(),
                timestamp_ms,
            });
        }
    }
}

/// The message as it arrived, for dead letters.
pub(super) fn raw_record(msg: &BorrowedMessage<'_>) -> RawRecord {
    let headers = msg
        .headers()
        .map(|h| {
            h.iter()
                .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                .collect()
        })
        .unwrap_or_default();
    RawRecord {
        origin: Origin {
            topic: msg.topic().to_string(),
            partition: msg.partition(),
            offset: msg.offset(),
            timestamp_ms: msg.timestamp().to_millis(),
        },
        key: msg.key().map(<[u8]>::to_vec),
        value: msg.payload().map(<[u8]>::to_vec),
        headers,
    }
}
