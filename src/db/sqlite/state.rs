//! SQLite's state table: key lookups through the primary key with the keys
//! from `json_each`, and a partial `due_at` index for timers.

use crate::state::store::{
    due_sql_numbered, ensure_statements, qualified, state_table, write_ops, DUE_INDEX,
    OLD_DUE_INDEX,
};
use crate::state::StateError;
use sqlx::SqlitePool;

state_table!(
    SqlitePool,
    max_key_chars = usize::MAX,
    ensure,
    load_sql,
    due_sql_numbered
);

/// Creates the table and its partial `due_at` index; drops the full index
/// of earlier versions.
async fn ensure(states: &States) -> Result<(), StateError> {
    let (t, pool) = (&states.table, &states.pool);
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
    ensure_statements(t, statements, |sql| async move {
        sqlx::query(&sql).execute(pool).await.map(|_| ())
    })
    .await
}

/// The query loading keys' states; parameters: pipeline, operator, and the
/// keys as a JSON array of `{"t","p","k"}` (`json_each`).
pub fn load_sql(table: &str) -> String {
    format!(
        "SELECT s.topic, s.partition_id, s.state_key, s.state FROM json_each(?3) j \
         JOIN {table} s ON s.pipeline = ?1 AND s.operator = ?2 AND s.topic = json_extract(j.value, '$.t') \
         AND s.partition_id = json_extract(j.value, '$.p') AND s.state_key = json_extract(j.value, '$.k')"
    )
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
