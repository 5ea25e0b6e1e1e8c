//! Checking a config before it runs, every problem at once, each naming its
//! config key.
//!
//! - [`load`] and [`from_toml`] are how a config is read to run: the
//!   config's own validation ([`Settings::validate`]) plus [`offline`], the
//!   checks that need other modules — the database a URL names (from
//!   [`crate::db::BACKENDS`]), that database's rules for a table name, and
//!   the compilation of each jq program. A config either passes both or
//!   fails at start-up.
//! - [`check`] (`tidemill check`) adds what needs the network: connects to
//!   Kafka and to each database and checks each target table.

use crate::config::{redact_url, ConfigError, PipelineConfig, Problem, Settings, TransformConfig};
use crate::ident::TableName;
use crate::ingest::transform::jq::JqProgram;
use crate::kafka_refusal::{self, Unreachable};
use crate::source::kafka;
use rdkafka::consumer::BaseConsumer;
use std::path::Path;
use std::time::Duration;

/// Every problem found; empty means the config is ready to run.
pub async fn check(settings: &Settings) -> Vec<Problem> {
    let mut problems = settings.validate();
    problems.extend(offline(settings));
    for (name, p) in &settings.pipelines {
        problems.extend(check_kafka(name, p).await);
        problems.extend(check_sink(name, p).await);
    }
    problems
}

/// Loads the layered configuration ([`Settings::load_unvalidated`]) and
/// checks it whole: a config that [`Settings::validate`] or [`offline`]
/// finds a problem in is an error listing them all.
pub fn load(file: &Path, defaults: Option<&Path>) -> Result<Settings, ConfigError> {
    checked(Settings::load_unvalidated(file, defaults)?)
}

/// Parses a TOML string with no other layers (tests, demo) and checks it
/// whole, as [`load`] does.
pub fn from_toml(text: &str) -> Result<Settings, ConfigError> {
    checked(Settings::parse_toml(text)?)
}

fn checked(settings: Settings) -> Result<Settings, ConfigError> {
    let mut problems = settings.validate();
    problems.extend(offline(&settings));
    if problems.is_empty() {
        Ok(settings)
    } else {
        Err(ConfigError::Invalid(problems))
    }
}

/// The problems that need more than the config to see: a sink URL that names
/// no database tidemill writes to, a table name that database cannot have,
/// a jq program that does not compile.
pub fn offline(settings: &Settings) -> Vec<Problem> {
    let mut out = Vec::new();
    for (name, p) in &settings.pipelines {
        let key = |k: &str| format!("pipelines.{name}.{k}");
        let backend = crate::db::backend_for(p.sink.url.expose());
        if backend.is_none() {
            out.push(Problem {
                key: key("sink.url"),
                message: format!("unsupported scheme; use {}", crate::db::schemes()),
            });
        }
        let single_part = backend.is_some_and(|b| !b.dialect.schemas());
        if let Err(e) = TableName::parse(&p.sink.table, single_part) {
            out.push(Problem {
                key: key("sink.table"),
                message: e.to_string(),
            });
        }
        for (i, t) in p.transforms.iter().enumerate() {
            if let TransformConfig::Jq { expr } = t {
                if let Err(e) = JqProgram::compile(expr) {
                    out.push(Problem {
                        key: key(&format!("transforms[{i}].expr")),
                        message: e.to_string(),
                    });
                }
            }
        }
    }
    out
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
    if crate::db::backend_for(p.sink.url.expose()).is_none() {
        return Vec::new(); // already reported by `offline`
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

#[cfg(test)]
mod tests {
    use super::*;

    const PIPELINE: &str = r#"
[pipelines.orders]
topics = ["t"]
transforms = [{ type = "jq", expr = "{a: " }]
[pipelines.orders.kafka]
brokers = "127.0.0.1:9092"
[pipelines.orders.sink]
url = "oracle://x"
table = "a.b.c"
"#;

    #[test]
    fn what_needs_more_than_the_config_is_reported_naming_its_key() {
        let Err(ConfigError::Invalid(problems)) = from_toml(PIPELINE) else {
            panic!("expected problems");
        };
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "pipelines.orders.sink.url",
                "pipelines.orders.sink.table",
                "pipelines.orders.transforms[0].expr"
            ],
            "{problems:?}"
        );
        assert!(problems[0].message.contains("postgres://"), "{problems:?}");
    }

    #[test]
    fn a_dot_is_part_of_a_sqlite_table_name_and_a_schema_elsewhere() {
        let with = |url: &str| {
            PIPELINE
                .replace("oracle://x", url)
                .replace("a.b.c", "main.t")
                .replace("{a: ", ".")
        };
        let lite = from_toml(&with("sqlite://x.db")).expect("valid");
        assert_eq!(lite.pipelines["orders"].sink.table, "main.t");
        from_toml(&with("postgres://u@h/db")).expect("a schema-qualified name");
        let three = with("postgres://u@h/db").replace("main.t", "a.b.c");
        assert!(from_toml(&three).is_err());
    }
}
