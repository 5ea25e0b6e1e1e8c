//! The public API for keyed operators: implement [`KeyedOperator`] for your own
//! stateful logic, register it in a [`crate::state::Registry`] and hand that
//! to [`crate::pipeline::Pipeline::prepare_with`].
//!
//! Contract the engine keeps for every operator:
//! - `process` sees the records of one partition in offset order, each with
//!   the state of its key as of the previous record (`None` for a new key).
//! - The state after a batch is written in the same database transaction as
//!   the batch's output rows and offsets; a crash or a rebalance replays from
//!   the last committed state, so an operator never sees a record twice
//!   against state that already includes it.
//! - State is serialised with serde (JSON) into tidemill's state table; a
//!   `None` state deletes the key's entry.
//!
//! Operators are pure and synchronous: no I/O, no clocks — time is the
//! record's event time and the partition's watermark, both given.

use crate::model::Row;
use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;

/// Why one record could not be processed; the record goes to the dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OperatorError {
    /// The record itself is at fault (a field of the wrong type, …).
    #[error("{0}")]
    Record(String),
    /// The record arrived after its window closed.
    #[error("late record: {0}")]
    Late(String),
}

/// What an operator sees of the record and its time.
pub struct Context<'a> {
    pub(crate) key: &'a Value,
    pub(crate) key_columns: &'a super::KeySpec,
    pub(crate) event_time: i64,
    pub(crate) watermark: i64,
    pub(crate) out: &'a mut Vec<Row>,
}

impl Context<'_> {
    /// The state key: the Kafka key as a string, or an array of the `key` step's fields.
    pub fn key(&self) -> &Value {
        self.key
    }

    /// Event time of the record in ms since the epoch (in `on_due`: the watermark).
    pub fn event_time(&self) -> i64 {
        self.event_time
    }

    /// The partition's watermark in ms: records with event time below it are late.
    pub fn watermark(&self) -> i64 {
        self.watermark
    }

    /// Emits a row as it is, without the key's columns (pass-through operators).
    pub fn pass(&mut self, row: Row) {
        self.out.push(row);
    }

    /// Emits an output row; the key's columns are added to it.
    pub fn emit(&mut self, mut row: Row) {
        self.key_columns.fill(self.key, &mut row);
        self.out.push(row);
    }
}

/// A keyed, stateful operator. One instance serves every key and partition.
pub trait KeyedOperator: Send + Sync + 'static {
    /// Per-key state, stored as JSON between batches.
    type State: Serialize + DeserializeOwned + Clone + Send + Sync + 'static;

    /// Folds one record into its key's state, possibly emitting rows. On
    /// error, leave `state` as it was: the record is dead-lettered.
    fn process(
        &self,
        cx: &mut Context<'_>,
        state: &mut Option<Self::State>,
        record: &Row,
    ) -> Result<(), OperatorError>;

    /// Called once per batch for each key the batch touched, after its records
    /// (running totals emit their current row here).
    fn touched(&self, _cx: &mut Context<'_>, _state: &mut Option<Self::State>) {}

    /// The watermark at which `on_due` must see this state (a window's end, an
    /// expiry); `None` never.
    fn due_at(&self, _state: &Self::State) -> Option<i64> {
        None
    }

    /// The partition's watermark reached `due_at`: emit final rows, drop what
    /// is closed. The default drops the state.
    fn on_due(&self, _cx: &mut Context<'_>, state: &mut Option<Self::State>) {
        *state = None;
    }

    /// Whether the operator works on event time (watermarks, `due_at`). When
    /// false, `event_time` is never called and no watermark is kept.
    fn uses_time(&self) -> bool {
        false
    }

    /// The record's event time; the default is the Kafka timestamp.
    fn event_time(&self, _record: &Row, kafka_ms: Option<i64>) -> Result<i64, OperatorError> {
        kafka_ms.ok_or_else(|| OperatorError::Record("the record has no Kafka timestamp".into()))
    }

    /// Watermark = highest event time seen on the partition − this (ms).
    fn allowed_lateness_ms(&self) -> i64 {
        0
    }

    /// After this long (ms) without records, a partition's watermark follows
    /// the wall clock; `None`: only records move it.
    fn idle_timeout_ms(&self) -> Option<i64> {
        None
    }
}
