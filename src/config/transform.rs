//! Transform declarations: stateless jq steps and keyed stateful operators.

use super::duration;
use super::names::named;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// One step of a pipeline's transform chain, applied in order.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, tag = "type", rename_all = "kebab-case")]
pub enum TransformConfig {
    /// A jq expression: each input becomes zero or more outputs.
    Jq { expr: String },
    /// The state key for the stateful steps after it: these fields' values.
    /// Without a `key` step the key is the Kafka record key.
    Key { fields: Vec<String> },
    /// Per-key running or windowed aggregates.
    Aggregate(AggregateConfig),
    /// Drops a record whose key (or `field`) was seen within `ttl`.
    Dedup(DedupConfig),
    /// A keyed operator compiled into this binary through the Rust API
    /// (`Pipeline::prepare_with`); `name` also names its state.
    Operator { name: String },
}

impl TransformConfig {
    /// Whether the step keeps state (or sets the key for steps that do).
    pub fn is_keyed(&self) -> bool {
        !matches!(self, TransformConfig::Jq { .. })
    }

    /// The name the step's state is stored under, for stateful steps.
    pub fn state_name(&self, index: usize) -> Option<String> {
        match self {
            TransformConfig::Aggregate(a) => Some(
                a.name
                    .clone()
                    .unwrap_or_else(|| format!("aggregate{index}")),
            ),
            TransformConfig::Dedup(d) => {
                Some(d.name.clone().unwrap_or_else(|| format!("dedup{index}")))
            }
            TransformConfig::Operator { name } => Some(name.clone()),
            TransformConfig::Jq { .. } | TransformConfig::Key { .. } => None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct AggregateConfig {
    /// Names the operator's state; keep it stable across deployments
    /// (default `aggregate<step index>`).
    #[serde(default)]
    pub name: Option<String>,
    /// Output column → function: `count()`, `count(f)`, `sum(f)`, `min(f)`,
    /// `max(f)`, `avg(f)`, `first(f)`, `last(f)`.
    pub columns: BTreeMap<String, String>,
    /// Aggregate per event-time window instead of a running total.
    #[serde(default)]
    pub window: Option<WindowConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    Tumbling,
    Hopping,
    Session,
}

named!(WindowKind { Tumbling = "tumbling", Hopping = "hopping", Session = "session" });

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimeFormat {
    #[default]
    EpochMs,
    EpochS,
    EpochUs,
    Rfc3339,
}

named!(TimeFormat { EpochMs = "epoch-ms", EpochS = "epoch-s", EpochUs = "epoch-us", Rfc3339 = "rfc3339" });

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EmitMode {
    /// Upsert the window's current row after every batch that touched it.
    Update,
    /// One row when the watermark closes the window.
    #[default]
    Final,
}

named!(EmitMode { Update = "update", Final = "final" });

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LatePolicy {
    /// Send the late record to the dead-letter topic.
    #[default]
    DeadLetter,
    /// Apply it to the closed window (kept for `retention`) and upsert the corrected row.
    Correct,
}

named!(LatePolicy { DeadLetter = "dead-letter", Correct = "correct" });

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct WindowConfig {
    pub kind: WindowKind,
    /// Window length (tumbling, hopping).
    #[serde(default, with = "duration::option")]
    #[cfg_attr(test, schemars(with = "Option<String>"))]
    pub size: Option<Duration>,
    /// Hop between window starts (hopping).
    #[serde(default, with = "duration::option")]
    #[cfg_attr(test, schemars(with = "Option<String>"))]
    pub slide: Option<Duration>,
    /// Inactivity that ends a session (session).
    #[serde(default, with = "duration::option")]
    #[cfg_attr(test, schemars(with = "Option<String>"))]
    pub gap: Option<Duration>,
    /// Field holding the event time; the Kafka timestamp when absent.
    #[serde(default)]
    pub time_field: Option<String>,
    #[serde(default)]
    pub time_format: TimeFormat,
    /// Watermark = highest event time seen on the partition − this.
    #[serde(default, with = "duration")]
    #[cfg_attr(test, schemars(with = "String"))]
    pub allowed_lateness: Duration,
    /// A partition read to its end with no records for this long advances its
    /// watermark with the wall clock (lagging it by this timeout), so its
    /// windows close.
    #[serde(default = "default_idle_timeout", with = "duration")]
    #[cfg_attr(test, schemars(with = "String"))]
    pub idle_timeout: Duration,
    #[serde(default)]
    pub emit: EmitMode,
    #[serde(default)]
    pub late: LatePolicy,
    /// With `late = "correct"`: how long past its end a closed window is kept.
    #[serde(default = "default_retention", with = "duration")]
    #[cfg_attr(test, schemars(with = "String"))]
    pub retention: Duration,
    /// Output columns for the window bounds, written as `output_time_format`.
    #[serde(default = "default_start_column")]
    pub start_column: String,
    #[serde(default = "default_end_column")]
    pub end_column: String,
    #[serde(default)]
    pub output_time_format: TimeFormat,
}

fn default_idle_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_retention() -> Duration {
    Duration::from_secs(3600)
}

fn default_start_column() -> String {
    "window_start".into()
}

fn default_end_column() -> String {
    "window_end".into()
}

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct DedupConfig {
    #[serde(default)]
    pub name: Option<String>,
    /// Field identifying a record; the state key when absent.
    #[serde(default)]
    pub field: Option<String>,
    /// How long an id is remembered, in Kafka-timestamp time.
    #[serde(with = "duration")]
    #[cfg_attr(test, schemars(with = "String"))]
    pub ttl: Duration,
}

/// Keyed state: where it lives is the sink's database; this bounds memory.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    /// Keys whose state is cached in memory, per stateful step. Misses are
    /// loaded from the database once per batch.
    pub cache_entries: usize,
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            cache_entries: 100_000,
        }
    }
}
