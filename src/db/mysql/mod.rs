//! MySQL and MariaDB: multi-row `INSERT … VALUES (?, …), (?, …)` statements,
//! all of a batch's in one transaction.
//!
//! Contract:
//! - Every value is a bound parameter, bound by its JSON type (string, integer,
//!   float, bool, null; objects and arrays as JSON text), after the writer's
//!   type mapping (`sink::types`) checked it; the server converts it to the
//!   column's type. Bytes columns take `UNHEX(?)`: their values arrive as hex.
//!   Each connection runs with `STRICT_ALL_TABLES` added to its `sql_mode` and
//!   `time_zone = '+00:00'`, so a value that does not fit its column is an
//!   error (a data error), never silently truncated.
//! - A batch is split into statements that each stay under the server's
//!   `max_allowed_packet` (read at start-up) and the protocol's 65,535
//!   placeholders; they all run in the batch's one transaction.
//! - Upsert is `ON DUPLICATE KEY UPDATE c = VALUES(c)`: understood by MariaDB
//!   and MySQL (8.0.20+ deprecates `VALUES()` in favour of a row alias, which
//!   MariaDB does not support, and still runs it). MySQL matches *any* unique
//!   key of the table here, not only `key_columns`.
//! - Identifiers are quoted with backticks ([`Quoting::Backtick`]).
//! - A batch's deletes run first, as `DELETE … WHERE key IN (?, …)` (a row
//!   of keys `(k1, k2) IN ((?, ?), …)` for a composite key), cut to the same limits.

pub mod checkpoint;
pub mod dialect;
mod guard;
mod key_change;
mod sql;
pub mod state;
mod values;

use crate::config::{redact_url, SinkConfig, SinkMode};
use crate::ident::{Quoting, TableName};
use crate::sink::ddl::Inferred;
use crate::sink::evolve;
use crate::sink::order::{Guard, GuardStep};
use crate::sink::schema::{Column, TableSchema};
use crate::sink::types;
use crate::sink::{PreparedBatch, SinkError};
pub use sql::{delete_sql, insert_sql};
use sqlx::mysql::{MySqlConnectOptions, MySqlPool};
use sqlx::{Executor as _, Row as _};
use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use values::{chunks, push_value};

const Q: Quoting = Quoting::Backtick;
/// `db.system` of the spans.
const SYSTEM: &str = "mysql";

/// Run on every new connection: refuse silent truncation, store times in UTC.
const SESSION_SETUP: &str =
    "SET SESSION sql_mode = CONCAT_WS(',', NULLIF(@@sql_mode, ''), 'STRICT_ALL_TABLES'), \
     time_zone = '+00:00'";

pub struct MySqlSink {
    pool: MySqlPool,
    schema: TableSchema,
    mode: SinkMode,
    key_columns: Vec<String>,
    /// Byte budget of one statement's parameters (half of `max_allowed_packet`).
    packet_budget: usize,
    /// Statement text per (columns, rows); row counts are powers of two.
    statements: HashMap<(Vec<String>, usize), String>,
    /// MariaDB's (has `ADD COLUMN IF NOT EXISTS`) or MySQL's.
    dialect: &'static dyn crate::sink::dialect::Dialect,
    /// The ordering guard (`sink.order_column`).
    guard: Option<Guard>,
}

/// The first bound parameter, as the guard's shared statements write it.
const PARAM: &str = "?";

/// What [`MySqlSink::run_part`] runs for a part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Statement {
    /// Insert or upsert the rows.
    Rows,
    /// Delete the keys (guarded with the ordering guard).
    Delete,
    /// One of the ordering guard's own.
    Guard(GuardStep),
}

backend!(MySqlSink, &dialect::MYSQL, "mysql://", "mariadb://");

impl MySqlSink {
    pub async fn open(cfg: &SinkConfig) -> Result<Self, SinkError> {
        let pool = connect(cfg).await?;
        let table = evolve::table_name(cfg, &dialect::MYSQL)?;
        let schema = evolve::open_table(
            cfg,
            &dialect::MYSQL,
            &table,
            || describe(&pool, &table),
            |ddl| exec(&pool, ddl),
        )
        .await?;
        let (guard, schema) = evolve::open_guard(
            cfg,
            &dialect::MYSQL,
            schema,
            || describe(&pool, &table),
            |ddl| exec(&pool, ddl),
        )
        .await?;
        let version: String = sqlx::query_scalar("SELECT CAST(VERSION() AS CHAR)")
            .fetch_one(&pool)
            .await
            .map_err(|source| SinkError::Describe {
                table: table.to_string(),
                source,
            })?;
        let max_packet: i64 = sqlx::query_scalar("SELECT CAST(@@max_allowed_packet AS SIGNED)")
            .fetch_one(&pool)
            .await
            .map_err(|source| SinkError::Describe {
                table: table.to_string(),
                source,
            })?;
        Ok(Self {
            pool,
            schema,
            mode: cfg.mode,
            key_columns: cfg.key_columns.clone(),
            packet_budget: usize::try_from(max_packet / 2).unwrap_or(1 << 20),
            statements: HashMap::new(),
            dialect: if version.contains("MariaDB") {
                &dialect::MARIADB
            } else {
                &dialect::MYSQL
            },
            guard,
        })
    }

