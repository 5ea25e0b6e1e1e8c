//! Exactly-once checkpoints: Kafka offsets stored in the target database, in
//! the same transaction as the batch's rows.
//!
//! Table `tidemill_offsets` (next to the target table) holds, per
//! (pipeline, topic, partition), the next offset to read and a *generation*.
//! Each assignment of a partition claims a new generation; a batch advances a
//! partition's offset only if the generation it was built under is still the
//! current one. A batch from an older owner (a zombie that lost its assignment
//! while paused) therefore fails its transaction and is never written
//! ([`SinkError::Fenced`]). Claims and batch commits are serialised by the
//! row lock on the checkpoint row, so a claim always sees every batch that
//! committed before it.
//!
//! A partition also advances only from at or before the batch's first
//! offset: a batch whose checkpoint is already past that committed before —
//! its commit succeeded but the answer was lost with the connection — and
//! its retry fails with [`SinkError::AlreadyCommitted`] instead of writing
//! its rows a second time.

use super::SinkError;
use crate::ident::{Quoting, TableName};
use crate::model::BoxFuture;
use crate::model::{OffsetRange, TopicPartition};
use std::sync::Arc;

mod advance;
pub use advance::{current_sql, standing, verdict, Current, Stored};

pub const TABLE: &str = "tidemill_offsets";

/// One partition's claim: the generation now owned, and where to resume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub tp: TopicPartition,
    pub generation: i64,
    /// `None` when the database has no checkpoint yet (fall back to Kafka's).
    pub next_offset: Option<i64>,
}

/// What a batch advances: an entry per partition it spans.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub pipeline: String,
    pub entries: Vec<Entry>,
}

/// One partition of a [`Checkpoint`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub tp: TopicPartition,
    /// The batch's offsets in this partition; `None`: only check the
    /// generation (an idle partition whose state moved).
    pub offsets: Option<OffsetRange>,
    /// The generation the batch was built under.
    pub generation: i64,
}

impl Entry {
    /// The offset the partition resumes from once the batch has committed.
    pub fn next(&self) -> Option<i64> {
        self.offsets.map(|r| r.last + 1)
    }

    /// The batch's first offset: the checkpoint must not be past it.
    pub fn first(&self) -> Option<i64> {
        self.offsets.map(|r| r.first)
    }
}

/// The checkpoint table of one database; each backend implements it in its
/// folder under [`crate::db`], and advances it inside a batch's transaction
/// there (the last statement of [`super::transact`]).
pub trait OffsetTable: Send + Sync {
    /// Creates the checkpoint table if it does not exist. Members starting
    /// together may race on the `CREATE` (PostgreSQL can then report a unique
    /// violation in its catalog): a failure is fine if the table now exists.
    fn ensure_table(&self) -> BoxFuture<'_, Result<(), SinkError>>;

    /// Claims a new generation for each partition and reads its checkpoint.
    fn claim<'a>(
        &'a self,
        pipeline: &'a str,
        partitions: &'a [TopicPartition],
    ) -> BoxFuture<'a, Result<Vec<Claim>, SinkError>>;

    /// The pipeline's checkpoint rows as they stand now, outside any batch's
    /// transaction ([`standing`] judges a batch by them).
    fn stored<'a>(&'a self, pipeline: &'a str) -> BoxFuture<'a, Result<Vec<Stored>, SinkError>>;
}

/// Handle on the checkpoint table; cheap to clone.
pub type OffsetStore = Arc<dyn OffsetTable>;

/// The checkpoint table's quoted name, in the target table's schema.
pub fn table_for(target: &TableName) -> String {
    target.sibling(TABLE, Quoting::Ansi)
}

/// The checkpoint table's columns (PostgreSQL, SQLite).
pub const COLUMNS: &str = "(pipeline TEXT NOT NULL, topic TEXT NOT NULL, partition_id INTEGER NOT NULL, \
     next_offset BIGINT NOT NULL, generation BIGINT NOT NULL, PRIMARY KEY (pipeline, topic, partition_id))";

/// `CREATE TABLE IF NOT EXISTS` of the checkpoint table, and the probe that
/// tells whether it exists after a failed create.
pub fn create_and_probe_sql(table: &str, columns: &str) -> (String, String) {
    (
        format!("CREATE TABLE IF NOT EXISTS {table} {columns}"),
        format!("SELECT 1 FROM {table} LIMIT 0"),
    )
}

