//! Lineage and audit columns: per pipeline, the columns that record where
//! each row came from and how late it was — its Kafka topic, partition,
//! offset and timestamp, when tidemill read it, and for a change stream the
//! source database, table, position and commit time. Every one is off until
//! it names a column.

use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct LineageConfig {
    /// Column for the Kafka topic (text).
    pub topic: Option<String>,
    /// Column for the Kafka partition (integer).
    pub partition: Option<String>,
    /// Column for the Kafka offset (integer).
    pub offset: Option<String>,
    /// Column for the Kafka record's timestamp (RFC 3339, UTC).
    pub timestamp: Option<String>,
    /// Column for when tidemill read the record (RFC 3339, UTC).
    pub ingested_at: Option<String>,
    /// Change streams: column for the source database.
    pub source_database: Option<String>,
    /// Change streams: column for the source table (`schema.table`).
    pub source_table: Option<String>,
    /// Change streams: column for the source position (PostgreSQL's LSN;
    /// MySQL's GTID, else binlog `file:pos`).
    pub source_position: Option<String>,
    /// Change streams: column for the source's commit time (RFC 3339, UTC).
    pub source_committed_at: Option<String>,
}

impl LineageConfig {
    /// (key, column) of every column set, Kafka's first.
    pub fn columns(&self) -> Vec<(&'static str, &str)> {
        [
            ("topic", &self.topic),
            ("partition", &self.partition),
            ("offset", &self.offset),
            ("timestamp", &self.timestamp),
            ("ingested_at", &self.ingested_at),
            ("source_database", &self.source_database),
            ("source_table", &self.source_table),
            ("source_position", &self.source_position),
            ("source_committed_at", &self.source_committed_at),
        ]
        .into_iter()
        .filter_map(|(key, column)| column.as_deref().map(|c| (key, c)))
        .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.columns().is_empty()
    }
}
