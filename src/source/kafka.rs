//! Kafka client settings shared by the consumer and `tidemill check`.

use crate::config::PipelineConfig;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::ClientConfig;

/// Consumer settings for one pipeline. tidemill owns the settings its
/// guarantees rest on (manual offsets, cooperative assignment); the rest can
/// be overridden through `kafka.options`.
pub fn consumer_config(name: &str, p: &PipelineConfig) -> ClientConfig {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", &p.kafka.brokers)
        .set("group.id", p.group_id(name))
        .set("client.id", format!("tidemill-{name}"))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("auto.offset.reset", &p.kafka.auto_offset_reset)
        .set(
            "session.timeout.ms",
            p.kafka.session_timeout.as_millis().to_string(),
        )
        .set_log_level(RDKafkaLogLevel::Warning);
    for (key, value) in &p.kafka.options {
        cfg.set(key, value.expose());
    }
    cfg
}
