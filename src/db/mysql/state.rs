//! MySQL/MariaDB's state table: bounded key columns (InnoDB index limits),
//! binary collation, and every key lookup and delete driven by a
//! `JSON_TABLE` of the keys through the primary key (`EXPLAIN`ed in
//! tests/state_plans_mysql.rs): no scans, no gap locks on other partitions'
//! rows.

use crate::model::BoxFuture;
use crate::model::TopicPartition;
use crate::state::store::{
    self, ensure_statements, err, keys_doc, loaded, write_ops, Loaded, StateTable, TABLE,
};
use crate::state::StateError;
use sqlx::MySqlPool;

/// MySQL/MariaDB index keys are bounded (3072 bytes on InnoDB): the state key
/// column holds at most this many characters there.
pub const MAX_KEY_CHARS: usize = 255;

/// Shape of a `JSON_TABLE` over the key documents.
const KEYS: &str = "JSON_TABLE(?, '$[*]' COLUMNS (t VARCHAR(249) PATH '$.t', p INT PATH '$.p', \
     k VARCHAR(255) PATH '$.k'))";

/// The state table of one MySQL/MariaDB database.
pub struct States {
    pub pool: MySqlPool,
    /// Quoted with backticks.
    pub table: String,
}

impl StateTable for States {
    fn max_key_chars(&self) -> usize {
        MAX_KEY_CHARS
    }

    fn ensure_table(&self) -> BoxFuture<'_, Result<(), StateError>> {
        Box::pin(async move {
            let t = &self.table;
            let create = format!(
                "CREATE TABLE IF NOT EXISTS {t} (pipeline VARCHAR(64) NOT NULL, operator VARCHAR(64) NOT NULL, \
                 topic VARCHAR(249) NOT NULL, partition_id INT NOT NULL, state_key VARCHAR({MAX_KEY_CHARS}) NOT NULL, \
                 state LONGTEXT NOT NULL, due_at BIGINT, PRIMARY KEY (pipeline, operator, topic, partition_id, state_key), \
                 KEY {TABLE}_due (pipeline, operator, topic, partition_id, due_at)) \
                 ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin"
            );
            let pool = &self.pool;
            ensure_statements(t, vec![create], |sql| async move {
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
            let sql = load_sql(&self.table);
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
            // CONVERT: sqlx reads utf8mb4_bin columns as VARBINARY.
            let sql = format!(
                "SELECT CONVERT(state_key USING utf8mb4), CONVERT(state USING utf8mb4) FROM {} \
                 WHERE pipeline = ? AND operator = ? AND topic = ? AND partition_id = ? AND due_at <= ?",
                self.table
            );
            let query = sqlx::query_as(&sql).bind(pipeline).bind(operator);
            let query = query.bind(&tp.topic).bind(tp.partition).bind(watermark);
            query.fetch_all(&self.pool).await.map_err(err)
        })
    }
}

/// The query loading keys' states; parameters: pipeline, operator, and the
/// keys as a JSON array of `{"t","p","k"}`. MariaDB turns the `IN` into a
/// semi-join driven by the keys: one primary-key probe per key.
pub fn load_sql(table: &str) -> String {
    format!(
        // CONVERT: sqlx reads utf8mb4_bin columns as VARBINARY.
        "SELECT CONVERT(s.topic USING utf8mb4), s.partition_id, CONVERT(s.state_key USING utf8mb4), \
         CONVERT(s.state USING utf8mb4) FROM {table} s WHERE s.pipeline = ? \
         AND s.operator = ? AND (s.topic, s.partition_id, s.state_key) IN (SELECT j.t, j.p, j.k FROM {KEYS} AS j)"
    )
}

/// The statements writing one operator's changes (upsert, delete);
/// parameters: pipeline, operator, document.
///
/// The delete is a join driven by the keys, one primary-key probe per key
/// (`eq_ref`): as `… AND (topic, partition_id, state_key) IN (SELECT …)`
/// MariaDB scanned every key of the operator, locking other partitions' rows
/// too, so two members deleting state deadlocked on each other.
pub fn statements(table: &str) -> (String, String) {
    (
        format!(
            "INSERT INTO {table} (pipeline, operator, topic, partition_id, state_key, state, due_at) \
             SELECT ?, ?, j.t, j.p, j.k, j.s, j.d FROM JSON_TABLE(?, '$[*]' COLUMNS (t VARCHAR(249) PATH '$.t', \
             p INT PATH '$.p', k VARCHAR(255) PATH '$.k', s LONGTEXT PATH '$.s', d BIGINT PATH '$.d')) AS j \
             ON DUPLICATE KEY UPDATE state = VALUES(state), due_at = VALUES(due_at)"
        ),
        format!(
            "DELETE s FROM (SELECT ? AS pipeline, ? AS operator) AS c JOIN {KEYS} AS j \
             JOIN {table} AS s ON s.pipeline = c.pipeline AND s.operator = c.operator \
             AND s.topic = j.t AND s.partition_id = j.p AND s.state_key = j.k"
        ),
    )
}

write_ops!(write, sqlx::MySql, statements);

/// The state table next to the target table, as a [`store::StateStore`].
pub fn store(pool: MySqlPool, table: String) -> store::StateStore {
    std::sync::Arc::new(States { pool, table })
}
