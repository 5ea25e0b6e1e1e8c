//! DDL: the `CREATE TABLE` of `auto_create` and the `ALTER TABLE … ADD COLUMN`
//! of `auto_evolve`, in a backend's [`Dialect`].
//!
//! Guarantees: every identifier is validated ([`crate::ident::validate`]) and
//! quoted for its dialect; type names come only from the dialect's fixed
//! mapping of [`PortableType`] and [`Inferred`] (never from input text), so no DDL carries text a record
//! or a config value could use to inject SQL. Columns added by evolution are
//! always nullable; nothing here drops, renames or narrows a column.

use super::dialect::Dialect;
pub use super::dialect::Inferred;
use super::schema::TableSchema;
use crate::config::{PortableType, SchemaConfig};
use crate::ident::{validate, IdentError, TableName};
use crate::model::Row;
use serde_json::Value;

/// `CREATE TABLE IF NOT EXISTS` for a declared (and checked) schema.
pub fn create_table_sql(
    dialect: &dyn Dialect,
    table: &TableName,
    schema: &SchemaConfig,
) -> Result<String, String> {
    let q = dialect.quoting();
    let mut defs = Vec::with_capacity(schema.columns.len() + 1);
    for c in &schema.columns {
        validate(&c.name).map_err(|e| e.to_string())?;
        let ty = PortableType::parse(&c.data_type)?;
        let null = if c.nullable { "" } else { " NOT NULL" };
        defs.push(format!(
            "{} {}{null}",
            q.quote(&c.name),
            dialect.declared_type(ty)
        ));
    }
    if !schema.primary_key.is_empty() {
        for k in &schema.primary_key {
            validate(k).map_err(|e| e.to_string())?;
        }
        defs.push(format!(
            "PRIMARY KEY ({})",
            q.column_list(&schema.primary_key)
        ));
    }
    Ok(format!(
        "CREATE TABLE IF NOT EXISTS {} ({})",
        table.quoted_in(q),
        defs.join(", ")
    ))
}

/// How an existing table differs from its declaration (names, nullability,
/// primary key; types are compared by no database-independent rule, so not at all).
pub fn differences(existing: &TableSchema, declared: &SchemaConfig) -> Vec<String> {
    let mut out = Vec::new();
    for c in &declared.columns {
        match existing.column(&c.name) {
            None => out.push(format!("column `{}` is missing", c.name)),
            Some(e) if e.nullable != c.nullable => {
                out.push(format!("column `{}` nullable is {}", c.name, e.nullable))
            }
            Some(_) => {}
        }
    }
    for e in &existing.columns {
        if !declared.columns.iter().any(|c| c.name == e.name) {
            out.push(format!("column `{}` is not declared", e.name));
        }
    }
    let mut pk = declared.primary_key.clone();
    pk.sort();
    if !pk.is_empty() && !existing.unique_keys.contains(&pk) {
        out.push(format!(
            "no unique key on ({})",
            declared.primary_key.join(", ")
        ));
    }
    out
}

impl Inferred {
    fn of(value: &Value) -> Option<Self> {
        Some(match value {
            Value::Null => return None,
            Value::Bool(_) => Self::Bool,
            Value::Number(n) if n.is_i64() => Self::BigInt,
            Value::Number(_) => Self::Double,
            Value::String(_) => Self::Text,
            Value::Array(_) | Value::Object(_) => Self::Json,
        })
    }

    /// The narrowest kind that holds values of both kinds.
    fn widen(self, other: Self) -> Self {
        use Inferred::{BigInt, Double, Text};
        match (self, other) {
            (a, b) if a == b => a,
            (BigInt, Double) | (Double, BigInt) => Double,
            _ => Text,
        }
    }
}

/// Fields of `rows` that are not columns of the table and can become one: a
/// valid identifier with a non-null value somewhere. In order of first appearance.
pub fn new_fields(schema: &TableSchema, rows: &[Row]) -> Vec<(String, Inferred)> {
    let mut out: Vec<(String, Inferred)> = Vec::new();
    for row in rows {
        for (name, value) in row {
            if schema.column(name).is_some() || validate(name).is_err() {
                continue;
            }
            let Some(kind) = Inferred::of(value) else {
                continue;
            };
            match out.iter_mut().find(|(n, _)| n == name) {
                Some((_, k)) => *k = k.widen(kind),
                None => out.push((name.clone(), kind)),
            }
        }
    }
    out
}

/// `ALTER TABLE … ADD COLUMN` of one nullable column; `IF NOT EXISTS` where
/// the dialect has it (PostgreSQL, MariaDB), so a member that lost the race
/// succeeds. On MySQL and SQLite the caller treats "duplicate column" as success.
pub fn add_column_sql(
    dialect: &dyn Dialect,
    table: &TableName,
    name: &str,
    kind: Inferred,
) -> Result<String, IdentError> {
    validate(name)?;
    let q = dialect.quoting();
    let if_not_exists = if dialect.add_column_if_not_exists() {
        " IF NOT EXISTS"
    } else {
        ""
    };
    Ok(format!(
        "ALTER TABLE {} ADD COLUMN{if_not_exists} {} {}",
        table.quoted_in(q),
        q.quote(name),
        dialect.inferred_type(kind)
    ))
}

#[cfg(test)]
#[path = "ddl_tests.rs"]
mod tests;
