//! PostgreSQL's state table: keys compared bytewise (`COLLATE "C"`), the
//! state key first in the primary key ([`super::layout`]), one primary-key
//! probe per key for loads and deletes whatever the statistics say, and a
//! partial `due_at` index for timers.

use crate::state::store::{
    due_sql_numbered, ensure_statements, qualified, state_table, write_ops, DUE_INDEX,
    OLD_DUE_INDEX,
};
use crate::state::StateError;
use sqlx::PgPool;

state_table!(
    PgPool,
    max_key_chars = usize::MAX,
    ensure,
    load_sql,
    due_sql_numbered
);

/// The type of the key columns' text. They are only ever compared for
/// equality, so PostgreSQL compares them bytewise (`COLLATE "C"`, as MySQL's
/// `utf8mb4_bin` and SQLite's default do) instead of by the database's
/// collation: with a linguistic default (ICU `en-US`) a W2 drain took 13–15%
/// longer. Tables made before keep their collation.
const KEY_TEXT: &str = "TEXT COLLATE \"C\"";

/// Creates the table and its partial `due_at` index, drops the full index
/// of earlier versions, and moves the state key first in the primary key.
///
/// Each statement runs only when the catalog says its work is still to do:
/// `CREATE INDEX IF NOT EXISTS` takes a SHARE lock on the table even when the
/// index exists, so a member starting would wait behind every open state
/// transaction (a frozen member's, for one, for as long as it is frozen) and
/// every other member's state writes would queue behind that wait.
async fn ensure(states: &States) -> Result<(), StateError> {
    let (t, pool) = (&states.table, &states.pool);
    let mut statements = Vec::new();
    if !exists(pool, t).await {
        statements.push(format!(
            "CREATE TABLE IF NOT EXISTS {t} (pipeline {KEY_TEXT} NOT NULL, operator {KEY_TEXT} NOT NULL, \
             topic {KEY_TEXT} NOT NULL, partition_id INTEGER NOT NULL, state_key {KEY_TEXT} NOT NULL, \
             state TEXT NOT NULL, due_at BIGINT, {})",
            super::layout::primary_key(),
        ));
    }
    if !exists(pool, &qualified(t, DUE_INDEX)).await {
        // Partial: a lookup by key then has only the primary key to use.
        // With a full index of the same prefix, PostgreSQL chose it for key
        // lookups and filtered thousands of rows per key.
        statements.push(format!(
            "CREATE INDEX IF NOT EXISTS \"{DUE_INDEX}\" ON {t} (pipeline, operator, topic, partition_id, due_at) \
             WHERE due_at IS NOT NULL"
        ));
    }
    let old = qualified(t, OLD_DUE_INDEX);
    if exists(pool, &old).await {
        // The full index that tables created before it carry.
        statements.push(format!("DROP INDEX IF EXISTS {old}"));
    }
    ensure_statements(t, statements, |sql| async move {
        sqlx::query(&sql).execute(pool).await.map(|_| ())
    })
    .await?;
    match super::layout::ensure(pool, t).await {
        Ok(true) => tracing::info!(table = %t, "state table migrated to the key-first primary key"),
        Ok(false) => {}
        // The earlier key is as correct, only slower: a role that may not
        // alter the table (not its owner) keeps it, as it keeps the index
        // statements above.
        Err(e) => tracing::warn!(
            table = %t,
            error = %e,
            "state table keeps its earlier primary key: migrating it failed"
        ),
    }
    Ok(())
}

/// Whether the catalog knows the relation `name` (quoted, maybe
/// schema-qualified); a failed look counts as missing, so the statement runs.
async fn exists(pool: &PgPool, name: &str) -> bool {
    sqlx::query_scalar::<_, bool>("SELECT to_regclass($1) IS NOT NULL")
        .bind(name)
        .fetch_one(pool)
        .await
        .unwrap_or(false)
}

/// The query loading keys' states; parameters: pipeline, operator, and the
/// keys as a JSON array of `{"t","p","k"}`.
///
/// One primary-key probe per key, whatever the statistics say: the `LIMIT`
/// keeps the planner from flattening the lateral subquery into a join, which
/// on a table autovacuum had not analysed yet became a hash of the whole
/// partition's state for every batch.
pub fn load_sql(table: &str) -> String {
    format!(
        "SELECT k.t, k.p, k.k, s.state FROM json_to_recordset($3::json) AS k(t text, p int, k text) \
         CROSS JOIN LATERAL (SELECT s.state FROM {table} s WHERE s.pipeline = $1 AND s.operator = $2 \
         AND s.topic = k.t AND s.partition_id = k.p AND s.state_key = k.k LIMIT 1) AS s"
    )
}

/// The statements writing one operator's changes (upsert, delete);
/// parameters: pipeline, operator, document.
pub fn statements(table: &str) -> (String, String) {
    (
        format!(
            "INSERT INTO {table} (pipeline, operator, topic, partition_id, state_key, state, due_at) \
             SELECT $1, $2, x.t, x.p, x.k, x.s, x.d FROM json_to_recordset($3::json) AS x(t text, p int, k text, s text, d bigint) \
             ON CONFLICT (pipeline, operator, topic, partition_id, state_key) \
             DO UPDATE SET state = EXCLUDED.state, due_at = EXCLUDED.due_at"
        ),
        // The rows' ids from one primary-key probe per key (as in
        // `load_sql`), then a TID scan: no plan over the whole table.
        format!(
            "DELETE FROM {table} WHERE ctid = ANY(ARRAY(SELECT s.ctid FROM json_to_recordset($3::json) AS x(t text, p int, k text) \
             CROSS JOIN LATERAL (SELECT s.ctid FROM {table} s WHERE s.pipeline = $1 AND s.operator = $2 \
             AND s.topic = x.t AND s.partition_id = x.p AND s.state_key = x.k LIMIT 1) AS s))"
        ),
    )
}

write_ops!(write, sqlx::Postgres, statements);