/// The outcome of a race-tolerant `CREATE`: its failure counts only if the
/// table does not exist after all.
pub fn created_or_exists(created: Result<(), sqlx::Error>, exists: bool) -> Result<(), SinkError> {
    match created {
        Err(source) if !exists => Err(SinkError::Checkpoint { source }),
        _ => Ok(()),
    }
}

/// A claim as read back from its row: `next_offset` −1 means none yet.
pub fn claim_of(tp: &TopicPartition, next: i64, generation: i64) -> Claim {
    Claim {
        tp: tp.clone(),
        generation,
        next_offset: (next >= 0).then_some(next),
    }
}

/// Generates a backend's `claim` for databases with `ON CONFLICT … RETURNING`
/// (PostgreSQL, SQLite): one statement per partition.
macro_rules! claim_returning {
    ($name:ident, $db:ty) => {
        async fn $name(
            pool: &sqlx::Pool<$db>,
            table: &str,
            pipeline: &str,
            partitions: &[$crate::model::TopicPartition],
        ) -> Result<Vec<$crate::sink::checkpoint::Claim>, $crate::sink::SinkError> {
            let sql = format!(
                "INSERT INTO {table} (pipeline, topic, partition_id, next_offset, generation) VALUES ($1, $2, $3, -1, 1) \
                 ON CONFLICT (pipeline, topic, partition_id) DO UPDATE SET generation = {table}.generation + 1 \
                 RETURNING next_offset, generation"
            );
            let mut claims = Vec::with_capacity(partitions.len());
            for tp in partitions {
                let (next, generation): (i64, i64) = sqlx::query_as(&sql)
                    .bind(pipeline)
                    .bind(&tp.topic)
                    .bind(tp.partition)
                    .fetch_one(pool)
                    .await
                    .map_err(|source| $crate::sink::SinkError::Checkpoint { source })?;
                claims.push($crate::sink::checkpoint::claim_of(tp, next, generation));
            }
            Ok(claims)
        }
    };
}
pub(crate) use claim_returning;

/// Generates a backend's checkpoint table, `Offsets { pool, table }`: its
/// race-tolerant `CREATE` from the backend's `$columns`, `$claim`, and the
/// read of the stored rows with the backend's first parameter `$param`.
macro_rules! offset_table {
    ($pool:ty, $columns:expr, $claim:path, $param:literal) => {
        /// The checkpoint table of one database of this backend.
        pub struct Offsets {
            pub pool: $pool,
            /// Quoted, next to the target table.
            pub table: String,
        }

        impl $crate::sink::checkpoint::OffsetTable for Offsets {
            fn ensure_table(
                &self,
            ) -> $crate::model::BoxFuture<'_, Result<(), $crate::sink::SinkError>> {
                use $crate::sink::checkpoint::{create_and_probe_sql, created_or_exists};
                Box::pin(async move {
                    let (create, probe) = create_and_probe_sql(&self.table, $columns);
                    let created = sqlx::query(&create).execute(&self.pool).await.map(|_| ());
                    let exists =
                        created.is_ok() || sqlx::query(&probe).execute(&self.pool).await.is_ok();
                    created_or_exists(created, exists)
                })
            }

            fn claim<'a>(
                &'a self,
                pipeline: &'a str,
                partitions: &'a [$crate::model::TopicPartition],
            ) -> $crate::model::BoxFuture<
                'a,
                Result<Vec<$crate::sink::checkpoint::Claim>, $crate::sink::SinkError>,
            > {
                Box::pin($claim(&self.pool, &self.table, pipeline, partitions))
            }

            fn stored<'a>(
                &'a self,
                pipeline: &'a str,
            ) -> $crate::model::BoxFuture<
                'a,
                Result<Vec<$crate::sink::checkpoint::Stored>, $crate::sink::SinkError>,
            > {
                Box::pin(async move {
                    let sql = format!(
                        "SELECT topic, partition_id, generation, next_offset FROM {} WHERE pipeline = {}",
                        self.table, $param
                    );
                    sqlx::query_as(&sql)
                        .bind(pipeline)
                        .fetch_all(&self.pool)
                        .await
                        .map_err(|source| $crate::sink::SinkError::Checkpoint { source })
                })
            }
        }
    };
}
pub(crate) use offset_table;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_table_lives_next_to_the_target() {
        let t = TableName::parse("shop.orders", false).expect("valid");
        assert_eq!(table_for(&t), r#""shop"."tidemill_offsets""#);
    }
}
