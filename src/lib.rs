//! tidemill: Kafka → transform → database, committing offsets only after the
//! database has the rows.
//!
//! The modules follow the flow of a record:
//!
//! 1. [`source`] — consumer group member; polls, and owns the rebalance callbacks;
//! 2. [`ingest`] — pure and synchronous: payload bytes → JSON
//!    ([`ingest::decode`]) → rows ([`ingest::transform`], jq steps) → the open
//!    [`model::Batch`] ([`ingest::batch`]);
//! 3. [`state`] — keyed operators (aggregates, windows, dedup, your own) with
//!    their state loaded from and written to the database, in the writer;
//! 4. [`sink`] — the writer: one transaction per batch, rows, state and the
//!    exactly-once checkpoint together, with retries, on whichever database
//!    [`db`] opened (one folder each: PostgreSQL, MySQL/MariaDB, SQLite);
//! 5. [`commit`] — acknowledged batches → the Kafka offsets to commit, as a
//!    value the source executes (its one call that moves them).
//!
//! [`pipeline`] wires one pipeline; [`model`] holds the messages between stages;
//! [`dead_letter`] sends what cannot be loaded to the dead-letter topic, with
//! its reason; [`config`], [`check`] and [`demo`] surround it;
//! [`kafka_refusal`] says in words why a broker refused the client; [`observe`]
//! is everything an operator sees: counts, metrics, traces, logs and health.

pub mod check;
pub mod codec;
pub mod commit;
pub mod config;
pub mod db;
pub mod dead_letter;
pub mod demo;
pub mod ident;
pub mod ingest;
pub mod kafka_refusal;
pub mod model;
pub mod observe;
pub mod pipeline;
pub mod sink;
pub mod source;
pub mod state;
