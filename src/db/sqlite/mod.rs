//! SQLite, the embedded default: one `INSERT … SELECT … FROM json_each(?1)` per
//! batch, inside a transaction, on a single connection (SQLite has one writer).
//!
//! The database is opened in WAL mode with `synchronous = FULL`, so a batch
//! acknowledged to the committer survives a power loss, not just a crash.
//! JSON paths for the columns are bound parameters, never SQL text. Values
//! arrive checked and converted by the writer's type mapping (`sink::types`),
//! which is what keeps SQLite's columns typed (it enforces no types itself);
//! bytes columns are read through `unhex(…)`, their values arriving as hex.
//! A batch's deletes run first: one `DELETE … WHERE (keys) IN (SELECT … FROM
//! json_each(?1))`.

pub mod checkpoint;
pub mod dialect;
mod guard;
mod key_change;
mod sql;
pub mod state;

use crate::config::{SinkConfig, SinkMode};
use crate::ident::{Quoting, TableName};
use crate::sink::ddl::Inferred;
use crate::sink::evolve;
use crate::sink::order::{Guard, GuardStep};
use crate::sink::schema::{Column, TableSchema};
use crate::sink::types;
use crate::sink::{PreparedBatch, SinkError};
use sql::column_param;
pub use sql::{delete_sql, insert_sql};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::Row as _;
use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::time::Duration;

/// `db.system` of the spans.
const SYSTEM: &str = "sqlite";

pub struct SqliteSink {
    pool: SqlitePool,
    schema: TableSchema,
    mode: SinkMode,
    key_columns: Vec<String>,
    statements: HashMap<Vec<String>, String>,
    dialect: &'static dyn crate::sink::dialect::Dialect,
    /// The ordering guard (`sink.order_column`).
    guard: Option<Guard>,
}

/// The first bound parameter, as the guard's shared statements write it.
const PARAM: &str = "?1";

backend!(SqliteSink, &dialect::DIALECT, "sqlite:");

impl SqliteSink {
    fn write_err(&self, source: sqlx::Error) -> SinkError {
        SinkError::Write {
            table: self.schema.table.to_string(),
            source,
        }
    }

    /// The statement for one set of columns, cached.
    fn statement(&mut self, columns: &[String]) -> String {
        let newer = match (&self.guard, self.mode) {
            (Some(guard), SinkMode::Upsert) => {
                guard.only_if_newer(Quoting::Ansi, &self.schema.table)
            }
            _ => String::new(),
        };
        let (schema, mode, keys) = (&self.schema, self.mode, &self.key_columns);
        self.statements
            .entry(columns.to_vec())
            .or_insert_with(|| {
                let bytes = bytes_of(schema, columns);
                insert_sql(&schema.table, mode, keys, columns, &bytes) + &newer
            })
            .clone()
    }

    pub async fn open(cfg: &SinkConfig) -> Result<Self, SinkError> {
        let pool = connect(cfg.url.expose()).await?;
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
            dialect: &dialect::DIALECT,
            guard,
        })
    }
}

/// Which of `columns` hold bytes (read through `unhex`).
fn bytes_of(schema: &TableSchema, columns: &[String]) -> Vec<bool> {
    columns
        .iter()
        .map(|c| types::is_bytes(schema, c, dialect::TARGET))
        .collect()
}

type SqliteQuery<'q> = sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>;

/// Binds a part's JSON document and its columns' paths.
fn bind_part<'q>(mut query: SqliteQuery<'q>, part: &'q PreparedBatch<'_>) -> SqliteQuery<'q> {
    query = query.bind(part.json());
    for column in &part.columns {
        query = query.bind(column_param(column));
    }
    query
}

/// Opens (creating if needed) the database file with durable settings.
pub async fn connect(url: &str) -> Result<SqlitePool, SinkError> {
    let connect_err = |source| SinkError::Connect {
        url: url.to_string(),
        source,
    };
    let options = SqliteConnectOptions::from_str(url)
        .map_err(connect_err)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(5));
    SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .map_err(connect_err)
}

async fn exec(pool: &SqlitePool, ddl: String) -> Result<(), sqlx::Error> {
    sqlx::query(&ddl).execute(pool).await.map(|_| ())
}

