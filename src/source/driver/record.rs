//! One message into the open batch through the ingest stage, or to the
//! dead-letter topic first when ingest refuses it; with what the driver keeps
//! besides its payload — the original bytes (for dead letters) and the
//! producer's trace context (only while spans are exported, and only when
//! sampled).

use super::{Driver, SourceError};
use crate::dead_letter::{Letter, Reason};
use crate::ingest::{Incoming, Pushed, Refusal};
use crate::model::{Origin, RawRecord, RecordLink, TopicPartition};
use crate::observe::stats::{PartitionStats, Stats};
use crate::observe::trace;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use std::time::{Duration, Instant};
use tracing::{debug, warn};

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
        let rec = Incoming {
            tp,
            offset: msg.offset(),
            timestamp_ms: msg.timestamp().to_millis(),
            key: msg.key(),
            payload: msg.payload(),
            new_key: self
                .ingest
                .reads_key_changes()
                .then(|| new_key(msg))
                .flatten(),
        };
        match self.ingest.push(&rec, || raw_record(msg)) {
            Ok(Pushed::SkippedTombstone) => Stats::add(&self.stats.tombstones_skipped, 1),
            Ok(Pushed::Rows | Pushed::Delete | Pushed::Truncate) => {}
            Err(Refusal { reason, message }) => {
                // The offset counts only once the letter is durable.
                self.dead_letter(raw_record(msg), reason, message)?;
                self.ingest.push_refused(&rec, || raw_record(msg));
            }
        }
        if trace::enabled() {
            self.link_trace(msg, tp.clone(), rec.timestamp_ms);
        }
        Ok(())
    }

    /// Sends one letter, retrying with backoff until the broker has it.
    fn dead_letter(
        &mut self,
        record: RawRecord,
        reason: Reason,
        message: String,
    ) -> Result<(), SourceError> {
        let Some(dlq) = &self.dead_letters else {
            return Err(SourceError::Poison {
                tp: TopicPartition::new(&record.origin.topic, record.origin.partition),
                offset: record.origin.offset,
                reason: message,
            });
        };
        let letter = [Letter {
            record,
            reason,
            message,
            column: None,
        }];
        let mut delay = Duration::from_millis(100);
        loop {
            match dlq.send(&letter) {
                Ok(()) => {
                    let [letter] = &letter;
                    let reason = letter.reason.as_str();
                    self.stats
                        .dead_letter_sent(&letter.record.origin, reason, &letter.message);
                    return Ok(());
                }
                Err(e) if !self.shutdown.is_cancelled() => {
                    Stats::add(&self.stats.dead_letter_retries, 1);
                    warn!(error = %e, "dead-letter write failed; the pipeline waits and retries");
                    std::thread::sleep(delay); // retry backoff on the source thread
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                Err(e) => return Err(SourceError::DeadLetter(e)),
            }
        }
    }

    /// Carries the record's sampled producer context with the batch (bounded).
    pub(super) fn link_trace(
        &mut self,
        msg: &BorrowedMessage<'_>,
        tp: TopicPartition,
        timestamp_ms: Option<i64>,
    ) {
        let headers = msg.headers();
        if !self.ingest.batcher.wants_link() {
            if trace::has_traceparent(headers) {
                self.ingest.batcher.link_dropped();
            }
            return;
        }
        if let Some(context) = trace::extract(headers) {
            self.ingest.batcher.link(RecordLink {
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

/// Debezium's `__debezium.newkey` header: the record is the delete half of a
/// primary-key change.
fn new_key<'m>(msg: &'m BorrowedMessage<'_>) -> Option<&'m [u8]> {
    let headers = msg.headers()?;
    headers
        .iter()
        .find(|h| h.key == "__debezium.newkey")
        .and_then(|h| h.value)
}
