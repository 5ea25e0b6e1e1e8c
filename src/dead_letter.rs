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
    failures: Mutex<Vec<String>>,
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
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            self.failures
                .lock()
                .expect("delivery log lock poisoned by a panic in a delivery callback")
                .push(e.to_string());
        }
    }
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

    /// Produces every letter and waits until the broker acknowledged all of them.
    pub fn send(&self, letters: &[Letter]) -> Result<(), DeadLetterError> {
        let fail = |message: String| DeadLetterError::Delivery {
            topic: self.topic.clone(),
            message: match self.producer.context().refusal.refusal() {
                Some(refusal) => format!(
                    "kafka refused this client: {}",
                    refusal.message(&self.pipeline)
                ),
                None => message,
            },
        };
        for letter in letters {
            let headers = self.headers(letter);
            let r = &letter.record;
            let mut record: BaseRecord<'_, [u8], [u8]> =
                BaseRecord::to(&self.topic).headers(headers);
            if let Some(key) = &r.key {
                record = record.key(key.as_slice());
            }
            if let Some(value) = &r.value {
                record = record.payload(value.as_slice());
            }
            if let Some(ts) = r.origin.timestamp_ms {
                record = record.timestamp(ts);
            }
            self.producer
                .send(record)
                .map_err(|(e, _)| fail(e.to_string()))?;
        }
        self.producer
            .flush(self.timeout)
            .map_err(|e| fail(e.to_string()))?;
        let failures = std::mem::take(
            &mut *self
                .producer
                .context()
                .failures
                .lock()
                .expect("delivery log lock poisoned by a panic in a delivery callback"),
        );
        match failures.first() {
            None => Ok(()),
            Some(first) => Err(fail(format!(
                "{} letter(s) not delivered: {first}",
                failures.len()
            ))),
        }
    }

    fn headers(&self, letter: &Letter) -> OwnedHeaders {
        let o = &letter.record.origin;
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or_default();
        let ours = [
            ("tidemill.error.class", letter.reason.as_str().to_string()),
            ("tidemill.error.message", clipped(&letter.message)),
            ("tidemill.pipeline", self.pipeline.clone()),
            ("tidemill.source.topic", o.topic.clone()),
            ("tidemill.source.partition", o.partition.to_string()),
            ("tidemill.source.offset", o.offset.to_string()),
            ("tidemill.time", now_ms.to_string()),
        ];
        let column = letter
            .column
            .as_ref()
            .map(|c| ("tidemill.error.column", c.clone()));
        let mut headers =
            OwnedHeaders::new_with_capacity(letter.record.headers.len() + ours.len() + 1);
        for (key, value) in &letter.record.headers {
            headers = headers.insert(Header {
                key,
                value: value.as_deref(),
            });
        }
        for (key, value) in ours.iter().chain(column.as_ref()) {
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
