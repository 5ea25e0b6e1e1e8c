//! Advancing a batch's checkpoint inside its transaction, per backend.
//!
//! Every partition the batch spans moves to its next offset only under the
//! generation the batch was built with, and only from at or before the
//! batch's first offset. When a partition does not move, a read in the same
//! transaction says why ([`verdict`]): a newer generation claimed it — the
//! whole transaction fails with [`SinkError::Fenced`] naming those
//! partitions — or, under the batch's own generation, its checkpoint is
//! already past the batch — the batch committed before and its commit's
//! answer was lost ([`SinkError::AlreadyCommitted`]). Either way nothing of
//! this attempt lands. PostgreSQL and MySQL advance all partitions in one
//! statement (one round trip per batch); SQLite, in process, runs one
//! statement per partition.

use super::{Checkpoint, Entry};
use crate::sink::SinkError;

/// A checkpoint row as the transaction sees it: topic, partition, generation.
type Current = (String, i32, i64);

/// Why some of `checkpoint`'s partitions did not advance, from the rows the
/// transaction sees (`current`): a generation other than the batch's (or no
/// row) is a fence; with every generation the batch's own, the offset guard
/// stopped them, so the batch committed before.
pub fn verdict(checkpoint: &Checkpoint, current: &[Current]) -> SinkError {
    let generation_of = |e: &Entry| {
        current
            .iter()
            .find(|(t, p, _)| *t == e.tp.topic && *p == e.tp.partition)
            .map(|(_, _, g)| *g)
    };
    let names = |entries: Vec<&Entry>| {
        entries
            .iter()
            .map(|e| e.tp.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let fenced: Vec<&Entry> = checkpoint
        .entries
        .iter()
        .filter(|e| generation_of(e) != Some(e.generation))
        .collect();
    if fenced.is_empty() {
        let moved = checkpoint.entries.iter().filter(|e| e.offsets.is_some());
        SinkError::AlreadyCommitted {
            partitions: names(moved.collect()),
        }
    } else {
        SinkError::Fenced {
            partitions: names(fenced),
        }
    }
}

/// The statement advancing one partition's checkpoint under its generation.
fn advance_sql(table: &str) -> String {
    format!(
        "UPDATE {table} SET next_offset = COALESCE($1, next_offset) WHERE pipeline = $2 AND topic = $3 \
         AND partition_id = $4 AND generation = $5 AND ($6 IS NULL OR next_offset <= $6)"
    )
}

/// The checkpoint rows of a pipeline (`$1`), for [`verdict`].
fn current_sql(table: &str) -> String {
    format!("SELECT topic, partition_id, generation FROM {table} WHERE pipeline = $1")
}

/// Advances every partition of a checkpoint, one statement each.
pub async fn advance_sqlite(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    table: &str,
    checkpoint: &Checkpoint,
) -> Result<(), SinkError> {
    let err = |source| SinkError::Checkpoint { source };
    let sql = advance_sql(table);
    let mut advanced = 0;
    for e in &checkpoint.entries {
        let done = sqlx::query(&sql)
            .bind(e.next())
            .bind(&checkpoint.pipeline)
            .bind(&e.tp.topic)
            .bind(e.tp.partition)
            .bind(e.generation)
            .bind(e.first())
            .execute(&mut **tx)
            .await
            .map_err(err)?;
        advanced += done.rows_affected();
    }
    if usize::try_from(advanced).ok() == Some(checkpoint.entries.len()) {
        return Ok(());
    }
    let current: Vec<Current> = sqlx::query_as(&current_sql(table))
        .bind(&checkpoint.pipeline)
        .fetch_all(&mut **tx)
        .await
        .map_err(err)?;
    Err(verdict(checkpoint, &current))
}

/// The PostgreSQL statement advancing every partition of a checkpoint at
/// once; it returns the partitions it advanced. Parameters: pipeline, then
/// topics, partitions, next offsets (NULL: keep), generations and first
/// offsets (NULL: no guard) as arrays.
pub fn advance_all_sql_postgres(table: &str) -> String {
    format!(
        "UPDATE {table} AS c SET next_offset = COALESCE(u.next_offset, c.next_offset) \
         FROM unnest($2::text[], $3::int4[], $4::int8[], $5::int8[], $6::int8[]) \
         AS u(topic, partition_id, next_offset, generation, first_offset) \
         WHERE c.pipeline = $1 AND c.topic = u.topic AND c.partition_id = u.partition_id \
         AND c.generation = u.generation AND (u.first_offset IS NULL OR c.next_offset <= u.first_offset) \
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
    let advanced: Vec<(String, i32)> = sqlx::query_as(&advance_all_sql_postgres(table))
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

/// The MySQL statement advancing every partition of a checkpoint at once.
/// Parameters: the entries as a JSON array of `{"t","p","g"}` plus `"n"` and
/// `"f"` (next and first offset) when the offset moves (absent: NULL ON
/// EMPTY keeps it and skips the guard), then the pipeline. sqlx connects
/// with `CLIENT_FOUND_ROWS`, so a matched row counts as affected even when
/// its offset is unchanged.
pub fn advance_all_sql_mysql(table: &str) -> String {
    format!(
        "UPDATE {table} AS c JOIN JSON_TABLE(?, '$[*]' COLUMNS (t VARCHAR(255) PATH '$.t', \
         p INT PATH '$.p', n BIGINT PATH '$.n' NULL ON EMPTY, f BIGINT PATH '$.f' NULL ON EMPTY, \
         g BIGINT PATH '$.g')) AS u \
         ON c.topic = u.t AND c.partition_id = u.p AND c.generation = u.g \
         AND (u.f IS NULL OR c.next_offset <= u.f) \
         SET c.next_offset = COALESCE(u.n, c.next_offset) WHERE c.pipeline = ?"
    )
}

/// Advances every partition of a checkpoint in one statement. When fewer rows
/// matched than the batch spans, a read under the same transaction says why.
pub async fn advance_mysql(
    tx: &mut sqlx::Transaction<'_, sqlx::MySql>,
    table: &str,
    checkpoint: &Checkpoint,
) -> Result<(), SinkError> {
    let err = |source| SinkError::Checkpoint { source };
    let doc: Vec<serde_json::Value> = checkpoint
        .entries
        .iter()
        .map(|e| {
            let mut o =
                serde_json::json!({"t": e.tp.topic, "p": e.tp.partition, "g": e.generation});
            if let (Some(r), Some(o)) = (e.offsets, o.as_object_mut()) {
                o.insert("n".into(), (r.last + 1).into());
                o.insert("f".into(), r.first.into());
            }
            o
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
    let current: Vec<Current> = sqlx::query_as(&format!(
        "SELECT CONVERT(topic USING utf8mb4), partition_id, generation FROM {table} WHERE pipeline = ?"
    ))
    .bind(&checkpoint.pipeline)
    .fetch_all(&mut **tx)
    .await
    .map_err(err)?;
    Err(verdict(checkpoint, &current))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{OffsetRange, TopicPartition};

    fn entry(partition: i32, offsets: Option<(i64, i64)>, generation: i64) -> Entry {
        Entry {
            tp: TopicPartition::new("t", partition),
            offsets: offsets.map(|(first, last)| OffsetRange { first, last }),
            generation,
        }
    }

    fn checkpoint(entries: Vec<Entry>) -> Checkpoint {
        Checkpoint {
            pipeline: "p".into(),
            entries,
        }
    }

    #[test]
    fn a_newer_generation_is_a_fence_naming_only_its_partitions() {
        let c = checkpoint(vec![entry(0, Some((5, 9)), 3), entry(1, None, 4)]);
        let current = [("t".to_string(), 0, 3), ("t".to_string(), 1, 5)];
        match verdict(&c, &current) {
            SinkError::Fenced { partitions } => assert_eq!(partitions, "t/1"),
            other => panic!("want a fence, got {other:?}"),
        }
    }

    #[test]
    fn a_missing_checkpoint_row_is_a_fence() {
        let c = checkpoint(vec![entry(0, Some((5, 9)), 3)]);
        assert!(matches!(verdict(&c, &[]), SinkError::Fenced { .. }));
    }

    #[test]
    fn under_the_batchs_own_generations_it_committed_before() {
        let c = checkpoint(vec![entry(0, Some((5, 9)), 3), entry(1, None, 4)]);
        let current = [("t".to_string(), 0, 3), ("t".to_string(), 1, 4)];
        match verdict(&c, &current) {
            SinkError::AlreadyCommitted { partitions } => assert_eq!(partitions, "t/0"),
            other => panic!("want already committed, got {other:?}"),
        }
    }
}
