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

use super::ident::{Dialect, TableName};
use super::SinkError;
use crate::model::{OffsetRange, TopicPartition};
use sqlx::{MySqlPool, PgPool, Row as _, SqlitePool};

mod advance;
pub use advance::{advance_mysql, advance_postgres, advance_sqlite};

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

/// Handle on the checkpoint table; cheap to clone.
#[derive(Clone)]
pub enum OffsetStore {
    Postgres { pool: PgPool, table: String },
    Sqlite { pool: SqlitePool, table: String },
    MySql { pool: MySqlPool, table: String },
}

/// The checkpoint table's quoted name, in the target table's schema.
pub fn table_for(target: &TableName) -> String {
    table_for_in(target, Dialect::Ansi)
}

/// [`table_for`] quoted in `dialect`.
pub fn table_for_in(target: &TableName, dialect: Dialect) -> String {
    TableName {
        schema: target.schema.clone(),
        name: TABLE.into(),
    }
    .quoted_in(dialect)
}

const COLUMNS: &str = "(pipeline TEXT NOT NULL, topic TEXT NOT NULL, partition_id INTEGER NOT NULL, \
     next_offset BIGINT NOT NULL, generation BIGINT NOT NULL, PRIMARY KEY (pipeline, topic, partition_id))";

/// MySQL cannot index TEXT in a primary key: VARCHAR(255) (Kafka topic names
/// have at most 249 characters), and InnoDB for the transactions.
const MYSQL_COLUMNS: &str = "(pipeline VARCHAR(255) NOT NULL, topic VARCHAR(255) NOT NULL, \
     partition_id INTEGER NOT NULL, next_offset BIGINT NOT NULL, generation BIGINT NOT NULL, \
     PRIMARY KEY (pipeline, topic, partition_id)) ENGINE = InnoDB";

impl OffsetStore {
    /// Creates the checkpoint table if it does not exist. Members starting
    /// together may race on the `CREATE` (PostgreSQL can then report a unique
    /// violation in its catalog): a failure is fine if the table now exists.
    pub async fn ensure_table(&self) -> Result<(), SinkError> {
        let columns = match self {
            OffsetStore::MySql { .. } => MYSQL_COLUMNS,
            _ => COLUMNS,
        };
        let create = format!("CREATE TABLE IF NOT EXISTS {} {columns}", self.table());
        let probe = format!("SELECT 1 FROM {} LIMIT 0", self.table());
        let created = match self {
            OffsetStore::MySql { pool, .. } => sqlx::query(&create).execute(pool).await.map(|_| ()),
            OffsetStore::Postgres { pool, .. } => {
                sqlx::query(&create).execute(pool).await.map(|_| ())
            }
            OffsetStore::Sqlite { pool, .. } => {
                sqlx::query(&create).execute(pool).await.map(|_| ())
            }
        };
        let Err(source) = created else {
            return Ok(());
        };
        let exists = match self {
            OffsetStore::MySql { pool, .. } => sqlx::query(&probe).execute(pool).await.is_ok(),
            OffsetStore::Postgres { pool, .. } => sqlx::query(&probe).execute(pool).await.is_ok(),
            OffsetStore::Sqlite { pool, .. } => sqlx::query(&probe).execute(pool).await.is_ok(),
        };
        if exists {
            Ok(())
        } else {
            Err(SinkError::Checkpoint { source })
        }
    }

    /// Claims a new generation for each partition and reads its checkpoint.
    pub async fn claim(
        &self,
        pipeline: &str,
        partitions: &[TopicPartition],
    ) -> Result<Vec<Claim>, SinkError> {
        match self {
            OffsetStore::Postgres { pool, table } => {
                claim_postgres(pool, table, pipeline, partitions).await
            }
            OffsetStore::Sqlite { pool, table } => {
                claim_sqlite(pool, table, pipeline, partitions).await
            }
            OffsetStore::MySql { pool, table } => {
                claim_mysql(pool, table, pipeline, partitions).await
            }
        }
    }

    fn table(&self) -> &str {
        match self {
            OffsetStore::Postgres { table, .. }
            | OffsetStore::Sqlite { table, .. }
            | OffsetStore::MySql { table, .. } => table,
        }
    }
}

/// Generates `claim_*` for databases with `ON CONFLICT … RETURNING`.
macro_rules! claim_fn {
    ($name:ident, $db:ty) => {
        async fn $name(
            pool: &sqlx::Pool<$db>,
            table: &str,
            pipeline: &str,
            partitions: &[TopicPartition],
        ) -> Result<Vec<Claim>, SinkError> {
            let sql = format!(
                "INSERT INTO {table} (pipeline, topic, partition_id, next_offset, generation) VALUES ($1, $2, $3, -1, 1) \
                 ON CONFLICT (pipeline, topic, partition_id) DO UPDATE SET generation = {table}.generation + 1 \
                 RETURNING next_offset, generation"
            );
            let mut claims = Vec::with_capacity(partitions.len());
            for tp in partitions {
                let row = sqlx::query(&sql)
                    .bind(pipeline)
                    .bind(&tp.topic)
                    .bind(tp.partition)
                    .fetch_one(pool)
                    .await
                    .map_err(|source| SinkError::Checkpoint { source })?;
                let (next, generation): (i64, i64) = (row.get(0), row.get(1));
                claims.push(Claim {
                    tp: tp.clone(),
                    generation,
                    next_offset: (next >= 0).then_some(next),
                });
            }
            Ok(claims)
        }
    };
}

claim_fn!(claim_postgres, sqlx::Postgres);
claim_fn!(claim_sqlite, sqlx::Sqlite);

/// MySQL has no `RETURNING`: the upsert claims, then a `SELECT` in the same
/// transaction reads the row it holds locked.
async fn claim_mysql(
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
        let row = sqlx::query(&select)
            .bind(pipeline)
            .bind(&tp.topic)
            .bind(tp.partition)
            .fetch_one(&mut *tx)
            .await
            .map_err(err)?;
        let (next, generation): (i64, i64) = (row.get(0), row.get(1));
        claims.push(Claim {
            tp: tp.clone(),
            generation,
            next_offset: (next >= 0).then_some(next),
        });
    }
    tx.commit().await.map_err(err)?;
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_table_lives_next_to_the_target() {
        let t = TableName::parse("shop.orders", false).expect("valid");
        assert_eq!(table_for(&t), r#""shop"."tidemill_offsets""#);
    }
}
