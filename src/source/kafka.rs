//! Kafka client settings shared by the consumer and `tidemill check`.

use crate::config::{GroupProtocol, PipelineConfig};
use crate::kafka_refusal::{self, Unreachable};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::ClientConfig;

/// Consumer settings for one pipeline. tidemill owns the settings its
/// guarantees rest on (manual offsets, cooperative assignment); the rest can
/// be overridden through `kafka.options`. With `group_protocol = "consumer"`
/// (KIP-848) the broker owns assignment, session timeout and heartbeat, and
/// librdkafka refuses those client settings, so none is set.
pub fn consumer_config(name: &str, p: &PipelineConfig) -> ClientConfig {
    let mut cfg = client_config(p);
    cfg.set("group.id", p.group_id(name))
        .set("client.id", format!("tidemill-{name}"))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", &p.kafka.auto_offset_reset);
    match p.kafka.group_protocol {
        GroupProtocol::Classic => cfg
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set(
                "session.timeout.ms",
                p.kafka.session_timeout().as_millis().to_string(),
            ),
        GroupProtocol::Consumer => cfg.set("group.protocol", "consumer"),
    };
    if let Some(id) = &p.kafka.group_instance_id {
        cfg.set("group.instance.id", id);
    }
    // New topics and added partitions are noticed within seconds, not minutes.
    cfg.set("topic.metadata.refresh.interval.ms", "5000")
        // librdkafka prefetches up to 64 MiB by default, held in its own (glibc)
        // heap, and once that queue is full it waits `fetch.queue.backoff.ms`
        // (1 s) before fetching again. A small queue refilled promptly is both
        // leaner and faster: measured on 435k W1 records, 2 MiB + 5 ms ran at
        // 167k records/s with a 113-123 MiB peak, the old 16 MiB + 1 s at 124k/s
        // with 200-227 MiB. The limit counts payload bytes, while each queued
        // record also holds a ~700 B librdkafka op and its share of the
        // decompressed message set: 2 MiB of 150 B records held ~23 MB of heap.
        // 1 MiB drains 100k W1 records as fast (0.55-0.67 s against 0.57-0.80 s)
        // with a 48-52 MiB peak instead of 55-62.
        .set("queued.max.messages.kbytes", "1024")
        .set("fetch.queue.backoff.ms", "5")
        .set_log_level(RDKafkaLogLevel::Warning);
    for (key, value) in &p.kafka.options {
        cfg.set(key, value.expose());
    }
    cfg
}

/// Brokers plus the pass-through options (TLS, SASL): for the dead-letter
/// producer and admin calls.
pub fn client_config(p: &PipelineConfig) -> ClientConfig {
    let mut cfg = ClientConfig::new();
    // Warnings and errors reach the log (and a refusal is recognised in them).
    cfg.set("bootstrap.servers", &p.kafka.brokers)
        .set_log_level(RDKafkaLogLevel::Warning);
    for (key, value) in &p.kafka.options {
        cfg.set(key, value.expose());
    }
    cfg
}

/// Why an admin call failed: Kafka's error, or the broker refusing this
/// client (see [`crate::kafka_refusal`]), said in terms of the setting to fix.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("kafka refused this client: {0}")]
    Refused(String),
    #[error("the metadata probe did not finish: {0}")]
    Probe(String),
}

/// Creates `topic` with one partition unless it exists.
pub async fn ensure_topic(
    p: &PipelineConfig,
    topic: &str,
    pipeline: &str,
) -> Result<(), AdminError> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::types::RDKafkaErrorCode;
    // A client the broker refuses never gets an answer to its admin
    // request: find that out first, and say which setting is wrong.
    let probe = client_config(p);
    let within = std::time::Duration::from_secs(10);
    match tokio::task::spawn_blocking(move || kafka_refusal::metadata(&probe, within)).await {
        Ok(Ok(_)) => {}
        Ok(Err(Unreachable::Refused(refusal))) => {
            return Err(AdminError::Refused(refusal.message(pipeline)))
        }
        Ok(Err(Unreachable::Kafka(e))) => return Err(e.into()),
        Err(e) => return Err(AdminError::Probe(e.to_string())),
    }
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = client_config(p).create()?;
    let timeout = Some(within);
    let options = AdminOptions::new()
        .operation_timeout(timeout)
        .request_timeout(timeout);
    let results = admin
        .create_topics(
            &[NewTopic::new(topic, 1, TopicReplication::Fixed(-1))],
            &options,
        )
        .await?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => return Err(rdkafka::error::KafkaError::AdminOp(code).into()),
        }
    }
    Ok(())
}
