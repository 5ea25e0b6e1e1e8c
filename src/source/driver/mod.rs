//! The source thread's state: feeds polled messages through the ingest stage
//! ([`crate::ingest`], pure), dead-letters what it refuses, hands due batches
//! to the writer under flow control ([`flow`]), feeds acknowledgements to the
//! committer and executes its commits ([`offsets`]).
//!
//! Backpressure: at most `batch.max_in_flight` batches are handed to the
//! writer and not yet finished (each holds a slot until the writer has sent
//! its ack). When none is free, the due batch stays open here and every
//! assigned partition is paused; the thread keeps polling (so it stays in the
//! group and serves rebalances) and resumes the partitions once a slot freed
//! and the batch went out. A finished batch comes back inside its ack and is
//! freed here, on the thread that allocated it, when the ack is read (every
//! poll). Memory held in rows is therefore bounded by `max_in_flight + 1`
//! batches, plus one finished batch between its ack and the next poll.

use rdkafka::consumer::{BaseConsumer, ConsumerContext};
mod flow;
mod idle;
mod membership;
mod offsets;
mod record;

use crate::commit::Committer;
use crate::config::BatchConfig;
use crate::dead_letter::DeadLetters;
use crate::ingest::Ingest;
use crate::model::{Batch, BatchAck, TopicPartition};
use crate::observe::stats::{PartitionStats, Stage, Stats};
use crate::observe::trace;
use crate::sink::checkpoint::OffsetStore;
use flow::{Flow, Switch};
use rdkafka::consumer::{CommitMode, Consumer as _};

use std::collections::BTreeMap;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::Sender;
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// How long waiting for a free slot may block the poll thread before partitions are paused.
const BACKPRESSURE_WAIT: Duration = Duration::from_millis(500);

/// Why the source stopped.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("record {tp}@{offset} cannot be processed: {reason} (no dead-letter topic is configured, so the pipeline stops rather than drop it)")]
    Poison {
        tp: TopicPartition,
        offset: i64,
        reason: String,
    },
    #[error("the writer stopped; see its error")]
    WriterGone,
    #[error("kafka consumer: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("claiming partitions {partitions} in the checkpoint table: {source}")]
    Claim {
        partitions: String,
        source: crate::sink::SinkError,
    },
    #[error("a pipeline stage panicked")]
    Panicked,
    #[error(transparent)]
    DeadLetter(#[from] crate::dead_letter::DeadLetterError),
    #[error(
        "kafka holds records this consumer cannot read ({0}); stopping rather than skipping them"
    )]
    Unreadable(rdkafka::error::KafkaError),
    /// librdkafka's client is unusable (e.g. another member took this
    /// `group.instance.id`): stop instead of idling in the group forever.
    #[error("kafka consumer failed for good: {reason}{hint}")]
    Fatal { reason: String, hint: &'static str },
    /// The broker refused this client's credentials or certificates, or its
    /// own certificate failed verification: retrying cannot fix it.
    #[error("kafka refused this client: {0}")]
    Refused(String),
}

impl SourceError {
    /// A fatal client error, with a hint for the one an operator can cause.
    pub fn fatal(reason: String) -> Self {
        let hint = if reason.contains("fenced") || reason.contains("FENCED_INSTANCE_ID") {
            " (another member uses this kafka.group_instance_id: each instance needs its own)"
        } else {
            ""
        };
        SourceError::Fatal { reason, hint }
    }
}

pub struct Driver {
    /// Decode → transform → the open batch (pure; see [`crate::ingest`]).
    pub(super) ingest: Ingest,
    pub(super) committer: Committer,
    /// `None` once the source has finished and let the writer go.
    pub(super) batches: Option<Sender<Batch>>,
    pub(super) acks: Receiver<BatchAck>,
    pub(super) revoke_timeout: Duration,
    pub(super) stats: Arc<Stats>,
    /// Slots and the byte budget: when the partitions pause.
    pub(super) flow: Flow,
    /// To wait for a slot from this (non-async) thread.
    runtime: tokio::runtime::Handle,
    /// An error met inside a rebalance callback, reported by the poll loop.
    pub(super) failed: Option<SourceError>,
    /// Exactly-once mode: the checkpoint table and the generations claimed.
    eos: Option<Eos>,
    dead_letters: Option<Arc<DeadLetters>>,
    shutdown: CancellationToken,
    /// With event-time windows: which partitions have gone quiet.
    pub(super) idle: Option<idle::IdleClock>,
    /// Per partition, the high watermark from librdkafka's statistics.
    pub high_watermarks: HighWatermarks,
    /// Per librdkafka's statistics, the partitions not being fetched: their
    /// silence is not idleness.
    pub unfetched: Unfetched,
    /// The consumer group, for `kafka.commit` spans.
    group: String,
    /// The partition of the last record and its counters (records of one
    /// partition come in runs: this saves a lookup per record).
    last_partition: Option<(TopicPartition, Arc<PartitionStats>)>,
}

