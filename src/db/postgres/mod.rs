//! PostgreSQL: one `INSERT … SELECT … FROM json_populate_recordset(NULL::table, $1)`
//! per batch, inside a transaction; batches of `copy_threshold` rows or more
//! go through binary `COPY` instead ([`copy`]).
//!
//! On the statement path the whole batch travels as a single bound JSON
//! parameter; PostgreSQL converts each field with its column type's own input
//! function, so the table's schema decides the types and a value that does not
//! fit is an error, never coerced. The `COPY` path encodes only values whose
//! binary form is exactly what that input function would produce; a batch with
//! any other value or column type takes the statement path, so the result
//! never depends on the path.
//!
//! A batch's deletes run first, as one `DELETE … USING
//! json_populate_recordset(…)` whose key values the table's key column types
//! convert, the same way.

mod binary;
pub mod checkpoint;
mod copy;
pub mod dialect;
mod guard;
mod key_change;
pub mod layout;
pub mod state;

use crate::config::{redact_url, SinkConfig, SinkMode};
use crate::ident::{column_list, on_conflict, quote, Quoting, TableName};
use crate::sink::ddl::Inferred;
use crate::sink::evolve;
use crate::sink::order::{Guard, GuardStep};
use crate::sink::schema::{Column, TableSchema};
use crate::sink::{PreparedBatch, PreparedWrite, SinkError};
use binary::PgType;
use sqlx::postgres::{PgConnectOptions, PgPool};
use sqlx::Row as _;
use std::collections::HashMap;
use std::str::FromStr;

/// `db.system` of the spans.
const SYSTEM: &str = "postgresql";

pub struct PostgresSink {
    pool: PgPool,
    schema: TableSchema,
    mode: SinkMode,
    key_columns: Vec<String>,
    statements: HashMap<Vec<String>, String>,
    /// Batches of at least this many rows use `COPY`; 0: never.
    copy_threshold: usize,
    copy_types: HashMap<Vec<String>, Option<Vec<PgType>>>,
    dialect: &'static dyn crate::sink::dialect::Dialect,
    /// The ordering guard (`sink.order_column`).
    guard: Option<Guard>,
}

/// The first bound parameter, as the guard's shared statements write it.
const PARAM: &str = "$1";

backend!(
    PostgresSink,
    &dialect::DIALECT,
    "postgres://",
    "postgresql://"
);

impl PostgresSink {
    pub async fn open(cfg: &SinkConfig) -> Result<Self, SinkError> {
        let pool = connect(cfg).await?;
        let table = evolve::table_name(cfg, &dialect::DIALECT)?;
        let schema = evolve::open_table(
            cfg,
            &dialect::DIALECT,
            &table,
            || describe(&pool, &table),
            |ddl| exec(&pool, ddl),
        )
        .await?;
        let (guard, schema) = evolve::open_guard(
            cfg,
            &dialect::DIALECT,
            schema,
            || describe(&pool, &table),
            |ddl| exec(&pool, ddl),
        )
        .await?;
        Ok(Self {
            pool,
            schema,
            mode: cfg.mode,
            key_columns: cfg.key_columns.clone(),
            statements: HashMap::new(),
            copy_threshold: cfg.copy_threshold(),
            copy_types: HashMap::new(),
            dialect: &dialect::DIALECT,
            guard,
        })
    }

    /// Whether every part of `batch` would load through `COPY` (diagnostics and tests).
    pub fn takes_copy(&mut self, batch: &PreparedWrite<'_>) -> bool {
        !batch.parts.is_empty()
            && batch
                .parts
                .iter()
                .all(|p| matches!(self.copy_payload(p), Ok(Some(_))))
    }

    /// Writes one part of a batch: through `COPY` when the bulk path applies.
    async fn write_part(
        &mut self,
        tx: &mut sqlx::PgConnection,
        part: &PreparedBatch<'_>,
    ) -> Result<(), SinkError> {
        if let Some(data) = self.copy_payload(part)? {
            let (t, keys) = (&self.schema.table, &self.key_columns);
            let newer = self.newer(t);
            return copy::load(tx, t, self.mode, keys, &part.columns, &newer, data).await;
        }
        let sql = self.statement(&part.columns).to_string();
        sqlx::query(&sql)
            .bind(part.json())
            .execute(tx)
            .await
            .map_err(|source| SinkError::Write {
                table: self.schema.table.to_string(),
                source,
            })?;
        Ok(())
    }

