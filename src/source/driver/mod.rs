//! The source thread's state: turns polled messages into batches, hands them
//! to the writer, and feeds acknowledgements to the committer.
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
mod idle;
mod membership;
mod offsets;
mod record;
mod tombstone;

use crate::batch::Batcher;
use crate::commit::Committer;
use crate::config::BatchConfig;
use crate::dead_letter::{DeadLetters, Letter, Reason};
use crate::decode::Decoder;
use crate::model::{Batch, BatchAck, RawRecord, Row, TopicPartition};
use crate::observe::stats::{PartitionStats, Stats};
use crate::observe::trace;
use crate::sink::checkpoint::OffsetStore;
use crate::transform::Chain;
use rdkafka::consumer::{CommitMode, Consumer as _};

use std::collections::BTreeMap;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::Sender;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

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
    pub(super) decoder: Decoder,
    pub(super) chain: Chain,
    pub(super) batcher: Batcher,
    pub(super) committer: Committer,
    /// `None` once the source has finished and let the writer go.
    pub(super) batches: Option<Sender<Batch>>,
    pub(super) acks: Receiver<BatchAck>,
    pub(super) revoke_timeout: Duration,
    pub(super) stats: Arc<Stats>,
    /// One permit per batch the writer may hold (`batch.max_in_flight`); a
    /// batch carries its permit until the writer drops it.
    slots: Arc<Semaphore>,
    max_in_flight: usize,
    /// The open batch is due but no slot is free.
    waiting: bool,
    paused: bool,
    /// To wait for a slot from this (non-async) thread.
    runtime: tokio::runtime::Handle,
    /// An error met inside a rebalance callback, reported by the poll loop.
    pub(super) failed: Option<SourceError>,
    /// Exactly-once mode: the checkpoint table and the generations claimed.
    eos: Option<Eos>,
    dead_letters: Option<Arc<DeadLetters>>,
    shutdown: CancellationToken,
    /// Payload bytes handed to the writer and not yet acknowledged.
    in_flight_bytes: usize,
    max_in_flight_bytes: usize,
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
    /// With the sink's `delete` on: the key columns a tombstone's key names.
    delete_keys: Option<Vec<String>>,
    /// The current record's rows on their way into the batch (one buffer
    /// reused for every record).
    rows: Vec<Row>,
    /// Whether rows' metadata carries the Kafka key (see `with_kafka_keys`).
    kafka_keys: bool,
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
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        decoder: Decoder,
        chain: Chain,
        batcher: Batcher,
        batches: Sender<Batch>,
        acks: Receiver<BatchAck>,
        limits: &BatchConfig,
        stats: Arc<Stats>,
        eos: Option<(String, OffsetStore)>,
        dead_letters: Option<Arc<DeadLetters>>,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            decoder,
            chain,
            batcher,
            committer: Committer::default(),
            batches: Some(batches),
            acks,
            revoke_timeout: limits.revoke_timeout,
            slots: Arc::new(Semaphore::new(limits.max_in_flight)),
            max_in_flight: limits.max_in_flight,
            waiting: false,
            paused: false,
            runtime: tokio::runtime::Handle::current(),
            dead_letters,
            shutdown,
            in_flight_bytes: 0,
            max_in_flight_bytes: limits.max_in_flight_bytes,
            eos: eos.map(|(pipeline, store)| Eos {
                pipeline,
                store,
                generations: BTreeMap::new(),
                resume: BTreeMap::new(),
            }),
            failed: None,
            idle: None,
            high_watermarks: Arc::clone(&stats.high_watermarks),
            unfetched: Arc::clone(&stats.unfetched),
            stats,
            group: String::new(),
            last_partition: None,
            delete_keys: None,
            rows: Vec::new(),
            kafka_keys: true,
        }
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
        if self.batcher.is_empty() {
            Duration::from_millis(100)
        } else {
            Duration::from_millis(1)
        }
    }

    /// Sends one letter, retrying with backoff until the broker has it.
    fn dead_letter(
        &mut self,
        record: RawRecord,
        reason: Reason,
        message: String,
    ) -> Result<(), SourceError> {
        let Some(dlq) = &self.dead_letters else {
            return Err(SourceError::Poison {
                tp: TopicPartition::new(&record.origin.topic, record.origin.partition),
                offset: record.origin.offset,
                reason: message,
            });
        };
        let letter = [Letter {
            record,
            reason,
            message,
            column: None,
        }];
        let mut delay = Duration::from_millis(100);
        loop {
            match dlq.send(&letter) {
                Ok(()) => {
                    Stats::add(&self.stats.dead_lettered, 1);
                    let origin = &letter[0].record.origin;
                    let tp = TopicPartition::new(&origin.topic, origin.partition);
                    Stats::add(&self.stats.partition(&tp).dead_lettered, 1);
                    return Ok(());
                }
                Err(e) if !self.shutdown.is_cancelled() => {
                    Stats::add(&self.stats.dead_letter_retries, 1);
                    warn!(error = %e, "dead-letter write failed; the pipeline waits and retries");
                    std::thread::sleep(delay); // retry backoff on the source thread
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                Err(e) => return Err(SourceError::DeadLetter(e)),
            }
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
            if self.waiting || self.paused {
                clock.held(now);
            } else {
                for (tp, ms) in clock.due(now) {
                    if read_to_end(&self.high_watermarks, &tp, clock.next_offset(&tp)) {
                        self.batcher.mark_idle(&tp, ms);
                    }
                }
            }
        }
        // An idle writer takes what there is: batches grow only while the
        // database is busy, so latency stays near one write at low rates.
        if sink_idle || self.batcher.is_due(now) {
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
        let over = self.in_flight_bytes + self.batcher.bytes() > self.max_in_flight_bytes;
        if over && !self.paused {
            consumer.pause(&consumer.assignment()?)?;
            self.paused = true;
            debug!(
                bytes = self.in_flight_bytes,
                "in-flight byte budget reached; partitions paused"
            );
        } else if !over && !self.waiting {
            self.resume_if_paused(consumer)?;
        }
        Ok(())
    }

    fn take_batch(&mut self) -> Option<Batch> {
        let mut batch = self.batcher.take()?;
        self.in_flight_bytes += batch.bytes;
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
        if self.batcher.is_empty() {
            return Ok(());
        }
        let Some(tx) = self.batches.clone() else {
            return Err(SourceError::WriterGone);
        };
        let slot = match Arc::clone(&self.slots).try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                // Wait a little for the writer before pausing: pausing drops the
                // prefetched records, and a resume has to fetch them again.
                let wait = tokio::time::timeout(
                    BACKPRESSURE_WAIT,
                    Arc::clone(&self.slots).acquire_owned(),
                );
                match self.runtime.block_on(wait) {
                    Ok(Ok(slot)) => slot,
                    _ => return self.wait_for_slot(consumer),
                }
            }
        };
        let mut batch = self
            .take_batch()
            .expect("the batcher holds records (checked above)");
        batch.slot = Some(slot);
        self.waiting = false;
        // Never full: the channel has room for every slot.
        tx.try_send(batch).map_err(|_| SourceError::WriterGone)?;
        self.resume_if_paused(consumer)
    }

    /// No slot is free: the batch stays open and consumption pauses.
    fn wait_for_slot<K: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<K>,
    ) -> Result<(), SourceError> {
        self.waiting = true;
        if !self.paused {
            consumer.pause(&consumer.assignment()?)?;
            self.paused = true;
            debug!("every in-flight slot is taken; partitions paused");
        }
        Ok(())
    }

    /// The in-flight and paused gauges (a slot frees just after the writer
    /// sent its batch's ack: the gauge may lag by one poll).
    fn report_backpressure(&self) {
        let held = self.max_in_flight - self.slots.available_permits();
        Stats::set(&self.stats.batches_in_flight, held as u64);
        self.stats
            .source_paused
            .store(self.paused, std::sync::atomic::Ordering::Relaxed);
    }

    fn resume_if_paused<K: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<K>,
    ) -> Result<(), SourceError> {
        if self.paused {
            consumer.resume(&consumer.assignment()?)?;
            self.paused = false;
            debug!("writer caught up; partitions resumed");
        }
        Ok(())
    }

    fn drain_acks<K: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<K>,
        now: Instant,
    ) -> Result<(), SourceError> {
        let mut any = false;
        let mut traced = Vec::new();
        loop {
            match self.acks.try_recv() {
                Ok(ack) => {
                    self.in_flight_bytes = self.in_flight_bytes.saturating_sub(ack.bytes);
                    self.committer.acked(&ack);
                    traced.extend(ack.trace);
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
        }
        Ok(())
    }
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
