//! What the writer writes for a batch: its rows (borrowed from the batch
//! unless something changes them), where each row came from, the state it
//! changes and the keys it deletes.
//!
//! Guarantees: converting to the columns' types never reorders the rows that
//! stay; a row that does not fit leaves the output with its column and reason
//! (for the dead-letter topic) and is taken off its partition's row count, so
//! the per-partition metrics count only rows loaded. Nothing here does I/O.

use super::collapse::collapse;
use super::order::{newest_only, Newest};
use super::refused::{partition_of, Refused, Source};
use super::types::RowTypes;
use crate::dead_letter::Reason;
use crate::model::{Batch, Delete, Move, Row, TopicPartition};
use crate::state::StateWrites;
use std::borrow::Cow;
use std::collections::BTreeMap;
use tracing::warn;

/// A batch's output: rows, where each came from, the state it changes.
pub(super) struct Output<'a> {
    /// Borrowed from the batch when no stateful tail ran (no copy per batch).
    pub(super) rows: Cow<'a, [Row]>,
    pub(super) origins: Vec<Source>,
    pub(super) writes: Option<StateWrites>,
    /// Rows per source partition.
    pub(super) by_partition: BTreeMap<TopicPartition, u64>,
    /// Keys of the rows to delete before the rows are written.
    pub(super) deletes: Vec<Row>,
    /// Empty the table first (a change stream's truncate).
    pub(super) truncate: bool,
    /// Primary-key changes: rows copied to their new keys before the deletes.
    pub(super) moves: Cow<'a, [Move]>,
}

impl Output<'_> {
    /// Converts every row to its columns' types ([`RowTypes`]); the rows that
    /// do not fit leave the output and are returned, with column and reason.
    /// (Without a dead-letter topic no origins are kept; the first refusal
    /// then stops the pipeline, so its source is never read.)
    pub(super) fn convert(&mut self, types: &RowTypes) -> Vec<Refused> {
        let mut unfit = Vec::new();
        let mut kept = 0;
        let tracked = self.origins.len() == self.rows.len();
        let total = self.rows.len();
        // The rows stay borrowed from the batch (kept whole for a retry) unless
        // a value is rewritten (timestamps, uuids, bytes) or a row refused:
        // then they are copied out of it, once.
        for i in 0..total {
            match types.changes(&self.rows[i]) {
                Ok(changes) => {
                    if !changes.is_empty() || kept != i {
                        let rows = self.rows.to_mut();
                        for (column, value) in changes {
                            if let Some(slot) = rows[i].get_mut(&column) {
                                *slot = value;
                            }
                        }
                        rows.swap(kept, i);
                        if tracked {
                            self.origins.swap(kept, i);
                        }
                    }
                    kept += 1;
                }
                Err(refusal) => unfit.push(Refused {
                    source: self.origins.get(i).copied().unwrap_or(Source::Raw(i)),
                    reason: Reason::Data,
                    message: refusal.to_string(),
                    column: Some(refusal.column),
                }),
            }
        }
        if kept < total {
            self.rows.to_mut().truncate(kept);
            if tracked {
                self.origins.truncate(kept);
            }
        }
        unfit
    }

    /// Converts the delete keys like rows (a UUID key in any case matches; a
    /// bare `42` becomes a number for an integer key); a key that cannot be a
    /// value of its column names no row, so its delete is dropped — counted
    /// and logged — instead of failing the batch. Returns how many were.
    pub(super) fn convert_deletes(&mut self, types: &RowTypes) -> u64 {
        let before = self.deletes.len();
        self.deletes.retain_mut(|key| match types.convert_key(key) {
            Ok(()) => true,
            Err(refusal) => {
                warn!(column = %refusal.column, reason = %refusal.reason, "a tombstone's key does not fit its column, so it names no row; nothing to delete");
                false
            }
        });
        (before - self.deletes.len()) as u64
    }

    /// Converts the key changes' keys as the deletes' are; a key change
    /// whose key cannot be a value of its column copies nothing (its
    /// delete is dropped the same way): left out, logged.
    pub(super) fn convert_moves(&mut self, types: &RowTypes) {
        if self.moves.is_empty() {
            return;
        }
        self.moves.to_mut().retain_mut(|m| {
            let converted = types.convert_key(&mut m.from);
            match converted.and_then(|()| types.convert_key(&mut m.to)) {
                Ok(()) => true,
                Err(refusal) => {
                    warn!(column = %refusal.column, reason = %refusal.reason, "a key change's key does not fit its column; the row is not copied");
                    false
                }
            }
        });
    }
}

