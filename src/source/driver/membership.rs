//! Group membership of the driver: claiming partitions (exactly-once mode),
//! taking them, and giving them up — finishing and committing their in-flight
//! batches first — and the final flush at shutdown.

use super::{Driver, SourceError};
use crate::commit::Committer;
use crate::model::TopicPartition;
use crate::observe::stats::Stats;
use rdkafka::consumer::{BaseConsumer, ConsumerContext};
use rdkafka::consumer::{CommitMode, Consumer as _};
use rdkafka::{Offset, TopicPartitionList};
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

impl Driver {
    /// Hands on everything open and waits until `done` holds or `deadline` passes.
    /// Returns whether `done` held.
    fn drain_until<K: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<K>,
        deadline: Instant,
        done: impl Fn(&Committer) -> bool,
    ) -> bool {
        loop {
            if self.dispatch(consumer).is_err() {
                return done(&self.committer);
            }
            if done(&self.committer) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            match self
                .acks
                .recv_timeout((deadline - now).min(Duration::from_millis(10)))
            {
                Ok(ack) => {
                    self.flow.acked(ack.bytes);
                    self.committer.acked(&ack);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return done(&self.committer),
            }
        }
    }

    /// Exactly-once mode: claims a new generation for each partition and sets
    /// `tpl` to resume at the database's checkpoint (Kafka's committed offset,
    /// then `auto.offset.reset`, when there is none). Retried while the database
    /// is unreachable, up to the revoke timeout; then the pipeline stops.
    pub fn claim(&mut self, partitions: &[TopicPartition], tpl: &mut TopicPartitionList) {
        let Some(eos) = &mut self.eos else {
            return;
        };
        let deadline = Instant::now() + self.revoke_timeout;
        let mut delay = Duration::from_millis(100);
        let claims = loop {
            match self
                .runtime
                .block_on(eos.store.claim(&eos.pipeline, partitions))
            {
                Ok(claims) => break claims,
                Err(e) if Instant::now() < deadline => {
                    warn!(error = %e, "claiming partitions failed; retrying");
                    std::thread::sleep(delay); // retry backoff on the source thread
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
                Err(source) => {
                    self.failed = Some(SourceError::Claim {
                        partitions: list(partitions),
                        source,
                    });
                    return;
                }
            }
        };
        for c in claims {
            if let Some(next) = c.next_offset {
                eos.resume.insert(c.tp.clone(), next);
                if let Err(e) =
                    tpl.set_partition_offset(&c.tp.topic, c.tp.partition, Offset::Offset(next))
                {
                    warn!(tp = %c.tp, error = %e, "cannot set the resume offset");
                }
            }
            debug!(tp = %c.tp, generation = c.generation, next_offset = ?c.next_offset, "claimed partition");
            eos.generations.insert(c.tp, c.generation);
        }
    }

    /// Partitions taken: start tracking them (paused too, if the writer is behind).
    pub fn handle_assign<K: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<K>,
        partitions: &[TopicPartition],
    ) {
        for tp in partitions {
            let resume = self.eos.as_ref().and_then(|e| e.resume.get(tp).copied());
            self.committer.assign(tp.clone(), resume);
            let part = self.stats.partition(tp);
            part.owned.store(true, std::sync::atomic::Ordering::Relaxed);
            if let Some(next) = resume {
                // Lag is measured from the database's checkpoint until a batch commits.
                part.committed_next
                    .store(next, std::sync::atomic::Ordering::Relaxed);
            }
            if let Some(idle) = &mut self.idle {
                idle.assigned(tp, Instant::now(), resume);
            }
        }
        if self.flow.paused() {
            let mut tpl = TopicPartitionList::new();
            for tp in partitions {
                tpl.add_partition(&tp.topic, tp.partition);
            }
            if let Err(e) = consumer.pause(&tpl) {
                warn!(error = %e, "could not pause newly assigned partitions");
            }
        }
        self.stats
            .joined
            .store(true, std::sync::atomic::Ordering::Relaxed);
        Stats::add(&self.stats.assigned_partitions, partitions.len() as u64);
        info!(partitions = %list(partitions), "partitions assigned");
    }

    /// Partitions going away: finish and commit their in-flight batches within
    /// the revoke timeout, then forget them. A lost assignment commits nothing.
    pub fn handle_revoke<K: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<K>,
        partitions: &[TopicPartition],
        lost: bool,
    ) {
        let completed = if lost || self.batches.is_none() {
            false
        } else {
            let deadline = Instant::now() + self.revoke_timeout;
            let done = self.drain_until(consumer, deadline, |c| c.in_flight(Some(partitions)) == 0);
            if let Err(e) = super::offsets::commit(
                consumer,
                &mut self.committer,
                CommitMode::Sync,
                Instant::now(),
            ) {
                warn!(error = %e, "commit on revoke failed; the next owner re-reads those records");
            }
            done
        };
        self.stats.assigned_partitions.fetch_sub(
            (partitions.len() as u64).min(Stats::get(&self.stats.assigned_partitions)),
            std::sync::atomic::Ordering::Relaxed,
        );
        for tp in partitions {
            self.committer.revoke(tp);
            self.stats
                .partition(tp)
                .owned
                .store(false, std::sync::atomic::Ordering::Relaxed);
            if let Some(idle) = &mut self.idle {
                idle.revoked(tp);
            }
            if let Some(eos) = &mut self.eos {
                eos.generations.remove(tp);
                eos.resume.remove(tp);
            }
        }
        if lost {
            warn!(partitions = %list(partitions), "assignment lost; in-flight batches for it will not be committed");
        } else if !completed && self.batches.is_some() {
            warn!(partitions = %list(partitions), "revoke timeout: in-flight batches dropped uncommitted");
        } else {
            info!(partitions = %list(partitions), "partitions revoked");
        }
    }

    /// Shutdown: hands on the open batch, waits for every ack until `deadline`,
    /// commits, and lets the writer go. Returns whether everything was committed.
    pub fn finish<K: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<K>,
        deadline: Instant,
    ) -> bool {
        let done = self.drain_until(consumer, deadline, |c| c.in_flight(None) == 0);
        let committed = super::offsets::commit(
            consumer,
            &mut self.committer,
            CommitMode::Sync,
            Instant::now(),
        )
        .is_ok();
        self.batches = None;
        done && committed && self.ingest.batcher.is_empty()
    }
}

fn list(partitions: &[TopicPartition]) -> String {
    partitions
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}
