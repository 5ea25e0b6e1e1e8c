//! Ingest: one consumed record → rows in the open batch. Decode
//! ([`decode`]), transform ([`transform`]), batch ([`batch`]); pure and
//! synchronous, so it is tested without Kafka.
//!
//! Contract:
//! - [`Ingest::push`] either adds the record to the open batch — its rows
//!   (none when the transforms filtered it), a delete (a tombstone, with the
//!   sink's `delete` on), a change stream's truncate (with
//!   `sink.apply_truncate` on) or nothing but its offset (a skipped
//!   tombstone) — or refuses it and adds nothing ([`Refusal`] says why).
//! - A refused record's offset counts only after [`Ingest::push_refused`],
//!   which the source calls once the record's dead letter is durable: a
//!   record is never both out of the batch and out of the dead-letter topic.
//! - Records of one partition enter the batch in offset order ([`batch`]).
//! - A change stream's events (`format = "debezium"`) become upserts and
//!   deletes by key ([`decode::debezium`]); configured lineage columns are
//!   stamped into every row a record becomes ([`lineage`]).
//!
//! Sending dead letters, pacing, and handing batches to the writer are the
//! source's (I/O); the batch itself is the only output.

pub mod batch;
pub mod decode;
pub mod lineage;
mod tombstone;
pub mod transform;

use crate::config::DecodeFormat;
use crate::dead_letter::Reason;
use crate::model::{RawRecord, Row, TopicPartition};
use batch::Batcher;
use decode::debezium::{self, Change};
use decode::Decoder;
use serde_json::Value;
use tracing::warn;
use transform::Chain;

/// One consumed record, as ingest reads it (borrowed from the consumer).
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    pub tp: &'a TopicPartition,
    pub offset: i64,
    pub timestamp_ms: Option<i64>,
    pub key: Option<&'a [u8]>,
    pub payload: Option<&'a [u8]>,
    /// A change stream's delete that is a primary-key change: the new key
    /// (Debezium's `__debezium.newkey` header).
    pub new_key: Option<&'a [u8]>,
}

impl Incoming<'_> {
    /// Payload and key bytes: what the record weighs in a batch.
    pub fn bytes(&self) -> usize {
        self.payload.map_or(0, <[u8]>::len) + self.key.map_or(0, <[u8]>::len)
    }
}

/// What [`Ingest::push`] did with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Its rows (possibly none: filtered) are in the batch.
    Rows,
    /// The row its key names is to be deleted (a tombstone, `delete` on).
    Delete,
    /// A tombstone skipped (`delete` off): only its offset is in the batch.
    SkippedTombstone,
    /// A change stream's truncate (`sink.apply_truncate` on): the table is
    /// emptied in the batch's transaction.
    Truncate,
}

/// Why a record cannot be ingested: dead-letter it with this reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason: Reason,
    pub message: String,
}

/// The ingest stage of one pipeline.
pub struct Ingest {
    decoder: Decoder,
    chain: Chain,
    /// The open batch; the source reads its size and takes it when due.
    pub batcher: Batcher,
    /// With the sink's `delete` on: the key columns a tombstone's key names.
    delete_keys: Option<Vec<String>>,
    /// Whether rows' metadata carries the Kafka key (for the stateful steps).
    kafka_keys: bool,
    /// Whether a change stream's truncate empties the table.
    truncates: bool,
    /// The current record's rows on their way into the batch (one buffer
    /// reused for every record).
    rows: Vec<Row>,
    /// Lineage columns stamped into every row, when configured.
    lineage: Option<lineage::Stamp>,
    /// The ordering guard's column (`sink.order_column`): each change's
    /// source order is written into it, deletes' keys included.
    order: Option<String>,
}

impl Ingest {
    pub fn new(decoder: Decoder, chain: Chain, batcher: Batcher) -> Self {
        Self {
            decoder,
            chain,
            batcher,
            delete_keys: None,
            kafka_keys: true,
            truncates: false,
            rows: Vec::new(),
            lineage: None,
            order: None,
        }
    }

    /// Writes each change's source order into this column (upserts and
    /// deletes); tombstones are then only offsets (the delete before one
    /// carries the order; the tombstone, replayed alone, would not).
    pub fn with_order(mut self, column: Option<String>) -> Self {
        self.order = column;
        self
    }

    /// Stamps these lineage columns into every row.
    pub fn with_lineage(mut self, stamp: Option<lineage::Stamp>) -> Self {
        self.lineage = stamp;
        self
    }

    /// A change stream's truncates empty the table instead of being
    /// dead-lettered.
    pub fn with_truncates(mut self, on: bool) -> Self {
        self.truncates = on;
        self
    }

    /// Tombstones delete the row their key names (by these key columns)
    /// instead of being skipped.
    pub fn with_deletes(mut self, key_columns: Option<Vec<String>>) -> Self {
        self.delete_keys = key_columns;
        self
    }

    /// Whether rows carry their record's Kafka key to the stateful steps
    /// (on by default; off when those steps never read it).
    pub fn with_kafka_keys(mut self, on: bool) -> Self {
        self.kafka_keys = on;
        self
    }

    /// Whether records' primary-key changes matter (a change stream with
    /// deletes): the source then reads the new key from the headers.
    pub fn reads_key_changes(&self) -> bool {
        self.decoder.format() == DecodeFormat::Debezium && self.delete_keys.is_some()
    }

