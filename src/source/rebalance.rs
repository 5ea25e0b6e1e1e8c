//! The consumer context: librdkafka calls it from inside `poll`, on the source
//! thread, when partitions are assigned or revoked.
//!
//! Revocation runs *before* the partitions are given up: the
//! driver hands on the open batch, waits for the in-flight batches to be
//! acknowledged, commits their offsets, and forgets the partitions — or, when
//! the assignment was lost (session timeout) or the wait runs out, forgets
//! them without committing anything. Assignment claims the partitions first
//! (exactly-once mode: a new generation and the stored offsets from the
//! database), then assigns them at those offsets.

use super::driver::{Driver, HighWatermarks, Unfetched};
use crate::model::TopicPartition;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer as _, ConsumerContext, RebalanceProtocol};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::TopicPartitionList;
use std::sync::{Arc, Mutex};
use tracing::{debug, error, info, warn};

pub struct SourceContext {
    pub pipeline: String,
    pub driver: Arc<Mutex<Driver>>,
    /// Filled from librdkafka's statistics (when enabled): per partition, the high watermark.
    pub high_watermarks: HighWatermarks,
    /// Filled from the same statistics: the partitions not being fetched.
    pub unfetched: Unfetched,
}

pub type Consumer = BaseConsumer<SourceContext>;

impl ClientContext for SourceContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        let pipeline = self.pipeline.as_str();
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => error!(pipeline, fac, message, "librdkafka"),
            RDKafkaLogLevel::Warning => warn!(pipeline, fac, message, "librdkafka"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                info!(pipeline, fac, message, "librdkafka")
            }
            RDKafkaLogLevel::Debug => debug!(pipeline, fac, message, "librdkafka"),
        }
    }

    fn stats(&self, statistics: rdkafka::Statistics) {
        // Which brokers this client is connected to, by node id.
        let up: std::collections::HashSet<i32> = statistics
            .brokers
            .values()
            .filter(|b| b.nodeid >= 0 && (b.state == "UP" || b.state == "UPDATE"))
            .map(|b| b.nodeid)
            .collect();
        let mut highs = self
            .high_watermarks
            .lock()
            .expect("high-watermark map poisoned by a panic in the statistics callback");
        let mut unfetched = self
            .unfetched
            .lock()
            .expect("unfetched set poisoned by a panic in the statistics callback");
        unfetched.clear();
        for (topic, t) in statistics.topics {
            for (partition, p) in t.partitions {
                if partition < 0 {
                    continue;
                }
                let tp = TopicPartition::new(topic.clone(), partition);
                if p.fetch_state != "none" && (p.fetch_state != "active" || !up.contains(&p.leader))
                {
                    unfetched.insert(tp.clone());
                }
                if p.hi_offset >= 0 {
                    highs.insert(tp, p.hi_offset);
                }
            }
        }
    }

    /// Logs client errors; a refusal (see [`crate::kafka_refusal`]) stops the
    /// pipeline, as no retry can fix it.
    fn error(&self, error: KafkaError, reason: &str) {
        match crate::kafka_refusal::explain(reason) {
            Some(refusal) => {
                let message = refusal.message(&self.pipeline);
                error!(pipeline = %self.pipeline, %message, "kafka refused this client; stopping the pipeline");
                self.lock()
                    .failed
                    .get_or_insert(super::driver::SourceError::Refused(message));
            }
            None => warn!(pipeline = %self.pipeline, %error, reason, "kafka client error"),
        }
    }
}

impl ConsumerContext for SourceContext {
    /// Replaces rdkafka's default handler so that, in exactly-once mode, the
    /// partitions are claimed in the database and assigned *at the stored
    /// offsets* — before the first record of theirs is fetched.
    fn rebalance(&self, consumer: &Consumer, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        let started = std::time::Instant::now();
        self.serve_rebalance(consumer, err, tpl);
        let stats = std::sync::Arc::clone(&self.lock().stats);
        crate::observe::stats::Stats::add(&stats.rebalances, 1);
        stats
            .rebalance_seconds
            .observe(started.elapsed().as_secs_f64());
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        self.on_commit(result, offsets);
    }
}

impl SourceContext {
    /// Assigns (claiming first) or revokes (draining first) partitions.
    fn serve_rebalance(
        &self,
        consumer: &Consumer,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let parts = partitions(tpl);
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                self.lock().claim(&parts, tpl);
                let assigned = if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                };
                match assigned {
                    Ok(()) => self.lock().handle_assign(consumer, &parts),
                    Err(e) => {
                        error!(pipeline = %self.pipeline, error = %e, "assigning partitions failed")
                    }
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let lost = consumer.assignment_lost();
                self.lock().handle_revoke(consumer, &parts, lost);
                let unassigned = if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                };
                if let Err(e) = unassigned {
                    error!(pipeline = %self.pipeline, error = %e, "unassigning partitions failed");
                }
            }
            other => {
                warn!(pipeline = %self.pipeline, error = ?other, "rebalance error");
                // librdkafka requires the assignment to be dropped on a rebalance error.
                if let Err(e) = consumer.unassign() {
                    error!(pipeline = %self.pipeline, error = %e, "unassign after rebalance error failed");
                }
            }
        }
    }

    /// Kafka's answer to a commit, if librdkafka delivers one, judged per
    /// partition (each element carries its own error). rdkafka 0.39 gets no
    /// answer for asynchronous commits (see [`crate::commit`]): the committer's
    /// resend covers them.
    fn on_commit(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        let results: Vec<(TopicPartition, i64, bool)> = offsets
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                rdkafka::Offset::Offset(o) => Some((
                    TopicPartition::new(e.topic(), e.partition()),
                    o,
                    result.is_ok() && e.error().is_ok(),
                )),
                _ => None,
            })
            .collect();
        let refused: Vec<String> = results
            .iter()
            .filter(|r| !r.2)
            .map(|(tp, o, _)| format!("{tp}@{o}"))
            .collect();
        if !refused.is_empty() {
            let error = result.err().map(|e| e.to_string()).unwrap_or_else(|| {
                first_partition_error(offsets).unwrap_or_else(|| "refused".into())
            });
            warn!(pipeline = %self.pipeline, offsets = %refused.join(","), %error, "offset commit refused; will retry");
        }
        self.lock()
            .committer
            .commit_result(&results, std::time::Instant::now());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Driver> {
        // The driver is only locked on the source thread, never across a poll;
        // a poisoned lock means a panic already ended that thread.
        self.driver
            .lock()
            .expect("driver lock poisoned by a panic on the source thread")
    }
}

fn first_partition_error(offsets: &TopicPartitionList) -> Option<String> {
    offsets
        .elements()
        .iter()
        .find_map(|e| e.error().err().map(|e| e.to_string()))
}

fn partitions(tpl: &TopicPartitionList) -> Vec<TopicPartition> {
    tpl.elements()
        .iter()
        .map(|e| TopicPartition::new(e.topic(), e.partition()))
        .collect()
}
