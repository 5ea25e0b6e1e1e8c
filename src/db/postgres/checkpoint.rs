//! PostgreSQL's checkpoint table: claims with `ON CONFLICT … RETURNING`, and
//! every partition of a batch advanced in one statement (one round trip per
//! batch, whatever the number of partitions).

use crate::sink::checkpoint::{
    claim_returning, current_sql, offset_table, verdict, Checkpoint, Current, COLUMNS,
};
use crate::sink::SinkError;
use sqlx::PgPool;

claim_returning!(claim, sqlx::Postgres);
offset_table!(PgPool, COLUMNS, claim, "$1");

/// The statement advancing every partition of a checkpoint at once; it
/// returns the partitions it advanced. Parameters: pipeline, then topics,
/// partitions, next offsets (NULL: keep), generations and first offsets
/// (NULL: no guard) as arrays.
pub fn advance_all_sql(table: &str) -> String {
    format!(
        "UPDATE {table} AS c SET next_offset = COALESCE(u.next_offset, c.next_offset) \
         FROM unnest($2::text[], $3::int4[], $4::int8[], $5::int8[], $6::int8[]) \
         AS u(topic, partition_id, next_offset, generation, first_offset) \
         WHERE c.pipeline = $1 AND c.topic = u.topic AND c.partition_id = u.partition_id \
         AND c.generation = u.generation AND (u.first_offset IS NULL OR c.next_offset <= u.first_offset) \
         RETURNING c.topic, c.partition_id"
    )
}

/// Advances every partition of a checkpoint in one statement. Each
/// checkpoint row is still locked until the transaction ends; two
/// transactions locking the same rows in different orders fail one with a
/// deadlock (40P01), which is transient, and the retried batch of a former
/// owner is then fenced.
pub async fn advance(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    table: &str,
    checkpoint: &Checkpoint,
) -> Result<(), SinkError> {
    let err = |source| SinkError::Checkpoint { source };
    let n = checkpoint.entries.len();
    let (mut topics, mut partitions) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut nexts, mut generations) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let mut firsts = Vec::with_capacity(n);
    for e in &checkpoint.entries {
        topics.push(e.tp.topic.as_str());
        partitions.push(e.tp.partition);
        nexts.push(e.next());
        generations.push(e.generation);
        firsts.push(e.first());
    }
    let advanced: Vec<(String, i32)> = sqlx::query_as(&advance_all_sql(table))
        .bind(&checkpoint.pipeline)
        .bind(&topics)
        .bind(&partitions)
        .bind(&nexts)
        .bind(&generations)
        .bind(&firsts)
        .fetch_all(&mut **tx)
        .await
        .map_err(err)?;
    if advanced.len() == n {
        return Ok(());
    }
    let current: Vec<Current> = sqlx::query_as(&current_sql(table))
        .bind(&checkpoint.pipeline)
        .fetch_all(&mut **tx)
        .await
        .map_err(err)?;
    Err(verdict(checkpoint, &current))
}
