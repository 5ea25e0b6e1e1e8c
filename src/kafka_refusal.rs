//! The Kafka broker refusing this client, explained by the setting that fixes it.
//!
//! Wrong SASL credentials, a broker certificate this client cannot verify
//! (unknown CA, or a name that is not the host it dialled) and a client
//! certificate the broker does not accept never heal by retrying, and
//! librdkafka alone would retry them forever, logging the same handshake
//! failure. [`explain`] recognises them in librdkafka's error text; the
//! consumer then stops its pipeline with that explanation, `tidemill check`
//! reports it under the setting's key (both through [`metadata`]), and the
//! dead-letter producer names it when a send fails.

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use rdkafka::metadata::Metadata;
use rdkafka::producer::{BaseProducer, DeliveryResult, Producer, ProducerContext};
use rdkafka::ClientConfig;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tracing::{debug, error, info, warn};

/// What the broker refused, and which setting to look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The config key to fix, relative to `pipelines.NAME.`.
    pub setting: &'static str,
    /// What went wrong, in the user's terms.
    pub problem: &'static str,
    /// librdkafka's own words, for the details.
    pub detail: String,
}

impl Refusal {
    /// The full message for pipeline `pipeline`: problem, key, detail.
    pub fn message(&self, pipeline: &str) -> String {
        format!(
            "{} (check pipelines.{pipeline}.{}); librdkafka: {}",
            self.problem, self.setting, self.detail
        )
    }
}

/// The refusal behind a librdkafka error text, if it is one.
pub fn explain(reason: &str) -> Option<Refusal> {
    let (setting, problem) =
        if reason.contains("SASL authentication error") || reason.contains("invalid credentials") {
            (
                "kafka.options.sasl.password",
                "Kafka refused the SASL credentials: wrong sasl.username or sasl.password \
             for this sasl.mechanism",
            )
        } else if reason.contains("mechanism handshake failed") {
            (
                "kafka.options.sasl.mechanism",
                "the broker does not offer this SASL mechanism on this listener \
             (or the listener is not SASL: check security.protocol)",
            )
        } else if reason.contains("certificate verify failed") {
            (
                "kafka.options.ssl.ca.location",
                "the broker's TLS certificate could not be verified: either ssl.ca.location does \
             not hold the CA that signed it, or the certificate does not name the host in \
             kafka.brokers (librdkafka checks the name: ssl.endpoint.identification.algorithm)",
            )
        } else if [
            "alert certificate unknown",
            "alert bad certificate",
            "alert unknown ca",
            "certificate required",
        ]
        .iter()
        .any(|alert| reason.contains(alert))
        {
            (
                "kafka.options.ssl.certificate.location",
                "the broker refused this client's TLS certificate: ssl.certificate.location and \
             ssl.key.location must hold a certificate the broker's truststore accepts",
            )
        } else {
            return None;
        };
    Some(Refusal {
        setting,
        problem,
        detail: reason.to_string(),
    })
}

/// A client context that logs like the consumer's and keeps the first
/// refusal it saw, so a call that timed out can say why.
#[derive(Default)]
pub struct RefusalContext {
    first: Mutex<Option<Refusal>>,
}

impl RefusalContext {
    /// The first refusal seen, if any.
    pub fn refusal(&self) -> Option<Refusal> {
        self.first
            .lock()
            .expect("refusal slot poisoned by a panic in a librdkafka callback")
            .clone()
    }

    fn keep(&self, text: &str) {
        if let Some(refusal) = explain(text) {
            self.first
                .lock()
                .expect("refusal slot poisoned by a panic in a librdkafka callback")
                .get_or_insert(refusal);
        }
    }
}

