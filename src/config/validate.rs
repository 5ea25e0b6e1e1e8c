//! Whole-config validation: every problem at once, each naming its key.
//!
//! Config is data: this checks what the config alone can tell. What needs
//! another module — the database a URL names and that database's rules for
//! a table name, whether a jq program compiles — is checked by
//! `check::offline`, which `check::load` runs with this.

use super::{PipelineConfig, Settings, SinkMode};
use std::fmt;

/// One configuration problem: the dotted key and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

pub(super) fn settings(s: &Settings) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut push = |key: String, message: String| out.push(Problem { key, message });
    if s.telemetry
        .sampling_ratio
        .is_some_and(|r| !(0.0..=1.0).contains(&r))
    {
        push(
            "telemetry.sampling_ratio".into(),
            "must be between 0.0 and 1.0".into(),
        );
    }
    if s.pipelines.is_empty() {
        push(
            "pipelines".into(),
            "no pipeline declared; add a [pipelines.NAME] table".into(),
        );
    }
    if let Some(id) = &s.instance_id {
        if let Some(problem) = super::validate_kafka::instance_id_problem(id) {
            push("instance_id".into(), problem);
        }
    }
    for (name, p) in &s.pipelines {
        pipeline(name, p, s.instance_id.as_deref(), &mut push);
    }
    out
}

/// `instance_id`: the top-level id pipelines inherit (already checked there).
fn pipeline(
    name: &str,
    p: &PipelineConfig,
    instance_id: Option<&str>,
    push: &mut impl FnMut(String, String),
) {
    let key = |k: &str| format!("pipelines.{name}.{k}");
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
    {
        push(
            format!("pipelines.{name}"),
            "pipeline names use a-z, 0-9, '_' and '-' only".into(),
        );
    }
    if p.kafka.brokers.trim().is_empty() {
        push(key("kafka.brokers"), "must name at least one broker".into());
    }
    if !matches!(p.kafka.auto_offset_reset.as_str(), "earliest" | "latest") {
        push(
            key("kafka.auto_offset_reset"),
            format!(
                "`{}` is not one of earliest, latest",
                p.kafka.auto_offset_reset
            ),
        );
    }
    super::validate_kafka::membership(name, &p.kafka, instance_id, push);
    if p.topics.is_empty() || p.topics.iter().any(|t| t.trim().is_empty()) {
        push(key("topics"), "must list one or more topic names".into());
    }
    super::validate_transforms::transforms(name, p, push);
    if let Some(dl) = &p.dead_letter {
        if dl.topic.trim().is_empty() || p.topics.contains(&dl.topic) {
            push(
                key("dead_letter.topic"),
                "must name a topic other than the ones consumed".into(),
            );
        }
    }
    sink(name, p, push);
    batch(name, p, push);
    lineage(name, p, push);
}

/// Lineage columns: valid and distinct names; the source's only for a change stream.
fn lineage(name: &str, p: &PipelineConfig, push: &mut impl FnMut(String, String)) {
    let key = |k: &str| format!("pipelines.{name}.lineage.{k}");
    let mut seen = std::collections::BTreeSet::new();
    for (k, column) in p.lineage.columns() {
        if let Err(e) = crate::ident::validate(column) {
            push(key(k), e.to_string());
        }
        if !seen.insert(column) {
            push(
                key(k),
                format!("`{column}` names another lineage column too"),
            );
        }
        if k.starts_with("source_") && p.format != crate::config::DecodeFormat::Debezium {
            push(
                key(k),
                "only a change stream (format = \"debezium\") has a source to record".into(),
            );
        }
    }
}

