//! tidemill: Kafka → transform → database, committing offsets only after the
//! database has the rows.
//!
//! The modules follow the flow of a record:
//!
//! 1. [`source`] — consumer group member; polls, and owns the rebalance callbacks;
//! 2. [`decode`] — payload bytes → JSON;
//! 3. [`transform`] — pure, synchronous jq steps: JSON → rows;
//! 4. [`batch`] — rows + offsets → a [`model::Batch`];
//! 5. [`sink`] — one transaction per batch (PostgreSQL, SQLite), with retries;
//! 6. [`commit`] — acknowledged batches → Kafka offsets (the only module that moves them).
//!
//! [`pipeline`] wires one pipeline; [`model`] holds the messages between stages;
//! [`config`], [`telemetry`], [`check`] and [`demo`] surround it; [`trace`]
//! carries producers' trace context to the writer's spans, [`stats`] counts and
//! [`metrics`] renders the counts for [`health`]'s `/metrics`.

pub mod batch;
pub mod check;
pub mod commit;
pub mod config;
pub mod dead_letter;
pub mod decode;
pub mod demo;
pub mod health;
pub mod kafka_refusal;
pub mod metrics;
pub mod model;
pub mod pipeline;
pub mod sink;
pub mod source;
pub mod state;
pub mod stats;
pub mod telemetry;
pub mod trace;
pub mod transform;
