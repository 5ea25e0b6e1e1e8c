//! Batching: gathers rows and the offsets they came from until a batch is due.
//!
//! A batch is due when it holds `max_rows` records or `max_bytes` of source
//! payload, when `max_linger` has passed since its first record, or — for low
//! latency — whenever the writer is idle (the source decides that part).
//! Batching never reorders: records of one partition appear in a batch in
//! offset order, and batches are handed on in order.

use crate::config::BatchConfig;
use crate::model::{Batch, PartitionTally, RawRecord, RecordLink, Row, RowMeta, TopicPartition};
use crate::observe::trace::MAX_LINKS;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Batcher {
    max_rows: usize,
    max_bytes: usize,
    max_linger: Duration,
    current: Batch,
    opened_at: Option<Instant>,
    next_id: u64,
    /// Keep each record's original bytes with its rows (only needed to
    /// dead-letter rows the database refuses).
    keep_raw: bool,
    /// Keep each row's origin (partition, offset, timestamp, Kafka key), for
    /// the stateful transforms that run in the writer.
    keep_meta: bool,
    /// Batches closed early (before a key change), handed on first.
    sealed: std::collections::VecDeque<Batch>,
}

impl Batcher {
    pub fn new(cfg: &BatchConfig, keep_raw: bool, keep_meta: bool) -> Self {
        Self {
            max_rows: cfg.max_rows,
            max_bytes: cfg.max_bytes,
            max_linger: cfg.max_linger,
            current: Batch {
                id: 1,
                ..Batch::default()
            },
            opened_at: None,
            next_id: 2,
            keep_raw,
            keep_meta,
            sealed: std::collections::VecDeque::new(),
        }
    }

    /// Adds a primary-key change: the delete of the old key `from`, which
    /// also copies the row to `to` first. A key change is the first change
    /// of its batch (the open one is closed before it when it holds any), so
    /// the copy sees every change before it committed.
    #[allow(clippy::too_many_arguments)]
    pub fn push_move(
        &mut self,
        tp: &TopicPartition,
        offset: i64,
        timestamp_ms: Option<i64>,
        bytes: usize,
        from: Row,
        to: Row,
    ) {
        let c = &self.current;
        if !(c.rows.is_empty() && c.deletes.is_empty() && c.truncate_at.is_none()) {
            if let Some(batch) = self.close() {
                self.sealed.push_back(batch);
            }
        }
        self.current.moves.push(crate::model::Move {
            from: from.clone(),
            to,
        });
        self.push_delete(tp, offset, timestamp_ms, bytes, from);
    }

    /// Adds one consumed record: its offset, Kafka timestamp, payload size and
    /// the rows it became (none when filtered out or dead-lettered). `raw`
    /// travels with its rows, and so does `meta` — the record's (timestamp,
    /// Kafka key) — when kept.
    #[allow(clippy::too_many_arguments)]
    pub fn push(
        &mut self,
        tp: &TopicPartition,
        offset: i64,
        timestamp_ms: Option<i64>,
        bytes: usize,
        rows: impl IntoIterator<Item = Row, IntoIter: ExactSizeIterator>,
        raw: impl FnOnce() -> RawRecord,
        meta: impl FnOnce() -> (Option<i64>, serde_json::Value),
    ) {
        let rows = rows.into_iter();
        let count = rows.len();
        self.account(tp, offset, timestamp_ms, bytes, count);
        let mut raw_index = None;
        if self.keep_raw && count > 0 {
            let source = self.current.raw.len();
            raw_index = u32::try_from(source).ok();
            self.current.raw.push(raw());
            self.current
                .row_source
                .extend(std::iter::repeat_n(source, count));
        }
        if self.keep_meta && count > 0 {
            let part = self.current.part_index(tp);
            let (timestamp_ms, key) = meta();
            let m = RowMeta {
                part,
                offset,
                timestamp_ms,
                key,
                raw: raw_index,
            };
            self.current.meta.extend(std::iter::repeat_n(m, count));
        }
        self.current.rows.extend(rows);
    }

    /// Accounts for one consumed record that became `rows` rows.
    fn account(
        &mut self,
        tp: &TopicPartition,
        offset: i64,
        timestamp_ms: Option<i64>,
        bytes: usize,
        rows: usize,
    ) {
        if self.opened_at.is_none() {
            self.opened_at = Some(Instant::now());
        }
        self.current.track(tp, offset);
        self.current.bytes += bytes;
        self.current.records += 1;
        self.tally(tp, timestamp_ms, rows);
    }