    /// Runs `part`'s rows (or keys) as `statement` in as many statements as
    /// the limits need; answers the rows affected.
    async fn run_part(
        &mut self,
        tx: &mut sqlx::MySqlConnection,
        part: &PreparedBatch<'_>,
        statement: Statement,
    ) -> Result<u64, SinkError> {
        let table = self.schema.table.to_string();
        let data = &part.data;
        let mut affected = 0;
        for chunk in chunks(data, self.packet_budget) {
            let rows = chunk.len() / data.width.max(1);
            let sql = self.sql(statement, &part.columns, rows);
            let mut query = sqlx::query(&sql);
            for value in chunk {
                query = push_value(query, value);
            }
            let done = query
                .execute(&mut *tx)
                .await
                .map_err(|source| SinkError::Write {
                    table: table.clone(),
                    source,
                })?;
            affected += done.rows_affected();
        }
        Ok(affected)
    }

    /// The text of `statement` for `rows` rows of `columns`.
    fn sql(&mut self, statement: Statement, columns: &[String], rows: usize) -> String {
        let (table, keys) = (&self.schema.table, &self.key_columns);
        match (statement, &self.guard) {
            (Statement::Rows, _) => self.statement(columns, rows).to_string(),
            (Statement::Delete, None) => delete_sql(table, columns, rows),
            (Statement::Delete, Some(_)) => {
                unreachable!("a guarded delete is one statement (guarded_delete)")
            }
            (Statement::Guard(GuardStep::Unrevive), Some(g)) => {
                guard::revived_sql(table, keys, g, rows)
            }
            (Statement::Guard(GuardStep::Mark), Some(g)) => {
                let bytes = bytes_of(&self.schema, columns);
                let newer = Some(g.column.as_str());
                insert_sql(
                    &g.markers,
                    SinkMode::Upsert,
                    keys,
                    columns,
                    &bytes,
                    rows,
                    newer,
                )
            }
            (Statement::Guard(_), None) => {
                unreachable!("the guard's statements run only with the guard")
            }
        }
    }

    fn statement(&mut self, columns: &[String], rows: usize) -> &str {
        let (schema, mode, keys) = (&self.schema, self.mode, &self.key_columns);
        let newer = self.guard.as_ref().map(|g| g.column.as_str());
        self.statements
            .entry((columns.to_vec(), rows))
            .or_insert_with(|| {
                let bytes = bytes_of(schema, columns);
                insert_sql(&schema.table, mode, keys, columns, &bytes, rows, newer)
            })
    }
}

/// Which of `columns` hold bytes (bound through `UNHEX`).
fn bytes_of(schema: &TableSchema, columns: &[String]) -> Vec<bool> {
    columns
        .iter()
        .map(|c| types::is_bytes(schema, c, dialect::TARGET))
        .collect()
}

async fn connect(cfg: &SinkConfig) -> Result<MySqlPool, SinkError> {
    let url = cfg.url.expose();
    let connect_err = |source| crate::sink::error::connect_error(redact_url(url), source);
    crate::sink::tls::check_files(url).map_err(|file| SinkError::TlsFile {
        url: redact_url(url),
        file: Box::new(file),
    })?;
    let options = MySqlConnectOptions::from_str(url).map_err(connect_err)?;
    let pool = crate::sink::pool::options::<sqlx::MySql>(cfg).after_connect(|conn, _meta| {
        Box::pin(async move { conn.execute(SESSION_SETUP).await.map(|_| ()) })
    });
    crate::sink::pool::connect(pool, options)
        .await
        .map_err(connect_err)
}

async fn exec(pool: &MySqlPool, ddl: String) -> Result<(), sqlx::Error> {
    sqlx::query(&ddl).execute(pool).await.map(|_| ())
}

