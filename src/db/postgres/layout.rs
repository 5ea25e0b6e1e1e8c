//! The state table's primary key on PostgreSQL: the state key first.
//!
//! Every lookup, upsert and delete of a state row names all five key
//! columns, so their order in the primary key is free. With the key first,
//! a B-tree comparison is almost always decided by the first column; with
//! the constant `pipeline`, `operator` and `topic` first (the layout before
//! this module), every comparison walked four variable-length columns
//! before reaching the one that differs (measurements: docs/stateful.md).
//!
//! Guarantee: [`ensure`], when it succeeds, leaves the table with [`COLUMNS`] as its primary key,
//! its rows untouched. A table made by an earlier version is migrated once at
//! start-up, under an exclusive lock on the state table (members starting
//! together wait for the first one, then find the work done); the index is
//! rebuilt, which takes a few seconds per million states. A role that may
//! not alter the table keeps the earlier key (the caller logs a warning):
//! it is as correct, only slower. Statements of every version name the same
//! five columns, so old and new members work with either key during a
//! rolling upgrade.

use sqlx::PgPool;

/// The primary key's columns, in order.
pub const COLUMNS: [&str; 5] = ["state_key", "partition_id", "topic", "operator", "pipeline"];

/// `PRIMARY KEY (...)` for a new table.
pub fn primary_key() -> String {
    format!("PRIMARY KEY ({})", COLUMNS.join(", "))
}

/// The primary key's columns of `table` (quoted, as in SQL text), in order.
const KEY_COLUMNS: &str = "SELECT a.attname::text FROM pg_index i \
     CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) \
     JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
     WHERE i.indrelid = $1::regclass AND i.indisprimary ORDER BY k.ord";

const KEY_NAME: &str =
    "SELECT conname::text FROM pg_constraint WHERE conrelid = $1::regclass AND contype = 'p'";

/// Gives the existing state table `table` (quoted) the key-first primary key
/// unless it has it. `Ok(true)` when this call migrated it.
pub async fn ensure(pool: &PgPool, table: &str) -> Result<bool, sqlx::Error> {
    if key_columns(pool, table).await? == COLUMNS {
        return Ok(false);
    }
    let mut tx = pool.begin().await?;
    let lock = format!("LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE");
    sqlx::query(&lock).execute(&mut *tx).await?;
    // Checked again under the lock: another member may have done it.
    if key_columns(&mut *tx, table).await? == COLUMNS {
        return Ok(false);
    }
    let name: Option<String> = sqlx::query_scalar(KEY_NAME)
        .bind(table)
        .fetch_optional(&mut *tx)
        .await?;
    let drop = name.map_or_else(String::new, |n| {
        format!(
            "DROP CONSTRAINT {}, ",
            crate::ident::Quoting::Ansi.quote(&n)
        )
    });
    let alter = format!("ALTER TABLE {table} {drop}ADD {}", primary_key());
    sqlx::query(&alter).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(true)
}

/// The primary key's columns of `table`, in order (empty without one).
pub async fn key_columns<'e>(
    db: impl sqlx::PgExecutor<'e>,
    table: &str,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(KEY_COLUMNS)
        .bind(table)
        .fetch_all(db)
        .await
}
