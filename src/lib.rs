//! tidemill: Kafka → transform → database, committing offsets only after the
//! database has the rows.
//!
//! The modules follow the flow of a record:
//!
//! 1. [`source`] — consumer group member; polls, and owns the rebalance callbacks;
//! 2. [`decode`] — payload bytes → JSON;
//! 3. [`transform`] — pure, synchronous jq steps: JSON → rows;
//! 4. [`batch`] — rows + offsets → a [`model::Batch`];
//! 5. [`state`] — keyed operators (aggregates, windows, dedup, your own) with
//!    their state loaded from and written to the database, in the writer;
//! 6. [`sink`] — the writer: one transaction per batch, rows, state and the
//!    exactly-once checkpoint together, with retries, on whichever database
//!    [`db`] opened (one folder each: PostgreSQL, MySQL/MariaDB, SQLite);
//! 7. [`commit`] — acknowledged batches → Kafka offsets (the only module that moves them).
//!
//! [`pipeline`] wires one pipeline; [`model`] holds the messages between stages;
//! [`dead_letter`] sends what cannot be loaded to the dead-letter topic, with
//! its reason; [`config`], [`check`] and [`demo`] surround it;
//! [`kafka_refusal`] says in words why a broker refused the client; [`observe`]
//! is everything an operator sees: counts, metrics, traces, logs and health.

pub mod batch;
pub mod check;
pub mod commit;
pub mod config;
pub mod db;
pub mod dead_letter;
pub mod decode;
pub mod demo;
pub mod kafka_refusal;
pub mod model;
pub mod observe;
pub mod pipeline;
pub mod sink;
pub mod source;
pub mod state;
pub mod transform;
