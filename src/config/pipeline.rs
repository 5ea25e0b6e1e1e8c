//! One pipeline's declaration: source, decode, transforms, sink, batching.

use super::names::named;
pub use super::transform::*;
use super::{duration, Secret};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    pub kafka: KafkaConfig,
    /// Topics to consume.
    pub topics: Vec<String>,
    /// Consumer group; defaults to `tidemill-<pipeline name>`.
    #[serde(default)]
    pub group_id: Option<String>,
    #[serde(default)]
    pub format: DecodeFormat,
    /// `exactly-once` (default): offsets are stored in the database in the same
    /// transaction as the rows. `at-least-once`: Kafka commits only.
    #[serde(default)]
    pub delivery: Delivery,
    /// Applied in order to each decoded record.
    #[serde(default)]
    pub transforms: Vec<TransformConfig>,
    pub sink: SinkConfig,
    #[serde(default)]
    pub batch: BatchConfig,
    /// Keyed state of the stateful transforms.
    #[serde(default)]
    pub state: StateConfig,
    /// Where records that cannot be loaded go. Without it, such a record stops
    /// the pipeline (nothing is ever dropped).
    #[serde(default)]
    pub dead_letter: Option<DeadLetterConfig>,
    /// Lineage and audit columns written into every row.
    #[serde(default)]
    pub lineage: super::lineage::LineageConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct DeadLetterConfig {
    pub topic: String,
    /// Create the topic at start-up if it does not exist.
    #[serde(default = "default_true")]
    pub create: bool,
}

fn default_true() -> bool {
    true
}

impl PipelineConfig {
    /// Whether deletes reach the table: tombstones with `sink.delete`, and
    /// every change stream's deletes.
    pub fn applies_deletes(&self) -> bool {
        self.sink.delete || self.format == DecodeFormat::Debezium
    }

    pub fn group_id(&self, name: &str) -> String {
        self.group_id
            .clone()
            .unwrap_or_else(|| format!("tidemill-{name}"))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// Where a group with no committed offset starts: `earliest` or `latest`.
    #[serde(default = "default_offset_reset")]
    pub auto_offset_reset: String,
    /// Group session timeout (classic protocol only; the broker owns it with
    /// `group_protocol = "consumer"`). Default [`DEFAULT_SESSION_TIMEOUT`].
    #[serde(default, with = "duration::option")]
    #[cfg_attr(test, schemars(with = "Option<String>"))]
    pub session_timeout: Option<Duration>,
    /// Static membership (KIP-345): this member's stable id in the group, e.g.
    /// the Kubernetes pod name. A member that restarts within the session
    /// timeout gets its partitions back without a rebalance. Unique per group.
    #[serde(default)]
    pub group_instance_id: Option<String>,
    /// `classic` (the default) or `consumer` (KIP-848: the broker assigns
    /// partitions and owns the session timeout and heartbeat; Kafka 4.0+).
    #[serde(default)]
    pub group_protocol: GroupProtocol,
    /// Passed to librdkafka as they are (TLS, SASL, tuning). Values are secret.
    /// Nested tables flatten into dotted names (see [`super::secret::flat_options`]).
    #[serde(default, deserialize_with = "super::secret::flat_options")]
    pub options: BTreeMap<String, Secret>,
}

/// The consumer group protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GroupProtocol {
    /// The classic protocol, with client-side cooperative-sticky assignment.
    #[default]
    Classic,
    /// KIP-848's protocol: assignment, session timeout and heartbeat on the broker.
    Consumer,
}

named!(GroupProtocol { Classic = "classic", Consumer = "consumer" });

impl KafkaConfig {
    /// The session timeout the classic protocol uses.
    pub fn session_timeout(&self) -> Duration {
        self.session_timeout.unwrap_or(DEFAULT_SESSION_TIMEOUT)
    }
}

fn default_offset_reset() -> String {
    "earliest".into()
}

/// `kafka.session_timeout` when it is not set.
pub const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Delivery {
    #[default]
    ExactlyOnce,
    AtLeastOnce,
}

named!(Delivery { ExactlyOnce = "exactly-once", AtLeastOnce = "at-least-once" });

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DecodeFormat {
    #[default]
    Json,
    /// Debezium change events (the envelope, with or without the JSON
    /// converter's schema): `c`/`r`/`u` upsert `after`, `d` deletes by key.
    Debezium,
}

named!(DecodeFormat { Json = "json", Debezium = "debezium" });

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SinkMode {
    #[default]
    Insert,
    Upsert,
}

