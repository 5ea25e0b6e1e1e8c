//! The state table, `tidemill_state`, next to the target table:
//! (pipeline, operator, topic, partition_id, state_key) → state JSON and the
//! watermark at which it is due (`due_at`, indexed).
//!
//! Reads happen outside the batch's transaction — safe because only the
//! partition's current owner writes its state, and a batch from a former
//! owner is fenced at its checkpoint. Writes happen inside it
//! ([`write_postgres`], [`write_sqlite`]), as one statement per operator for
//! upserts and one for deletes, whatever the number of keys.

use super::layout;
use crate::config::Backend;
use crate::model::TopicPartition;
use crate::sink::error::SinkError;
use crate::sink::ident::{Dialect, TableName};
use serde_json::json;
use sqlx::{MySqlPool, PgPool, SqlitePool};

pub const TABLE: &str = "tidemill_state";

/// The index serving [`StateStore::load_due`] (PostgreSQL and SQLite): only
/// states that have a due time, so key lookups go through the primary key.
pub const DUE_INDEX: &str = "tidemill_state_due_at";

/// The full `due_at` index of earlier versions, dropped at start-up.
const OLD_DUE_INDEX: &str = "tidemill_state_due";

/// `name` in the schema (or attached database) of the quoted state table `t`.
fn qualified(t: &str, name: &str) -> String {
    let schema = t.strip_suffix(&format!("\"{TABLE}\"")).unwrap_or_default();
    format!("{schema}\"{name}\"")
}

/// Handle on the state table; cheap to clone.
#[derive(Clone)]
pub enum StateStore {
    Postgres { pool: PgPool, table: String },
    Sqlite { pool: SqlitePool, table: String },
    MySql { pool: MySqlPool, table: String },
}

/// MySQL/MariaDB index keys are bounded (3072 bytes on InnoDB): the state key
/// column holds at most this many characters there.
pub const MYSQL_MAX_KEY_CHARS: usize = 255;

/// The state table's quoted name, in the target table's schema.
pub fn table_for(target: &TableName) -> String {
    table_for_in(target, Dialect::Ansi)
}

/// [`table_for`] quoted for `dialect`.
pub fn table_for_in(target: &TableName, dialect: Dialect) -> String {
    TableName {
        schema: target.schema.clone(),
        name: TABLE.into(),
    }
    .quoted_in(dialect)
}

/// Shape of a MySQL `JSON_TABLE` over the key documents.
const MYSQL_KEYS: &str =
    "JSON_TABLE(?, '$[*]' COLUMNS (t VARCHAR(249) PATH '$.t', p INT PATH '$.p', \
     k VARCHAR(255) PATH '$.k'))";

/// One loaded state row.
pub type Loaded = (TopicPartition, String, String);

/// One operator's changes in a batch, as JSON documents bound to one statement each.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OpWrites {
    pub operator: String,
    /// `[{"t","p","k","s","d"}]`: topic, partition, key, state JSON, due_at.
    pub upserts: String,
    /// `[{"t","p","k"}]`.
    pub deletes: String,
}

/// Every state change of a batch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StateWrites {
    pub pipeline: String,
    pub ops: Vec<OpWrites>,
}

impl StateWrites {
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

fn err(source: sqlx::Error) -> SinkError {
    SinkError::State { source }
}

impl StateStore {
    fn table(&self) -> &str {
        match self {
            StateStore::Postgres { table, .. }
            | StateStore::Sqlite { table, .. }
            | StateStore::MySql { table, .. } => table,
        }
    }

    /// The longest state key (JSON text, in characters) this table holds.
    pub fn max_key_chars(&self) -> usize {
        match self {
            StateStore::MySql { .. } => MYSQL_MAX_KEY_CHARS,
            _ => usize::MAX,
        }
    }

    /// The type of the key columns' text. They are only ever compared for
    /// equality, so PostgreSQL compares them bytewise (`COLLATE "C"`, as
    /// MySQL's `utf8mb4_bin` and SQLite's default do) instead of by the
    /// database's collation: with a linguistic default (ICU `en-US`) a W2
    /// drain took 13–15% longer. Tables made before keep their collation.
    fn key_text_type(&self) -> &'static str {
        match self {
            StateStore::Postgres { .. } => "TEXT COLLATE \"C\"",
            _ => "TEXT",
        }
    }

