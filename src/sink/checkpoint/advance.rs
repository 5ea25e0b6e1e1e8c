//! Advancing a batch's checkpoint inside its transaction, per backend.
//!
//! Every partition the batch spans moves to its next offset only under the
//! generation the batch was built with; if any partition was claimed since,
//! the whole transaction fails with [`SinkError::Fenced`] naming those
//! partitions, and nothing of the batch lands. PostgreSQL and MySQL advance
//! all partitions in one statement (one round trip per batch); SQLite, in
//! process, runs one statement per partition.

use super::Checkpoint;
use crate::sink::SinkError;

/// The statement advancing one partition's checkpoint under its generation.
fn advance_sql(table: &str) -> String {
    format!(
        "UPDATE {table} SET next_offset = COALESCE($1, next_offset) WHERE pipeline = $2 AND topic = $3 AND partition_id = $4 AND generation = $5"
    )
}

/// Advances every partition of a checkpoint, one statement each.
pub async fn advance_sqlite(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    table: &str,
    checkpoint: &Checkpoint,
) -> Result<(), SinkError> {
    let sql = advance_sql(table);
    let mut advanced = Vec::with_capacity(checkpoint.entries.len());
    for (tp, next, generation) in &checkpoint.entries {
        let done = sqlx::query(&sql)
            .bind(*next)
            .bind(&checkpoint.pipeline)
            .bind(&tp.topic)
            .bind(tp.partition)
            .bind(*generation)
            .execute(&mut **tx)
            .await
            .map_err(|source| SinkError::Checkpoint { source })?;
        if done.rows_affected() == 1 {
            advanced.push((tp.topic.clone(), tp.partition));
        }
    }
    fence(checkpoint, &advanced)
}

/// `Err(Fenced)` naming the checkpoint's partitions missing from `advanced`.
fn fence(checkpoint: &Checkpoint, advanced: &[(String, i32)]) -> Result<(), SinkError> {
    let fenced: Vec<String> = checkpoint
        .entries
        .iter()
        .filter(|(tp, _, _)| {
            !advanced
                .iter()
                .any(|(t, p)| *t == tp.topic && *p == tp.partition)
        })
        .map(|(tp, _, _)| tp.to_string())
        .collect();
    if fenced.is_empty() {
        Ok(())
    } else {
        Err(SinkError::Fenced {
            partitions: fenced.join(","),
        })
    }
}

/// The PostgreSQL statement advancing every partition of a checkpoint at
/// once; it returns the partitions it advanced. Parameters: pipeline, then
/// topics, partitions, next offsets (NULL: keep) and generations as arrays.
pub fn advance_all_sql_postgres(table: &str) -> String {
    format!(
        "UPDATE {table} AS c SET next_offset = COALESCE(u.next_offset, c.next_offset) \
         FROM unnest($2::text[], $3::int4[], $4::int8[], $5::int8[]) AS u(topic, partition_id, next_offset, generation) \
         WHERE c.pipeline = $1 AND c.topic = u.topic AND c.partition_id = u.partition_id AND c.generation = u.generation \
         RETURNING c.topic, c.partition_id"
    )
}

/// Advances every partition of a checkpoint in one statement: one round trip
/// however many partitions the batch spans. Each checkpoint row is still
/// locked until the transaction ends; two transactions locking the same rows
/// in different orders fail one with a deadlock (40P01), which is transient,
/// and the retried batch of a former owner is then fenced.
pub async fn advance_postgres(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    table: &str,
    checkpoint: &Checkpoint,
) -> Result<(), SinkError> {
    let n = checkpoint.entries.len();
    let (mut topics, mut partitions) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut nexts, mut generations) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for (tp, next, generation) in &checkpoint.entries {
        topics.push(tp.topic.as_str());
        partitions.push(tp.partition);
        nexts.push(*next);
        generations.push(*generation);
    }
    let advanced: Vec<(String, i32)> = sqlx::query_as(&advance_all_sql_postgres(table))
        .bind(&checkpoint.pipeline)
        .bind(&topics)
        .bind(&partitions)
        .bind(&nexts)
        .bind(&generations)
        .fetch_all(&mut **tx)
        .await
        .map_err(|source| SinkError::Checkpoint { source })?;
    fence(checkpoint, &advanced)
}

/// The MySQL statement advancing every partition of a checkpoint at once.
/// Parameters: the entries as a JSON array of `{"t","p","g"}` plus `"n"`
/// when the offset moves (absent: NULL ON EMPTY keeps it), then the pipeline.
/// sqlx connects with `CLIENT_FOUND_ROWS`, so a matched row counts as
/// affected even when its offset is unchanged; only a newer generation
/// leaves a partition unmatched.
pub fn advance_all_sql_mysql(table: &str) -> String {
    format!(
        "UPDATE {table} AS c {MYSQL_MATCHING} SET c.next_offset = COALESCE(u.n, c.next_offset) WHERE c.pipeline = ?"
    )
}

/// The checkpoint rows (`c`) that the JSON entries (`u`, the first parameter)
/// name under their generation.
const MYSQL_MATCHING: &str =
    "JOIN JSON_TABLE(?, '$[*]' COLUMNS (t VARCHAR(255) PATH '$.t', p INT PATH '$.p', \
     n BIGINT PATH '$.n' NULL ON EMPTY, g BIGINT PATH '$.g')) AS u \
     ON c.topic = u.t AND c.partition_id = u.p AND c.generation = u.g";

/// Advances every partition of a checkpoint in one statement. When fewer rows
/// matched than the batch spans, a read under the same transaction names the
/// partitions whose generation moved on.
pub async fn advance_mysql(
    tx: &mut sqlx::Transaction<'_, sqlx::MySql>,
    table: &str,
    checkpoint: &Checkpoint,
) -> Result<(), SinkError> {
    let err = |source| SinkError::Checkpoint { source };
    let doc: Vec<serde_json::Value> = checkpoint
        .entries
        .iter()
        .map(|(tp, next, generation)| {
            let mut e = serde_json::json!({"t": tp.topic, "p": tp.partition, "g": generation});
            if let (Some(n), Some(o)) = (next, e.as_object_mut()) {
                o.insert("n".into(), (*n).into());
            }
            e
        })
        .collect();
    let doc = serde_json::Value::Array(doc).to_string();
    let done = sqlx::query(&advance_all_sql_mysql(table))
        .bind(&doc)
        .bind(&checkpoint.pipeline)
        .execute(&mut **tx)
        .await
        .map_err(err)?;
    if usize::try_from(done.rows_affected()).ok() == Some(checkpoint.entries.len()) {
        return Ok(());
    }
    let current: Vec<(String, i32)> = sqlx::query_as(&format!(
        "SELECT CONVERT(c.topic USING utf8mb4), c.partition_id FROM {table} AS c {MYSQL_MATCHING} WHERE c.pipeline = ?"
    ))
    .bind(&doc)
    .bind(&checkpoint.pipeline)
    .fetch_all(&mut **tx)
    .await
    .map_err(err)?;
    fence(checkpoint, &current)
}