named!(SinkMode { Insert = "insert", Upsert = "upsert" });

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    /// `postgres://user:password@host/db`, `mysql://…`, `mariadb://…` or
    /// `sqlite://path.db`. Secret.
    pub url: Secret,
    /// Target table, optionally schema-qualified (`schema.table`).
    pub table: String,
    #[serde(default)]
    pub mode: SinkMode,
    /// Columns of the unique key, for `upsert`.
    #[serde(default)]
    pub key_columns: Vec<String>,
    #[serde(default = "default_connections")]
    pub max_connections: u32,
    /// First retry delay after a transient database error; doubles up to `retry_max`.
    #[serde(default = "default_retry_initial", with = "duration")]
    #[cfg_attr(test, schemars(with = "String"))]
    pub retry_initial: Duration,
    #[serde(default = "default_retry_max", with = "duration")]
    #[cfg_attr(test, schemars(with = "String"))]
    pub retry_max: Duration,
    /// PostgreSQL: batches of at least this many rows load through `COPY`
    /// (binary), smaller ones through one statement; 0 disables `COPY`.
    /// Unset: [`SinkConfig::copy_threshold`] picks it per mode.
    #[serde(default)]
    pub copy_threshold: Option<usize>,
    /// A tombstone deletes the row its Kafka key names (upsert mode only).
    #[serde(default)]
    pub delete: bool,
    /// A change stream's truncate event empties the table (in the batch's
    /// transaction, after the rows before it); off: it is dead-lettered.
    #[serde(default)]
    pub apply_truncate: bool,
    /// Change streams: the column each row keeps its source position in.
    /// With it, a change older than what the row already reflects is
    /// skipped, and a delete leaves a marker (in `tidemill_deleted__<table>`)
    /// so an older change cannot bring the row back (upsert mode only).
    #[serde(default)]
    pub order_column: Option<String>,
    /// How long a delete's marker is kept (`order_column`): an older change
    /// arriving later than this can bring the row back. Kafka's default
    /// retention.
    #[serde(default = "default_marker_retention", with = "duration")]
    #[cfg_attr(test, schemars(with = "String"))]
    pub marker_retention: Duration,
    /// Create the table from `schema` at start-up if it does not exist.
    #[serde(default)]
    pub auto_create: bool,
    /// Add a nullable column for a field that is not a column of the table.
    #[serde(default)]
    pub auto_evolve: bool,
    /// The table's declaration, for `auto_create`.
    #[serde(default)]
    pub schema: Option<SchemaConfig>,
    /// How timestamp columns read JSON numbers (strings are always RFC 3339).
    #[serde(default)]
    pub timestamp_format: TimestampFormat,
    /// Per-column overrides, by column name.
    #[serde(default)]
    pub columns: BTreeMap<String, ColumnOverride>,
}

/// A table declared in config (`[pipelines.NAME.sink.schema]`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct SchemaConfig {
    pub columns: Vec<ColumnConfig>,
    #[serde(default)]
    pub primary_key: Vec<String>,
}

/// One declared column; `type` is a portable type name (see `sink::ddl`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ColumnConfig {
    pub name: String,
    #[serde(rename = "type")]
    pub data_type: String,
    #[serde(default = "default_true")]
    pub nullable: bool,
}

/// The input form of timestamps: RFC 3339 strings only, or also epoch numbers in
/// seconds, milliseconds or microseconds (fractions allowed down to the microsecond).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TimestampFormat {
    #[default]
    Rfc3339,
    EpochS,
    EpochMs,
    EpochUs,
}

named!(TimestampFormat { Rfc3339 = "rfc3339", EpochS = "epoch_s", EpochMs = "epoch_ms", EpochUs = "epoch_us" });

/// `[pipelines.<name>.sink.columns.<column>]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ColumnOverride {
    pub timestamp_format: Option<TimestampFormat>,
}

fn default_connections() -> u32 {
    2
}

/// Where binary `COPY` starts to beat the one-statement path, measured with
/// `examples/sinkbench.rs` (docs/development.md, *Where `COPY` starts to pay*): an insert `COPY`
/// ties the statement at 20 rows and wins from 50 (+12% at 100, +41% at 700);
/// an upsert `COPY` goes through a staging table and a merge, two more round
/// trips, and wins only from about 1,000 rows.
const COPY_THRESHOLD_INSERT: usize = 100;
const COPY_THRESHOLD_UPSERT: usize = 1000;

impl SinkConfig {
    /// The effective `copy_threshold`: the configured one, or the mode's default.
    pub fn copy_threshold(&self) -> usize {
        self.copy_threshold.unwrap_or(match self.mode {
            SinkMode::Insert => COPY_THRESHOLD_INSERT,
            SinkMode::Upsert => COPY_THRESHOLD_UPSERT,
        })
    }
}

fn default_retry_initial() -> Duration {
    Duration::from_millis(100)
}

fn default_marker_retention() -> Duration {
    Duration::from_secs(7 * 24 * 3600)
}

fn default_retry_max() -> Duration {
    Duration::from_secs(10)
}

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// A batch closes at this many records.
    pub max_rows: usize,
    /// …or at this many bytes of source payload.
    pub max_bytes: usize,
    /// …or this long after its first record arrived.
    #[serde(with = "duration")]
    #[cfg_attr(test, schemars(with = "String"))]
    pub max_linger: Duration,
    /// Batches the writer holds (the one it writes and those queued behind
    /// it); when all are taken and the next batch is due, partitions pause.
    pub max_in_flight: usize,
    /// Payload bytes consumed and not yet acknowledged; above it, partitions pause.
    pub max_in_flight_bytes: usize,
    /// How long a revocation waits for in-flight batches before dropping them uncommitted.
    #[serde(with = "duration")]
    #[cfg_attr(test, schemars(with = "String"))]
    pub revoke_timeout: Duration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_rows: 5000,
            max_bytes: 8 << 20,
            max_linger: Duration::from_millis(100),
            max_in_flight: 2,
            max_in_flight_bytes: 16 << 20,
            revoke_timeout: Duration::from_secs(20),
        }
    }
}