    /// Creates the table and its `due_at` index if missing, and replaces the
    /// full index earlier versions made (race-tolerant).
    pub async fn ensure_table(&self) -> Result<(), SinkError> {
        let t = self.table();
        let statements = match self {
            StateStore::MySql { .. } => vec![format!(
                "CREATE TABLE IF NOT EXISTS {t} (pipeline VARCHAR(64) NOT NULL, operator VARCHAR(64) NOT NULL, \
                 topic VARCHAR(249) NOT NULL, partition_id INT NOT NULL, state_key VARCHAR({MYSQL_MAX_KEY_CHARS}) NOT NULL, \
                 state LONGTEXT NOT NULL, due_at BIGINT, PRIMARY KEY (pipeline, operator, topic, partition_id, state_key), \
                 KEY {TABLE}_due (pipeline, operator, topic, partition_id, due_at)) \
                 ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin"
            )],
            _ => vec![
                format!(
                    "CREATE TABLE IF NOT EXISTS {t} (pipeline {k} NOT NULL, operator {k} NOT NULL, topic {k} NOT NULL, \
                     partition_id INTEGER NOT NULL, state_key {k} NOT NULL, state TEXT NOT NULL, due_at BIGINT, {})",
                    // PostgreSQL: the state key first (see `layout`).
                    match self {
                        StateStore::Postgres { .. } => layout::primary_key(),
                        _ => "PRIMARY KEY (pipeline, operator, topic, partition_id, state_key)".into(),
                    },
                    k = self.key_text_type(),
                ),
                // In the table's own schema (PostgreSQL) or database (SQLite).
                // Partial: a lookup by key then has only the primary key to
                // use. With a full index of the same prefix, PostgreSQL chose
                // it for key lookups and filtered thousands of rows per key.
                format!(
                    "CREATE INDEX IF NOT EXISTS \"{DUE_INDEX}\" ON {t} (pipeline, operator, topic, partition_id, due_at) \
                     WHERE due_at IS NOT NULL"
                ),
                // The full index that tables created before it carry.
                format!("DROP INDEX IF EXISTS {}", qualified(t, OLD_DUE_INDEX)),
            ],
        };
        for sql in statements {
            if let Err(source) = self.execute(&sql).await {
                // Members starting together race on the catalog: fine if the table now exists.
                if self
                    .execute(&format!("SELECT 1 FROM {t} LIMIT 0"))
                    .await
                    .is_err()
                {
                    return Err(err(source));
                }
            }
        }
        if let StateStore::Postgres { pool, table } = self {
            match layout::ensure(pool, table).await {
                Ok(true) => {
                    tracing::info!(table = %table, "state table migrated to the key-first primary key");
                }
                Ok(false) => {}
                // The earlier key is as correct, only slower: a role that may
                // not alter the table (not its owner) keeps it, as it keeps
                // the index statements above.
                Err(e) => tracing::warn!(
                    table = %table,
                    error = %e,
                    "state table keeps its earlier primary key: migrating it failed"
                ),
            }
        }
        Ok(())
    }

    async fn execute(&self, sql: &str) -> Result<(), sqlx::Error> {
        match self {
            StateStore::Postgres { pool, .. } => sqlx::query(sql).execute(pool).await.map(|_| ()),
            StateStore::Sqlite { pool, .. } => sqlx::query(sql).execute(pool).await.map(|_| ()),
            StateStore::MySql { pool, .. } => sqlx::query(sql).execute(pool).await.map(|_| ()),
        }
    }

