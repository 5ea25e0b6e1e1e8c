//! The state table, `tidemill_state`, next to the target table:
//! (pipeline, operator, topic, partition_id, state_key) → state JSON and the
//! watermark at which it is due (`due_at`, indexed).
//!
//! Reads happen outside the batch's transaction — safe because only the
//! partition's current owner writes its state, and a batch from a former
//! owner is fenced at its checkpoint. Writes happen inside it
//! ([`write_postgres`], [`write_sqlite`]), as one statement per operator for
//! upserts and one for deletes, whatever the number of keys.

use crate::model::TopicPartition;
use crate::sink::ident::TableName;
use crate::sink::SinkError;
use serde_json::json;
use sqlx::{PgPool, SqlitePool};

pub const TABLE: &str = "tidemill_state";

/// Handle on the state table; cheap to clone.
#[derive(Clone)]
pub enum StateStore {
    Postgres { pool: PgPool, table: String },
    Sqlite { pool: SqlitePool, table: String },
}

/// The state table's quoted name, in the target table's schema.
pub fn table_for(target: &TableName) -> String {
    TableName {
        schema: target.schema.clone(),
        name: TABLE.into(),
    }
    .quoted()
}

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
            StateStore::Postgres { table, .. } | StateStore::Sqlite { table, .. } => table,
        }
    }

    /// Creates the table and its `due_at` index if missing (race-tolerant).
    pub async fn ensure_table(&self) -> Result<(), SinkError> {
        let t = self.table();
        let create = format!(
            "CREATE TABLE IF NOT EXISTS {t} (pipeline TEXT NOT NULL, operator TEXT NOT NULL, topic TEXT NOT NULL, \
             partition_id INTEGER NOT NULL, state_key TEXT NOT NULL, state TEXT NOT NULL, due_at BIGINT, \
             PRIMARY KEY (pipeline, operator, topic, partition_id, state_key))"
        );
        // The index is created in the table's own schema (PostgreSQL) or database (SQLite).
        let index = format!(
            "CREATE INDEX IF NOT EXISTS \"{TABLE}_due\" ON {t} (pipeline, operator, topic, partition_id, due_at)"
        );
        for sql in [create, index] {
            let done = match self {
                StateStore::Postgres { pool, .. } => {
                    sqlx::query(&sql).execute(pool).await.map(|_| ())
                }
                StateStore::Sqlite { pool, .. } => {
                    sqlx::query(&sql).execute(pool).await.map(|_| ())
                }
            };
            if let Err(source) = done {
                // Members starting together race on the catalog: fine if the table now exists.
                let probe = format!("SELECT 1 FROM {t} LIMIT 0");
                let exists = match self {
                    StateStore::Postgres { pool, .. } => {
                        sqlx::query(&probe).execute(pool).await.is_ok()
                    }
                    StateStore::Sqlite { pool, .. } => {
                        sqlx::query(&probe).execute(pool).await.is_ok()
                    }
                };
                if !exists {
                    return Err(err(source));
                }
            }
        }
        Ok(())
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
                let sql = format!(
                    "SELECT s.topic, s.partition_id, s.state_key, s.state FROM {t} s \
                     JOIN json_to_recordset($3::json) AS k(t text, p int, k text) \
                     ON s.topic = k.t AND s.partition_id = k.p AND s.state_key = k.k \
                     WHERE s.pipeline = $1 AND s.operator = $2"
                );
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
        let sql = format!(
            "SELECT state_key, state FROM {t} WHERE pipeline = $1 AND operator = $2 AND topic = $3 \
             AND partition_id = $4 AND due_at <= $5"
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
        }
        .map_err(err)?;
        Ok(rows)
    }
}

/// Statements writing one operator's changes; parameters: pipeline, operator, document.
fn statements(table: &str, postgres: bool) -> (String, String) {
    if postgres {
        (
            format!(
                "INSERT INTO {table} (pipeline, operator, topic, partition_id, state_key, state, due_at) \
                 SELECT $1, $2, x.t, x.p, x.k, x.s, x.d FROM json_to_recordset($3::json) AS x(t text, p int, k text, s text, d bigint) \
                 ON CONFLICT (pipeline, operator, topic, partition_id, state_key) \
                 DO UPDATE SET state = EXCLUDED.state, due_at = EXCLUDED.due_at"
            ),
            format!(
                "DELETE FROM {table} s USING json_to_recordset($3::json) AS x(t text, p int, k text) \
                 WHERE s.pipeline = $1 AND s.operator = $2 AND s.topic = x.t AND s.partition_id = x.p AND s.state_key = x.k"
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
    ($name:ident, $db:ty, $postgres:expr) => {
        pub async fn $name(
            tx: &mut sqlx::Transaction<'_, $db>,
            table: &str,
            writes: &StateWrites,
        ) -> Result<(), SinkError> {
            let (upsert, delete) = statements(table, $postgres);
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

write_fn!(write_postgres, sqlx::Postgres, true);
write_fn!(write_sqlite, sqlx::Sqlite, false);