fn sink(name: &str, p: &PipelineConfig, push: &mut impl FnMut(String, String)) {
    let key = |k: &str| format!("pipelines.{name}.sink.{k}");
    if p.sink.apply_truncate && p.format != crate::config::DecodeFormat::Debezium {
        push(
            key("apply_truncate"),
            "only a change stream (format = \"debezium\") has truncate events".into(),
        );
    }
    if let Some(column) = &p.sink.order_column {
        if p.format != crate::config::DecodeFormat::Debezium {
            push(
                key("order_column"),
                "only a change stream (format = \"debezium\") has source positions".into(),
            );
        } else if p.sink.mode != SinkMode::Upsert {
            push(
                key("order_column"),
                "the ordering guard needs upsert mode (sink.mode = \"upsert\")".into(),
            );
        } else if p.sink.key_columns.contains(column) {
            push(
                key("order_column"),
                format!("`{column}` is a key column; the position needs a column of its own"),
            );
        } else if let Err(e) = crate::ident::validate(column) {
            push(key("order_column"), e.to_string());
        }
    }
    if p.sink.mode == SinkMode::Upsert && p.sink.key_columns.is_empty() {
        push(
            key("key_columns"),
            "upsert mode needs the columns of a unique key".into(),
        );
    }
    for column in &p.sink.key_columns {
        if let Err(e) = crate::ident::validate(column) {
            push(key("key_columns"), e.to_string());
        }
    }
    deletes_and_schema(p, &key, push);
    if p.sink.max_connections == 0 {
        push(key("max_connections"), "must be at least 1".into());
    }
    if p.sink.retry_initial.is_zero() || p.sink.retry_initial > p.sink.retry_max {
        push(
            key("retry_initial"),
            "must be above zero and at most retry_max".into(),
        );
    }
}

/// Deletes (`delete`, or a change stream's): what they need, named by key.
fn deletes(
    p: &PipelineConfig,
    key: &impl Fn(&str) -> String,
    push: &mut impl FnMut(String, String),
) {
    let sink = &p.sink;
    // A change stream upserts rows and deletes them by key.
    let (at, what, by) = if sink.delete {
        ("delete", "", "a tombstone")
    } else {
        ("mode", "format = \"debezium\" ", "a change event")
    };
    if p.applies_deletes() {
        if sink.mode != SinkMode::Upsert {
            push(
                key(at),
                format!("{what}needs mode = \"upsert\": a delete names its row by the key columns"),
            );
        }
        if sink.key_columns.is_empty() {
            push(
                key("key_columns"),
                format!(
                    "{}needs the key columns {by}'s Kafka key names",
                    if sink.delete { "delete " } else { what }
                ),
            );
        }
        if p.transforms
            .iter()
            .enumerate()
            .any(|(i, t)| t.state_name(i).is_some())
        {
            push(
                key(at),
                format!(
                    "{what}cannot be used with stateful transforms: deletes bypass the \
                     transforms, so they would not reach the keyed state the stateful steps keep"
                ),
            );
        }
    }
}

/// `delete`, `auto_create` and `schema`: what each needs, named by key.
fn deletes_and_schema(
    p: &PipelineConfig,
    key: &impl Fn(&str) -> String,
    push: &mut impl FnMut(String, String),
) {
    deletes(p, key, push);
    let sink = &p.sink;
    match (&sink.schema, sink.auto_create) {
        (None, true) => push(
            key("schema"),
            "auto_create needs the table declared here ([…sink.schema] columns = […])".into(),
        ),
        (Some(_), false) => push(
            key("schema"),
            "is only used by auto_create; set auto_create = true or remove it".into(),
        ),
        (Some(schema), true) => {
            for (k, message) in super::schema::check_schema(schema) {
                push(key(&format!("schema.{k}")), message);
            }
            for column in &sink.key_columns {
                if !schema.columns.iter().any(|c| &c.name == column) {
                    push(
                        key("key_columns"),
                        format!("`{column}` is not a column declared in schema.columns"),
                    );
                }
            }
        }
        (None, false) => {}
    }
}

fn batch(name: &str, p: &PipelineConfig, push: &mut impl FnMut(String, String)) {
    let key = |k: &str| format!("pipelines.{name}.batch.{k}");
    if p.batch.max_rows == 0 {
        push(key("max_rows"), "must be at least 1".into());
    }
    if p.batch.max_bytes == 0 {
        push(key("max_bytes"), "must be at least 1".into());
    }
    if p.batch.max_in_flight_bytes < p.batch.max_bytes {
        push(
            key("max_in_flight_bytes"),
            "must be at least batch.max_bytes".into(),
        );
    }
    if p.batch.max_in_flight == 0 {
        push(key("max_in_flight"), "must be at least 1".into());
    }
}
