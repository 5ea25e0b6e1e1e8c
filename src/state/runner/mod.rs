//! Runs one [`KeyedOperator`] over a batch: the batch's working states, the
//! partitions' watermarks, and what to write back.
//!
//! A working state is found once per record (`prepare` keeps its index) and
//! comes out of the cache for the batch: [`Stage::commit`] puts it back, a
//! rollback drops it (the cache then misses and the database's committed
//! state is loaded again), so the cache still holds committed state only.

use super::cache::Cache;
use super::item::{Item, Rejected};
use super::operator::{Context, KeyedOperator, OperatorError};
use super::stage::{Mark, Stage, MARK_KEY};
use super::store::{Loaded, OpWrites};
use super::KeySpec;
use crate::model::{Row, TopicPartition};
use crate::state::StateError;
use foldhash::{HashMap, HashMapExt};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

mod work;

use work::context;

/// A state row's address in the batch's JSON for the state table: topic,
/// partition, key (the SQL reads the fields by name).
#[derive(Serialize)]
struct StateKey<'a> {
    t: &'a str,
    p: i32,
    k: &'a str,
}

/// A state row to upsert: its address (as in [`StateKey`]), the state as JSON
/// text, and when it is due.
#[derive(Serialize)]
struct StateRow<'a> {
    t: &'a str,
    p: i32,
    k: &'a str,
    s: String,
    d: Option<i64>,
}

/// A state being worked on in the current batch.
struct Work<S> {
    /// Index into the batch's partition list.
    part: u32,
    key: Value,
    state: Option<S>,
    dirty: bool,
    touched: bool,
    /// The last record that touched it: (offset, raw index), for emitted rows.
    last: (i64, Option<u32>),
}

pub struct Runner<O: KeyedOperator> {
    name: String,
    op: O,
    /// Key columns added to emitted rows.
    key_columns: KeySpec,
    /// The operator's own key (dedup by field) instead of the item's.
    key_from: Option<KeySpec>,
    /// The `key` step this stage took over (see [`Stage::key_by`]): items
    /// arrive with their Kafka key and are keyed by these fields here.
    key_by: Option<KeySpec>,
    cache: Cache<O::State>,
    marks_cache: HashMap<TopicPartition, (i64, Mark)>,
    /// The batch's working states, found by (partition index, key text):
    /// one lookup per record, in `prepare`.
    working: HashMap<(u32, String), usize>,
    works: Vec<Work<O::State>>,
    marks: HashMap<u32, (Mark, bool)>,
    /// Per item of the batch: the index of its working state in `works`, or
    /// why it has no key.
    slots: Vec<Result<usize, String>>,
    /// The generation of each partition of the current batch.
    generations: HashMap<TopicPartition, i64>,
    hits: u64,
    max_key_chars: usize,
}

impl<O: KeyedOperator> Runner<O> {
    pub fn new(
        name: String,
        op: O,
        key_columns: KeySpec,
        key_from: Option<KeySpec>,
        capacity: usize,
    ) -> Self {
        Self {
            name,
            op,
            key_columns,
            key_from,
            key_by: None,
            cache: Cache::new(capacity),
            marks_cache: HashMap::new(),
            working: HashMap::new(),
            works: Vec::new(),
            marks: HashMap::new(),
            slots: Vec::new(),
            generations: HashMap::new(),
            hits: 0,
            max_key_chars: usize::MAX,
        }
    }
}

impl<O: KeyedOperator> Stage for Runner<O> {
    fn name(&self) -> &str {
        &self.name
    }

    fn hits(&self) -> u64 {
        self.hits
    }

    fn limit_keys(&mut self, max_chars: usize) {
        self.max_key_chars = max_chars;
    }

    fn key_by(&mut self, spec: &KeySpec) -> bool {
        if self.key_from.is_some() {
            return false;
        }
        self.key_by = Some(spec.clone());
        true
    }

    fn begin(&mut self, parts: &[TopicPartition], generations: &BTreeMap<TopicPartition, i64>) {
        for tp in parts {
            let g = generations.get(tp).copied().unwrap_or(-1);
            self.generations.insert(tp.clone(), g);
            self.cache.check_generation(tp, g);
            if self
                .marks_cache
                .get(tp)
                .is_some_and(|(cached, _)| *cached != g)
            {
                self.marks_cache.remove(tp);
            }
        }
    }

    fn prepare(
        &mut self,
        items: &[Item],
        parts: &[TopicPartition],
    ) -> Vec<(TopicPartition, String)> {
        let mut misses = Vec::new();
        self.hits = 0;
        self.slots.clear();
        // One probe reused for every record: a key's text is copied only when
        // it starts a working state, not per record.
        let mut probe = (0, String::new());
        for item in items {
            let found = self.slot_of(item, parts, &mut probe, &mut misses);
            self.slots.push(found);
        }
        if self.op.uses_time() {
            for (i, tp) in parts.iter().enumerate() {
                match self.marks_cache.get(tp) {
                    Some((_, mark)) => {
                        self.marks.insert(i as u32, (*mark, false));
                    }
                    None => misses.push((tp.clone(), MARK_KEY.to_string())),
                }
            }
        }
        misses
    }

    fn install(
        &mut self,
        _requested: &[(TopicPartition, String)],
        loaded: Vec<Loaded>,
        parts: &[TopicPartition],
    ) -> Result<(), StateError> {
        for (tp, key, json) in loaded {
            let Some(part) = Self::part_of(parts, &tp) else {
                continue;
            };
            if key == MARK_KEY {
                let mark: Mark = serde_json::from_str(&json).map_err(|e| StateError::Format {
                    operator: self.name.clone(),
                    message: format!("watermark: {e}"),
                })?;
                self.marks.insert(part, (mark, false));
            } else {
                let state = self.decode(&key, &json)?;
                if let Some(&i) = self.working.get(&(part, key)) {
                    self.works[i].state = Some(state);
                }
            }
        }
        Ok(())
    }

