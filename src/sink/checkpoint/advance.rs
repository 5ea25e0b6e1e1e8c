//! Advancing a batch's checkpoint inside its transaction: what every
//! backend's statement must do, and why a partition did not move.
//!
//! Every partition the batch spans moves to its next offset only under the
//! generation the batch was built with, and only from at or before the
//! batch's first offset. When a partition does not move, a read in the same
//! transaction says why ([`verdict`]): a newer generation claimed it — the
//! whole transaction fails with [`SinkError::Fenced`] naming those
//! partitions — or, under the batch's own generation, its checkpoint is
//! already past the batch — the batch committed before and its commit's
//! answer was lost ([`SinkError::AlreadyCommitted`]). Either way nothing of
//! this attempt lands. PostgreSQL and MySQL advance all partitions in one
//! statement (one round trip per batch); SQLite, in process, runs one
//! statement per partition.

use super::{Checkpoint, Entry};
use crate::sink::SinkError;

/// A checkpoint row as the transaction sees it: topic, partition, generation.
pub type Current = (String, i32, i64);

/// Why some of `checkpoint`'s partitions did not advance, from the rows the
/// transaction sees (`current`): a generation other than the batch's (or no
/// row) is a fence; with every generation the batch's own, the offset guard
/// stopped them, so the batch committed before.
pub fn verdict(checkpoint: &Checkpoint, current: &[Current]) -> SinkError {
    let generation_of = |e: &Entry| {
        current
            .iter()
            .find(|(t, p, _)| *t == e.tp.topic && *p == e.tp.partition)
            .map(|(_, _, g)| *g)
    };
    let fenced: Vec<&Entry> = checkpoint
        .entries
        .iter()
        .filter(|e| generation_of(e) != Some(e.generation))
        .collect();
    if fenced.is_empty() {
        let moved = checkpoint.entries.iter().filter(|e| e.offsets.is_some());
        SinkError::AlreadyCommitted {
            partitions: names(&moved.collect::<Vec<_>>()),
        }
    } else {
        SinkError::Fenced {
            partitions: names(&fenced),
        }
    }
}

/// A checkpoint row as read outside a transaction: topic, partition,
/// generation, next offset.
pub type Stored = (String, i32, i64, i64);

/// Whether `checkpoint` could still advance, judged from the rows stored
/// now (`stored`) before the batch's transaction: `None` if every partition
/// is still under the batch's generation and not past its first offset;
/// otherwise the error its transaction would end with ([`SinkError::Fenced`]
/// before [`SinkError::AlreadyCommitted`]). The writer asks before it sends a
/// batch's dead letters, so a batch that cannot commit sends none.
pub fn standing(checkpoint: &Checkpoint, stored: &[Stored]) -> Option<SinkError> {
    let row = |e: &Entry| {
        stored
            .iter()
            .find(|(t, p, _, _)| *t == e.tp.topic && *p == e.tp.partition)
    };
    let mut fenced = Vec::new();
    let mut past = Vec::new();
    for e in &checkpoint.entries {
        match row(e) {
            Some((_, _, generation, _)) if *generation != e.generation => fenced.push(e),
            None => fenced.push(e),
            Some((_, _, _, next)) if e.first().is_some_and(|first| *next > first) => past.push(e),
            Some(_) => {}
        }
    }
    if !fenced.is_empty() {
        Some(SinkError::Fenced {
            partitions: names(&fenced),
        })
    } else if !past.is_empty() {
        Some(SinkError::AlreadyCommitted {
            partitions: names(&past),
        })
    } else {
        None
    }
}

/// The partitions of `entries`, for an error: `t/0,t/3`.
fn names(entries: &[&Entry]) -> String {
    entries
        .iter()
        .map(|e| e.tp.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// The checkpoint rows of a pipeline (`$1`), for [`verdict`].
pub fn current_sql(table: &str) -> String {
    format!("SELECT topic, partition_id, generation FROM {table} WHERE pipeline = $1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{OffsetRange, TopicPartition};

    fn entry(partition: i32, offsets: Option<(i64, i64)>, generation: i64) -> Entry {
        Entry {
            tp: TopicPartition::new("t", partition),
            offsets: offsets.map(|(first, last)| OffsetRange { first, last }),
            generation,
        }
    }

    fn checkpoint(entries: Vec<Entry>) -> Checkpoint {
        Checkpoint {
            pipeline: "p".into(),
            entries,
        }
    }

    #[test]
    fn a_newer_generation_is_a_fence_naming_only_its_partitions() {
        let c = checkpoint(vec![entry(0, Some((5, 9)), 3), entry(1, None, 4)]);
        let current = [("t".to_string(), 0, 3), ("t".to_string(), 1, 5)];
        match verdict(&c, &current) {
            SinkError::Fenced { partitions } => assert_eq!(partitions, "t/1"),
            other => panic!("want a fence, got {other:?}"),
        }
    }

    #[test]
    fn a_missing_checkpoint_row_is_a_fence() {
        let c = checkpoint(vec![entry(0, Some((5, 9)), 3)]);
        assert!(matches!(verdict(&c, &[]), SinkError::Fenced { .. }));
    }

    #[test]
    fn a_batch_stands_while_its_generations_own_it_and_nothing_passed_it() {
        let c = checkpoint(vec![entry(0, Some((5, 9)), 3), entry(1, None, 4)]);
        let t = |p, g, n| ("t".to_string(), p, g, n);
        assert!(standing(&c, &[t(0, 3, 5), t(1, 4, 70)]).is_none());
        match standing(&c, &[t(0, 3, 5), t(1, 5, 70)]) {
            Some(SinkError::Fenced { partitions }) => assert_eq!(partitions, "t/1"),
            other => panic!("want a fence, got {other:?}"),
        }
        match standing(&c, &[t(0, 3, 10), t(1, 4, 70)]) {
            Some(SinkError::AlreadyCommitted { partitions }) => assert_eq!(partitions, "t/0"),
            other => panic!("want already committed, got {other:?}"),
        }
        assert!(matches!(
            standing(&c, &[t(1, 4, 70)]),
            Some(SinkError::Fenced { .. })
        ));
    }

    #[test]
    fn under_the_batchs_own_generations_it_committed_before() {
        let c = checkpoint(vec![entry(0, Some((5, 9)), 3), entry(1, None, 4)]);
        let current = [("t".to_string(), 0, 3), ("t".to_string(), 1, 4)];
        match verdict(&c, &current) {
            SinkError::AlreadyCommitted { partitions } => assert_eq!(partitions, "t/0"),
            other => panic!("want already committed, got {other:?}"),
        }
    }
}
