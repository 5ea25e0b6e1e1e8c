//! The runner's per-record work: decoding stored states, building an
//! operator's [`Context`], and turning what it emits into rows.

use super::*;
use std::borrow::Cow;

impl<O: KeyedOperator> Runner<O> {
    pub(super) fn decode(&self, key: &str, json: &str) -> Result<O::State, SinkError> {
        serde_json::from_str(json).map_err(|e| SinkError::StateFormat {
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

    pub(super) fn context<'a>(
        &'a self,
        key: &'a Value,
        t: i64,
        wm: i64,
        out: &'a mut Vec<Row>,
    ) -> Context<'a> {
        Context {
            key,
            key_columns: &self.key_columns,
            event_time: t,
            watermark: wm,
            out,
        }
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

    /// Folds one item into its key's working state.
    pub(super) fn process_one<'a>(
        &mut self,
        item: Item<'a>,
        key: String,
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
        let Some(work) = self.working.get_mut(&(item.part, key)) else {
            return rejected.push(Rejected::of(
                &item,
                OperatorError::Record("state not loaded".into()),
            ));
        };
        let mut out = Vec::new();
        let result = {
            let mut cx = Context {
                key: &work.key,
                key_columns: &self.key_columns,
                event_time: t,
                watermark: wm,
                out: &mut out,
            };
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