async fn describe(pool: &MySqlPool, table: &TableName) -> Result<TableSchema, SinkError> {
    let describe_err = |source| SinkError::Describe {
        table: table.to_string(),
        source,
    };
    let rows = sqlx::query(
        "SELECT CAST(COLUMN_NAME AS CHAR), CAST(COLUMN_TYPE AS CHAR), IS_NULLABLE = 'YES', \
         (COLUMN_DEFAULT IS NOT NULL AND COLUMN_DEFAULT <> 'NULL') OR EXTRA LIKE '%auto_increment%' \
         FROM information_schema.columns WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ? \
         ORDER BY ORDINAL_POSITION",
    )
    .bind(&table.schema)
    .bind(&table.name)
    .fetch_all(pool)
    .await
    .map_err(describe_err)?;
    if rows.is_empty() {
        return Err(SinkError::MissingTable {
            table: table.to_string(),
        });
    }
    let columns = rows
        .into_iter()
        .map(|r| Column {
            name: r.get(0),
            data_type: r.get(1),
            nullable: r.get::<i64, _>(2) != 0,
            has_default: r.get::<i64, _>(3) != 0,
        })
        .collect();
    let index_rows = sqlx::query(
        "SELECT CAST(INDEX_NAME AS CHAR), CAST(COLUMN_NAME AS CHAR) FROM information_schema.statistics \
         WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ? AND NON_UNIQUE = 0 \
         ORDER BY INDEX_NAME, SEQ_IN_INDEX",
    )
    .bind(&table.schema)
    .bind(&table.name)
    .fetch_all(pool)
    .await
    .map_err(describe_err)?;
    let mut by_index: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in index_rows {
        by_index.entry(r.get(0)).or_default().push(r.get(1));
    }
    let unique_keys: Vec<Vec<String>> = by_index.into_values().collect();
    Ok(TableSchema::read(table, columns, unique_keys))
}

steps_impl!(MySqlSink, sqlx::MySql);

impl MySqlSink {
    /// The batch's deletes; how many rows they removed.
    async fn delete_rows(
        &mut self,
        tx: &mut sqlx::Transaction<'static, sqlx::MySql>,
        keys: &PreparedBatch<'_>,
    ) -> Result<u64, SinkError> {
        let Some(guard) = &self.guard else {
            return self.run_part(tx, keys, Statement::Delete).await;
        };
        let sql = guard::delete_sql(&self.schema, &self.key_columns, guard);
        let done = sqlx::query(&sql).bind(keys.json()).execute(&mut **tx).await;
        done.map(|r| r.rows_affected())
            .map_err(|source| SinkError::Write {
                table: self.schema.table.to_string(),
                source,
            })
    }

    /// Copies the row of a primary-key change to its new key.
    async fn move_row(
        &mut self,
        tx: &mut sqlx::Transaction<'static, sqlx::MySql>,
        m: &crate::model::Move,
    ) -> Result<(), SinkError> {
        let (keys, guard) = (&self.key_columns, self.guard.as_ref());
        let sql = key_change::move_sql(&self.schema, keys, guard);
        let query = key_change::bind_move(sqlx::query(&sql), m, keys, guard);
        let done = query.execute(&mut **tx).await;
        done.map(|_| ()).map_err(|source| SinkError::Write {
            table: self.schema.table.to_string(),
            source,
        })
    }

    /// The ordering guard's markers (`Mark`) or its check of the written
    /// rows against them (`Unrevive`).
    async fn guarded(
        &mut self,
        tx: &mut sqlx::Transaction<'static, sqlx::MySql>,
        part: &PreparedBatch<'_>,
        step: GuardStep,
    ) -> Result<(), SinkError> {
        if self.guard.is_none() {
            return Ok(());
        }
        self.run_part(tx, part, Statement::Guard(step))
            .await
            .map(|_| ())
    }

    /// One part of the batch's rows.
    async fn write_part(
        &mut self,
        tx: &mut sqlx::Transaction<'static, sqlx::MySql>,
        part: &PreparedBatch<'_>,
    ) -> Result<(), SinkError> {
        self.run_part(tx, part, Statement::Rows).await.map(|_| ())
    }
}

sink_impl!(MySqlSink);

impl MySqlSink {
    /// Adds each field as a nullable column, then reads the schema again
    /// (the [`crate::sink::Sink::add_columns`] of this backend).
    async fn evolve(&mut self, fields: &[(String, Inferred)]) -> Result<(), SinkError> {
        let (pool, table) = (&self.pool, &self.schema.table);
        evolve::add_columns(self.dialect, table, fields, |ddl| exec(pool, ddl)).await?;
        self.schema = describe(&self.pool, &self.schema.table).await?;
        self.statements.clear();
        Ok(())
    }
}