    /// Adds one tombstone that deletes the row with `key`: its offset is
    /// accounted for like any record's, and the delete keeps its place among
    /// the rows.
    pub fn push_delete(
        &mut self,
        tp: &TopicPartition,
        offset: i64,
        timestamp_ms: Option<i64>,
        bytes: usize,
        key: Row,
    ) {
        self.account(tp, offset, timestamp_ms, bytes, 0);
        let after = self.current.rows.len();
        self.current
            .deletes
            .push(crate::model::Delete { key, after });
    }

    /// Adds a change stream's truncate: its offset is accounted for like any
    /// record's; the table is emptied after the rows before it.
    pub fn push_truncate(
        &mut self,
        tp: &TopicPartition,
        offset: i64,
        timestamp_ms: Option<i64>,
        bytes: usize,
    ) {
        self.account(tp, offset, timestamp_ms, bytes, 0);
        self.current.truncate_at = Some(self.current.rows.len());
    }

    pub fn is_empty(&self) -> bool {
        self.current.is_empty() && self.sealed.is_empty()
    }

    /// Counts a record's rows and timestamp for the metrics.
    fn tally(&mut self, tp: &TopicPartition, timestamp_ms: Option<i64>, rows: usize) {
        if let Some(ts) = timestamp_ms {
            self.current.timestamps.push(ts);
            self.current
                .fetched_ms
                .push(crate::observe::stats::now_ms() as i64);
        }
        // Look up before inserting: no key clone per record.
        if let Some(tally) = self.current.tally.get_mut(tp) {
            tally.rows += rows as u64;
            tally.newest_ms = tally.newest_ms.max(timestamp_ms);
        } else {
            let tally = PartitionTally {
                rows: rows as u64,
                newest_ms: timestamp_ms,
            };
            self.current.tally.insert(tp.clone(), tally);
        }
    }

    /// Whether the open batch still has room for a record's trace link.
    pub fn wants_link(&self) -> bool {
        self.current.links.len() < MAX_LINKS
    }

    /// Carries a sampled record's producer context with the open batch
    /// (counted as dropped beyond [`MAX_LINKS`]).
    pub fn link(&mut self, link: RecordLink) {
        if self.wants_link() {
            self.current.links.push(link);
        } else {
            self.current.links_dropped += 1;
        }
    }

    /// A traced record beyond the cap.
    pub fn link_dropped(&mut self) {
        self.current.links_dropped += 1;
    }

    /// Reports an idle partition in the open batch (opening one if needed),
    /// so the writer advances its watermark.
    pub fn mark_idle(&mut self, tp: &TopicPartition, idle_ms: i64) {
        if self.opened_at.is_none() {
            self.opened_at = Some(Instant::now());
        }
        self.current.part_index(tp);
        self.current.idle.retain(|(p, _)| p != tp);
        self.current.idle.push((tp.clone(), idle_ms));
    }

    /// Payload bytes in the open batch.
    /// Payload bytes held: the open batch's and those closed early.
    pub fn bytes(&self) -> usize {
        self.current.bytes + self.sealed.iter().map(|b| b.bytes).sum::<usize>()
    }

    /// Full by size (or a batch closed early waits): hand it on now.
    pub fn is_full(&self) -> bool {
        !self.sealed.is_empty()
            || self.current.records >= self.max_rows
            || self.current.bytes >= self.max_bytes
    }

    /// When the open batch must be handed on at the latest.
    pub fn deadline(&self) -> Option<Instant> {
        self.opened_at.map(|t| t + self.max_linger)
    }

    pub fn is_due(&self, now: Instant) -> bool {
        self.is_full() || self.deadline().is_some_and(|d| now >= d)
    }

    /// Takes a batch closed early, else the open batch if it holds
    /// anything (and opens the next one).
    pub fn take(&mut self) -> Option<Batch> {
        if let Some(sealed) = self.sealed.pop_front() {
            return Some(sealed);
        }
        self.close()
    }

    /// Closes the open batch, if it holds anything, and opens the next one.
    fn close(&mut self) -> Option<Batch> {
        if self.current.is_empty() {
            return None;
        }
        let age_us = self
            .opened_at
            .take()
            .map_or(0, |t| t.elapsed().as_micros() as u64);
        let now_ms = crate::observe::stats::now_ms() as i64;
        self.current.closed_at = Some(Instant::now());
        self.current.closed_ms = now_ms;
        let behind_ms = self
            .current
            .timestamps
            .iter()
            .min()
            .map_or(0, |t| now_ms - t);
        tracing::debug!(
            batch = self.current.id,
            records = self.current.records,
            age_us,
            behind_ms,
            "batch taken"
        );
        let next = Batch {
            id: self.next_id,
            ..Batch::default()
        };
        self.next_id += 1;
        Some(std::mem::replace(&mut self.current, next))
    }
}

#[cfg(test)]
mod tests;