    /// The batch's binary `COPY` data when the bulk path applies to it.
    fn copy_payload(&mut self, batch: &PreparedBatch<'_>) -> Result<Option<Vec<u8>>, SinkError> {
        if self.copy_threshold == 0 || batch.rows < self.copy_threshold {
            return Ok(None);
        }
        let schema = &self.schema;
        let types = self
            .copy_types
            .entry(batch.columns.clone())
            .or_insert_with(|| copy::column_types(schema, &batch.columns));
        let Some(types) = types else {
            return Ok(None);
        };
        match copy::payload(types, batch) {
            Ok(data) => Ok(Some(data)),
            Err(reason) => {
                tracing::debug!(%reason, "batch takes the statement path");
                Ok(None)
            }
        }
    }

    fn statement(&mut self, columns: &[String]) -> &str {
        let newer = self.newer(&self.schema.table);
        let (table, mode, keys) = (&self.schema.table, self.mode, &self.key_columns);
        self.statements
            .entry(columns.to_vec())
            .or_insert_with(|| insert_sql(table, mode, keys, columns) + &newer)
    }

    /// The ordering guard's condition on an upsert of `table` (else empty).
    fn newer(&self, table: &TableName) -> String {
        match (&self.guard, self.mode) {
            (Some(guard), SinkMode::Upsert) => guard.only_if_newer(Quoting::Ansi, table),
            _ => String::new(),
        }
    }
}

async fn connect(cfg: &SinkConfig) -> Result<PgPool, SinkError> {
    let url = cfg.url.expose();
    let connect_err = |source| crate::sink::error::connect_error(redact_url(url), source);
    crate::sink::tls::check_files(url).map_err(|file| SinkError::TlsFile {
        url: redact_url(url),
        file: Box::new(file),
    })?;
    let options = PgConnectOptions::from_str(url)
        .map_err(connect_err)?
        .application_name("tidemill");
    crate::sink::pool::connect(crate::sink::pool::options::<sqlx::Postgres>(cfg), options)
        .await
        .map_err(connect_err)
}

async fn exec(pool: &PgPool, ddl: String) -> Result<(), sqlx::Error> {
    sqlx::query(&ddl).execute(pool).await.map(|_| ())
}

/// Deletes the rows whose key columns match one of the JSON array's objects.
pub fn delete_sql(table: &TableName, keys: &[String]) -> String {
    let t = table.quoted();
    let matches: Vec<String> = keys
        .iter()
        .map(|k| format!("d.{q} = k.{q}", q = quote(k)))
        .collect();
    format!(
        "DELETE FROM {t} AS d USING json_populate_recordset(NULL::{t}, $1::json) AS k WHERE {}",
        matches.join(" AND ")
    )
}

/// Builds the batch statement for one set of columns.
pub fn insert_sql(
    table: &TableName,
    mode: SinkMode,
    keys: &[String],
    columns: &[String],
) -> String {
    let cols = column_list(columns);
    let t = table.quoted();
    let mut sql = format!(
        "INSERT INTO {t} ({cols}) SELECT {cols} FROM json_populate_recordset(NULL::{t}, $1::json)"
    );
    if mode == SinkMode::Upsert {
        sql.push_str(&on_conflict(keys, columns));
    }
    sql
}

async fn describe(pool: &PgPool, table: &TableName) -> Result<TableSchema, SinkError> {
    let describe_err = |source| SinkError::Describe {
        table: table.to_string(),
        source,
    };
    let regclass = table.quoted();
    let exists: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
        .bind(&regclass)
        .fetch_one(pool)
        .await
        .map_err(describe_err)?;
    if exists.is_none() {
        return Err(SinkError::MissingTable {
            table: table.to_string(),
        });
    }
    let columns = sqlx::query(
        "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull, a.atthasdef \
         FROM pg_attribute a WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 \
         AND NOT a.attisdropped ORDER BY a.attnum",
    )
    .bind(&regclass)
    .fetch_all(pool)
    .await
    .map_err(describe_err)?
    .into_iter()
    .map(|r| Column {
        name: r.get(0),
        data_type: r.get(1),
        nullable: r.get(2),
        has_default: r.get(3),
    })
    .collect();
    let unique_keys: Vec<Vec<String>> = sqlx::query_scalar(
        "SELECT array_agg(a.attname::text ORDER BY a.attname::text) FROM pg_index i \
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
         WHERE i.indrelid = to_regclass($1) AND i.indisunique AND i.indpred IS NULL \
         GROUP BY i.indexrelid",
    )
    .bind(&regclass)
    .fetch_all(pool)
    .await
    .map_err(describe_err)?;
    Ok(TableSchema::read(table, columns, unique_keys))
}