    fn process<'a>(
        &mut self,
        items: Vec<Item<'a>>,
        idle: &[(u32, i64)],
        rejected: &mut Vec<Rejected>,
    ) -> Vec<Item<'a>> {
        let slots = std::mem::take(&mut self.slots);
        let mut out = Vec::with_capacity(items.len());
        for (item, slot) in items.into_iter().zip(slots) {
            match slot {
                Ok(i) => self.process_one(item, i, &mut out, rejected),
                Err(message) => rejected.push(Rejected::of(&item, OperatorError::Record(message))),
            }
        }
        for (part, idle_ms) in idle {
            let Some(timeout) = self.op.idle_timeout_ms() else {
                continue;
            };
            if let Some((mark, dirty)) = self.marks.get_mut(part) {
                // Idle past the timeout, the watermark follows the wall clock,
                // `timeout` behind it: a record arriving now is not late.
                let floor = mark.max.saturating_add(*idle_ms - timeout);
                if mark.max > i64::MIN && floor > mark.floor {
                    mark.floor = floor;
                    *dirty = true;
                }
            }
        }
        let lateness = self.op.allowed_lateness_ms();
        for work in self.works.iter_mut().filter(|w| w.touched) {
            let wm = self
                .marks
                .get(&work.part)
                .map_or(i64::MIN, |(m, _)| m.watermark(lateness));
            let mut rows = Vec::new();
            let mut cx = context(&self.key_columns, &work.key, wm, wm, &mut rows);
            self.op.touched(&mut cx, &mut work.state);
            work.touched = false;
            out.extend(Self::emitted(rows, work.part, work.last, None, &work.key));
        }
        out
    }

    fn due(&self) -> Vec<(u32, i64)> {
        let lateness = self.op.allowed_lateness_ms();
        self.marks
            .iter()
            .filter(|(_, (m, _))| m.max > i64::MIN)
            .map(|(part, (m, _))| (*part, m.watermark(lateness)))
            .collect()
    }

    fn fire_due(
        &mut self,
        part: u32,
        wm: i64,
        loaded: Vec<(String, String)>,
        parts: &[TopicPartition],
    ) -> Result<Vec<Item<'static>>, StateError> {
        let tp = &parts[part as usize];
        for (key, json) in loaded {
            let slot = (part, key);
            if self.working.contains_key(&slot) {
                continue;
            }
            let state = match self.cache.get(tp, &slot.1) {
                Some(cached) => cached.clone(),
                None => Some(self.decode(&slot.1, &json)?),
            };
            let value: Value = serde_json::from_str(&slot.1).map_err(|e| StateError::Format {
                operator: self.name.clone(),
                message: format!("key {}: {e}", slot.1),
            })?;
            self.working.insert(slot, self.works.len());
            self.works.push(Work::new(part, value, state));
        }
        let mut out = Vec::new();
        for work in self.works.iter_mut().filter(|w| w.part == part) {
            let due = work.state.as_ref().and_then(|s| self.op.due_at(s));
            if due.is_none_or(|d| d > wm) {
                continue;
            }
            let mut rows = Vec::new();
            let mut cx = context(&self.key_columns, &work.key, wm, wm, &mut rows);
            self.op.on_due(&mut cx, &mut work.state);
            work.dirty = true;
            out.extend(Self::emitted(rows, part, work.last, None, &work.key));
        }
        Ok(out)
    }

    fn writes(&self, parts: &[TopicPartition]) -> Result<OpWrites, StateError> {
        let mut upserts = Vec::new();
        let mut deletes = Vec::new();
        let encode = |e: serde_json::Error| StateError::Format {
            operator: self.name.clone(),
            message: e.to_string(),
        };
        for ((part, key), &i) in &self.working {
            let work = &self.works[i];
            if !work.dirty {
                continue;
            }
            let tp = &parts[*part as usize];
            let (t, p, k) = (tp.topic.as_str(), tp.partition, key.as_str());
            match &work.state {
                Some(s) => upserts.push(StateRow {
                    t,
                    p,
                    k,
                    s: serde_json::to_string(s).map_err(encode)?,
                    d: self.op.due_at(s),
                }),
                None => deletes.push(StateKey { t, p, k }),
            }
        }
        for (part, (mark, dirty)) in &self.marks {
            if *dirty {
                let tp = &parts[*part as usize];
                upserts.push(StateRow {
                    t: &tp.topic,
                    p: tp.partition,
                    k: MARK_KEY,
                    s: serde_json::to_string(mark).map_err(encode)?,
                    d: None,
                });
            }
        }
        Ok(OpWrites {
            operator: self.name.clone(),
            upserts: serde_json::to_string(&upserts).map_err(encode)?,
            deletes: serde_json::to_string(&deletes).map_err(encode)?,
        })
    }

    fn commit(&mut self, parts: &[TopicPartition]) {
        for ((part, key), i) in self.working.drain() {
            let state = self.works[i].state.take();
            self.cache.put(&parts[part as usize], key, state);
        }
        self.works.clear();
        for (part, (mark, _)) in self.marks.drain() {
            let tp = &parts[part as usize];
            let generation = self.generations.get(tp).copied().unwrap_or(-1);
            self.marks_cache.insert(tp.clone(), (generation, mark));
        }
        self.cache.end_batch();
    }

    fn rollback(&mut self) {
        self.working.clear();
        self.works.clear();
        self.marks.clear();
        self.slots.clear();
    }
}
