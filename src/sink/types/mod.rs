//! The JSON → column-type mapping, applied in Rust before a batch reaches the
//! database.
//!
//! Guarantees:
//! - Each column's database type is parsed once ([`mod@parse`]) into a
//!   [`ColumnType`]; every value of a row is checked against it and rewritten
//!   into the one form its backend ([`Target`]) reads exactly
//!   ([`convert::fit`]); a value that already has that form is left
//!   where it is, not copied.
//! - A value that does not fit — wrong JSON type, integer overflow, a fraction
//!   into an integer column, more digits than a decimal's precision or scale,
//!   a string longer than its column (in characters), a bad timestamp, date,
//!   UUID or base64, fractional seconds beyond the column's precision — is a
//!   [`Refusal`] naming the column and the reason. Nothing is truncated,
//!   rounded or coerced silently.
//! - `null` passes (the database enforces `NOT NULL`); so do fields with no
//!   column, and values of columns whose type is [`ColumnType::Unknown`]
//!   (the database converts those itself).

mod convert;
mod number;
mod parse;
mod time;

pub use convert::fit;
pub use parse::parse;

use super::schema::TableSchema;
use crate::config::{SinkConfig, TimestampFormat};
use crate::model::Row;
use foldhash::HashMap;
use serde_json::Value;

/// How one database names its column types and reads values: the facts the
/// type mapping needs. Each backend's folder supplies one (`db/*/dialect.rs`),
/// so nothing here names a database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// `elem[]` names an array of `elem` (PostgreSQL).
    pub arrays: bool,
    /// Any name containing `int` is a 64-bit integer (SQLite's affinity rule).
    pub int_affinity: bool,
    /// `tinyint(1)` is a boolean (MySQL).
    pub tinyint1_is_bool: bool,
    /// `real` is single precision (PostgreSQL); elsewhere a double.
    pub real_is_single: bool,
    /// `float(p)` is single up to p ≤ 24 and a double above (MySQL);
    /// elsewhere `float` is a double.
    pub float_by_precision: bool,
    /// `longtext` takes JSON objects and arrays as their text (MariaDB's
    /// `JSON` is an alias of `LONGTEXT`).
    pub longtext_holds_json: bool,
    /// The precision of a `decimal` declared without arguments (MySQL's is
    /// `DECIMAL(10, 0)`); `None`: unconstrained.
    pub bare_decimal_precision: Option<u32>,
    /// Fractional-second digits of a timestamp declared without them.
    pub default_fraction_digits: u8,
    /// What precedes the hex digits of a bytes value written as text
    /// (`\x` for `bytea`; empty where the statement binds `UNHEX(?)`).
    pub bytes_hex_prefix: &'static str,
    /// Timestamps as ISO 8601 (`T` between date and time, `Z` on a zoned
    /// one) rather than `YYYY-MM-DD hh:mm:ss`.
    pub iso_timestamps: bool,
}

/// What a column accepts, parsed from its database type name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnType {
    /// Integers in `min..=max` (every width, signed or unsigned).
    Int {
        min: i128,
        max: i128,
    },
    /// `numeric(p, s)`; `precision: None` is unconstrained.
    Decimal {
        precision: Option<u32>,
        scale: u32,
    },
    Float {
        single: bool,
    },
    Bool,
    /// `max_chars` in characters; `structured`: JSON objects and arrays are
    /// stored as their JSON text (MariaDB's `JSON`, which is a `LONGTEXT`).
    Text {
        max_chars: Option<usize>,
        structured: bool,
    },
    /// `zone`: PostgreSQL's `timestamp with time zone`. `precision`: the
    /// fractional-second digits the column keeps.
    Timestamp {
        zone: bool,
        precision: u8,
    },
    Date,
    Uuid,
    Json,
    /// Base64 in JSON; `max_len` in bytes.
    Bytes {
        max_len: Option<usize>,
    },
    /// A PostgreSQL array: a JSON array, each element of this type (or null).
    Array(Box<ColumnType>),
    /// Not recognised: values pass through unchanged.
    Unknown,
}

/// How one column's values are converted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnSpec {
    pub ty: ColumnType,
    pub timestamps: TimestampFormat,
}

