//! The consumer context: librdkafka calls it from inside `poll`, on the source
//! thread, when partitions are assigned or revoked.
//!
//! Revocation runs *before* the partitions are given up (`pre_rebalance`): the
//! driver hands on the open batch, waits for the in-flight batches to be
//! acknowledged, commits their offsets, and forgets the partitions — or, when
//! the assignment was lost (session timeout) or the wait runs out, forgets
//! them without committing anything. Assignment is handled after the
//! partitions are taken (`post_rebalance`).

use super::driver::Driver;
use crate::model::TopicPartition;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::TopicPartitionList;
use std::sync::{Arc, Mutex};
use tracing::{debug, error, info, warn};

pub struct SourceContext {
    pub pipeline: String,
    pub driver: Arc<Mutex<Driver>>,
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

    fn error(&self, error: KafkaError, reason: &str) {
        warn!(pipeline = %self.pipeline, %error, reason, "kafka client error");
    }
}

impl ConsumerContext for SourceContext {
    fn pre_rebalance(&self, consumer: &Consumer, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let partitions = partitions(tpl);
            let lost = rdkafka::consumer::Consumer::assignment_lost(consumer);
            self.lock().handle_revoke(consumer, &partitions, lost);
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        if let Err(error) = result {
            warn!(pipeline = %self.pipeline, %error, "async offset commit failed; will retry");
            let failed = offsets
                .elements()
                .iter()
                .filter_map(|e| match e.offset() {
                    rdkafka::Offset::Offset(o) => {
                        Some((TopicPartition::new(e.topic(), e.partition()), o))
                    }
                    _ => None,
                })
                .collect();
            self.lock().committer.commit_failed(&failed);
        }
    }

    fn post_rebalance(&self, consumer: &Consumer, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => self.lock().handle_assign(consumer, &partitions(tpl)),
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => warn!(pipeline = %self.pipeline, error = %e, "rebalance error"),
        }
    }
}

impl SourceContext {
    fn lock(&self) -> std::sync::MutexGuard<'_, Driver> {
        // The driver is only locked on the source thread, never across a poll;
        // a poisoned lock means a panic already ended that thread.
        self.driver
            .lock()
            .expect("driver lock poisoned by a panic on the source thread")
    }
}

fn partitions(tpl: &TopicPartitionList) -> Vec<TopicPartition> {
    tpl.elements()
        .iter()
        .map(|e| TopicPartition::new(e.topic(), e.partition()))
        .collect()
}