/// The batch's rows as they are, with its deletes collapsed into them: a row
/// followed by a delete of its key is not written (nor counted as loaded).
/// With the ordering guard (`order`, its column), a change older than an
/// earlier one of its key in the batch is dropped first ([`newest_only`]).
pub(super) fn stateless_output<'b>(
    key_columns: &[String],
    order: Option<&str>,
    batch: &'b Batch,
) -> Output<'b> {
    let by_partition: BTreeMap<TopicPartition, u64> = batch
        .tally
        .iter()
        .map(|(tp, t)| (tp.clone(), t.rows))
        .collect();
    let origins = batch.row_source.iter().map(|&i| Source::Raw(i));
    let newest = order
        .map(|column| newest_only(key_columns, column, &batch.rows, &batch.deletes))
        .filter(Newest::drops);
    if batch.deletes.is_empty() && batch.truncate_at.is_none() && newest.is_none() {
        return Output {
            // Borrowed: no copy of the rows per batch.
            rows: Cow::Borrowed(&batch.rows),
            origins: origins.collect(),
            writes: None,
            by_partition,
            deletes: Vec::new(),
            truncate: false,
            moves: Cow::Borrowed(&[]),
        };
    }
    collapsed_output(key_columns, batch, newest.as_ref(), by_partition)
}

/// [`stateless_output`] of a batch with deletes, a truncate or changes the
/// ordering guard drops: the rows kept are copied out of it.
fn collapsed_output<'b>(
    key_columns: &[String],
    batch: &'b Batch,
    newest: Option<&Newest>,
    mut by_partition: BTreeMap<TopicPartition, u64>,
) -> Output<'b> {
    // A truncate supersedes the rows and deletes before it.
    let cut = batch.truncate_at.unwrap_or(0);
    let newer = |i: usize, d: &Delete| {
        newest.is_none_or(|n| n.deletes[i]) && batch.truncate_at.is_none_or(|c| d.after > c)
    };
    let deletes: Cow<[Delete]> = if batch.truncate_at.is_none() && newest.is_none() {
        Cow::Borrowed(&batch.deletes)
    } else {
        let kept = batch
            .deletes
            .iter()
            .enumerate()
            .filter(|(i, d)| newer(*i, d));
        kept.map(|(_, d)| d.clone()).collect()
    };
    let collapsed = collapse(key_columns, &batch.rows, &deletes);
    let newest_row = |i: usize| newest.is_none_or(|n| n.rows[i]);
    let mut rows = Vec::with_capacity(batch.rows.len());
    let mut kept_origins = Vec::with_capacity(batch.row_source.len());
    let origins = batch.row_source.iter().map(|&i| Source::Raw(i));
    let mut origins = origins.map(Some).chain(std::iter::repeat(None));
    for (i, (row, keep)) in batch.rows.iter().zip(&collapsed.keep).enumerate() {
        let origin = origins.next().flatten();
        if *keep && i >= cut && newest_row(i) {
            rows.push(row.clone());
            kept_origins.extend(origin);
        } else if let Some(origin) = origin {
            if let Some(n) = by_partition.get_mut(&partition_of(batch, origin)) {
                *n = n.saturating_sub(1);
            }
        }
    }
    Output {
        rows: Cow::Owned(rows),
        origins: kept_origins,
        writes: None,
        by_partition,
        deletes: collapsed.deletes,
        truncate: batch.truncate_at.is_some(),
        // A truncate after a key change (always its batch's first) supersedes it.
        moves: if batch.truncate_at.is_some() {
            Cow::Borrowed(&[])
        } else {
            Cow::Borrowed(&batch.moves)
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i64) -> Row {
        serde_json::json!({ "id": id })
            .as_object()
            .expect("an object")
            .clone()
    }

    #[test]
    fn a_truncate_supersedes_the_rows_and_deletes_before_it() {
        let keys = ["id".to_string()];
        let batch = Batch {
            rows: vec![row(1), row(2), row(3), row(4)],
            deletes: vec![
                Delete {
                    key: row(1),
                    after: 1,
                },
                Delete {
                    key: row(3),
                    after: 4,
                },
            ],
            truncate_at: Some(2),
            ..Batch::default()
        };
        let out = stateless_output(&keys, None, &batch);
        assert!(out.truncate, "the table is emptied first");
        assert_eq!(
            *out.rows,
            [row(4)],
            "3 deleted after the truncate, 1 and 2 before it"
        );
        assert_eq!(out.deletes, [row(3)], "only the delete after the truncate");
    }

    #[test]
    fn the_ordering_guard_drops_a_change_older_than_one_before_it_in_the_batch() {
        let at = |id: i64, pos: &str| {
            serde_json::json!({ "id": id, "pos": pos })
                .as_object()
                .expect("an object")
                .clone()
        };
        let batch = Batch {
            rows: vec![at(1, "09"), at(1, "05"), at(2, "01")],
            deletes: vec![Delete {
                key: at(2, "00"),
                after: 3,
            }],
            ..Batch::default()
        };
        let out = stateless_output(&["id".to_string()], Some("pos"), &batch);
        assert_eq!(
            *out.rows,
            [at(1, "09"), at(2, "01")],
            "1@05 is older than 1@09"
        );
        assert!(
            out.deletes.is_empty(),
            "the delete of 2 is older than its row"
        );
    }

    #[test]
    fn without_a_truncate_nothing_is_emptied() {
        let batch = Batch {
            rows: vec![row(1)],
            ..Batch::default()
        };
        let out = stateless_output(&["id".to_string()], None, &batch);
        assert!(!out.truncate);
        assert_eq!(*out.rows, [row(1)]);
    }
}
