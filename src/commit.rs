//! Offsets: the only module that decides which Kafka offsets to commit (the
//! source executes its decision; see the last point below).
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
//!   counts only once Kafka confirms it per partition
//!   ([`Committer::commit_result`]); a partition Kafka refused is retried after
//!   [`RETRY_AFTER`], and a commit not confirmed within [`RESEND_AFTER`] is sent
//!   again. The resend is what makes it hold today: librdkafka hands an
//!   asynchronous `rd_kafka_commit`'s result only to an `offset_commit_cb`, and
//!   rdkafka 0.39 uses the event API without one, so librdkafka logs a failed
//!   async commit (`COMMITFAIL`) and the application never hears of it.
//!   Retries need no new batch: an idle member resends on its poll ticks (one
//!   commit per pipeline every [`RESEND_AFTER`]), so Kafka's committed offsets
//!   converge to what the database holds (lag monitors and autoscalers read
//!   them).
//!
//! - Committing is a value: [`Committer::request`] says what to commit, the
//!   source executes it (the one place that touches the consumer's offsets,
//!   `source/driver/offsets.rs`) and reports back with [`Committer::sent`].
//!   This module never sees Kafka, so every promise above is tested here
//!   with plain values.
//!
//! Kafka's committed offset is the *next* offset to read, hence the `+ 1`.

use crate::model::{Batch, BatchAck, OffsetRange, TopicPartition};
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};
use tracing::debug;

/// How long after Kafka refused a partition's commit it is tried again (a
/// rebalance usually settles within this; no tight loop meanwhile).
pub const RETRY_AFTER: Duration = Duration::from_millis(250);

/// How long an asynchronous commit may stay unconfirmed before it is sent again.
pub const RESEND_AFTER: Duration = Duration::from_secs(5);

/// Offsets to commit to Kafka, per partition the *next* offset to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitRequest {
    pub offsets: BTreeMap<TopicPartition, i64>,
}

impl std::fmt::Display for CommitRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut first = true;
        for (tp, o) in &self.offsets {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            write!(f, "{tp}@{o}")?;
        }
        Ok(())
    }
}

/// How Kafka took a commit request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// A synchronous commit Kafka accepted.
    Confirmed,
    /// An asynchronous commit queued: it counts once Kafka confirms it
    /// ([`Committer::commit_result`]), and is sent again after [`RESEND_AFTER`].
    Queued,
}

#[derive(Debug, Default)]
struct Progress {
    /// Dispatched batches touching this partition, in dispatch order: (batch id, range, acked).
    in_flight: VecDeque<(u64, OffsetRange, bool)>,
    /// Next offset to read, once everything before it is in the database.
    committable: Option<i64>,
    /// What Kafka accepted, or what the commit sent at `unconfirmed` will set.
    committed: Option<i64>,
    /// When the asynchronous commit of `committed` was sent, until Kafka confirms it.
    unconfirmed: Option<Instant>,
    /// Kafka refused the last commit: not before this instant again.
    retry_at: Option<Instant>,
}

impl Progress {
    /// The offset to commit at `now`: it advanced past what Kafka accepted,
    /// or the commit of it went unconfirmed for too long.
    fn pending(&self, now: Instant) -> Option<i64> {
        if self.retry_at.is_some_and(|at| now < at) {
            return None;
        }
        match (self.committable, self.committed) {
            (Some(next), Some(done)) if next <= done => {
                let stale = self
                    .unconfirmed
                    .is_some_and(|sent| now.duration_since(sent) >= RESEND_AFTER);
                stale.then_some(next)
            }
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

    /// Offsets to commit at `now`: advanced since Kafka last accepted them,
    /// or sent and never confirmed.
    pub fn pending(&self, now: Instant) -> BTreeMap<TopicPartition, i64> {
        self.partitions
            .iter()
            .filter_map(|(tp, p)| p.pending(now).map(|next| (tp.clone(), next)))
            .collect()
    }

    /// Whether some offset is to be committed at `now` (asked after every
    /// record: it allocates nothing).
    pub fn has_pending(&self, now: Instant) -> bool {
        self.partitions.values().any(|p| p.pending(now).is_some())
    }

    /// Kafka's answer to an asynchronous commit, per partition: `Ok` confirms
    /// the offset, `Err` makes it pending again after [`RETRY_AFTER`] — unless
    /// a later commit already superseded it.
    pub fn commit_result(&mut self, results: &[(TopicPartition, i64, bool)], now: Instant) {
        for (tp, offset, ok) in results {
            let Some(p) = self.partitions.get_mut(tp) else {
                continue;
            };
            if p.committed != Some(*offset) {
                continue; // superseded by a later commit, which reports for itself
            }
            p.unconfirmed = None;
            if !ok {
                p.committed = None;
                p.retry_at = Some(now + RETRY_AFTER);
            }
        }
    }

    /// What to commit at `now`: every pending offset, or `None`.
    pub fn request(&self, now: Instant) -> Option<CommitRequest> {
        let offsets = self.pending(now);
        (!offsets.is_empty()).then_some(CommitRequest { offsets })
    }

    /// Kafka took `request` (a failed commit is not reported: its offsets
    /// simply stay pending). A queued one awaits Kafka's confirmation.
    pub fn sent(&mut self, request: &CommitRequest, how: Sent, now: Instant) {
        let queued = (how == Sent::Queued).then_some(now);
        for (tp, next) in &request.offsets {
            if let Some(p) = self.partitions.get_mut(tp) {
                p.committed = Some(*next);
                p.unconfirmed = queued;
                p.retry_at = None;
            }
        }
        debug!(offsets = %request, "committed offsets");
    }
}

#[cfg(test)]
#[path = "commit_tests.rs"]
mod tests;
