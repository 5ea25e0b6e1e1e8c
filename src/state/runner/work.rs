//! The runner's per-record work: decoding stored states, building an
//! operator's [`Context`], and turning what it emits into rows.

use super::*;
use std::borrow::Cow;
use std::fmt::Write as _;

impl<O: KeyedOperator> Runner<O> {
    pub(super) fn decode(&self, key: &str, json: &str) -> Result<O::State, StateError> {
        serde_json::from_str(json).map_err(|e| StateError::Format {
            operator: self.name.clone(),
            message: format!("key {key}: {e}"),
        })
    }

    pub(super) fn part_of(parts: &[TopicPartition], tp: &TopicPartition) -> Option<u32> {
        parts
            .iter()
            .position(|p| p == tp)
            .and_then(|i| u32::try_from(i).ok())
    }

    pub(super) fn emitted<'k, 'a>(
        rows: Vec<Row>,
        part: u32,
        (offset, raw): (i64, Option<u32>),
        kafka_ts: Option<i64>,
        key: &'k Value,
    ) -> impl Iterator<Item = Item<'a>> + use<'k, 'a, O> {
        rows.into_iter().map(move |row| Item {
            row: Cow::Owned(row),
            part,
            offset,
            kafka_ts,
            key: key.clone(),
            raw,
        })
    }

    /// The index of the item's working state, started (from the cache, or
    /// empty and listed in `misses` to be loaded) on the key's first record.
    /// `probe` is scratch space for the key's text.
    pub(super) fn slot_of(
        &mut self,
        item: &Item,
        parts: &[TopicPartition],
        probe: &mut (u32, String),
        misses: &mut Vec<(TopicPartition, String)>,
    ) -> Result<usize, String> {
        probe.0 = item.part;
        probe.1.clear();
        let derived = match (&self.key_from, &self.key_by) {
            (Some(spec), _) => {
                let key = spec.of(&item.row, &Value::Null)?;
                // `Display` of a JSON value is its compact text, as `to_string`.
                write!(probe.1, "{key}").map_err(|e| e.to_string())?;
                Some(key)
            }
            (None, Some(spec)) => {
                spec.write_text(&item.row, &item.key, &mut probe.1)?;
                None
            }
            (None, None) => {
                KeySpec::KafkaKey.write_text(&item.row, &item.key, &mut probe.1)?;
                None
            }
        };
        // Bytes bound characters: counted only when the bound is near.
        if probe.1.len() > self.max_key_chars {
            let chars = probe.1.chars().count();
            if chars > self.max_key_chars {
                return Err(format!(
                    "the state key is {chars} characters; this database's state table holds at most {}",
                    self.max_key_chars
                ));
            }
        }
        if let Some(&i) = self.working.get(&*probe) {
            return Ok(i);
        }
        let tp = &parts[item.part as usize];
        // Out of the cache while the batch works on it (commit puts it back).
        let (text, state) = match self.cache.take(tp, &probe.1) {
            Some((text, state)) => {
                self.hits += 1;
                (String::from(text), state)
            }
            None => {
                misses.push((tp.clone(), probe.1.clone()));
                (probe.1.clone(), None)
            }
        };
        let value = match (derived, &self.key_by) {
            (Some(key), _) => key,
            (None, Some(spec)) => spec.of(&item.row, &item.key)?,
            (None, None) => item.key.clone(),
        };
        let i = self.works.len();
        self.works.push(Work::new(item.part, value, state));
        self.working.insert((item.part, text), i);
        Ok(i)
    }

    /// Folds one item into its key's working state (`works[slot]`).
    pub(super) fn process_one<'a>(
        &mut self,
        item: Item<'a>,
        slot: usize,
        idle_marks: &mut Vec<Item<'a>>,
        rejected: &mut Vec<Rejected>,
    ) {
        let t = if self.op.uses_time() {
            match self.op.event_time(&item.row, item.kafka_ts) {
                Ok(t) => t,
                Err(e) => return rejected.push(Rejected::of(&item, e)),
            }
        } else {
            0
        };
        let lateness = self.op.allowed_lateness_ms();
        let wm = self
            .marks
            .get(&item.part)
            .map_or(i64::MIN, |(m, _)| m.watermark(lateness));
        let Some(work) = self.works.get_mut(slot) else {
            return rejected.push(Rejected::of(
                &item,
                OperatorError::Record("state not loaded".into()),
            ));
        };
        let mut out = Vec::new();
        let result = {
            let mut cx = context(&self.key_columns, &work.key, t, wm, &mut out);
            self.op.process(&mut cx, &mut work.state, &item.row)
        };
        match result {
            Ok(()) => {
                work.dirty = true;
                work.touched = true;
                work.last = (item.offset, item.raw);
                idle_marks.extend(Self::emitted(
                    out,
                    item.part,
                    work.last,
                    item.kafka_ts,
                    &work.key,
                ));
                if self.op.uses_time() {
                    let (mark, dirty) = self
                        .marks
                        .entry(item.part)
                        .or_insert((Mark::default(), false));
                    if t > mark.max {
                        mark.max = t;
                        *dirty = true;
                    }
                }
            }
            Err(e) => rejected.push(Rejected::of(&item, e)),
        }
    }
}

impl<S> Work<S> {
    pub(super) fn new(part: u32, key: Value, state: Option<S>) -> Self {
        Self {
            part,
            key,
            state,
            dirty: false,
            touched: false,
            last: (-1, None),
        }
    }
}

/// An operator's view of one key (taken from the runner's fields, so the
/// working state can be borrowed mutably beside it).
pub(super) fn context<'a>(
    key_columns: &'a KeySpec,
    key: &'a Value,
    event_time: i64,
    watermark: i64,
    out: &'a mut Vec<Row>,
) -> Context<'a> {
    Context {
        key,
        key_columns,
        event_time,
        watermark,
        out,
    }
}
