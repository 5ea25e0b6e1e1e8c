//! The engine's view of a stateful step ([`Stage`]), and the per-partition
//! event-time progress ([`Mark`]) every time-aware step keeps.

use super::item::{Item, Rejected};
use super::store::{Loaded, OpWrites};
use super::KeySpec;
use crate::model::TopicPartition;
use crate::state::StateError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The reserved state key of a partition's watermark (never valid JSON, so
/// it cannot collide with a record's key, which is stored as JSON text).
pub const MARK_KEY: &str = "#watermark";

/// A partition's event-time progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    /// Highest event time seen.
    pub max: i64,
    /// Floor set by idleness (wall-clock advance).
    pub floor: i64,
}

impl Default for Mark {
    fn default() -> Self {
        Self {
            max: i64::MIN,
            floor: i64::MIN,
        }
    }
}

impl Mark {
    pub fn watermark(&self, lateness: i64) -> i64 {
        self.max.saturating_sub(lateness).max(self.floor)
    }
}

/// A stateful step as the engine drives it (object-safe, synchronous).
pub trait Stage: Send + Sync {
    fn name(&self) -> &str;
    /// Drops cached state of partitions claimed anew since it was cached.
    fn begin(&mut self, parts: &[TopicPartition], generations: &BTreeMap<TopicPartition, i64>);
    /// Computes each item's key; returns the (partition, key) pairs to load.
    fn prepare(
        &mut self,
        items: &[Item],
        parts: &[TopicPartition],
    ) -> Vec<(TopicPartition, String)>;
    /// Keys the last `prepare` found in the cache.
    fn hits(&self) -> u64;
    /// Refuses (as a record error) keys longer than the state table holds.
    fn limit_keys(&mut self, max_chars: usize);
    /// Takes over the `key` step just before it: keys records by `spec`
    /// itself (same keys, same refusals), so the key is built once per key
    /// instead of once per record. False when the stage keys records its own
    /// way and the `key` step must run.
    fn key_by(&mut self, spec: &KeySpec) -> bool;
    fn install(
        &mut self,
        requested: &[(TopicPartition, String)],
        loaded: Vec<Loaded>,
        parts: &[TopicPartition],
    ) -> Result<(), StateError>;
    fn process<'a>(
        &mut self,
        items: Vec<Item<'a>>,
        idle: &[(u32, i64)],
        rejected: &mut Vec<Rejected>,
    ) -> Vec<Item<'a>>;
    /// Partitions whose watermark moved, with it: states due by then must be loaded.
    fn due(&self) -> Vec<(u32, i64)>;
    fn fire_due(
        &mut self,
        part: u32,
        watermark: i64,
        loaded: Vec<(String, String)>,
        parts: &[TopicPartition],
    ) -> Result<Vec<Item<'static>>, StateError>;
    fn writes(&self, parts: &[TopicPartition]) -> Result<OpWrites, StateError>;
    fn commit(&mut self, parts: &[TopicPartition]);
    fn rollback(&mut self);
}
