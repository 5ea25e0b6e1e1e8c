//! What flows through the stateful tail: a row with where it came from
//! ([`Item`]), and a record the tail refused ([`Rejected`]) with its origin,
//! so the writer can dead-letter it. Plain data, shared by the engine, its
//! stages and runners.

use super::operator::OperatorError;
use crate::model::Row;
use serde_json::Value;
use std::borrow::Cow;

/// A row on its way through the tail, with where it came from. Rows of the
/// batch are borrowed (the batch stays intact for a retry); rows a step made
/// are owned.
#[derive(Debug, Clone)]
pub struct Item<'a> {
    pub row: Cow<'a, Row>,
    /// Index into the batch's partition list.
    pub part: u32,
    /// The record's offset; for rows a state emitted on its own, the last
    /// record that touched it (`-1` when none in this batch).
    pub offset: i64,
    pub kafka_ts: Option<i64>,
    /// The current state key (the Kafka key until a `key` step).
    pub key: Value,
    /// Index into the batch's raw records, when kept.
    pub raw: Option<u32>,
}

/// Where an output row came from, for dead letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowOrigin {
    pub part: u32,
    pub offset: i64,
    pub raw: Option<u32>,
}

/// A record the tail refused.
#[derive(Debug, Clone)]
pub struct Rejected {
    pub origin: RowOrigin,
    pub late: bool,
    pub message: String,
}

impl Rejected {
    pub fn of(item: &Item, e: OperatorError) -> Self {
        Self {
            origin: RowOrigin {
                part: item.part,
                offset: item.offset,
                raw: item.raw,
            },
            late: matches!(e, OperatorError::Late(_)),
            message: e.to_string(),
        }
    }
}
