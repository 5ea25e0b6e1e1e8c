//! Offsets: the only module that moves Kafka offsets.
//!
//! Contract:
//! - A batch's offsets become committable only when its [`BatchAck`] arrives,
//!   i.e. after its database transaction committed.
//! - Per partition, the committed offset advances to just past the highest
//!   *contiguous* acknowledged offset: a batch acknowledged out of order waits
//!   for every earlier batch of that partition. It never passes a record that
//!   is not yet in the database (filtered records are accounted for by the
//!   batch ranges, so they do not hold the offset back).
//! - Nothing is committed for a partition this process does not own: revoked
//!   partitions are forgotten, and acks for them that arrive later are ignored.
//! - A failed commit (e.g. `RebalanceInProgress`) is never treated as success:
//!   a synchronous commit that fails leaves the offset pending; an asynchronous
//!   one (the steady-state path, so the poll thread never waits on the broker)
//!   is reported to [`Committer::commit_failed`], which makes it pending again.
//!   Either way it is retried on the next call.
//!
//! Kafka's committed offset is the *next* offset to read, hence the `+ 1`.

use crate::model::{Batch, BatchAck, OffsetRange, TopicPartition};
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, VecDeque};
use tracing::{debug, warn};

#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// Transient: retried on the next call (rebalance in progress, broker away).
    #[error("kafka commit of {offsets} failed: {source}")]
    Kafka { offsets: String, source: KafkaError },
}

#[derive(Debug, Default)]
struct Progress {
    /// Dispatched batches touching this partition, in dispatch order: (batch id, range, acked).
    in_flight: VecDeque<(u64, OffsetRange, bool)>,
    /// Next offset to read, once everything before it is in the database.
    committable: Option<i64>,
    /// What Kafka last accepted.
    committed: Option<i64>,
}

impl Progress {
    /// The offset to commit, when it advanced past what Kafka last accepted.
    fn pending(&self) -> Option<i64> {
        match (self.committable, self.committed) {
            (Some(next), Some(done)) if next <= done => None,
            (next, _) => next,
        }
    }
}

/// Tracks which offsets are safe to commit, per owned partition.
#[derive(Debug, Default)]
pub struct Committer {
    partitions: BTreeMap<TopicPartition, Progress>,
}

impl Committer {
    /// Starts tracking a partition. `resume` is the exactly-once checkpoint it
    /// resumes from: everything before it is in the database, so it is
    /// committable to Kafka at once (Kafka's offsets may lag after a crash).
    pub fn assign(&mut self, tp: TopicPartition, resume: Option<i64>) {
        let progress = self.partitions.entry(tp).or_default();
        if progress.committable.is_none() {
            progress.committable = resume;
        }
    }

    /// Forgets a revoked partition: later acks for it are ignored.
    pub fn revoke(&mut self, tp: &TopicPartition) {
        self.partitions.remove(tp);
    }

    pub fn owns(&self, tp: &TopicPartition) -> bool {
        self.partitions.contains_key(tp)
    }

    /// Records a batch handed to the sink.
    pub fn dispatched(&mut self, batch: &Batch) {
        for (tp, range) in &batch.offsets {
            if let Some(p) = self.partitions.get_mut(tp) {
                p.in_flight.push_back((batch.id, *range, false));
            }
        }
    }

    /// Records a batch the database has committed.
    pub fn acked(&mut self, ack: &BatchAck) {
        for tp in ack.offsets.keys() {
            let Some(p) = self.partitions.get_mut(tp) else {
                debug!(%tp, batch = ack.id, "ack for a partition no longer owned, ignored");
                continue;
            };
            if let Some(entry) = p.in_flight.iter_mut().find(|e| e.0 == ack.id) {
                entry.2 = true;
            }
            while let Some(&(_, range, true)) = p.in_flight.front() {
                p.committable = Some(range.last + 1);
                p.in_flight.pop_front();
            }
        }
    }

    /// Batches dispatched and not yet acknowledged, for the given partitions (all when `None`).
    pub fn in_flight(&self, only: Option<&[TopicPartition]>) -> usize {
        self.partitions
            .iter()
            .filter(|(tp, _)| only.is_none_or(|o| o.contains(tp)))
            .map(|(_, p)| p.in_flight.len())
            .sum()
    }

    /// Offsets that advanced since the last successful commit.
    pub fn pending(&self) -> BTreeMap<TopicPartition, i64> {
        self.partitions
            .iter()
            .filter_map(|(tp, p)| p.pending().map(|next| (tp.clone(), next)))
            .collect()
    }

    /// Whether some offset advanced past what Kafka last accepted (asked
    /// after every record: it allocates nothing).
    pub fn has_pending(&self) -> bool {
        self.partitions.values().any(|p| p.pending().is_some())
    }

    /// An asynchronous commit of `offsets` failed: make them pending again,
    /// unless a later commit already moved past them.
    pub fn commit_failed(&mut self, offsets: &BTreeMap<TopicPartition, i64>) {
        for (tp, offset) in offsets {
            if let Some(p) = self.partitions.get_mut(tp) {
                if p.committed == Some(*offset) {
                    p.committed = None;
                }
            }
        }
    }

