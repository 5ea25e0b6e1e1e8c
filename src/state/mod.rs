//! Keyed state: the stateful tail of a transform chain, and where its state lives.
//!
//! Contract (exactly-once mode, which stateful pipelines require):
//! - State lives per (pipeline, operator, topic, partition, key) in the target
//!   database, in `tidemill_state` next to `tidemill_offsets`, and is written
//!   in the same transaction as the batch's output rows and offsets. Rows,
//!   state and offsets therefore commit together or not at all: a crash,
//!   rebalance or zombie can neither lose nor double-count a record.
//! - Operators run in the writer, one batch at a time, after the previous
//!   batch committed. The batch's keys that miss the in-memory cache are
//!   loaded in one query per operator; operators work on copies, and the
//!   copies enter the cache only after the transaction committed (a failed or
//!   fenced batch leaves the cache as the database has it).
//! - The cache is bounded (`[pipelines.X.state] cache_entries` per operator)
//!   and tagged with each partition's generation: after a partition is
//!   claimed anew, its cached state is dropped and re-read, so state written
//!   meanwhile by another member is never overlooked.
//! - Time: each operator keeps a watermark per partition (highest event time
//!   − allowed lateness, also stored in the state table); states whose
//!   `due_at` the watermark passed are handed to `on_due` (windows close,
//!   dedup entries expire). A partition read to its end and silent past the
//!   idle timeout advances with the wall clock, lagging it by that timeout.

pub mod aggregate;
mod cache;
pub mod dedup;
mod engine;
pub mod error;
mod item;
mod key;
pub mod operator;
mod runner;
mod running;
mod stage;
pub mod store;
pub mod time;
pub mod window;

pub use engine::{Applied, Engine, Registry};
pub use error::StateError;
pub use item::RowOrigin;
pub use key::KeySpec;
pub use operator::{Context, KeyedOperator, OperatorError};
pub use store::{StateStore, StateTable, StateWrites};
