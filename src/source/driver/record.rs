//! One message into the open batch: decoded, transformed and accounted for
//! (or dead-lettered), with what the driver keeps besides its payload — the
//! original bytes (for dead letters) and the producer's trace context (only
//! while spans are exported, and only when sampled).

use super::{tombstone, Driver, SourceError};
use crate::dead_letter::Reason;
use crate::model::{Origin, RawRecord, RecordLink, TopicPartition};
use crate::observe::stats::{PartitionStats, Stats};
use crate::observe::trace;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use std::time::Instant;
use tracing::debug;

impl Driver {
    /// Decodes and transforms one message into the open batch. A record that
    /// fails either is dead-lettered first (its offset then counts as done), or
    /// stops the pipeline when no dead-letter topic is configured.
    pub fn on_message(
        &mut self,
        msg: &BorrowedMessage<'_>,
        now: Instant,
    ) -> Result<(), SourceError> {
        // Records of one partition come in runs: the partition and its
        // counters are looked up (and its name allocated) once per run.
        let (tp, counters) = match self.last_partition.take() {
            Some(last) if last.0.partition == msg.partition() && last.0.topic == msg.topic() => {
                last
            }
            _ => {
                let tp = TopicPartition::new(msg.topic(), msg.partition());
                let counters = self.stats.partition(&tp);
                (tp, counters)
            }
        };
        let result = self.on_record(msg, &tp, &counters, now);
        self.last_partition = Some((tp, counters));
        result
    }

    fn on_record(
        &mut self,
        msg: &BorrowedMessage<'_>,
        tp: &TopicPartition,
        counters: &PartitionStats,
        now: Instant,
    ) -> Result<(), SourceError> {
        if !self.committer.owns(tp) {
            debug!(%tp, offset = msg.offset(), "message from a partition not owned, skipped");
            return Ok(());
        }
        Stats::add(&self.stats.records_in, 1);
        Stats::add(&counters.records_in, 1);
        if let Some(idle) = &mut self.idle {
            idle.record(tp, now, msg.offset());
        }
        let payload = msg.payload();
        let bytes = payload.map_or(0, <[u8]>::len) + msg.key().map_or(0, <[u8]>::len);
        let outcome = match self.decoder.decode(payload) {
            Err(e) => Err((Reason::Decode, e.to_string())),
            Ok(None) => match &self.delete_keys {
                None => {
                    Stats::add(&self.stats.tombstones_skipped, 1);
                    Ok(())
                }
                // Tombstones bypass the transforms.
                Some(keys) => match tombstone::delete_key(keys, msg.key()) {
                    Ok(key) => {
                        let ts = msg.timestamp().to_millis();
                        self.batcher.push_delete(tp, msg.offset(), ts, bytes, key);
                        if trace::enabled() {
                            self.link_trace(msg, tp.clone(), ts);
                        }
                        return Ok(());
                    }
                    Err(message) => Err((Reason::Key, message)),
                },
            },
            Ok(Some(value)) => self
                .chain
                .apply_into(value, &mut self.rows)
                .map_err(|e| (Reason::Transform, e.to_string())),
        };
        if let Err((reason, message)) = outcome {
            // `apply_into` left no row of the failed record behind.
            self.dead_letter(raw_record(msg), reason, message)?;
        }
        let timestamp_ms = msg.timestamp().to_millis();
        self.batcher.push(
            tp,
            msg.offset(),
            timestamp_ms,
            bytes,
            self.rows.drain(..),
            || raw_record(msg),
            || {
                let key = if self.kafka_keys {
                    crate::state::kafka_key(msg.key())
                } else {
                    serde_json::Value::Null
                };
                (timestamp_ms, key)
            },
        );
        if trace::enabled() {
            self.link_trace(msg, tp.clone(), timestamp_ms);
        }
        Ok(())
    }

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