/// A value that does not fit its column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub column: String,
    pub reason: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "column `{}`: {}", self.column, self.reason)
    }
}

/// The conversion of every column of a table, built once at start-up.
#[derive(Debug, Clone)]
pub struct RowTypes {
    target: Target,
    columns: HashMap<String, ColumnSpec>,
}

impl RowTypes {
    pub fn new(schema: &TableSchema, cfg: &SinkConfig, target: Target) -> Self {
        let columns = schema
            .columns
            .iter()
            .map(|c| {
                let timestamps = cfg
                    .columns
                    .get(&c.name)
                    .and_then(|o| o.timestamp_format)
                    .unwrap_or(cfg.timestamp_format);
                let spec = ColumnSpec {
                    ty: parse(&c.data_type, target),
                    timestamps,
                };
                (c.name.clone(), spec)
            })
            .collect();
        Self { target, columns }
    }

    /// Converts every field that has a column, in place; the first value that
    /// does not fit refuses the row.
    pub fn convert_row(&self, row: &mut Row) -> Result<(), Refusal> {
        for (name, value) in self.changes(row)? {
            if let Some(slot) = row.get_mut(&name) {
                *slot = value;
            }
        }
        Ok(())
    }

    /// What [`Self::convert_row`] would rewrite, as `(column, value)` pairs,
    /// without touching the row: empty when every field fits as it is, so a
    /// caller holding a shared row copies it only when something changes.
    pub fn changes(&self, row: &Row) -> Result<Vec<(String, Value)>, Refusal> {
        let mut changes = Vec::new();
        for (name, value) in row {
            let Some(spec) = self.columns.get(name) else {
                continue;
            };
            let fitted =
                fit(&spec.ty, value, spec.timestamps, self.target).map_err(|reason| Refusal {
                    column: name.clone(),
                    reason,
                })?;
            if let Some(v) = fitted {
                changes.push((name.clone(), v));
            }
        }
        Ok(changes)
    }
}

impl RowTypes {
    /// Converts a delete's key in place, as [`Self::convert_row`] does, after
    /// reading a bare Kafka key's text as the number or bool its column holds
    /// (a bare key `42` arrives as the string "42"). A refusal means the key
    /// cannot be a value of its column, so it names no row.
    pub fn convert_key(&self, key: &mut Row) -> Result<(), Refusal> {
        for (name, value) in key.iter_mut() {
            let (Some(spec), Value::String(text)) = (self.columns.get(name), &*value) else {
                continue;
            };
            let parsed = match spec.ty {
                ColumnType::Int { .. } | ColumnType::Float { .. } => {
                    serde_json::from_str::<Value>(text.trim())
                        .ok()
                        .filter(Value::is_number)
                }
                ColumnType::Bool => serde_json::from_str::<Value>(text.trim())
                    .ok()
                    .filter(Value::is_boolean),
                _ => None,
            };
            if let Some(parsed) = parsed {
                *value = parsed;
            }
        }
        self.convert_row(key)
    }
}

/// Whether `column` holds bytes: its values arrive as hex text (MySQL and
/// SQLite decode them with `UNHEX` in the statement).
pub fn is_bytes(schema: &TableSchema, column: &str, target: Target) -> bool {
    schema
        .column(column)
        .is_some_and(|c| matches!(parse(&c.data_type, target), ColumnType::Bytes { .. }))
}

/// Problems with the per-column overrides of `cfg` against the table: a
/// column the table does not have, or one that holds no timestamps.
pub fn check_overrides(schema: &TableSchema, cfg: &SinkConfig, target: Target) -> Vec<String> {
    let mut problems = Vec::new();
    for name in cfg.columns.keys() {
        match schema.column(name) {
            None => problems.push(format!(
                "sink.columns.{name}: table {} has no column `{name}`",
                schema.table
            )),
            Some(c) => {
                let ty = parse(&c.data_type, target);
                let timestamps = matches!(ty, ColumnType::Timestamp { .. })
                    || matches!(&ty, ColumnType::Array(e) if matches!(**e, ColumnType::Timestamp { .. }));
                if !timestamps {
                    problems.push(format!(
                        "sink.columns.{name}.timestamp_format: column `{name}` is `{}`, not a timestamp",
                        c.data_type
                    ));
                }
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests;