impl ClientContext for RefusalContext {
    /// librdkafka logs a failed handshake as it happens (error callbacks
    /// wait for a poll that metadata calls never make), so refusals are
    /// caught here too.
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        if (level as i32) <= (RDKafkaLogLevel::Error as i32) {
            self.keep(message);
        }
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => error!(fac, message, "librdkafka"),
            RDKafkaLogLevel::Warning => warn!(fac, message, "librdkafka"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => info!(fac, message, "librdkafka"),
            RDKafkaLogLevel::Debug => debug!(fac, message, "librdkafka"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        warn!(%error, reason, "kafka client error");
        self.keep(reason);
    }
}

/// The probe is a producer that never produces: it only fetches metadata.
impl ProducerContext for RefusalContext {
    type DeliveryOpaque = ();

    fn delivery(&self, _: &DeliveryResult<'_>, _: ()) {}
}

/// Why the cluster's metadata could not be had.
#[derive(Debug)]
pub enum Unreachable {
    Refused(Refusal),
    Kafka(KafkaError),
}

/// Asks the cluster for its metadata with `cfg` (brokers and security
/// settings), in short attempts for up to `within`; a refusal ends the wait at
/// once. Blocking. The client is a producer because a producer's poll serves
/// librdkafka's main queue, where its logs and errors wait.
pub fn metadata(cfg: &ClientConfig, within: Duration) -> Result<Metadata, Unreachable> {
    let producer: BaseProducer<RefusalContext> = cfg
        .create_with_context(RefusalContext::default())
        .map_err(Unreachable::Kafka)?;
    let deadline = Instant::now() + within;
    loop {
        let attempt = producer
            .client()
            .fetch_metadata(None, Duration::from_millis(500));
        // Serves the client's callbacks (errors and logs), where a refusal
        // waits: one event per call, and an empty queue returns at once.
        for _ in 0..1_000 {
            producer.poll(Duration::ZERO);
        }
        if let Some(refusal) = producer.context().refusal() {
            return Err(Unreachable::Refused(refusal));
        }
        match attempt {
            Ok(metadata) => return Ok(metadata),
            Err(e) if Instant::now() >= deadline => return Err(Unreachable::Kafka(e)),
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_sasl_credentials_point_at_the_password() {
        let r = explain("sasl_ssl://127.0.0.1:9094/bootstrap: SASL authentication error: Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512 (after 3ms in state AUTH_REQ)")
            .expect("a refusal");
        assert_eq!(r.setting, "kafka.options.sasl.password");
        assert!(r
            .message("orders")
            .contains("pipelines.orders.kafka.options.sasl.password"));
    }

    #[test]
    fn an_unverifiable_broker_certificate_points_at_the_ca() {
        let r = explain("ssl://127.0.0.1:9096/bootstrap: SSL handshake failed: error:0A000086:SSL routines::certificate verify failed: broker certificate could not be verified")
            .expect("a refusal");
        assert_eq!(r.setting, "kafka.options.ssl.ca.location");
        assert!(r.problem.contains("does not name the host"));
    }

    #[test]
    fn a_refused_client_certificate_points_at_the_certificate() {
        let r = explain("ssl://127.0.0.1:9095/bootstrap: Receive failed: error:0A000416:SSL routines::sslv3 alert certificate unknown: SSL alert number 46")
            .expect("a refusal");
        assert_eq!(r.setting, "kafka.options.ssl.certificate.location");
    }

    #[test]
    fn sasl_against_a_plaintext_listener_points_at_the_mechanism() {
        let r = explain("sasl_plaintext://127.0.0.1:9092/bootstrap: SASL SCRAM-SHA-512 mechanism handshake failed: Broker: Request not valid in current SASL state")
            .expect("a refusal");
        assert_eq!(r.setting, "kafka.options.sasl.mechanism");
    }

    #[test]
    fn transient_failures_are_not_refusals() {
        for reason in [
            "127.0.0.1:9092/bootstrap: Connect to ipv4#127.0.0.1:9092 failed: Connection refused",
            "1/1 brokers are down",
            "GroupCoordinator: Disconnected (after 5002ms in state UP)",
        ] {
            assert_eq!(explain(reason), None, "{reason}");
        }
    }
}
