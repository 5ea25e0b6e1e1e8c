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
//! Backends live in [`crate::db`], one folder each; this module is what they
//! share: the transaction sequence ([`transact`]), the checkpoint, types,
//! identifiers, DDL, and the writer stage that drives any [`Sink`].

pub mod backoff;
pub mod checkpoint;
mod collapse;
pub(crate) mod columnar;
pub mod ddl;
pub mod dialect;
pub mod error;
pub(crate) mod evolve;
pub mod isolate;
pub mod observe;
pub mod order;
mod output;
pub(crate) mod pool;
mod prepare;
mod refused;
pub mod schema;
pub mod tls;
pub(crate) mod transact;
pub mod types;
pub mod writer;
mod writer_context;

pub use error::{RetryClass, SinkError};
pub use prepare::{prepare, with_deletes, PreparedBatch, PreparedWrite};

use crate::model::BoxFuture;
use crate::state::{StateStore, StateWrites};
use checkpoint::{Checkpoint, OffsetStore};
use schema::TableSchema;

/// What one batch's transaction did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Written {
    /// Rows the batch's deletes removed.
    pub deleted: u64,
    /// How long the database's commit took (zero when rolled back).
    pub commit: std::time::Duration,
}

/// A database table that batches are written to. Each backend implements it
/// in its folder under [`crate::db`]; [`crate::db::open`] picks one by URL.
pub trait Sink: Send + 'static {
    /// The target table as read at start-up.
    fn schema(&self) -> &TableSchema;

    /// The database's SQL: how its errors are classified, its types named.
    fn dialect(&self) -> &'static dyn dialect::Dialect;

    /// One transaction: the deletes, the rows, the keyed state, then the
    /// checkpoint; committed, or rolled back when `commit` is false.
    fn transact<'a>(
        &'a mut self,
        batch: &'a PreparedWrite<'_>,
        checkpoint: Option<&'a Checkpoint>,
        state: Option<&'a StateWrites>,
        commit: bool,
    ) -> BoxFuture<'a, Result<Written, SinkError>>;

    /// Adds each field as a nullable column (a column another member added
    /// first counts as added), logs the DDL, then reads the schema again.
    fn add_columns<'a>(
        &'a mut self,
        fields: &'a [(String, ddl::Inferred)],
    ) -> BoxFuture<'a, Result<(), SinkError>>;

    /// Writes one prepared batch in one transaction — with its checkpoint and
    /// state in exactly-once mode, so rows, state and offsets commit together
    /// or not at all.
    fn write<'a>(
        &'a mut self,
        batch: &'a PreparedWrite<'_>,
        checkpoint: Option<&'a Checkpoint>,
        state: Option<&'a StateWrites>,
    ) -> BoxFuture<'a, Result<Written, SinkError>> {
        self.transact(batch, checkpoint, state, true)
    }

    /// Writes the batch in a transaction that is always rolled back: whether
    /// the database would accept these rows (used to isolate bad rows).
    fn trial<'a>(
        &'a mut self,
        batch: &'a PreparedWrite<'_>,
    ) -> BoxFuture<'a, Result<Written, SinkError>> {
        self.transact(batch, None, None, false)
    }

    /// The exactly-once checkpoint table of this database.
    fn offset_store(&self) -> OffsetStore;

    /// The keyed-state table of this database.
    fn state_store(&self) -> StateStore;
}
