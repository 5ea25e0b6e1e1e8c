//! Running the DDL of [`super::ddl`] against a database: the start-up
//! `auto_create` and the `auto_evolve` column additions.
//!
//! Guarantees: `auto_create` creates the table only when it is missing (with
//! `IF NOT EXISTS`, so racing members both succeed) and otherwise uses the
//! table as it is, logging how it differs from the declaration; an added
//! column that another member added first counts as added; every DDL
//! statement run is logged with its text.

use super::ddl::{self, Inferred};
use super::dialect::Dialect;
use super::error::is_duplicate_column;
use super::order::Guard;
use super::schema::TableSchema;
use super::SinkError;
use crate::config::SinkConfig;
use crate::ident::TableName;
use std::future::Future;
use tracing::{info, warn};

/// The target table's name as `dialect` reads it (schema-qualified where
/// it has schemas).
pub fn table_name(cfg: &SinkConfig, dialect: &dyn Dialect) -> Result<TableName, SinkError> {
    TableName::parse(&cfg.table, !dialect.schemas()).map_err(|e| SinkError::Schema {
        table: cfg.table.clone(),
        message: e.to_string(),
    })
}

/// Reads the table's schema, first creating the table from its declaration
/// when `auto_create` is on and the table is missing.
pub async fn open_table<D, DF, E, EF>(
    cfg: &SinkConfig,
    dialect: &dyn Dialect,
    table: &TableName,
    describe: D,
    exec: E,
) -> Result<TableSchema, SinkError>
where
    D: Fn() -> DF,
    DF: Future<Output = Result<TableSchema, SinkError>>,
    E: FnOnce(String) -> EF,
    EF: Future<Output = Result<(), sqlx::Error>>,
{
    let Some(declared) = cfg.schema.as_ref().filter(|_| cfg.auto_create) else {
        return describe().await;
    };
    match describe().await {
        Err(SinkError::MissingTable { .. }) => {
            let ddl = ddl::create_table_sql(dialect, table, declared).map_err(|message| {
                SinkError::Schema {
                    table: table.to_string(),
                    message,
                }
            })?;
            exec(ddl.clone()).await.map_err(|source| SinkError::Write {
                table: table.to_string(),
                source,
            })?;
            info!(table = %table, ddl, "created table");
            describe().await
        }
        Ok(schema) => {
            let differences = ddl::differences(&schema, declared);
            if !differences.is_empty() {
                warn!(
                    table = %table,
                    differences = differences.join("; "),
                    "table exists with a definition that differs from the config; using it as it is"
                );
            }
            Ok(schema)
        }
        Err(e) => Err(e),
    }
}

/// Adds each field as a nullable column; "duplicate column" is success.
pub async fn add_columns<E, EF>(
    dialect: &dyn Dialect,
    table: &TableName,
    fields: &[(String, Inferred)],
    mut exec: E,
) -> Result<(), SinkError>
where
    E: FnMut(String) -> EF,
    EF: Future<Output = Result<(), sqlx::Error>>,
{
    for (name, kind) in fields {
        let ddl =
            ddl::add_column_sql(dialect, table, name, *kind).map_err(|e| SinkError::Schema {
                table: table.to_string(),
                message: e.to_string(),
            })?;
        match exec(ddl.clone()).await {
            Ok(()) => info!(table = %table, column = %name, ddl, "added column"),
            Err(e) if is_duplicate_column(&e, dialect) => {
                info!(table = %table, column = %name, "column was added by another member")
            }
            Err(source) => {
                return Err(SinkError::Write {
                    table: table.to_string(),
                    source,
                })
            }
        }
    }
    Ok(())
}

/// With the ordering guard (`sink.order_column`): makes sure the target has
/// the position column (`auto_evolve` adds it, as text, before the first
/// row), then creates the markers table beside it (`IF NOT EXISTS`: racing
/// members both succeed), its key columns typed as the target's. Answers the
/// guard and the schema as it now is.
pub async fn open_guard<D, DF, E, EF>(
    cfg: &SinkConfig,
    dialect: &dyn Dialect,
    mut schema: TableSchema,
    describe: D,
    mut exec: E,
) -> Result<(Option<Guard>, TableSchema), SinkError>
where
    D: Fn() -> DF,
    DF: Future<Output = Result<TableSchema, SinkError>>,
    E: FnMut(String) -> EF,
    EF: Future<Output = Result<(), sqlx::Error>>,
{
    let Some(column) = &cfg.order_column else {
        return Ok((None, schema));
    };
    if schema.column(column).is_none() && cfg.auto_evolve {
        let field = [(column.clone(), Inferred::Text)];
        add_columns(dialect, &schema.table, &field, &mut exec).await?;
        schema = describe().await?;
    }
    let table = &schema.table;
    let refuse = |message: String| SinkError::Schema {
        table: table.to_string(),
        message,
    };
    let Some(position) = schema.column(column) else {
        return Err(refuse(format!(
            "no column `{column}` for sink.order_column: add it (text), or turn on sink.auto_evolve"
        )));
    };
    let keys = cfg
        .key_columns
        .iter()
        .map(|k| match schema.column(k) {
            Some(c) => Ok((k.clone(), c.data_type.clone())),
            None => Err(refuse(format!("no key column `{k}` to mark deletes by"))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let guard = Guard::new(column, table, cfg.marker_retention);
    // PostgreSQL would cut a longer name (two tables could share markers);
    // MySQL allows 64 characters, SQLite any.
    if guard.markers.name.len() > 63 {
        return Err(refuse(format!(
            "the ordering guard's markers table `{}` would be longer than 63 bytes: \
             use a shorter table name",
            guard.markers.name
        )));
    }
    let ddl = guard.markers_ddl(dialect.quoting(), &keys, &position.data_type);
    exec(ddl.clone()).await.map_err(|source| SinkError::Write {
        table: guard.markers.to_string(),
        source,
    })?;
    info!(table = %guard.markers, ddl, "ordering guard: markers table ready");
    Ok((Some(guard), schema))
}
