//! Debezium change events (`format = "debezium"`) → what to do with the
//! target row. Pure.
//!
//! Contract:
//! - The value is Debezium's envelope (`before`, `after`, `op`, `source`),
//!   with or without the JSON converter's `{"schema", "payload"}` wrapper
//!   (detected per record). `c` (insert), `r` (snapshot read) and `u`
//!   (update) upsert `after`; `d` deletes the row; `t` (truncate) is
//!   refused with its reason, never applied silently; anything else is an
//!   error naming the `op`.
//! - With the schema, each field of `after` is decoded by its Debezium or
//!   Kafka Connect logical type into the form the type layer reads exactly
//!   ([`logical`]): a decimal's base64 unscaled value and scale become its
//!   digits, a date's day count its `YYYY-MM-DD`, and so on. Without it,
//!   values pass as they are, and the target column's type decides (a value
//!   that does not fit is a data error naming the column, never a guess).
//! - A column PostgreSQL did not send (an unchanged TOASTed value, sent as
//!   `__debezium_unavailable_value`) is left out of the row, so the upsert
//!   keeps the value the target has instead of overwriting it.
//! - The row a delete names comes from the record's Kafka key (Debezium's
//!   primary-key struct, wrapped or not; see [`key`]).

pub mod logical;

use crate::model::Row;
use serde_json::{Map, Value};

/// PostgreSQL's stand-in for a TOASTed value that did not change.
pub const UNAVAILABLE: &str = "__debezium_unavailable_value";

/// The same stand-in for a bytes column (base64 of [`UNAVAILABLE`]).
const UNAVAILABLE_BYTES: &str = "X19kZWJleml1bV91bmF2YWlsYWJsZV92YWx1ZQ==";

/// Where a change happened in its source (the envelope's `source` block).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Source {
    pub database: Option<String>,
    /// `schema.table` when the source has schemas (PostgreSQL), else the table.
    pub table: Option<String>,
    /// PostgreSQL's LSN; MySQL's GTID, else binlog `file:pos`.
    pub position: Option<String>,
    /// When the source committed the change (ms since the epoch).
    pub committed_ms: Option<i64>,
    /// Where the change is in the source's commit order, as text that
    /// sorts in that order ([`order_of`]); `None` when the event does not
    /// say (a snapshot read, PostgreSQL's first transactions after the
    /// connector starts).
    pub order: Option<String>,
}

impl Source {
    fn of(source: Option<&Value>) -> Self {
        let Some(s) = source else {
            return Self::default();
        };
        let text = |k: &str| s.get(k).and_then(Value::as_str).map(str::to_string);
        let table = match (text("schema"), text("table")) {
            (Some(schema), Some(table)) => Some(format!("{schema}.{table}")),
            (_, table) => table,
        };
        let position = match (s.get("lsn"), text("gtid"), text("file"), s.get("pos")) {
            (Some(lsn), ..) if !lsn.is_null() => Some(lsn.to_string()),
            (_, Some(gtid), ..) => Some(gtid),
            (_, _, Some(file), Some(pos)) => Some(format!("{file}:{pos}")),
            _ => None,
        };
        Self {
            database: text("db"),
            table,
            position,
            committed_ms: s.get("ts_ms").and_then(Value::as_i64),
            order: order_of(s),
        }
    }
}

/// A change's place in its source's commit order, as fixed-width digits
/// (so text comparison is numeric comparison on every database):
/// - PostgreSQL: `sequence`'s `[last committed LSN, this change's LSN]`.
///   Transactions stream in commit order and each names the end of the one
///   committed before it; within one, the changes' LSNs rise. A change whose
///   predecessor is unknown (`null`: the first transactions after the
///   connector starts) has no order — its own LSN can be older than a
///   snapshot taken while its transaction was open.
/// - MySQL / MariaDB: binlog file number, position and row (the binlog is
///   written in commit order).
///
/// Snapshot reads are left without order by the caller: a snapshot is newer
/// than the changes before it but cannot be placed among them.
fn order_of(s: &Value) -> Option<String> {
    if let Some(Value::String(sequence)) = s.get("sequence") {
        let pair: Vec<Option<String>> = serde_json::from_str(sequence).ok()?;
        let number = |v: &Option<String>| v.as_deref()?.parse::<u64>().ok();
        return match pair.as_slice() {
            [committed, lsn] => Some(format!("{:020}{:020}", number(committed)?, number(lsn)?)),
            _ => None,
        };
    }
    let file = s.get("file")?.as_str()?;
    let number: u64 = file.rsplit('.').next()?.parse().ok()?;
    let pos = s.get("pos")?.as_u64()?;
    let row = s.get("row").and_then(Value::as_u64).unwrap_or(0);
    Some(format!("{number:020}{pos:020}{row:010}"))
}

