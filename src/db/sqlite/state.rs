//! SQLite's state table: key lookups through the primary key with the keys
//! from `json_each`, and a partial `due_at` index for timers.

use crate::model::BoxFuture;
use crate::model::TopicPartition;
use crate::state::store::{
    self, ensure_statements, err, keys_doc, loaded, qualified, write_ops, Loaded, StateTable,
    DUE_INDEX, OLD_DUE_INDEX,
};
use crate::state::StateError;
use sqlx::SqlitePool;

/// The state table of one SQLite database.
pub struct States {
    pub pool: SqlitePool,
    /// Quoted, in the target table's (attached) database.
    pub table: String,
}

impl StateTable for States {
    fn ensure_table(&self) -> BoxFuture<'_, Result<(), StateError>> {
        Box::pin(async move {
            let t = &self.table;
            let statements = vec![
                format!(
                    "CREATE TABLE IF NOT EXISTS {t} (pipeline TEXT NOT NULL, operator TEXT NOT NULL, topic TEXT NOT NULL, \
                     partition_id INTEGER NOT NULL, state_key TEXT NOT NULL, state TEXT NOT NULL, due_at BIGINT, \
                     PRIMARY KEY (pipeline, operator, topic, partition_id, state_key))"
                ),
                // Partial: key lookups have only the primary key to use.
                format!(
                    "CREATE INDEX IF NOT EXISTS \"{DUE_INDEX}\" ON {t} (pipeline, operator, topic, partition_id, due_at) \
                     WHERE due_at IS NOT NULL"
                ),
                format!("DROP INDEX IF EXISTS {}", qualified(t, OLD_DUE_INDEX)),
            ];
            let pool = &self.pool;
            ensure_statements(t, statements, |sql| async move {
                sqlx::query(&sql).execute(pool).await.map(|_| ())
            })
            .await
        })
    }

    fn load<'a>(
        &'a self,
        pipeline: &'a str,
        operator: &'a str,
        keys: &'a [(TopicPartition, String)],
    ) -> BoxFuture<'a, Result<Vec<Loaded>, StateError>> {
        Box::pin(async move {
            if keys.is_empty() {
                return Ok(Vec::new());
            }
            let doc = keys_doc(keys)?;
            let sql = format!(
                "SELECT s.topic, s.partition_id, s.state_key, s.state FROM json_each(?3) j \
                 JOIN {} s ON s.pipeline = ?1 AND s.operator = ?2 AND s.topic = json_extract(j.value, '$.t') \
                 AND s.partition_id = json_extract(j.value, '$.p') AND s.state_key = json_extract(j.value, '$.k')",
                self.table
            );
            let rows = sqlx::query_as(&sql)
                .bind(pipeline)
                .bind(operator)
                .bind(&doc)
                .fetch_all(&self.pool)
                .await
                .map_err(err)?;
            Ok(loaded(rows))
        })
    }

    fn load_due<'a>(
        &'a self,
        pipeline: &'a str,
        operator: &'a str,
        tp: &'a TopicPartition,
        watermark: i64,
    ) -> BoxFuture<'a, Result<Vec<(String, String)>, StateError>> {
        Box::pin(async move {
            let sql = format!(
                "SELECT state_key, state FROM {} WHERE pipeline = $1 AND operator = $2 AND topic = $3 \
                 AND partition_id = $4 AND due_at <= $5",
                self.table
            );
            let query = sqlx::query_as(&sql).bind(pipeline).bind(operator);
            let query = query.bind(&tp.topic).bind(tp.partition).bind(watermark);
            query.fetch_all(&self.pool).await.map_err(err)
        })
    }
}

/// The statements writing one operator's changes (upsert, delete);
/// parameters: pipeline, operator, document.
pub fn statements(table: &str) -> (String, String) {
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

write_ops!(write, sqlx::Sqlite, statements);

/// The state table next to the target table, as a [`store::StateStore`].
pub fn store(pool: SqlitePool, table: String) -> store::StateStore {
    std::sync::Arc::new(States { pool, table })
}