    /// Loads the state of these keys of one operator, in one query.
    pub async fn load(
        &self,
        pipeline: &str,
        operator: &str,
        keys: &[(TopicPartition, String)],
    ) -> Result<Vec<Loaded>, SinkError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let doc = serde_json::to_string(
            &keys
                .iter()
                .map(|(tp, k)| json!({"t": tp.topic, "p": tp.partition, "k": k}))
                .collect::<Vec<_>>(),
        )
        .map_err(|e| SinkError::Row {
            table: TABLE.into(),
            message: e.to_string(),
        })?;
        let t = self.table();
        let rows: Vec<(String, i32, String, String)> = match self {
            StateStore::Postgres { pool, .. } => {
                let sql = load_sql_postgres(t);
                let query = sqlx::query_as(&sql).bind(pipeline).bind(operator).bind(&doc);
                query.fetch_all(pool).await
            }
            StateStore::Sqlite { pool, .. } => {
                let sql = format!(
                    "SELECT s.topic, s.partition_id, s.state_key, s.state FROM json_each(?3) j \
                     JOIN {t} s ON s.pipeline = ?1 AND s.operator = ?2 AND s.topic = json_extract(j.value, '$.t') \
                     AND s.partition_id = json_extract(j.value, '$.p') AND s.state_key = json_extract(j.value, '$.k')"
                );
                let query = sqlx::query_as(&sql).bind(pipeline).bind(operator).bind(&doc);
                query.fetch_all(pool).await
            }
            StateStore::MySql { pool, .. } => {
                let sql = load_sql_mysql(t);
                let query = sqlx::query_as(&sql).bind(pipeline).bind(operator).bind(&doc);
                query.fetch_all(pool).await
            }
        }
        .map_err(err)?;
        let rows = rows
            .into_iter()
            .map(|(topic, partition, key, state)| {
                (TopicPartition::new(topic, partition), key, state)
            })
            .collect();
        Ok(rows)
    }

    /// Loads one operator's states of a partition that are due at `watermark`.
    pub async fn load_due(
        &self,
        pipeline: &str,
        operator: &str,
        tp: &TopicPartition,
        watermark: i64,
    ) -> Result<Vec<(String, String)>, SinkError> {
        let t = self.table();
        // Positional placeholders: `$n` on PostgreSQL and SQLite, `?` on MySQL.
        let p: Vec<String> = (1..=5)
            .map(|i| match self {
                StateStore::MySql { .. } => "?".to_string(),
                _ => format!("${i}"),
            })
            .collect();
        let columns = match self {
            // sqlx reads utf8mb4_bin columns as VARBINARY.
            StateStore::MySql { .. } => {
                "CONVERT(state_key USING utf8mb4), CONVERT(state USING utf8mb4)"
            }
            _ => "state_key, state",
        };
        let sql = format!(
            "SELECT {columns} FROM {t} WHERE pipeline = {} AND operator = {} AND topic = {} \
             AND partition_id = {} AND due_at <= {}",
            p[0], p[1], p[2], p[3], p[4]
        );
        let rows = match self {
            StateStore::Postgres { pool, .. } => {
                let query = sqlx::query_as(&sql).bind(pipeline).bind(operator);
                let query = query.bind(&tp.topic).bind(tp.partition).bind(watermark);
                query.fetch_all(pool).await
            }
            StateStore::Sqlite { pool, .. } => {
                let query = sqlx::query_as(&sql).bind(pipeline).bind(operator);
                let query = query.bind(&tp.topic).bind(tp.partition).bind(watermark);
                query.fetch_all(pool).await
            }
            StateStore::MySql { pool, .. } => {
                let query = sqlx::query_as(&sql).bind(pipeline).bind(operator);
                let query = query.bind(&tp.topic).bind(tp.partition).bind(watermark);
                query.fetch_all(pool).await
            }
        }
        .map_err(err)?;
        Ok(rows)
    }
}

/// The PostgreSQL query loading keys' states; parameters: pipeline, operator,
/// and the keys as a JSON array of `{"t","p","k"}`.
///
/// One primary-key probe per key, whatever the statistics say: the `LIMIT`
/// keeps the planner from flattening the lateral subquery into a join, which
/// on a table autovacuum had not analysed yet became a hash of the whole
/// partition's state for every batch.
pub fn load_sql_postgres(table: &str) -> String {
    format!(
        "SELECT k.t, k.p, k.k, s.state FROM json_to_recordset($3::json) AS k(t text, p int, k text) \
         CROSS JOIN LATERAL (SELECT s.state FROM {table} s WHERE s.pipeline = $1 AND s.operator = $2 \
         AND s.topic = k.t AND s.partition_id = k.p AND s.state_key = k.k LIMIT 1) AS s"
    )
}

/// The MySQL query loading keys' states; parameters: pipeline, operator,
/// and the keys as a JSON array of `{"t","p","k"}`. MariaDB turns the `IN`
/// into a semi-join driven by the keys: one primary-key probe per key.
pub fn load_sql_mysql(table: &str) -> String {
    format!(
        // CONVERT: sqlx reads utf8mb4_bin columns as VARBINARY.
        "SELECT CONVERT(s.topic USING utf8mb4), s.partition_id, CONVERT(s.state_key USING utf8mb4), \
         CONVERT(s.state USING utf8mb4) FROM {table} s WHERE s.pipeline = ? \
         AND s.operator = ? AND (s.topic, s.partition_id, s.state_key) IN (SELECT j.t, j.p, j.k FROM {MYSQL_KEYS} AS j)"
    )
}