/// Shared with the consumer context, which fills it from librdkafka's statistics.
pub use crate::observe::stats::{HighWatermarks, Unfetched};

/// Exactly-once bookkeeping of the source.
pub struct Eos {
    pub pipeline: String,
    pub store: OffsetStore,
    pub generations: BTreeMap<TopicPartition, i64>,
    /// The checkpoint each claimed partition resumed from.
    pub resume: BTreeMap<TopicPartition, i64>,
}

impl Driver {
    pub fn new(
        ingest: Ingest,
        batches: Sender<Batch>,
        acks: Receiver<BatchAck>,
        limits: &BatchConfig,
        stats: Arc<Stats>,
        dead_letters: Option<Arc<DeadLetters>>,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            ingest,
            committer: Committer::default(),
            batches: Some(batches),
            acks,
            revoke_timeout: limits.revoke_timeout,
            flow: Flow::new(limits.max_in_flight, limits.max_in_flight_bytes),
            runtime: tokio::runtime::Handle::current(),
            dead_letters,
            shutdown,
            eos: None,
            failed: None,
            idle: None,
            high_watermarks: Arc::clone(&stats.high_watermarks),
            unfetched: Arc::clone(&stats.unfetched),
            stats,
            group: String::new(),
            last_partition: None,
        }
    }

    /// Exactly-once: claims partitions in this pipeline's checkpoint table
    /// and stamps batches with the generations claimed.
    pub fn with_exactly_once(mut self, eos: Option<(String, OffsetStore)>) -> Self {
        self.eos = eos.map(|(pipeline, store)| Eos {
            pipeline,
            store,
            generations: BTreeMap::new(),
            resume: BTreeMap::new(),
        });
        self
    }

    /// Names the consumer group in `kafka.commit` spans.
    pub fn with_group(mut self, group: String) -> Self {
        self.group = group;
        self
    }

    /// Reports partitions idle for `timeout` to the writer (windows close on them).
    pub fn with_idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle = timeout.map(idle::IdleClock::new);
        self
    }

    /// How long the next poll may block: 1 ms while a batch is open or
    /// waiting, so it goes out within a millisecond of the writer's ack (a
    /// blocked poll cannot be woken by it) or of being due; 100 ms otherwise.
    pub fn poll_timeout(&self) -> Duration {
        if self.ingest.batcher.is_empty() {
            Duration::from_millis(100)
        } else {
            Duration::from_millis(1)
        }
    }

    /// Moves work along: acks → commits; a due batch → the writer.
    pub fn tick<K: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<K>,
        now: Instant,
    ) -> Result<(), SourceError> {
        self.drain_acks(consumer, now)?;
        let sink_idle = self.committer.in_flight(None) == 0;
        if let Some(clock) = &mut self.idle {
            clock.tick(now);
            for tp in self
                .unfetched
                .lock()
                .expect("unfetched set poisoned by a panic in the statistics callback")
                .iter()
            {
                // Unreachable (the broker is away): silence means nothing.
                clock.hold(tp, now);
            }
            if self.flow.holding() {
                clock.held(now);
            } else {
                for (tp, ms) in clock.due(now) {
                    if read_to_end(&self.high_watermarks, &tp, clock.next_offset(&tp)) {
                        self.ingest.batcher.mark_idle(&tp, ms);
                    }
                }
            }
        }
        // An idle writer takes what there is: batches grow only while the
        // database is busy, so latency stays near one write at low rates.
        if sink_idle || self.ingest.batcher.is_due(now) {
            self.dispatch(consumer)?;
        }
        self.enforce_byte_budget(consumer)?;
        self.report_backpressure();
        Ok(())
    }

    /// Pauses every partition while more than `max_in_flight_bytes` of payload
    /// is consumed and not yet in the database; resumes below it.
    fn enforce_byte_budget<K: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<K>,
    ) -> Result<(), SourceError> {
        let switch = self.flow.budget(self.ingest.batcher.bytes());
        if switch == Switch::Pause {
            debug!(
                bytes = self.flow.in_flight_bytes(),
                "in-flight byte budget reached; partitions paused"
            );
        }
        apply(consumer, switch)
    }

    fn take_batch(&mut self) -> Option<Batch> {
        let mut batch = self.ingest.batcher.take()?;
        if let Some(eos) = &self.eos {
            for tp in batch
                .offsets
                .keys()
                .chain(batch.idle.iter().map(|(tp, _)| tp))
            {
                if let Some(g) = eos.generations.get(tp) {
                    batch.generations.insert(tp.clone(), *g);
                }
            }
        }
        self.committer.dispatched(&batch);
        Some(batch)
    }

    /// Hands the open batch (if any) to the writer once a slot is free: waits
    /// up to [`BACKPRESSURE_WAIT`] for one, then pauses the partitions and
    /// leaves the batch open for the next call.
    pub(super) fn dispatch<K: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<K>,
    ) -> Result<(), SourceError> {
        if self.ingest.batcher.is_empty() {
            return Ok(());
        }
        let Some(tx) = self.batches.clone() else {
            return Err(SourceError::WriterGone);
        };
        let slot = match self.flow.try_slot() {
            Some(slot) => slot,
            None => {
                // Wait a little for the writer before pausing: pausing drops the
                // prefetched records, and a resume has to fetch them again.
                let wait =
                    tokio::time::timeout(BACKPRESSURE_WAIT, self.flow.slots().acquire_owned());
                match self.runtime.block_on(wait) {
                    Ok(Ok(slot)) => slot,
                    _ => {
                        let switch = self.flow.no_slot();
                        if switch == Switch::Pause {
                            debug!("every in-flight slot is taken; partitions paused");
                        }
                        return apply(consumer, switch);
                    }
                }
            }
        };
        let mut batch = self
            .take_batch()
            .expect("the batcher holds records (checked above)");
        batch.slot = Some(slot);
        let switch = self.flow.sent(batch.bytes);
        // Never full: the channel has room for every slot.
        tx.try_send(batch).map_err(|_| SourceError::WriterGone)?;
        apply(consumer, switch)
    }

    /// The in-flight and paused gauges.
    fn report_backpressure(&self) {
        Stats::set(&self.stats.batches_in_flight, self.flow.held() as u64);
        self.stats
            .source_paused
            .store(self.flow.paused(), std::sync::atomic::Ordering::Relaxed);
    }

    fn drain_acks<K: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<K>,
        now: Instant,
    ) -> Result<(), SourceError> {
        let mut any = false;
        let mut traced = Vec::new();
        // (committed in the database, records): the `offsets` stage of each.
        let mut committed = Vec::new();
        loop {
            match self.acks.try_recv() {
                Ok(ack) => {
                    self.flow.acked(ack.bytes);
                    self.committer.acked(&ack);
                    traced.extend(ack.trace);
                    let records = ack.offsets.values().map(|r| (r.last - r.first + 1) as u64);
                    committed.extend(ack.committed_at.map(|at| (at, records.sum::<u64>())));
                    any = true;
                }
                Err(std::sync::mpsc::TryRecvError::Empty) => break,
                Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                    if self.committer.in_flight(None) > 0 {
                        return Err(SourceError::WriterGone);
                    }
                    break;
                }
            }
        }
        if any || self.committer.has_pending(now) {
            // Async: the poll thread never waits on the broker here. A failure is
            // reported to the commit callback, which makes the offsets pending again.
            let span = trace::kafka_commit_span(&self.group, &traced);
            let _entered = span.enter();
            let _ = offsets::commit(consumer, &mut self.committer, CommitMode::Async, now);
            let sent = Instant::now();
            for (at, records) in committed {
                let waited = sent.saturating_duration_since(at).as_secs_f64();
                self.stats.observe_stage(Stage::Offsets, waited, records);
            }
        }
        Ok(())
    }
}

/// Pauses or resumes every assigned partition, as flow control decided.
fn apply<K: ConsumerContext>(
    consumer: &BaseConsumer<K>,
    switch: Switch,
) -> Result<(), SourceError> {
    match switch {
        Switch::Pause => consumer.pause(&consumer.assignment()?)?,
        Switch::Resume => {
            consumer.resume(&consumer.assignment()?)?;
            debug!("writer caught up; partitions resumed");
        }
        Switch::Stay => {}
    }
    Ok(())
}

/// Whether nothing is waiting to be read on the partition: the next offset
/// reached the high watermark librdkafka last reported. Unknown counts as not
/// read to the end.
fn read_to_end(highs: &HighWatermarks, tp: &TopicPartition, next: Option<i64>) -> bool {
    let high = highs
        .lock()
        .expect("high-watermark map poisoned by a panic in the statistics callback")
        .get(tp)
        .copied();
    matches!((next, high), (Some(next), Some(high)) if next >= high)
}
