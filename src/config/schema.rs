//! The table a config declares for `auto_create`: column types named the same
//! way for every database ([`PortableType`], a fixed list: no type name in
//! DDL ever comes from input text) and the checks a declaration must pass
//! before start-up. How each type is spelled in each database's SQL is the
//! sink's (`sink::ddl`).

use super::SchemaConfig;
use crate::ident::validate;

/// A column type named the same way for every database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortableType {
    SmallInt,
    Int,
    BigInt,
    /// `numeric(precision, scale)`; `numeric` alone is unconstrained (SQLite, PostgreSQL).
    Numeric(Option<(u16, u16)>),
    Real,
    Double,
    Bool,
    Text,
    Varchar(u32),
    TimestampTz,
    Timestamp,
    Date,
    Uuid,
    Json,
    Bytes,
}

impl PortableType {
    /// Parses a portable type name (case-insensitive), e.g. `bigint`, `numeric(12,2)`, `varchar(40)`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim().to_ascii_lowercase();
        let args = |name: &str| -> Option<Vec<u32>> {
            let inner = t
                .strip_prefix(name)?
                .trim()
                .strip_prefix('(')?
                .strip_suffix(')')?;
            inner.split(',').map(|a| a.trim().parse().ok()).collect()
        };
        let ty = match t.as_str() {
            "smallint" => Self::SmallInt,
            "int" | "integer" => Self::Int,
            "bigint" => Self::BigInt,
            "numeric" | "decimal" => Self::Numeric(None),
            "real" => Self::Real,
            "double" => Self::Double,
            "bool" | "boolean" => Self::Bool,
            "text" => Self::Text,
            "timestamptz" => Self::TimestampTz,
            "timestamp" => Self::Timestamp,
            "date" => Self::Date,
            "uuid" => Self::Uuid,
            "json" => Self::Json,
            "bytes" => Self::Bytes,
            _ => match (args("numeric").or_else(|| args("decimal")), args("varchar")) {
                (Some(a), _) if a.len() == 2 && (1..=65).contains(&a[0]) && a[1] <= a[0] => {
                    Self::Numeric(Some((a[0] as u16, a[1] as u16)))
                }
                (_, Some(a)) if a.len() == 1 && (1..=16_383).contains(&a[0]) => Self::Varchar(a[0]),
                _ => return Err(format!(
                    "`{text}` is not a portable type (smallint, int, bigint, numeric(p,s), real, double, \
                     bool, text, varchar(n), timestamptz, timestamp, date, uuid, json, bytes)"
                )),
            },
        };
        Ok(ty)
    }
}

/// Problems with a declared schema, each as (key under `sink.schema`, message).
pub fn check_schema(schema: &SchemaConfig) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if schema.columns.is_empty() {
        out.push(("columns".into(), "must declare one or more columns".into()));
    }
    for (i, c) in schema.columns.iter().enumerate() {
        if let Err(e) = validate(&c.name) {
            out.push((format!("columns[{i}].name"), e.to_string()));
        }
        if schema.columns[..i].iter().any(|o| o.name == c.name) {
            out.push((
                format!("columns[{i}].name"),
                format!("`{}` is declared twice", c.name),
            ));
        }
        if let Err(e) = PortableType::parse(&c.data_type) {
            out.push((format!("columns[{i}].type"), e));
        }
    }
    for k in &schema.primary_key {
        match schema.columns.iter().find(|c| &c.name == k) {
            None => out.push((
                "primary_key".into(),
                format!("`{k}` is not a declared column"),
            )),
            Some(c) if c.nullable => out.push((
                "primary_key".into(),
                format!("`{k}` must be declared with nullable = false"),
            )),
            Some(_) => {}
        }
    }
    out
}
