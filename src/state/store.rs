//! The state table, `tidemill_state`, next to the target table:
//! (pipeline, operator, topic, partition_id, state_key) → state JSON and the
//! watermark at which it is due (`due_at`, indexed).
//!
//! Reads happen outside the batch's transaction — safe because only the
//! partition's current owner writes its state, and a batch from a former
//! owner is fenced at its checkpoint. Writes happen inside it (each
//! backend's `state::write`, through [`write_ops`]), as one statement per
//! operator for upserts and one for deletes, whatever the number of keys.
//!
//! What each database supplies is [`StateTable`], in its folder under
//! [`crate::db`]; the engine holds a [`StateStore`] and never asks which.

use super::error::StateError;
use crate::model::BoxFuture;
use crate::model::TopicPartition;
use serde_json::json;
use std::sync::Arc;

pub const TABLE: &str = "tidemill_state";

/// The index serving [`StateTable::load_due`] (PostgreSQL and SQLite): only
/// states that have a due time, so key lookups go through the primary key.
pub const DUE_INDEX: &str = "tidemill_state_due_at";

/// The full `due_at` index of earlier versions, dropped at start-up.
pub const OLD_DUE_INDEX: &str = "tidemill_state_due";

/// `name` in the schema (or attached database) of the quoted state table `t`.
pub fn qualified(t: &str, name: &str) -> String {
    let schema = t.strip_suffix(&format!("\"{TABLE}\"")).unwrap_or_default();
    format!("{schema}\"{name}\"")
}

/// The state table of one database; each backend implements it in its
/// folder under [`crate::db`].
pub trait StateTable: Send + Sync {
    /// The longest state key (JSON text, in characters) this table holds.
    fn max_key_chars(&self) -> usize {
        usize::MAX
    }

    /// Creates the table and its `due_at` index if missing, and replaces the
    /// full index earlier versions made (race-tolerant).
    fn ensure_table(&self) -> BoxFuture<'_, Result<(), StateError>>;

    /// Loads the state of these keys of one operator, in one query (none
    /// when `keys` is empty).
    fn load<'a>(
        &'a self,
        pipeline: &'a str,
        operator: &'a str,
        keys: &'a [(TopicPartition, String)],
    ) -> BoxFuture<'a, Result<Vec<Loaded>, StateError>>;

    /// Loads one operator's states of a partition that are due at `watermark`.
    fn load_due<'a>(
        &'a self,
        pipeline: &'a str,
        operator: &'a str,
        tp: &'a TopicPartition,
        watermark: i64,
    ) -> BoxFuture<'a, Result<Vec<(String, String)>, StateError>>;
}

/// Handle on the state table; cheap to clone.
pub type StateStore = Arc<dyn StateTable>;

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

pub fn err(source: sqlx::Error) -> StateError {
    StateError::Store { source }
}

/// The keys as the JSON array of `{"t","p","k"}` every backend's load binds.
pub fn keys_doc(keys: &[(TopicPartition, String)]) -> Result<String, StateError> {
    serde_json::to_string(
        &keys
            .iter()
            .map(|(tp, k)| json!({"t": tp.topic, "p": tp.partition, "k": k}))
            .collect::<Vec<_>>(),
    )
    .map_err(|e| StateError::Format {
        operator: TABLE.into(),
        message: e.to_string(),
    })
}

/// Loaded rows as the engine takes them.
pub fn loaded(rows: Vec<(String, i32, String, String)>) -> Vec<Loaded> {
    rows.into_iter()
        .map(|(topic, partition, key, state)| (TopicPartition::new(topic, partition), key, state))
        .collect()
}

/// Runs `statements` in turn; one that fails is fine when the table exists
/// after all (members starting together race on the catalog).
pub async fn ensure_statements<F, Fut>(
    t: &str,
    statements: Vec<String>,
    execute: F,
) -> Result<(), StateError>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<(), sqlx::Error>>,
{
    for sql in statements {
        if let Err(source) = execute(sql).await {
            if execute(format!("SELECT 1 FROM {t} LIMIT 0")).await.is_err() {
                return Err(err(source));
            }
        }
    }
    Ok(())
}

