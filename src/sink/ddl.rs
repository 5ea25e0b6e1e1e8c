//! DDL: the `CREATE TABLE` of `auto_create` and the `ALTER TABLE … ADD COLUMN`
//! of `auto_evolve`, per dialect.
//!
//! Guarantees: every identifier is validated ([`crate::ident::validate`]) and
//! quoted for its dialect; type names come only from the fixed mapping of
//! [`PortableType`] (never from input text), so no DDL carries text a record
//! or a config value could use to inject SQL. Columns added by evolution are
//! always nullable; nothing here drops, renames or narrows a column.

use super::schema::TableSchema;
use crate::config::{Backend, PortableType, SchemaConfig};
use crate::ident::{validate, Dialect, IdentError, TableName};
use crate::model::Row;
use serde_json::Value;

impl PortableType {
    /// The type's name in `backend`'s SQL.
    pub fn sql(self, backend: Backend) -> String {
        use Backend::{MySql, Postgres, Sqlite};
        let fixed = match (self, backend) {
            (Self::Numeric(Some((p, s))), Postgres) => return format!("numeric({p},{s})"),
            (Self::Numeric(Some((p, s))), MySql) => return format!("DECIMAL({p},{s})"),
            (Self::Varchar(n), Postgres) => return format!("varchar({n})"),
            (Self::Varchar(n), MySql) => return format!("VARCHAR({n})"),
            // TEXT affinity; the declared length is what the type mapping checks.
            (Self::Varchar(n), Sqlite) => return format!("VARCHAR({n})"),
            (Self::SmallInt, Postgres) => "smallint",
            (Self::SmallInt, MySql) => "SMALLINT",
            (Self::Int, Postgres) => "integer",
            (Self::Int, MySql) => "INT",
            (Self::BigInt, Postgres) => "bigint",
            (Self::BigInt, MySql) => "BIGINT",
            (Self::SmallInt | Self::Int | Self::BigInt, Sqlite) => "INTEGER",
            // NUMERIC affinity; declared BOOLEAN, the type mapping takes true/false.
            (Self::Bool, Sqlite) => "BOOLEAN",
            (Self::Numeric(_), Postgres) => "numeric",
            // MySQL has no unconstrained decimal; its widest exact type.
            (Self::Numeric(None), MySql) => "DECIMAL(65,30)",
            (Self::Numeric(_), Sqlite) => "NUMERIC",
            (Self::Real, Postgres) => "real",
            (Self::Real, MySql) => "FLOAT",
            (Self::Double, Postgres) => "double precision",
            (Self::Double, MySql) => "DOUBLE",
            (Self::Real | Self::Double, Sqlite) => "REAL",
            (Self::Bool, Postgres) => "boolean",
            (Self::Bool, MySql) => "BOOLEAN",
            (Self::Text, Postgres) => "text",
            (Self::Text, MySql) => "LONGTEXT",
            (Self::TimestampTz, Postgres) => "timestamptz",
            (Self::Timestamp, Postgres) => "timestamp",
            // Connections run with time_zone '+00:00': DATETIME holds UTC.
            (Self::TimestampTz | Self::Timestamp, MySql) => "DATETIME(6)",
            (Self::Date, Postgres) => "date",
            (Self::Date, MySql) => "DATE",
            (Self::Uuid, Postgres) => "uuid",
            (Self::Uuid, MySql) => "CHAR(36)",
            (Self::Json, Postgres) => "jsonb",
            (Self::Json, MySql) => "JSON",
            (Self::Bytes, Postgres) => "bytea",
            (Self::Bytes, MySql) => "LONGBLOB",
            (Self::Bytes, Sqlite) => "BLOB",
            (
                Self::Text | Self::TimestampTz | Self::Timestamp | Self::Date | Self::Uuid,
                Sqlite,
            ) => "TEXT",
            (Self::Json, Sqlite) => "JSON",
        };
        fixed.to_string()
    }
}

fn dialect(backend: Backend) -> Dialect {
    match backend {
        Backend::MySql => Dialect::MySql,
        Backend::Postgres | Backend::Sqlite => Dialect::Ansi,
    }
}

/// `CREATE TABLE IF NOT EXISTS` for a declared (and checked) schema.
pub fn create_table_sql(
    backend: Backend,
    table: &TableName,
    schema: &SchemaConfig,
) -> Result<String, String> {
    let q = dialect(backend);
    let mut defs = Vec::with_capacity(schema.columns.len() + 1);
    for c in &schema.columns {
        validate(&c.name).map_err(|e| e.to_string())?;
        let ty = PortableType::parse(&c.data_type)?;
        let null = if c.nullable { "" } else { " NOT NULL" };
        defs.push(format!("{} {}{null}", q.quote(&c.name), ty.sql(backend)));
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

/// The kind of a new column, inferred from a field's JSON values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inferred {
    BigInt,
    Double,
    Bool,
    Text,
    Json,
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

    pub fn sql(self, backend: Backend) -> &'static str {
        match (self, backend) {
            (Self::BigInt, Backend::Sqlite) => "INTEGER",
            (Self::BigInt, _) => "BIGINT",
            (Self::Double, Backend::Postgres) => "double precision",
            (Self::Double, Backend::MySql) => "DOUBLE",
            (Self::Double, Backend::Sqlite) => "REAL",
            (Self::Bool, _) => "BOOLEAN",
            (Self::Text, Backend::MySql) => "LONGTEXT",
            (Self::Text, _) => "TEXT",
            // Declared JSON (NUMERIC affinity; the text of an object or array
            // stays text), so the type mapping takes objects and arrays.
            (Self::Json, Backend::Sqlite) => "JSON",
            (Self::Json, Backend::Postgres) => "jsonb",
            (Self::Json, Backend::MySql) => "JSON",
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
    backend: Backend,
    mariadb: bool,
    table: &TableName,
    name: &str,
    kind: Inferred,
) -> Result<String, IdentError> {
    validate(name)?;
    let q = dialect(backend);
    let if_not_exists = match backend {
        Backend::Postgres => " IF NOT EXISTS",
        Backend::MySql if mariadb => " IF NOT EXISTS",
        _ => "",
    };
    Ok(format!(
        "ALTER TABLE {} ADD COLUMN{if_not_exists} {} {}",
        table.quoted_in(q),
        q.quote(name),
        kind.sql(backend)
    ))
}

#[cfg(test)]
#[path = "ddl_tests.rs"]
mod tests;