/// Statements writing one operator's changes (upsert, delete); parameters:
/// pipeline, operator, document.
///
/// MySQL's delete is a join driven by the keys, one primary-key probe per
/// key (`eq_ref`): as `… AND (topic, partition_id, state_key) IN (SELECT …)`
/// MariaDB scanned every key of the operator, locking other partitions' rows
/// too, so two members deleting state deadlocked on each other.
pub fn statements(table: &str, dialect: Backend) -> (String, String) {
    if dialect == Backend::MySql {
        return (
            format!(
                "INSERT INTO {table} (pipeline, operator, topic, partition_id, state_key, state, due_at) \
                 SELECT ?, ?, j.t, j.p, j.k, j.s, j.d FROM JSON_TABLE(?, '$[*]' COLUMNS (t VARCHAR(249) PATH '$.t', \
                 p INT PATH '$.p', k VARCHAR(255) PATH '$.k', s LONGTEXT PATH '$.s', d BIGINT PATH '$.d')) AS j \
                 ON DUPLICATE KEY UPDATE state = VALUES(state), due_at = VALUES(due_at)"
            ),
            format!(
                "DELETE s FROM (SELECT ? AS pipeline, ? AS operator) AS c JOIN {MYSQL_KEYS} AS j \
                 JOIN {table} AS s ON s.pipeline = c.pipeline AND s.operator = c.operator \
                 AND s.topic = j.t AND s.partition_id = j.p AND s.state_key = j.k"
            ),
        );
    }
    if dialect == Backend::Postgres {
        (
            format!(
                "INSERT INTO {table} (pipeline, operator, topic, partition_id, state_key, state, due_at) \
                 SELECT $1, $2, x.t, x.p, x.k, x.s, x.d FROM json_to_recordset($3::json) AS x(t text, p int, k text, s text, d bigint) \
                 ON CONFLICT (pipeline, operator, topic, partition_id, state_key) \
                 DO UPDATE SET state = EXCLUDED.state, due_at = EXCLUDED.due_at"
            ),
            // The rows' ids from one primary-key probe per key (as in
            // `load_sql_postgres`), then a TID scan: no plan over the whole table.
            format!(
                "DELETE FROM {table} WHERE ctid = ANY(ARRAY(SELECT s.ctid FROM json_to_recordset($3::json) AS x(t text, p int, k text) \
                 CROSS JOIN LATERAL (SELECT s.ctid FROM {table} s WHERE s.pipeline = $1 AND s.operator = $2 \
                 AND s.topic = x.t AND s.partition_id = x.p AND s.state_key = x.k LIMIT 1) AS s))"
            ),
        )
    } else {
        (
            format!(
                "INSERT INTO {table} (pipeline, operator, topic, partition_id, state_key, state, due_at) \
                 SELECT ?1, ?2, json_extract(value, '$.t'), json_extract(value, '$.p'), json_extract(value, '$.k'), \
                 json_extract(value, '$.s'), json_extract(value, '$.d') FROM json_each(?3) WHERE true \
                 ON CONFLICT (pipeline, operator, topic, partition_id, state_key) \
                 DO UPDATE SET state = excluded.state, due_at = excluded.due_at"
            ),
            format!(
                "DELETE FROM {table} WHERE pipeline = ?1 AND operator = ?2 AND (topic, partition_id, state_key) IN \
                 (SELECT json_extract(value, '$.t'), json_extract(value, '$.p'), json_extract(value, '$.k') FROM json_each(?3))"
            ),
        )
    }
}

/// Generates `write_*`: applies a batch's state changes inside its transaction.
macro_rules! write_fn {
    ($name:ident, $db:ty, $backend:expr) => {
        pub async fn $name(
            tx: &mut sqlx::Transaction<'_, $db>,
            table: &str,
            writes: &StateWrites,
        ) -> Result<(), SinkError> {
            let (upsert, delete) = statements(table, $backend);
            for op in &writes.ops {
                for (sql, doc) in [(&upsert, &op.upserts), (&delete, &op.deletes)] {
                    if doc.len() <= 2 {
                        continue; // "[]"
                    }
                    sqlx::query(sql)
                        .bind(&writes.pipeline)
                        .bind(&op.operator)
                        .bind(doc)
                        .execute(&mut **tx)
                        .await
                        .map_err(err)?;
                }
            }
            Ok(())
        }
    };
}

write_fn!(write_postgres, sqlx::Postgres, Backend::Postgres);
write_fn!(write_sqlite, sqlx::Sqlite, Backend::Sqlite);
write_fn!(write_mysql, sqlx::MySql, Backend::MySql);
