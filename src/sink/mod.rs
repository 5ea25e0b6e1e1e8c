//! Sink: writes batches into the target table, one database transaction per batch.
//!
//! Contract:
//! - [`Sink::write`] returns `Ok` only after the batch's transaction committed;
//!   on any error nothing of the batch is visible (the transaction rolled back).
//! - Column types come from the target table's own schema, read at start-up.
//!   Before a batch reaches a backend, the [`writer`] checks every value against
//!   its column's type and rewrites it into the form that backend reads exactly
//!   ([`types`]); a row with a value that does not fit is dead-lettered with the
//!   column and the reason, never truncated or coerced. Values of types the
//!   mapping does not know pass through for the database to convert. Values are
//!   always bound parameters (one JSON document, or `?` per value on MySQL),
//!   never SQL text. Fields with no matching column are ignored.
//! - `upsert` keeps the last row per key within a batch, then inserts or
//!   updates; `insert` appends. A batch's deletes (tombstones, with `delete`
//!   on) run before its rows, in the same transaction.
//! - Rows are written with exactly the columns they carry ([`prepare()`]), so a
//!   column absent from a record gets its default (insert) or keeps its value
//!   (upsert).
//! - With `auto_create` the table is created from its declaration at start-up;
//!   with `auto_evolve` a field that is not a column adds a nullable column
//!   ([`ddl`]) before the batch that carries it is written.
//! - Errors carry a [`RetryClass`]; the [`writer`] retries transient ones.
//!
//! Backends: [`postgres`], [`mysql`] (MySQL and MariaDB), [`sqlite`].

pub mod backoff;
pub mod checkpoint;
mod collapse;
mod columnar;
pub mod ddl;
pub mod error;
mod evolve;
pub mod ident;
pub mod isolate;
pub mod mysql;
mod mysql_values;
pub mod observe;
mod output;
mod pg_binary;
mod pg_copy;
mod pool;
pub mod postgres;
mod prepare;
mod refused;
pub mod schema;
pub mod sqlite;
pub mod tls;
mod transact;
pub mod types;
pub mod writer;
mod writer_context;

pub use error::{RetryClass, SinkError};
pub use prepare::{prepare, with_deletes, PreparedBatch, PreparedWrite};

use crate::config::{Backend, SinkConfig};
use crate::state::{StateStore, StateWrites};
use checkpoint::{Checkpoint, OffsetStore};
use schema::TableSchema;
use std::future::Future;

/// A database table that batches are written to.
pub trait Sink: Send + 'static {
    /// The target table as read at start-up.
    fn schema(&self) -> &TableSchema;

    /// One transaction: the deletes, the rows, the keyed state, then the
    /// checkpoint; committed, or rolled back when `commit` is false. Answers
    /// the number of rows the deletes removed.
    fn transact(
        &mut self,
        batch: &PreparedWrite<'_>,
        checkpoint: Option<&Checkpoint>,
        state: Option<&StateWrites>,
        commit: bool,
    ) -> impl Future<Output = Result<u64, SinkError>> + Send;

    /// Adds each field as a nullable column (a column another member added
    /// first counts as added), logs the DDL, then reads the schema again.
    fn add_columns(
        &mut self,
        fields: &[(String, ddl::Inferred)],
    ) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Writes one prepared batch in one transaction — with its checkpoint and
    /// state in exactly-once mode, so rows, state and offsets commit together
    /// or not at all.
    fn write(
        &mut self,
        batch: &PreparedWrite<'_>,
        checkpoint: Option<&Checkpoint>,
        state: Option<&StateWrites>,
    ) -> impl Future<Output = Result<u64, SinkError>> + Send {
        self.transact(batch, checkpoint, state, true)
    }

    /// Writes the batch in a transaction that is always rolled back: whether
    /// the database would accept these rows (used to isolate bad rows).
    fn trial(
        &mut self,
        batch: &PreparedWrite<'_>,
    ) -> impl Future<Output = Result<u64, SinkError>> + Send {
        self.transact(batch, None, None, false)
    }

    /// The exactly-once checkpoint table of this database.
    fn offset_store(&self) -> OffsetStore;

    /// The keyed-state table of this database.
    fn state_store(&self) -> StateStore;
}

/// One of the supported backends, chosen by the URL's scheme.
pub enum AnySink {
    Postgres(postgres::PostgresSink),
    Sqlite(sqlite::SqliteSink),
    MySql(mysql::MySqlSink),
}

impl AnySink {
    /// Connects and reads the target table's schema. Problems with the table
    /// (missing, key columns absent) are `Schema`/`MissingTable` errors.
    pub async fn open(cfg: &SinkConfig) -> Result<Self, SinkError> {
        let sink = match cfg.backend() {
            Some(Backend::Postgres) => AnySink::Postgres(postgres::PostgresSink::open(cfg).await?),
            Some(Backend::Sqlite) => AnySink::Sqlite(sqlite::SqliteSink::open(cfg).await?),
            Some(Backend::MySql) => AnySink::MySql(mysql::MySqlSink::open(cfg).await?),
            None => {
                return Err(SinkError::Schema {
                    table: cfg.table.clone(),
                    message: "unsupported database URL scheme".into(),
                })
            }
        };
        let mut problems = sink.schema().check(cfg.mode, &cfg.key_columns);
        if let Some(backend) = cfg.backend() {
            problems.extend(types::check_overrides(sink.schema(), cfg, backend.into()));
        }
        if !problems.is_empty() {
            return Err(SinkError::Schema {
                table: cfg.table.clone(),
                message: problems.join("; "),
            });
        }
        Ok(sink)
    }

    pub fn schema(&self) -> &TableSchema {
        match self {
            AnySink::Postgres(s) => s.schema(),
            AnySink::Sqlite(s) => s.schema(),
            AnySink::MySql(s) => s.schema(),
        }
    }

    pub fn offset_store(&self) -> OffsetStore {
        match self {
            AnySink::Postgres(s) => s.offset_store(),
            AnySink::Sqlite(s) => s.offset_store(),
            AnySink::MySql(s) => s.offset_store(),
        }
    }

    pub fn state_store(&self) -> StateStore {
        match self {
            AnySink::Postgres(s) => s.state_store(),
            AnySink::Sqlite(s) => s.state_store(),
            AnySink::MySql(s) => s.state_store(),
        }
    }
}
