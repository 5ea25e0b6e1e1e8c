//! Configuration: built-in defaults → `config/default.toml` → the file given →
//! `TIDEMILL__SECTION__KEY` environment variables, deserialised once into
//! typed structs that reject unknown keys, then validated as a whole.
//!
//! Guarantees: a config that loads is complete and consistent (every problem is
//! reported at once, each naming its key); secrets (database URLs, Kafka client
//! options) are wrapped in [`Secret`] so `Debug` output never shows them.

pub mod aggregate;
mod duration;
mod lineage;
pub mod names;
mod pipeline;
mod schema;
mod secret;
mod transform;
mod validate;
mod validate_kafka;
mod validate_transforms;

pub use lineage::LineageConfig;
pub use pipeline::{
    AggregateConfig, BatchConfig, ColumnConfig, ColumnOverride, DeadLetterConfig, DecodeFormat,
    DedupConfig, Delivery, EmitMode, GroupProtocol, KafkaConfig, LatePolicy, PipelineConfig,
    SchemaConfig, SinkConfig, SinkMode, StateConfig, TimeFormat, TimestampFormat, TransformConfig,
    WindowConfig, WindowKind,
};
pub use schema::PortableType;
pub use secret::{redact_url, Secret};
pub use validate::Problem;

use names::named;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// Where the project's shipped defaults live, relative to the working directory.
pub const DEFAULT_FILE: &str = "config/default.toml";

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// This instance's stable name, e.g. the Kubernetes pod name
    /// (`TIDEMILL__INSTANCE_ID`): every pipeline without a
    /// `kafka.group_instance_id` of its own uses it for static membership.
    #[serde(default)]
    pub instance_id: Option<String>,
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    #[serde(default)]
    pub shutdown: ShutdownConfig,
    #[serde(default)]
    pub health: HealthConfig,
    /// Pipelines by name; each is one consumer group.
    #[serde(default)]
    pub pipelines: BTreeMap<String, PipelineConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Pretty,
    Json,
}

named!(LogFormat { Pretty = "pretty", Json = "json" });

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// `pretty` for terminals, `json` for log collectors.
    pub log_format: LogFormat,
    /// An `EnvFilter` directive; `RUST_LOG` wins when set.
    pub log_level: String,
    /// OTLP/HTTP traces endpoint (e.g. `http://127.0.0.1:4318/v1/traces`);
    /// unset: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` / `OTEL_EXPORTER_OTLP_ENDPOINT`, else off.
    pub otlp_endpoint: Option<String>,
    /// Fraction of traces sampled, 0.0..=1.0; unset: `OTEL_TRACES_SAMPLER_ARG`, else 1.0.
    pub sampling_ratio: Option<f64>,
    /// `service.name`; unset: `OTEL_SERVICE_NAME`, else `tidemill`.
    pub service_name: Option<String>,
    /// OTLP/HTTP metrics endpoint (e.g. `http://127.0.0.1:4318/v1/metrics`);
    /// unset: `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT` / `OTEL_EXPORTER_OTLP_ENDPOINT`,
    /// else next to `otlp_endpoint` (`…/v1/traces` → `…/v1/metrics`), else off.
    pub otlp_metrics_endpoint: Option<String>,
    /// Push period; unset: `OTEL_METRIC_EXPORT_INTERVAL` (ms), else 60 s.
    #[serde(with = "duration::option")]
    #[cfg_attr(test, schemars(with = "Option<String>"))]
    pub metrics_interval: Option<Duration>,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Pretty,
            log_level: "info".into(),
            otlp_endpoint: None,
            sampling_ratio: None,
            service_name: None,
            otlp_metrics_endpoint: None,
            metrics_interval: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, default)]
pub struct ShutdownConfig {
    /// How long SIGTERM may take to flush open batches and commit.
    #[serde(with = "duration")]
    #[cfg_attr(test, schemars(with = "String"))]
    pub grace: Duration,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self {
            grace: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// Address for `/livez`, `/readyz` and `/metrics`, e.g. `0.0.0.0:9464`; off when unset.
    pub listen: Option<std::net::SocketAddr>,
    /// How often librdkafka reports statistics (high watermarks, for the
    /// consumer-lag gauge) while `listen` is set.
    #[serde(with = "duration")]
    #[cfg_attr(test, schemars(with = "String"))]
    pub statistics_interval: Duration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            listen: None,
            statistics_interval: Duration::from_secs(5),
        }
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {source}")]
    Read {
        path: String,
        source: ::config::ConfigError,
    },
    #[error("invalid config: {0}")]
    Parse(::config::ConfigError),
    #[error("invalid config:\n{}", render(.0))]
    Invalid(Vec<Problem>),
}

fn render(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  - {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl Settings {
    /// Loads the layered configuration without validating it;
    /// the `check` module's `load` is how it is loaded to run.
    pub fn load_unvalidated(file: &Path, defaults: Option<&Path>) -> Result<Self, ConfigError> {
        if !file.exists() {
            return Err(ConfigError::Read {
                path: file.display().to_string(),
                source: ::config::ConfigError::Message("file not found".into()),
            });
        }
        let mut builder = ::config::Config::builder();
        if let Some(defaults) = defaults {
            builder = builder.add_source(::config::File::from(defaults).required(false));
        }
        builder = builder.add_source(::config::File::from(file)).add_source(
            ::config::Environment::with_prefix("TIDEMILL")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .list_separator(",")
                .with_list_parse_key("pipelines.*.topics"),
        );
        let raw = builder.build().map_err(|source| ConfigError::Read {
            path: file.display().to_string(),
            source,
        })?;
        let settings: Self = raw.try_deserialize().map_err(ConfigError::Parse)?;
        Ok(settings.with_instance_id())
    }

    /// Gives `instance_id` to every pipeline that names no group instance id.
    fn with_instance_id(mut self) -> Self {
        if let Some(id) = &self.instance_id {
            for p in self.pipelines.values_mut() {
                p.kafka.group_instance_id.get_or_insert_with(|| id.clone());
            }
        }
        self
    }

    /// Parses a TOML string with no other layers, without validating it;
    /// the `check` module's `from_toml` is how it is read to run.
    pub fn parse_toml(text: &str) -> Result<Self, ConfigError> {
        let raw = ::config::Config::builder()
            .add_source(::config::File::from_str(text, ::config::FileFormat::Toml))
            .build()
            .map_err(ConfigError::Parse)?;
        Ok(Self::with_instance_id(
            raw.try_deserialize().map_err(ConfigError::Parse)?,
        ))
    }

    /// Every problem in the configuration, each naming its key.
    pub fn validate(&self) -> Vec<Problem> {
        validate::settings(self)
    }
}

/// What the config alone can tell about `settings` (the unit tests here;
/// the `check` module adds what needs other modules).
#[cfg(test)]
fn validated(settings: Settings) -> Result<Settings, ConfigError> {
    let problems = settings.validate();
    if problems.is_empty() {
        Ok(settings)
    } else {
        Err(ConfigError::Invalid(problems))
    }
}

#[cfg(test)]
fn validated_toml(text: &str) -> Result<Settings, ConfigError> {
    Settings::parse_toml(text).and_then(validated)
}

#[cfg(test)]
mod reference_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_schema;