steps_impl!(PostgresSink, sqlx::Postgres);

impl PostgresSink {
    /// The batch's deletes; how many rows they removed.
    async fn delete_rows(
        &mut self,
        tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
        keys: &PreparedBatch<'_>,
    ) -> Result<u64, SinkError> {
        let sql = match &self.guard {
            Some(guard) => guard::delete_sql(&self.schema.table, &self.key_columns, guard),
            None => delete_sql(&self.schema.table, &self.key_columns),
        };
        let done = sqlx::query(&sql).bind(keys.json()).execute(&mut **tx).await;
        done.map(|r| r.rows_affected())
            .map_err(|source| SinkError::Write {
                table: self.schema.table.to_string(),
                source,
            })
    }
}

impl PostgresSink {
    /// Copies the row of a primary-key change to its new key.
    async fn move_row(
        &mut self,
        tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
        m: &crate::model::Move,
    ) -> Result<(), SinkError> {
        let sql = key_change::move_sql(&self.schema, &self.key_columns, self.guard.as_ref());
        let json = |row| serde_json::Value::Object(row).to_string();
        let done = sqlx::query(&sql)
            .bind(json(m.from.clone()))
            .bind(json(m.to.clone()))
            .execute(&mut **tx)
            .await;
        done.map(|_| ()).map_err(|source| SinkError::Write {
            table: self.schema.table.to_string(),
            source,
        })
    }

    /// The ordering guard's markers (`Mark`) or its check of the written
    /// rows against them (`Unrevive`).
    async fn guarded(
        &mut self,
        tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
        part: &PreparedBatch<'_>,
        step: GuardStep,
    ) -> Result<(), SinkError> {
        let Some(guard) = &self.guard else {
            return Ok(());
        };
        let (table, keys) = (&self.schema.table, &self.key_columns);
        let (sql, target) = match step {
            GuardStep::Mark => {
                let m = &guard.markers;
                let newer = guard.only_if_newer(Quoting::Ansi, m);
                (
                    insert_sql(m, SinkMode::Upsert, keys, &part.columns) + &newer,
                    m,
                )
            }
            GuardStep::Unrevive => (guard::revived_sql(table, keys, guard), table),
        };
        let done = sqlx::query(&sql).bind(part.json()).execute(&mut **tx).await;
        done.map(|_| ()).map_err(|source| SinkError::Write {
            table: target.to_string(),
            source,
        })
    }
}

sink_impl!(PostgresSink);

impl PostgresSink {
    /// Adds each field as a nullable column, then reads the schema again
    /// (the [`crate::sink::Sink::add_columns`] of this backend).
    async fn evolve(&mut self, fields: &[(String, Inferred)]) -> Result<(), SinkError> {
        let pool = &self.pool;
        let table = &self.schema.table;
        evolve::add_columns(self.dialect, table, fields, |ddl| exec(pool, ddl)).await?;
        self.schema = describe(&self.pool, &self.schema.table).await?;
        self.statements.clear();
        self.copy_types.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upsert_sql_updates_non_key_columns_from_excluded() {
        let t = TableName::parse("s.t", false).expect("valid");
        let sql = insert_sql(
            &t,
            SinkMode::Upsert,
            &["id".into()],
            &["id".into(), "v".into()],
        );
        assert_eq!(
            sql,
            r#"INSERT INTO "s"."t" ("id", "v") SELECT "id", "v" FROM json_populate_recordset(NULL::"s"."t", $1::json) ON CONFLICT ("id") DO UPDATE SET "v" = EXCLUDED."v""#
        );
    }

    #[test]
    fn delete_sql_matches_every_key_column() {
        let t = TableName::parse("t", false).expect("valid");
        let sql = delete_sql(&t, &["a".into(), "b\"c".into()]);
        assert_eq!(
            sql,
            r#"DELETE FROM "t" AS d USING json_populate_recordset(NULL::"t", $1::json) AS k WHERE d."a" = k."a" AND d."b""c" = k."b""c""#
        );
    }

    #[test]
    fn upsert_of_key_only_rows_does_nothing_on_conflict() {
        let t = TableName::parse("t", false).expect("valid");
        let sql = insert_sql(&t, SinkMode::Upsert, &["id".into()], &["id".into()]);
        assert!(sql.ends_with(r#"ON CONFLICT ("id") DO NOTHING"#), "{sql}");
    }
}
