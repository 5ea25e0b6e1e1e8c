//! `tidemill check`: validates the config, connects to Kafka and to each
//! database, and checks each target table — reporting every problem at once,
//! each naming its config key.

use crate::config::{redact_url, PipelineConfig, Problem, Settings};
use crate::kafka_refusal::{self, Unreachable};
use crate::source::kafka;
use rdkafka::consumer::BaseConsumer;
use std::time::Duration;

/// Every problem found; empty means the config is ready to run.
pub async fn check(settings: &Settings) -> Vec<Problem> {
    let mut problems = settings.validate();
    for (name, p) in &settings.pipelines {
        problems.extend(check_kafka(name, p).await);
        problems.extend(check_sink(name, p).await);
    }
    problems
}

async fn check_kafka(name: &str, p: &PipelineConfig) -> Vec<Problem> {
    let key = format!("pipelines.{name}.kafka.brokers");
    let topics_key = format!("pipelines.{name}.topics");
    let (name, p) = (name.to_string(), p.clone());
    let pipeline = name.clone();
    let joined = tokio::task::spawn_blocking(move || {
        // The consumer's settings are checked by making one; the cluster is
        // then asked for its metadata with the shared (security) settings.
        kafka::consumer_config(&name, &p)
            .create::<BaseConsumer>()
            .map_err(Unreachable::Kafka)?;
        let metadata = kafka_refusal::metadata(&kafka::client_config(&p), Duration::from_secs(10))?;
        let missing: Vec<String> = p
            .topics
            .iter()
            .filter(|t| !metadata.topics().iter().any(|m| m.name() == t.as_str()))
            .cloned()
            .collect();
        Ok(missing)
    })
    .await;
    match joined {
        Ok(Err(Unreachable::Refused(refusal))) => vec![Problem {
            key: format!("pipelines.{pipeline}.{}", refusal.setting),
            message: refusal.message(&pipeline),
        }],
        Ok(Ok(missing)) if missing.is_empty() => Vec::new(),
        Ok(Ok(missing)) => vec![Problem {
            key: topics_key,
            message: format!("topic(s) not found on the cluster: {}", missing.join(", ")),
        }],
        Ok(Err(Unreachable::Kafka(e))) => vec![Problem {
            key,
            message: format!("cannot reach Kafka: {e}"),
        }],
        Err(e) => vec![Problem {
            key,
            message: format!("kafka check panicked: {e}"),
        }],
    }
}

async fn check_sink(name: &str, p: &PipelineConfig) -> Vec<Problem> {
    if p.sink.backend().is_none() {
        return Vec::new(); // already reported by validation
    }
    match crate::db::open(&p.sink).await {
        Ok(_) => Vec::new(),
        Err(e) => {
            use crate::sink::error::SinkError;
            // Connection problems are the URL's; the message already shows it (redacted).
            let (key, message) = match e {
                SinkError::Connect { .. } | SinkError::Tls { .. } | SinkError::TlsFile { .. } => {
                    (format!("pipelines.{name}.sink.url"), e.to_string())
                }
                _ => (
                    format!("pipelines.{name}.sink"),
                    format!("{} ({})", e, redact_url(p.sink.url.expose())),
                ),
            };
            vec![Problem { key, message }]
        }
    }
}
