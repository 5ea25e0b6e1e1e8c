//! SQLite, the embedded default: one `INSERT … SELECT … FROM json_each(?1)` per
//! batch, inside a transaction, on a single connection (SQLite has one writer).
//!
//! The database is opened in WAL mode with `synchronous = FULL`, so a batch
//! acknowledged to the committer survives a power loss, not just a crash.
//! JSON paths for the columns are bound parameters, never SQL text. Values
//! arrive checked and converted by the writer's type mapping (`sink::types`),
//! which is what keeps SQLite's columns typed (it enforces no types itself);
//! bytes columns are read through `unhex(…)`, their values arriving as hex.

use super::checkpoint::{self, Checkpoint, OffsetStore};
use super::ident::{column_list, on_conflict, TableName};
use super::schema::{Column, TableSchema};
use super::types::{self, Target};
use super::{PreparedBatch, Sink, SinkError};
use crate::config::{SinkConfig, SinkMode};
use crate::state::store::{self, StateStore, StateWrites};
use crate::trace;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::Row as _;
use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::time::Duration;
use tracing::Instrument;

/// `db.system` of the spans.
const SYSTEM: &str = "sqlite";

pub struct SqliteSink {
    pool: SqlitePool,
    schema: TableSchema,
    mode: SinkMode,
    key_columns: Vec<String>,
    statements: HashMap<Vec<String>, String>,
}

impl SqliteSink {
    pub async fn open(cfg: &SinkConfig) -> Result<Self, SinkError> {
        let pool = connect(cfg.url.expose()).await?;
        let table = TableName::parse(&cfg.table, true).map_err(|e| SinkError::Schema {
            table: cfg.table.clone(),
            message: e.to_string(),
        })?;
        let schema = describe(&pool, &table).await?;
        Ok(Self {
            pool,
            schema,
            mode: cfg.mode,
            key_columns: cfg.key_columns.clone(),
            statements: HashMap::new(),
        })
    }
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

/// Builds the batch statement; parameter 1 is the JSON array, 2.. are the
/// JSON paths of `columns`, in order ([`column_param`]). A column flagged in
/// `bytes` is read through `unhex(…)` (its values arrive as hex, [`types`]).
pub fn insert_sql(
    table: &TableName,
    mode: SinkMode,
    keys: &[String],
    columns: &[String],
    bytes: &[bool],
) -> String {
    let cols = column_list(columns);
    let values = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let value = if path_safe(c) {
                format!("json_extract(r.value, ?{})", i + 2)
            } else {
                format!(
                    "(SELECT e.value FROM json_each(r.value) AS e WHERE e.key = ?{})",
                    i + 2
                )
            };
            if bytes.get(i) == Some(&true) {
                format!("unhex({value})")
            } else {
                value
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    // `WHERE true` resolves SQLite's parsing ambiguity between a join's ON and the upsert clause.
    let mut sql = format!(
        "INSERT INTO {} ({cols}) SELECT {values} FROM json_each(?1) AS r WHERE true",
        table.quoted()
    );
    if mode == SinkMode::Upsert {
        sql.push_str(&on_conflict(keys, columns));
    }
    sql
}

/// Whether SQLite's JSON path parser reads `$."column"` as exactly this key:
/// a `"` would end the label early, and a backslash does not match itself.
fn path_safe(column: &str) -> bool {
    !column.contains(['"', '\\'])
}

/// The parameter that selects `column` in the statement: a JSON path, or the
/// key itself when no path can address it (see [`path_safe`]).
fn column_param(column: &str) -> String {
    if path_safe(column) {
        format!("$.\"{column}\"")
    } else {
        column.to_string()
    }
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
    for key in &mut unique_keys {
        key.sort();
    }
    Ok(TableSchema {
        table: table.clone(),
        columns,
        unique_keys,
    })
}

impl Sink for SqliteSink {
    /// One transaction: the rows, then the checkpoint; committed, or rolled
    /// back when `commit` is false (a trial that only tells whether it would pass).
    async fn transact(
        &mut self,
        batch: &PreparedBatch,
        checkpoint: Option<&Checkpoint>,
        state: Option<&StateWrites>,
        commit: bool,
    ) -> Result<(), SinkError> {
        if batch.rows == 0 && checkpoint.is_none() && state.is_none_or(StateWrites::is_empty) {
            return Ok(());
        }
        let table = self.schema.table.to_string();
        let write_err = |source| SinkError::Write {
            table: table.clone(),
            source,
        };
        let (schema, mode, keys) = (&self.schema, self.mode, &self.key_columns);
        let sql = self
            .statements
            .entry(batch.columns.clone())
            .or_insert_with(|| {
                let bytes: Vec<bool> = batch
                    .columns
                    .iter()
                    .map(|c| types::is_bytes(schema, c, Target::Sqlite))
                    .collect();
                insert_sql(&schema.table, mode, keys, &batch.columns, &bytes)
            })
            .clone();
        let span = trace::db_write_span(SYSTEM, self.mode, &table, batch.rows);
        let mut tx = self
            .pool
            .begin()
            .instrument(span.clone())
            .await
            .map_err(write_err)?;
        async {
            if batch.rows > 0 {
                let mut query = sqlx::query(&sql).bind(&batch.json);
                for column in &batch.columns {
                    query = query.bind(column_param(column));
                }
                query.execute(&mut *tx).await.map_err(write_err)?;
            }
            if let Some(state) = state {
                let table = store::table_for(&self.schema.table);
                store::write_sqlite(&mut tx, &table, state).await?;
            }
            if let Some(checkpoint) = checkpoint {
                let table = checkpoint::table_for(&self.schema.table);
                checkpoint::advance_sqlite(&mut tx, &table, checkpoint).await?;
            }
            Ok::<(), SinkError>(())
        }
        .instrument(span)
        .await?;
        if commit {
            let span = trace::db_commit_span(SYSTEM, &table);
            tx.commit().instrument(span).await.map_err(write_err)
        } else {
            tx.rollback().await.map_err(write_err)
        }
    }

    fn schema(&self) -> &TableSchema {
        &self.schema
    }

    fn state_store(&self) -> StateStore {
        StateStore::Sqlite {
            pool: self.pool.clone(),
            table: store::table_for(&self.schema.table),
        }
    }

    fn offset_store(&self) -> OffsetStore {
        OffsetStore::Sqlite {
            pool: self.pool.clone(),
            table: checkpoint::table_for(&self.schema.table),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_addressed_by_path_or_by_itself() {
        assert_eq!(column_param("a.b"), r#"$."a.b""#);
        assert_eq!(column_param(r"x\y"), r"x\y");
        assert_eq!(column_param(r#"x"y"#), r#"x"y"#);
    }

    #[test]
    fn insert_sql_binds_paths_after_the_document() {
        let t = TableName::parse("t", true).expect("valid");
        let sql = insert_sql(&t, SinkMode::Insert, &[], &["a".into(), "b".into()], &[]);
        assert_eq!(
            sql,
            r#"INSERT INTO "t" ("a", "b") SELECT json_extract(r.value, ?2), json_extract(r.value, ?3) FROM json_each(?1) AS r WHERE true"#
        );
    }

    #[test]
    fn a_key_with_a_double_quote_is_matched_by_name() {
        let t = TableName::parse("t", true).expect("valid");
        let sql = insert_sql(&t, SinkMode::Insert, &[], &[r#"a"b"#.into()], &[]);
        assert!(
            sql.contains("(SELECT e.value FROM json_each(r.value) AS e WHERE e.key = ?2)"),
            "{sql}"
        );
    }
}
