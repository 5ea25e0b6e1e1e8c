//! SQLite's checkpoint table: claims with `ON CONFLICT … RETURNING`, and one
//! statement per partition of a batch (in process, a round trip costs nothing).

use crate::sink::checkpoint::{
    claim_returning, current_sql, offset_table, verdict, Checkpoint, Current, COLUMNS,
};
use crate::sink::SinkError;
use sqlx::SqlitePool;

claim_returning!(claim, sqlx::Sqlite);
offset_table!(SqlitePool, COLUMNS, claim, "$1");

/// The statement advancing one partition's checkpoint under its generation.
fn advance_sql(table: &str) -> String {
    format!(
        "UPDATE {table} SET next_offset = COALESCE($1, next_offset) WHERE pipeline = $2 AND topic = $3 \
         AND partition_id = $4 AND generation = $5 AND ($6 IS NULL OR next_offset <= $6)"
    )
}

/// Advances every partition of a checkpoint, one statement each.
pub async fn advance(
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