    /// Decodes and transforms one record into the open batch; on a refusal
    /// nothing of it is there. `raw` is the record as it arrived (kept with
    /// its rows when the batch keeps originals, for dead letters).
    pub fn push(
        &mut self,
        rec: &Incoming<'_>,
        raw: impl FnOnce() -> RawRecord,
    ) -> Result<Pushed, Refusal> {
        let refuse = |reason, message: String| Refusal { reason, message };
        let value = match self.decoder.decode(rec.payload) {
            Err(e) => return Err(refuse(Reason::Decode, e.to_string())),
            Ok(Some(value)) => value,
            Ok(None) => return self.push_tombstone(rec, raw),
        };
        let (value, source) = match self.decoder.format() {
            DecodeFormat::Json => (value, None),
            DecodeFormat::Debezium => match debezium::event(value) {
                Ok((Change::Upsert(row), source)) => (Value::Object(row), Some(source)),
                Ok((Change::Delete, source)) => {
                    return self.push_delete(rec, source.order, rec.new_key)
                }
                Ok((Change::Truncate, _)) if self.truncates => {
                    let (tp, offset, ts, bytes) =
                        (rec.tp, rec.offset, rec.timestamp_ms, rec.bytes());
                    self.batcher.push_truncate(tp, offset, ts, bytes);
                    return Ok(Pushed::Truncate);
                }
                Ok((Change::Truncate, _)) => {
                    return Err(refuse(
                        Reason::Decode,
                        "a truncate of the source table is not applied to the target \
                         (sink.apply_truncate is off)"
                            .into(),
                    ))
                }
                Err(e) => return Err(refuse(Reason::Decode, e.to_string())),
            },
        };
        self.chain
            .apply_into(value, &mut self.rows)
            .map_err(|e| refuse(Reason::Transform, e.to_string()))?;
        if let Some(stamp) = &self.lineage {
            stamp.stamp(&mut self.rows, rec, source.as_ref());
        }
        if let Some(column) = &self.order {
            let order = source
                .and_then(|s| s.order)
                .map_or(Value::Null, Value::String);
            for row in &mut self.rows {
                row.insert(column.clone(), order.clone());
            }
        }
        self.push_rows(rec, raw);
        Ok(Pushed::Rows)
    }

    /// A refused record whose dead letter is durable: its offset counts as
    /// done (it carries no rows).
    pub fn push_refused(&mut self, rec: &Incoming<'_>, raw: impl FnOnce() -> RawRecord) {
        // `apply_into` left no row of the refused record behind.
        self.rows.clear();
        self.push_rows(rec, raw);
    }

    /// Tombstones bypass the transforms.
    fn push_tombstone(
        &mut self,
        rec: &Incoming<'_>,
        raw: impl FnOnce() -> RawRecord,
    ) -> Result<Pushed, Refusal> {
        if self.delete_keys.is_none() || self.order.is_some() {
            self.push_rows(rec, raw);
            return Ok(Pushed::SkippedTombstone);
        }
        self.push_delete(rec, None, None)
    }

    /// The row the record's key names, deleted (bypassing the transforms);
    /// with the ordering guard, the key carries the change's `order`. A
    /// primary-key change (`new_key`) copies the row to its new key first.
    fn push_delete(
        &mut self,
        rec: &Incoming<'_>,
        order: Option<String>,
        new_key: Option<&[u8]>,
    ) -> Result<Pushed, Refusal> {
        let refuse = |message: String| Refusal {
            reason: Reason::Key,
            message,
        };
        let Some(keys) = &self.delete_keys else {
            return Err(refuse(
                "a delete needs sink.key_columns to name its row".into(),
            ));
        };
        // A change stream's key is Debezium's key struct, maybe wrapped.
        let change_stream = self.decoder.format() == DecodeFormat::Debezium;
        let key_of = |bytes: Option<&[u8]>| {
            let unwrapped = bytes.filter(|_| change_stream).and_then(debezium::key);
            tombstone::delete_key(keys, unwrapped.as_deref().or(bytes))
        };
        let mut key = key_of(rec.key).map_err(refuse)?;
        if let Some(column) = &self.order {
            key.insert(column.clone(), order.map_or(Value::Null, Value::String));
        }
        let (tp, offset, ts, bytes) = (rec.tp, rec.offset, rec.timestamp_ms, rec.bytes());
        // A new key that names no row is a plain delete: the old key must
        // go whatever the header says (its tombstone may be skipped).
        let to = new_key.and_then(|b| {
            key_of(Some(b))
                .inspect_err(|e| warn!(error = %e, "a key change's new key names no row; deleting the old key only"))
                .ok()
        });
        match to {
            Some(to) => self.batcher.push_move(tp, offset, ts, bytes, key, to),
            None => self.batcher.push_delete(tp, offset, ts, bytes, key),
        }
        Ok(Pushed::Delete)
    }

    fn push_rows(&mut self, rec: &Incoming<'_>, raw: impl FnOnce() -> RawRecord) {
        let kafka_keys = self.kafka_keys;
        let (key, timestamp_ms) = (rec.key, rec.timestamp_ms);
        self.batcher.push(
            rec.tp,
            rec.offset,
            timestamp_ms,
            rec.bytes(),
            self.rows.drain(..),
            raw,
            || {
                let key = if kafka_keys {
                    kafka_key(key)
                } else {
                    serde_json::Value::Null
                };
                (timestamp_ms, key)
            },
        );
    }
}

/// A Kafka key as a JSON value: its text when UTF-8, else `0x` and hex digits.
pub fn kafka_key(bytes: Option<&[u8]>) -> Value {
    match bytes {
        None => Value::Null,
        Some(b) => match std::str::from_utf8(b) {
            Ok(s) => Value::String(s.to_string()),
            Err(_) => {
                let mut hex = String::with_capacity(2 + 2 * b.len());
                hex.push_str("0x");
                for byte in b {
                    hex.push_str(&format!("{byte:02x}"));
                }
                Value::String(hex)
            }
        },
    }
}

#[cfg(test)]
mod tests;