async fn describe(pool: &SqlitePool, table: &TableName) -> Result<TableSchema, SinkError> {
    let describe_err = |source| SinkError::Describe {
        table: table.to_string(),
        source,
    };
    let rows = sqlx::query(
        "SELECT name, type, \"notnull\", dflt_value IS NOT NULL, pk FROM pragma_table_info(?1) ORDER BY cid",
    )
    .bind(&table.name)
    .fetch_all(pool)
    .await
    .map_err(describe_err)?;
    if rows.is_empty() {
        return Err(SinkError::MissingTable {
            table: table.to_string(),
        });
    }
    let mut primary: Vec<String> = Vec::new();
    let mut columns = Vec::with_capacity(rows.len());
    for r in rows {
        let name: String = r.get(0);
        if r.get::<i64, _>(4) > 0 {
            primary.push(name.clone());
        }
        columns.push(Column {
            name,
            data_type: r.get(1),
            nullable: r.get::<i64, _>(2) == 0,
            has_default: r.get(3),
        });
    }
    let mut by_index: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let index_rows = sqlx::query(
        "SELECT il.name, ii.name FROM pragma_index_list(?1) il, pragma_index_info(il.name) ii \
         WHERE il.\"unique\" = 1 AND il.partial = 0",
    )
    .bind(&table.name)
    .fetch_all(pool)
    .await
    .map_err(describe_err)?;
    for r in index_rows {
        by_index.entry(r.get(0)).or_default().push(r.get(1));
    }
    let mut unique_keys: Vec<Vec<String>> = by_index.into_values().collect();
    if !primary.is_empty() {
        unique_keys.push(primary);
    }
    Ok(TableSchema::read(table, columns, unique_keys))
}

steps_impl!(SqliteSink, sqlx::Sqlite);

impl SqliteSink {
    /// The batch's deletes; how many rows they removed.
    async fn delete_rows(
        &mut self,
        tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
        keys: &PreparedBatch<'_>,
    ) -> Result<u64, SinkError> {
        let sql = match &self.guard {
            Some(guard) => guard::delete_sql(&self.schema.table, &self.key_columns, guard),
            None => delete_sql(&self.schema.table, &self.key_columns),
        };
        let done = bind_part(sqlx::query(&sql), keys).execute(&mut **tx).await;
        done.map(|r| r.rows_affected())
            .map_err(|source| self.write_err(source))
    }

    /// One part of the batch's rows.
    async fn write_part(
        &mut self,
        tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
        part: &PreparedBatch<'_>,
    ) -> Result<(), SinkError> {
        let sql = self.statement(&part.columns);
        let done = bind_part(sqlx::query(&sql), part).execute(&mut **tx).await;
        done.map(|_| ()).map_err(|source| self.write_err(source))
    }
}

impl SqliteSink {
    /// Copies the row of a primary-key change to its new key.
    async fn move_row(
        &mut self,
        tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
        m: &crate::model::Move,
    ) -> Result<(), SinkError> {
        let (keys, guard) = (&self.key_columns, self.guard.as_ref());
        let sql = key_change::move_sql(&self.schema, keys, guard);
        let query = key_change::bind_move(sqlx::query(&sql), m, keys, guard);
        let done = query.execute(&mut **tx).await;
        done.map(|_| ()).map_err(|source| self.write_err(source))
    }

    /// The ordering guard's markers (`Mark`) or its check of the written
    /// rows against them (`Unrevive`).
    async fn guarded(
        &mut self,
        tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
        part: &PreparedBatch<'_>,
        step: GuardStep,
    ) -> Result<(), SinkError> {
        let Some(guard) = &self.guard else {
            return Ok(());
        };
        let (table, keys) = (&self.schema.table, &self.key_columns);
        let (sql, target) = match step {
            GuardStep::Mark => {
                let (m, bytes) = (&guard.markers, bytes_of(&self.schema, &part.columns));
                let newer = guard.only_if_newer(Quoting::Ansi, m);
                let sql = insert_sql(m, SinkMode::Upsert, keys, &part.columns, &bytes) + &newer;
                (sql, m)
            }
            GuardStep::Unrevive => (guard::revived_sql(table, keys, guard), table),
        };
        let done = bind_part(sqlx::query(&sql), part).execute(&mut **tx).await;
        done.map(|_| ()).map_err(|source| SinkError::Write {
            table: target.to_string(),
            source,
        })
    }
}

sink_impl!(SqliteSink);

impl SqliteSink {
    /// Adds each field as a nullable column, then reads the schema again
    /// (the [`crate::sink::Sink::add_columns`] of this backend).
    async fn evolve(&mut self, fields: &[(String, Inferred)]) -> Result<(), SinkError> {
        let pool = &self.pool;
        let table = &self.schema.table;
        evolve::add_columns(self.dialect, table, fields, |ddl| exec(pool, ddl)).await?;
        self.schema = describe(&self.pool, &self.schema.table).await?;
        self.statements.clear();
        Ok(())
    }
}
