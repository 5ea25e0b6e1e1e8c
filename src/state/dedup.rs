//! Dedup: passes a record on unless its id was seen within the TTL.
//!
//! The id is the state key (Kafka key or the `key` step's fields) or, with
//! `field`, that field's value. Time is the Kafka timestamp; an id is
//! forgotten (its state deleted) once the partition's watermark passes
//! `first seen + ttl`, so state stays bounded by the TTL's worth of ids.

use super::operator::{Context, KeyedOperator, OperatorError};
use crate::model::Row;

#[derive(Debug, Clone)]
pub struct Dedup {
    ttl: i64,
}

impl Dedup {
    pub fn new(ttl: std::time::Duration) -> Self {
        Self {
            ttl: i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX),
        }
    }
}

impl KeyedOperator for Dedup {
    /// When the id was first seen (event time, ms).
    type State = i64;

    fn process(
        &self,
        cx: &mut Context<'_>,
        state: &mut Option<i64>,
        record: &Row,
    ) -> Result<(), OperatorError> {
        let t = cx.event_time();
        match state {
            Some(seen) if t < seen.saturating_add(self.ttl) => {}
            _ => {
                *state = Some(t);
                cx.pass(record.clone());
            }
        }
        Ok(())
    }

    fn due_at(&self, seen: &i64) -> Option<i64> {
        Some(seen.saturating_add(self.ttl))
    }

    fn uses_time(&self) -> bool {
        true
    }
}