/// Generates a backend's `write`: applies a batch's state changes inside its
/// transaction, with the backend's `(upsert, delete)` statements for the
/// table (parameters: pipeline, operator, document).
macro_rules! write_ops {
    ($name:ident, $db:ty, $statements:path) => {
        pub async fn $name(
            tx: &mut sqlx::Transaction<'_, $db>,
            table: &str,
            writes: &$crate::state::store::StateWrites,
        ) -> Result<(), $crate::state::StateError> {
            let (upsert, delete) = $statements(table);
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
                        .map_err($crate::state::store::err)?;
                }
            }
            Ok(())
        }
    };
}
pub(crate) use write_ops;

/// Generates a backend's state table, `States { pool, table }`, from its
/// statements: `$ensure(&States)` creates the table, `$load_sql(table)`
/// loads keys (parameters: pipeline, operator, keys document) and
/// `$due_sql(table)` loads due states (pipeline, operator, topic,
/// partition, watermark).
macro_rules! state_table {
    ($pool:ty, max_key_chars = $max:expr, $ensure:path, $load_sql:path, $due_sql:path) => {
        /// The state table of one database of this backend.
        pub struct States {
            pub pool: $pool,
            /// Quoted, next to the target table.
            pub table: String,
        }

        impl $crate::state::StateTable for States {
            fn max_key_chars(&self) -> usize {
                $max
            }

            fn ensure_table(
                &self,
            ) -> $crate::model::BoxFuture<'_, Result<(), $crate::state::StateError>> {
                Box::pin($ensure(self))
            }

            fn load<'a>(
                &'a self,
                pipeline: &'a str,
                operator: &'a str,
                keys: &'a [($crate::model::TopicPartition, String)],
            ) -> $crate::model::BoxFuture<
                'a,
                Result<Vec<$crate::state::store::Loaded>, $crate::state::StateError>,
            > {
                use $crate::state::store::{err, keys_doc, loaded};
                Box::pin(async move {
                    if keys.is_empty() {
                        return Ok(Vec::new());
                    }
                    let doc = keys_doc(keys)?;
                    let sql = $load_sql(&self.table);
                    let query = sqlx::query_as(&sql)
                        .bind(pipeline)
                        .bind(operator)
                        .bind(&doc);
                    Ok(loaded(query.fetch_all(&self.pool).await.map_err(err)?))
                })
            }

            fn load_due<'a>(
                &'a self,
                pipeline: &'a str,
                operator: &'a str,
                tp: &'a $crate::model::TopicPartition,
                watermark: i64,
            ) -> $crate::model::BoxFuture<
                'a,
                Result<Vec<(String, String)>, $crate::state::StateError>,
            > {
                Box::pin(async move {
                    let sql = $due_sql(&self.table);
                    let query = sqlx::query_as(&sql).bind(pipeline).bind(operator);
                    let query = query.bind(&tp.topic).bind(tp.partition).bind(watermark);
                    query
                        .fetch_all(&self.pool)
                        .await
                        .map_err($crate::state::store::err)
                })
            }
        }

        /// The state table next to the target table, as a [`$crate::state::StateStore`].
        pub fn store(pool: $pool, table: String) -> $crate::state::StateStore {
            std::sync::Arc::new(States { pool, table })
        }
    };
}
pub(crate) use state_table;

/// Loading the states due at a watermark, with `$n` placeholders
/// (PostgreSQL, SQLite).
pub fn due_sql_numbered(table: &str) -> String {
    format!(
        "SELECT state_key, state FROM {table} WHERE pipeline = $1 AND operator = $2 AND topic = $3 \
         AND partition_id = $4 AND due_at <= $5"
    )
}
