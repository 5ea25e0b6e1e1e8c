//! MySQL/MariaDB's checkpoint table: a claim is an upsert and a read of the
//! row it holds locked (no `RETURNING`); a batch's partitions advance in one
//! statement joined to a `JSON_TABLE` of its entries.

use crate::model::TopicPartition;
use crate::sink::checkpoint::{claim_of, offset_table, verdict, Checkpoint, Claim, Current};
use crate::sink::SinkError;
use sqlx::MySqlPool;

/// MySQL cannot index TEXT in a primary key: VARCHAR(255) (Kafka topic names
/// have at most 249 characters), and InnoDB for the transactions.
const COLUMNS: &str = "(pipeline VARCHAR(255) NOT NULL, topic VARCHAR(255) NOT NULL, \
     partition_id INTEGER NOT NULL, next_offset BIGINT NOT NULL, generation BIGINT NOT NULL, \
     PRIMARY KEY (pipeline, topic, partition_id)) ENGINE = InnoDB";

offset_table!(MySqlPool, COLUMNS, claim, "?");

/// The upsert claims, then a `SELECT` in the same transaction reads the row
/// it holds locked.
async fn claim(
    pool: &MySqlPool,
    table: &str,
    pipeline: &str,
    partitions: &[TopicPartition],
) -> Result<Vec<Claim>, SinkError> {
    let err = |source| SinkError::Checkpoint { source };
    let upsert = format!(
        "INSERT INTO {table} (pipeline, topic, partition_id, next_offset, generation) VALUES (?, ?, ?, -1, 1) \
         ON DUPLICATE KEY UPDATE generation = generation + 1"
    );
    let select = format!(
        "SELECT next_offset, generation FROM {table} WHERE pipeline = ? AND topic = ? AND partition_id = ?"
    );
    let mut tx = pool.begin().await.map_err(err)?;
    let mut claims = Vec::with_capacity(partitions.len());
    for tp in partitions {
        sqlx::query(&upsert)
            .bind(pipeline)
            .bind(&tp.topic)
            .bind(tp.partition)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        let (next, generation): (i64, i64) = sqlx::query_as(&select)
            .bind(pipeline)
            .bind(&tp.topic)
            .bind(tp.partition)
            .fetch_one(&mut *tx)
            .await
            .map_err(err)?;
        claims.push(claim_of(tp, next, generation));
    }
    tx.commit().await.map_err(err)?;
    Ok(claims)
}

/// The statement advancing every partition of a checkpoint at once.
/// Parameters: the entries as a JSON array of `{"t","p","g"}` plus `"n"` and
/// `"f"` (next and first offset) when the offset moves (absent: NULL ON
/// EMPTY keeps it and skips the guard), then the pipeline. sqlx connects
/// with `CLIENT_FOUND_ROWS`, so a matched row counts as affected even when
/// its offset is unchanged.
pub fn advance_all_sql(table: &str) -> String {
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
pub async fn advance(
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
    let done = sqlx::query(&advance_all_sql(table))
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
