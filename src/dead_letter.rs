//! Dead letters: a record that cannot be loaded goes to the pipeline's
//! dead-letter topic with its original key, value bytes and headers, plus
//! headers saying why (`tidemill.error.class`, `tidemill.error.message`,
//! `tidemill.pipeline`, `tidemill.source.topic`/`.partition`/`.offset`,
//! `tidemill.time`). The message is cut to [`MAX_MESSAGE_BYTES`].
//!
//! Guarantee: [`DeadLetters::send`] returns `Ok` only after the broker
//! acknowledged every letter (`acks=all`, idempotent producer). Callers count a
//! record's offset as done only after that, and retry — never drop — while the
//! topic cannot be written. Delivery to the dead-letter topic is at least once.
//! A letter larger than the topic (or the producer) accepts would be refused
//! forever and stall the pipeline: it is sent once more as a stub — the
//! headers saying why and where the record is (`tidemill.source.*`), without
//! its key, value and own headers, whose sizes `tidemill.dropped.key_bytes`
//! and `tidemill.dropped.value_bytes` give — so the pipeline keeps going and
//! the record can be read again from its source offset.

use crate::kafka_refusal::RefusalContext;
use crate::model::RawRecord;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Why a record was dead-lettered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Decode,
    Transform,
    /// The database refused the row (constraint, invalid value for the column type).
    Data,
    /// The record arrived after its event-time window closed.
    Late,
    /// A tombstone whose Kafka key does not name a row to delete.
    Key,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Decode => "decode",
            Reason::Transform => "transform",
            Reason::Data => "data",
            Reason::Late => "late",
            Reason::Key => "key",
        }
    }
}

/// One record to dead-letter and why.
#[derive(Debug, Clone)]
pub struct Letter {
    pub record: RawRecord,
    pub reason: Reason,
    pub message: String,
    /// The column whose value did not fit its type, for [`Reason::Data`].
    pub column: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    #[error("dead-letter topic {topic}: {message}")]
    Delivery { topic: String, message: String },
}

/// The longest `tidemill.error.message` header, in bytes: a reason may quote
/// the offending value, which can be as large as the record itself, and a
/// letter twice the record's size would not fit the topic.
pub const MAX_MESSAGE_BYTES: usize = 1024;

/// `message`, cut at a character boundary to [`MAX_MESSAGE_BYTES`], saying
/// how much was left out.
fn clipped(message: &str) -> String {
    if message.len() <= MAX_MESSAGE_BYTES {
        return message.to_string();
    }
    let mut end = MAX_MESSAGE_BYTES;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} more bytes)", &message[..end], message.len() - end)
}

/// Collects delivery failures reported by librdkafka, and the broker
/// refusing the producer (so a failed send can say why).
#[derive(Default)]
pub struct DeliveryLog {
    failures: Mutex<Vec<(usize, rdkafka::error::KafkaError)>>,
    refusal: RefusalContext,
}

impl ClientContext for DeliveryLog {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        self.refusal.log(level, fac, message);
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        self.refusal.error(error, reason);
    }
}

impl ProducerContext for DeliveryLog {
    /// The letter's index in the batch being sent.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, letter: usize) {
        if let Err((e, _)) = result {
            self.failures
                .lock()
                .expect("delivery log lock poisoned by a panic in a delivery callback")
                .push((letter, e.clone()));
        }
    }
}

/// Whether Kafka refused a letter for its size (the producer's
/// `message.max.bytes`, or the topic's `max.message.bytes`).
fn too_large(e: &rdkafka::error::KafkaError) -> bool {
    e.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::MessageSizeTooLarge)
}

pub struct DeadLetters {
    producer: ThreadedProducer<DeliveryLog>,
    topic: String,
    pipeline: String,
    timeout: Duration,
}

impl DeadLetters {
    pub fn new(
        client: &ClientConfig,
        topic: &str,
        pipeline: &str,
    ) -> Result<Self, rdkafka::error::KafkaError> {
        let mut cfg = client.clone();
        cfg.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "0")
            .set("message.timeout.ms", "10000");
        Ok(Self {
            producer: cfg.create_with_context(DeliveryLog::default())?,
            topic: topic.to_string(),
            pipeline: pipeline.to_string(),
            timeout: Duration::from_secs(15),
        })
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Produces every letter and waits until the broker acknowledged all of
    /// them; a letter too large for the topic goes as a stub (see the module).
    pub fn send(&self, letters: &[Letter]) -> Result<(), DeadLetterError> {
        let all: Vec<&Letter> = letters.iter().collect();
        let large = self.produce(&all, false)?;
        if large.is_empty() {
            return Ok(());
        }
        let large: Vec<&Letter> = large.into_iter().map(|i| all[i]).collect();
        for letter in &large {
            let o = &letter.record.origin;
            tracing::warn!(topic = %o.topic, partition = o.partition, offset = o.offset, dead_letter_topic = %self.topic, "dead letter too large for its topic; sending it without the record's key, value and headers");
        }
        match self.produce(&large, true)?.first() {
            None => Ok(()),
            Some(_) => Err(self.fail(
                "a letter without the record's key, value and headers is still too large".into(),
            )),
        }
    }