/// What a change event asks of the target table.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Insert or update this row (only the columns it carries).
    Upsert(Row),
    /// Delete the row the record's key names.
    Delete,
    /// The source table was truncated.
    Truncate,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    #[error("not a Debezium change event: {0}")]
    Envelope(String),
    #[error("field `{field}`: {message}")]
    Field { field: String, message: String },
}

/// Reads one change event's value, and where in its source it happened.
pub fn event(value: Value) -> Result<(Change, Source), ChangeError> {
    let (envelope, schema) = unwrap(value);
    let mut source = Source::of(envelope.get("source"));
    if envelope.get("op").and_then(Value::as_str) == Some("r") {
        source.order = None;
    }
    Ok((change_of(envelope, schema)?, source))
}

fn change_of(envelope: Value, schema: Option<Value>) -> Result<Change, ChangeError> {
    let Value::Object(mut envelope) = envelope else {
        return Err(ChangeError::Envelope("the value is not an object".into()));
    };
    let op = match envelope.get("op") {
        Some(Value::String(op)) => op.clone(),
        _ => return Err(ChangeError::Envelope("no `op` field".into())),
    };
    match op.as_str() {
        "c" | "r" | "u" => {
            let Some(Value::Object(after)) = envelope.remove("after") else {
                return Err(ChangeError::Envelope(format!(
                    "`op` {op} without an `after` row"
                )));
            };
            let fields = schema.as_ref().and_then(|s| logical::fields_of(s, "after"));
            Ok(Change::Upsert(row(after, fields.as_ref())?))
        }
        "d" => Ok(Change::Delete),
        "t" => Ok(Change::Truncate),
        other => Err(ChangeError::Envelope(format!("unknown `op` {other:?}"))),
    }
}

/// The record key's row-identifying object: Debezium's key struct, taken out
/// of the converter's `{"schema", "payload"}` wrapper when it has one.
pub fn key(bytes: &[u8]) -> Option<Vec<u8>> {
    let value: Value = serde_json::from_slice(bytes).ok()?;
    match unwrap(value) {
        (payload, Some(_)) => serde_json::to_vec(&payload).ok(),
        (_, None) => Some(bytes.to_vec()),
    }
}

/// `{"schema": …, "payload": …}` → (payload, schema); anything else as it is.
fn unwrap(value: Value) -> (Value, Option<Value>) {
    match value {
        Value::Object(mut map)
            if map.len() == 2 && map.contains_key("schema") && map.contains_key("payload") =>
        {
            let schema = map.remove("schema").filter(|s| !s.is_null());
            (map.remove("payload").unwrap_or(Value::Null), schema)
        }
        other => (other, None),
    }
}

/// The row to upsert: unavailable values left out, logical types decoded.
fn row(after: Map<String, Value>, fields: Option<&logical::Fields>) -> Result<Row, ChangeError> {
    let mut row = Row::new();
    for (name, value) in after {
        if matches!(&value, Value::String(s) if s == UNAVAILABLE || s == UNAVAILABLE_BYTES) {
            continue;
        }
        let value = match fields.and_then(|f| f.get(&name)) {
            Some(field) => field.decode(value).map_err(|message| ChangeError::Field {
                field: name.clone(),
                message,
            })?,
            None => value,
        };
        row.insert(name, value);
    }
    Ok(row)
}

#[cfg(test)]
mod tests;