    /// Commits every pending offset to Kafka. With [`CommitMode::Sync`] only
    /// successful commits count; with [`CommitMode::Async`] the offsets count
    /// as committed until [`Committer::commit_failed`] says otherwise.
    pub fn commit<C: ConsumerContext>(
        &mut self,
        consumer: &impl Consumer<C>,
        mode: CommitMode,
    ) -> Result<usize, CommitError> {
        let pending = self.pending();
        if pending.is_empty() {
            return Ok(0);
        }
        let mut tpl = TopicPartitionList::with_capacity(pending.len());
        for (tp, next) in &pending {
            tpl.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(*next))
                .map_err(|source| CommitError::Kafka {
                    offsets: describe(&pending),
                    source,
                })?;
        }
        match consumer.commit(&tpl, mode) {
            // An async commit only fails here when it cannot be queued.
            Ok(()) => {
                for (tp, next) in &pending {
                    if let Some(p) = self.partitions.get_mut(tp) {
                        p.committed = Some(*next);
                    }
                }
                debug!(offsets = %describe(&pending), "committed offsets");
                Ok(pending.len())
            }
            Err(source) => {
                warn!(offsets = %describe(&pending), error = %source, "offset commit failed; will retry");
                Err(CommitError::Kafka {
                    offsets: describe(&pending),
                    source,
                })
            }
        }
    }
}

fn describe(offsets: &BTreeMap<TopicPartition, i64>) -> String {
    offsets
        .iter()
        .map(|(tp, o)| format!("{tp}@{o}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(id: u64, parts: &[(i32, i64, i64)]) -> Batch {
        let mut b = Batch {
            id,
            ..Batch::default()
        };
        for &(p, first, last) in parts {
            b.offsets
                .insert(TopicPartition::new("t", p), OffsetRange { first, last });
        }
        b
    }

    fn ack(b: &Batch) -> BatchAck {
        BatchAck {
            id: b.id,
            offsets: b.offsets.clone(),
            rows: 0,
            bytes: 0,
            trace: None,
            spent: None,
        }
    }

    fn tp(p: i32) -> TopicPartition {
        TopicPartition::new("t", p)
    }

    #[test]
    fn nothing_is_committable_before_the_ack() {
        let mut c = Committer::default();
        c.assign(tp(0), None);
        let b = batch(1, &[(0, 0, 9)]);
        c.dispatched(&b);
        assert!(c.pending().is_empty());
        c.acked(&ack(&b));
        assert_eq!(c.pending()[&tp(0)], 10);
    }

    #[test]
    fn a_resumed_checkpoint_is_committable_at_once() {
        let mut c = Committer::default();
        c.assign(tp(0), Some(42));
        assert_eq!(c.pending()[&tp(0)], 42);
    }

    #[test]
    fn out_of_order_ack_waits_for_earlier_batches() {
        let mut c = Committer::default();
        c.assign(tp(0), None);
        let (b1, b2) = (batch(1, &[(0, 0, 9)]), batch(2, &[(0, 10, 19)]));
        c.dispatched(&b1);
        c.dispatched(&b2);
        c.acked(&ack(&b2));
        assert!(c.pending().is_empty(), "batch 1 not yet in the database");
        c.acked(&ack(&b1));
        assert_eq!(c.pending()[&tp(0)], 20);
        assert_eq!(c.in_flight(None), 0);
    }

    #[test]
    fn partitions_advance_independently() {
        let mut c = Committer::default();
        c.assign(tp(0), None);
        c.assign(tp(1), None);
        let (b1, b2) = (batch(1, &[(0, 0, 4), (1, 0, 4)]), batch(2, &[(1, 5, 9)]));
        c.dispatched(&b1);
        c.dispatched(&b2);
        c.acked(&ack(&b1));
        assert_eq!(c.pending()[&tp(0)], 5);
        assert_eq!(c.pending()[&tp(1)], 5);
        assert_eq!(c.in_flight(Some(&[tp(1)])), 1);
    }

    #[test]
    fn failed_async_commit_becomes_pending_again_unless_superseded() {
        let mut c = Committer::default();
        c.assign(tp(0), None);
        let (b1, b2) = (batch(1, &[(0, 0, 9)]), batch(2, &[(0, 10, 19)]));
        c.dispatched(&b1);
        c.acked(&ack(&b1));
        c.partitions.get_mut(&tp(0)).expect("owned").committed = Some(10);
        assert!(!c.has_pending());
        c.commit_failed(&BTreeMap::from([(tp(0), 10)]));
        assert_eq!(c.pending()[&tp(0)], 10);
        c.dispatched(&b2);
        c.acked(&ack(&b2));
        c.partitions.get_mut(&tp(0)).expect("owned").committed = Some(20);
        c.commit_failed(&BTreeMap::from([(tp(0), 10)]));
        assert!(!c.has_pending(), "a later commit already covers offset 10");
    }

    #[test]
    fn revoked_partition_is_never_committed() {
        let mut c = Committer::default();
        c.assign(tp(0), None);
        let b = batch(1, &[(0, 0, 9)]);
        c.dispatched(&b);
        c.revoke(&tp(0));
        c.acked(&ack(&b));
        assert!(c.pending().is_empty());
        assert!(!c.owns(&tp(0)));
    }
}
