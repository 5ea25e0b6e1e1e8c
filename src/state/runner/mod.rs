//! Runs one [`KeyedOperator`] over a batch: working copies of the batch's
//! states, the partitions' watermarks, and what to write back.

use super::cache::Cache;
use super::engine::{Item, Rejected};
use super::operator::{Context, KeyedOperator, OperatorError};
use super::stage::{Mark, Stage, MARK_KEY};
use super::store::{Loaded, OpWrites};
use super::KeySpec;
use crate::model::{Row, TopicPartition};
use crate::sink::SinkError;
use foldhash::{HashMap, HashMapExt};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

mod work;

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
    cache: Cache<O::State>,
    marks_cache: HashMap<TopicPartition, (i64, Mark)>,
    working: HashMap<(u32, String), Work<O::State>>,
    marks: HashMap<u32, (Mark, bool)>,
    /// Per item of the batch: its key (when the operator derives its own)
    /// and the key's text, or why it has none.
    keys: Vec<Result<(Option<Value>, String), String>>,
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
            cache: Cache::new(capacity),
            marks_cache: HashMap::new(),
            working: HashMap::new(),
            marks: HashMap::new(),
            keys: Vec::new(),
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
        self.keys = items
            .iter()
            .map(|item| {
                let derived = match &self.key_from {
                    Some(spec) => Some(spec.of(&item.row, &Value::Null)?),
                    None => {
                        KeySpec::KafkaKey.check(&item.key)?;
                        None
                    }
                };
                let key = derived.as_ref().unwrap_or(&item.key);
                let text = serde_json::to_string(key).map_err(|e| e.to_string())?;
                let chars = text.chars().count();
                if chars > self.max_key_chars {
                    return Err(format!(
                        "the state key is {chars} characters; this database's state table holds at most {}",
                        self.max_key_chars
                    ));
                }
                Ok((derived, text))
            })
            .collect();
        let mut misses = Vec::new();
        self.hits = 0;
        // One probe reused for every lookup: a key is copied only when it
        // starts a working state, not per record.
        let mut probe = (0, String::new());
        for (item, key) in items.iter().zip(&self.keys) {
            let Ok((derived, text)) = key else { continue };
            probe.0 = item.part;
            probe.1.clear();
            probe.1.push_str(text);
            if self.working.contains_key(&probe) {
                continue;
            }
            let slot = (item.part, text.clone());
            let value = derived.as_ref().unwrap_or(&item.key).clone();
            let tp = &parts[item.part as usize];
            let state = match self.cache.get(tp, text) {
                Some(cached) => {
                    self.hits += 1;
                    cached.clone()
                }
                None => {
                    misses.push((tp.clone(), text.clone()));
                    None
                }
            };
            self.working.insert(
                slot,
                Work {
                    key: value,
                    state,
                    dirty: false,
                    touched: false,
                    last: (-1, None),
                },
            );
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
    ) -> Result<(), SinkError> {
        for (tp, key, json) in loaded {
            let Some(part) = Self::part_of(parts, &tp) else {
                continue;
            };
            if key == MARK_KEY {
                let mark: Mark =
                    serde_json::from_str(&json).map_err(|e| SinkError::StateFormat {
                        operator: self.name.clone(),
                        message: format!("watermark: {e}"),
                    })?;
                self.marks.insert(part, (mark, false));
            } else {
                let state = self.decode(&key, &json)?;
                if let Some(work) = self.working.get_mut(&(part, key)) {
                    work.state = Some(state);
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
        let keys = std::mem::take(&mut self.keys);
        let mut out = Vec::with_capacity(items.len());
        for (item, key) in items.into_iter().zip(keys) {
            match key {
                Ok((_, text)) => self.process_one(item, text, &mut out, rejected),
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
        let touched: Vec<(u32, String)> = self
            .working
            .iter()
            .filter(|(_, w)| w.touched)
            .map(|(k, _)| k.clone())
            .collect();
        for slot in touched {
            let Some(mut work) = self.working.remove(&slot) else {
                continue;
            };
            let wm = self
                .marks
                .get(&slot.0)
                .map_or(i64::MIN, |(m, _)| m.watermark(lateness));
            let mut rows = Vec::new();
            {
                let mut cx = self.context(&work.key, wm, wm, &mut rows);
                self.op.touched(&mut cx, &mut work.state);
            }
            work.touched = false;
            out.extend(Self::emitted(rows, slot.0, work.last, None, &work.key));
            self.working.insert(slot, work);
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
    ) -> Result<Vec<Item<'static>>, SinkError> {
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
            let value: Value =
                serde_json::from_str(&slot.1).map_err(|e| SinkError::StateFormat {
                    operator: self.name.clone(),
                    message: format!("key {}: {e}", slot.1),
                })?;
            self.working.insert(
                slot,
                Work {
                    key: value,
                    state,
                    dirty: false,
                    touched: false,
                    last: (-1, None),
                },
            );
        }
        let due: Vec<(u32, String)> = self
            .working
            .iter()
            .filter(|((p, _), w)| {
                *p == part
                    && w.state
                        .as_ref()
                        .and_then(|s| self.op.due_at(s))
                        .is_some_and(|d| d <= wm)
            })
            .map(|(k, _)| k.clone())
            .collect();
        let mut out = Vec::new();
        for slot in due {
            let Some(mut work) = self.working.remove(&slot) else {
                continue;
            };
            let mut rows = Vec::new();
            {
                let mut cx = self.context(&work.key, wm, wm, &mut rows);
                self.op.on_due(&mut cx, &mut work.state);
            }
            work.dirty = true;
            out.extend(Self::emitted(rows, part, work.last, None, &work.key));
            self.working.insert(slot, work);
        }
        Ok(out)
    }

    fn writes(&self, parts: &[TopicPartition]) -> Result<OpWrites, SinkError> {
        let mut upserts = Vec::new();
        let mut deletes = Vec::new();
        let encode = |e: serde_json::Error| SinkError::StateFormat {
            operator: self.name.clone(),
            message: e.to_string(),
        };
        for ((part, key), work) in self.working.iter().filter(|(_, w)| w.dirty) {
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
        for ((part, key), work) in self.working.drain() {
            self.cache.put(&parts[part as usize], key, work.state);
        }
        for (part, (mark, _)) in self.marks.drain() {
            let tp = &parts[part as usize];
            let generation = self.generations.get(tp).copied().unwrap_or(-1);
            self.marks_cache.insert(tp.clone(), (generation, mark));
        }
        self.cache.end_batch();
    }

    fn rollback(&mut self) {
        self.working.clear();
        self.marks.clear();
        self.keys.clear();
    }
}
