//! MySQL/MariaDB's state table: bounded key columns (InnoDB index limits),
//! binary collation, and every key lookup and delete driven by a
//! `JSON_TABLE` of the keys through the primary key (`EXPLAIN`ed in
//! tests/state_plans_mysql.rs): no scans, no gap locks on other partitions'
//! rows.

use crate::state::store::{ensure_statements, state_table, write_ops, TABLE};
use crate::state::StateError;
use sqlx::MySqlPool;

/// MySQL/MariaDB index keys are bounded (3072 bytes on InnoDB): the state key
/// column holds at most this many characters there.
pub const MAX_KEY_CHARS: usize = 255;

/// Shape of a `JSON_TABLE` over the key documents.
const KEYS: &str = "JSON_TABLE(?, '$[*]' COLUMNS (t VARCHAR(249) PATH '$.t', p INT PATH '$.p', \
     k VARCHAR(255) PATH '$.k'))";

state_table!(
    MySqlPool,
    max_key_chars = MAX_KEY_CHARS,
    ensure,
    load_sql,
    due_sql
);

/// Creates the table: bounded key columns, binary collation, InnoDB.
async fn ensure(states: &States) -> Result<(), StateError> {
    let (t, pool) = (&states.table, &states.pool);
    let create = format!(
        "CREATE TABLE IF NOT EXISTS {t} (pipeline VARCHAR(64) NOT NULL, operator VARCHAR(64) NOT NULL, \
         topic VARCHAR(249) NOT NULL, partition_id INT NOT NULL, state_key VARCHAR({MAX_KEY_CHARS}) NOT NULL, \
         state LONGTEXT NOT NULL, due_at BIGINT, PRIMARY KEY (pipeline, operator, topic, partition_id, state_key), \
         KEY {TABLE}_due (pipeline, operator, topic, partition_id, due_at)) \
         ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin"
    );
    ensure_statements(t, vec![create], |sql| async move {
        sqlx::query(&sql).execute(pool).await.map(|_| ())
    })
    .await
}

/// Loading the states due at a watermark (`CONVERT`: sqlx reads utf8mb4_bin
/// columns as VARBINARY).
fn due_sql(table: &str) -> String {
    format!(
        "SELECT CONVERT(state_key USING utf8mb4), CONVERT(state USING utf8mb4) FROM {table} \
         WHERE pipeline = ? AND operator = ? AND topic = ? AND partition_id = ? AND due_at <= ?"
    )
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