    /// Produces `letters` (as stubs, with `stub`) and waits for the broker;
    /// answers the indices of those refused for their size.
    fn produce(&self, letters: &[&Letter], stub: bool) -> Result<Vec<usize>, DeadLetterError> {
        let mut large = Vec::new();
        for (i, letter) in letters.iter().enumerate() {
            let r = &letter.record;
            let mut record: BaseRecord<'_, [u8], [u8], usize> =
                BaseRecord::with_opaque_to(&self.topic, i).headers(self.headers(letter, stub));
            if let (Some(key), false) = (&r.key, stub) {
                record = record.key(key.as_slice());
            }
            if let (Some(value), false) = (&r.value, stub) {
                record = record.payload(value.as_slice());
            }
            if let Some(ts) = r.origin.timestamp_ms {
                record = record.timestamp(ts);
            }
            match self.producer.send(record) {
                Ok(()) => {}
                Err((e, _)) if too_large(&e) => large.push(i),
                Err((e, _)) => return Err(self.fail(e.to_string())),
            }
        }
        self.producer
            .flush(self.timeout)
            .map_err(|e| self.fail(e.to_string()))?;
        let failures = std::mem::take(
            &mut *self
                .producer
                .context()
                .failures
                .lock()
                .expect("delivery log lock poisoned by a panic in a delivery callback"),
        );
        let (refused, failed): (Vec<_>, Vec<_>) =
            failures.into_iter().partition(|(_, e)| too_large(e));
        if let Some((_, first)) = failed.first() {
            return Err(self.fail(format!("{} letter(s) not delivered: {first}", failed.len())));
        }
        large.extend(refused.into_iter().map(|(i, _)| i));
        Ok(large)
    }

    /// A delivery failure, saying so when the broker refuses this client.
    fn fail(&self, message: String) -> DeadLetterError {
        DeadLetterError::Delivery {
            topic: self.topic.clone(),
            message: match self.producer.context().refusal.refusal() {
                Some(refusal) => format!(
                    "kafka refused this client: {}",
                    refusal.message(&self.pipeline)
                ),
                None => message,
            },
        }
    }

    /// The record's own headers (not for a stub) and ours.
    fn headers(&self, letter: &Letter, stub: bool) -> OwnedHeaders {
        let r = &letter.record;
        let o = &r.origin;
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or_default();
        let size = |bytes: &Option<Vec<u8>>| bytes.as_ref().map_or(0, Vec::len).to_string();
        let mut ours = vec![
            ("tidemill.error.class", letter.reason.as_str().to_string()),
            ("tidemill.error.message", clipped(&letter.message)),
            ("tidemill.pipeline", self.pipeline.clone()),
            ("tidemill.source.topic", o.topic.clone()),
            ("tidemill.source.partition", o.partition.to_string()),
            ("tidemill.source.offset", o.offset.to_string()),
            ("tidemill.time", now_ms.to_string()),
        ];
        if let Some(column) = &letter.column {
            ours.push(("tidemill.error.column", column.clone()));
        }
        if stub {
            ours.push(("tidemill.dropped.key_bytes", size(&r.key)));
            ours.push(("tidemill.dropped.value_bytes", size(&r.value)));
        }
        let own = if stub { &[][..] } else { &r.headers[..] };
        let mut headers = OwnedHeaders::new_with_capacity(own.len() + ours.len());
        for (key, value) in own {
            headers = headers.insert(Header {
                key,
                value: value.as_deref(),
            });
        }
        for (key, value) in &ours {
            headers = headers.insert(Header {
                key,
                value: Some(value.as_bytes()),
            });
        }
        headers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_reason_is_cut_at_a_character_boundary_saying_how_much_is_left_out() {
        assert_eq!(clipped("short"), "short");
        let long = format!("`v` is not a number: \"{}\"", "é".repeat(100_000));
        let cut = clipped(&long);
        assert!(cut.len() < MAX_MESSAGE_BYTES + 40, "{}", cut.len());
        assert!(cut.starts_with("`v` is not a number"));
        assert!(cut.ends_with(&format!(
            "({} more bytes)",
            long.len() - (cut.find('…').expect("ellipsis"))
        )));
    }
}
