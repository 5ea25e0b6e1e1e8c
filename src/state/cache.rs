//! The bounded in-memory cache of committed state, per partition and tagged
//! with the generation it was read under.
//!
//! Holds only what the database holds (entries enter after their transaction
//! committed), including known-absent keys (`None`), so a new key costs one
//! load. Over capacity, entries the last batch did not touch are evicted.

use crate::model::TopicPartition;
use foldhash::{HashMap, HashMapExt};

pub struct Partition<S> {
    generation: i64,
    /// Key → (state, stamp). Keys are boxed and stamps 32-bit so that an entry
    /// of a running aggregate's state (a boxed slice) is 40 bytes.
    entries: HashMap<Box<str>, (Option<S>, u32)>,
}

pub struct Cache<S> {
    capacity: usize,
    len: usize,
    /// Batches committed so far: an entry's stamp is the last batch that used
    /// it. After 4 billion batches every stamp restarts at 0 (see `tick`).
    clock: u32,
    partitions: HashMap<TopicPartition, Partition<S>>,
}

impl<S: Clone> Cache<S> {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            len: 0,
            clock: 0,
            partitions: HashMap::new(),
        }
    }

    /// Drops a partition's entries if it was claimed under another generation since.
    pub fn check_generation(&mut self, tp: &TopicPartition, generation: i64) {
        let stale = self
            .partitions
            .get(tp)
            .is_some_and(|p| p.generation != generation);
        if stale {
            if let Some(p) = self.partitions.remove(tp) {
                self.len -= p.entries.len();
            }
        }
        self.partitions
            .entry(tp.clone())
            .or_insert_with(|| Partition {
                generation,
                entries: HashMap::new(),
            });
    }

    /// `Some(state)` when cached (the state itself may be known-absent).
    pub fn get(&self, tp: &TopicPartition, key: &str) -> Option<&Option<S>> {
        self.partitions.get(tp)?.entries.get(key).map(|(s, _)| s)
    }

    /// Takes a cached entry out (key and state) for a batch to work on: the
    /// batch's commit puts it back through [`Cache::put`], a rollback loses
    /// it (the database still holds it: it is reloaded when next needed).
    /// Taking instead of cloning saves a copy of the state and of the key.
    pub fn take(&mut self, tp: &TopicPartition, key: &str) -> Option<(Box<str>, Option<S>)> {
        let (key, (state, _)) = self.partitions.get_mut(tp)?.entries.remove_entry(key)?;
        self.len -= 1;
        Some((key, state))
    }

    /// Stores committed state, stamped as used by the current batch.
    pub fn put(&mut self, tp: &TopicPartition, key: String, state: Option<S>) {
        let Some(p) = self.partitions.get_mut(tp) else {
            return; // partition not claimed by this writer: nothing to cache
        };
        if p.entries
            .insert(key.into_boxed_str(), (state, self.clock))
            .is_none()
        {
            self.len += 1;
        }
    }

    /// Ends a committed batch: over capacity, evicts down to 90% of it —
    /// entries older batches used first, then any (all are committed state,
    /// so evicting costs a reload, never correctness).
    ///
    /// Each partition gives up its share of the excess, in proportion to its
    /// size, and a table left mostly empty is shrunk: partitions' tables
    /// together stay near `capacity` entries. (Evicting partition by partition
    /// once let every partition's table grow to the whole capacity and keep
    /// it: 46 MB of empty buckets with 1M keys over 8 partitions.)
    pub fn end_batch(&mut self) {
        let clock = self.clock;
        self.tick();
        if self.len <= self.capacity {
            return;
        }
        let target = self.capacity - self.capacity / 10;
        for keep_current in [true, false] {
            let excess = self.len.saturating_sub(target);
            if excess == 0 {
                break;
            }
            let total = self.len;
            for p in self.partitions.values_mut() {
                let before = p.entries.len();
                // Rounded up, so the shares cover the excess.
                let mut quota = (excess * before).div_ceil(total);
                p.entries.retain(|_, (_, used)| {
                    if quota > 0 && (!keep_current || *used < clock) {
                        quota -= 1;
                        false
                    } else {
                        true
                    }
                });
                self.len -= before - p.entries.len();
            }
        }
        for p in self.partitions.values_mut() {
            if p.entries.capacity() > 2 * p.entries.len() + 64 {
                p.entries.shrink_to(p.entries.len() + p.entries.len() / 4);
            }
        }
    }

    /// Advances the clock; where it would wrap, every entry counts as used by
    /// the oldest batch instead.
    fn tick(&mut self) {
        self.clock = self.clock.checked_add(1).unwrap_or_else(|| {
            for p in self.partitions.values_mut() {
                p.entries.values_mut().for_each(|(_, used)| *used = 0);
            }
            1
        });
    }

    /// Buckets allocated across the partitions' tables.
    #[cfg(test)]
    pub fn allocated(&self) -> usize {
        self.partitions.values().map(|p| p.entries.capacity()).sum()
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_entry_is_gone_until_put_back() {
        let tp = TopicPartition::new("t", 0);
        let mut c: Cache<i64> = Cache::new(10);
        c.check_generation(&tp, 1);
        c.put(&tp, "a".into(), Some(1));
        c.put(&tp, "b".into(), None);
        assert_eq!(c.take(&tp, "a"), Some(("a".into(), Some(1))));
        assert_eq!((c.get(&tp, "a"), c.len()), (None, 1));
        assert_eq!(c.take(&tp, "a"), None);
        assert_eq!(c.take(&tp, "b"), Some(("b".into(), None)));
        assert_eq!(c.take(&TopicPartition::new("t", 1), "a"), None);
        c.put(&tp, "a".into(), Some(2));
        assert_eq!((c.get(&tp, "a"), c.len()), (Some(&Some(2)), 1));
    }

    #[test]
    fn a_new_generation_drops_the_partition() {
        let tp = TopicPartition::new("t", 0);
        let mut c: Cache<i64> = Cache::new(10);
        c.check_generation(&tp, 1);
        c.put(&tp, "a".into(), Some(1));
        c.check_generation(&tp, 1);
        assert_eq!(c.get(&tp, "a"), Some(&Some(1)));
        c.check_generation(&tp, 2);
        assert_eq!(c.get(&tp, "a"), None);
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn eviction_prefers_older_entries_and_respects_capacity() {
        let tp = TopicPartition::new("t", 0);
        let mut c: Cache<i64> = Cache::new(10);
        c.check_generation(&tp, 1);
        for i in 0..8 {
            c.put(&tp, format!("old{i}"), Some(i));
        }
        c.end_batch();
        for i in 0..8 {
            c.put(&tp, format!("new{i}"), None);
        }
        c.end_batch();
        assert!(c.len() <= 10, "{}", c.len());
        for i in 0..8 {
            assert!(c.get(&tp, &format!("new{i}")).is_some());
        }
        for i in 0..20 {
            c.put(&tp, format!("more{i}"), None);
        }
        c.end_batch();
        assert_eq!(c.len(), 9, "down to 90% of capacity, even from one batch");
    }

    #[test]
    fn the_clock_restarts_instead_of_wrapping() {
        let tp = TopicPartition::new("t", 0);
        let mut c: Cache<i64> = Cache::new(4);
        c.check_generation(&tp, 1);
        c.clock = u32::MAX;
        c.put(&tp, "old".into(), Some(0));
        c.end_batch();
        assert_eq!(c.clock, 1);
        for i in 0..4 {
            c.put(&tp, format!("new{i}"), Some(i));
        }
        c.end_batch();
        // Over capacity by one: the entry of the batch before the wrap goes first.
        assert_eq!(c.get(&tp, "old"), None);
        assert_eq!(c.len(), 4);
    }

    #[test]
    fn partitions_share_the_capacity_and_their_tables_stay_bounded() {
        let parts: Vec<_> = (0..8).map(|p| TopicPartition::new("t", p)).collect();
        let mut c: Cache<i64> = Cache::new(1_000);
        for tp in &parts {
            c.check_generation(tp, 1);
        }
        // A new key per record, 500 per batch over all partitions: the cache
        // churns for 400 batches.
        for batch in 0..400 {
            for i in 0..500 {
                let tp = &parts[i % parts.len()];
                c.put(tp, format!("k{batch}-{i}"), Some(i as i64));
            }
            c.end_batch();
            assert!(c.len() <= 1_000, "batch {batch}: {} entries", c.len());
        }
        let per_part: Vec<_> = parts
            .iter()
            .map(|tp| c.partitions[tp].entries.len())
            .collect();
        let (min, max) = (per_part.iter().min(), per_part.iter().max());
        assert!(
            matches!((min, max), (Some(&lo), Some(&hi)) if hi - lo <= 10),
            "evenly spread: {per_part:?}"
        );
        assert!(
            c.allocated() <= 4 * 1_000,
            "buckets allocated: {} for {} entries",
            c.allocated(),
            c.len()
        );
    }
}
