//! Source: one Kafka consumer group member per pipeline, on a thread of its own.
//!
//! # Checkpoints and delivery
//!
//! - Offsets are never committed automatically. A record's offset is committed
//!   ([`crate::commit`] decides, this module's one commit call executes) only after the database transaction holding its
//!   rows committed, per partition, up to the highest contiguous acknowledged
//!   offset. With `delivery = "exactly-once"` (the default) the database
//!   holds the offsets too, in the batch's own transaction, and each
//!   assignment resumes from there ([`crate::sink::checkpoint`]): nothing is
//!   written twice. With `at-least-once` the records of uncommitted batches
//!   are read and written again after a crash (idempotent with `upsert`).
//! - Records of one partition are decoded, transformed, batched and written in
//!   offset order.
//! - Revocation (cooperative-sticky, incremental) completes and commits the
//!   revoked partitions' in-flight batches before it returns, or forgets them
//!   uncommitted; nothing is committed for a partition this member no longer owns.
//! - A record that cannot be decoded or transformed goes to the dead-letter
//!   topic first (its offset counts as done only once the broker has the
//!   letter); without a dead-letter topic it stops the pipeline, uncommitted.
//! - Records Kafka itself cannot hand over (corrupt, or an unknown compression
//!   codec) stop the pipeline: librdkafka would skip them without an offset.
//! - Shutdown stops polling, hands on the open batch, waits for the writer
//!   within the grace period, commits, and leaves the group.
//!
//! The source keeps the consumer, rebalances and membership; it runs the
//! pure [`crate::ingest`] stage on each record and does what is I/O around
//! it: dead letters, flow control (pausing partitions) and commits.
//!
//! The poll loop runs on a plain thread because librdkafka serves rebalance
//! callbacks inside `poll`, and a revocation must block until in-flight
//! batches are done; decoding and transforming (CPU work) stay off the async
//! runtime too.

mod driver;
pub mod kafka;
mod rebalance;

pub use driver::{Driver, SourceError};
pub use rebalance::{Consumer, SourceContext};

use rdkafka::consumer::Consumer as _;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Runs the poll loop until `shutdown` fires or an error stops it. `grace`
/// bounds the final flush.
pub fn run(
    consumer: Consumer,
    topics: &[String],
    shutdown: CancellationToken,
    grace: std::time::Duration,
) -> Result<(), SourceError> {
    let driver: Arc<Mutex<Driver>> = Arc::clone(&consumer.context().driver);
    let lock = || {
        driver
            .lock()
            .expect("driver lock poisoned by a panic on this thread")
    };
    let topic_refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topic_refs)?;
    let result = poll_loop(&consumer, &shutdown, &lock);
    let deadline = Instant::now() + grace;
    let clean = lock().finish(&consumer, deadline);
    if clean {
        info!("flushed and committed; leaving the group");
    } else {
        warn!(
            "shutdown grace ran out or the writer stopped; uncommitted records will be read again"
        );
    }
    consumer.unsubscribe();
    drop(consumer);
    result
}

/// Whether a consumer error means records exist that cannot be read (corrupt,
/// or compressed with a codec this build lacks). librdkafka would skip them and
/// reports no offset, so they cannot be dead-lettered: the pipeline stops
/// instead, before anything after them is committed.
pub fn unreadable_records(e: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as Code;
    matches!(
        e,
        rdkafka::error::KafkaError::MessageConsumption(
            Code::BadMessage
                | Code::BadCompression
                | Code::InvalidMessage
                | Code::UnsupportedCompressionType
                | Code::InvalidRecord
        )
    )
}

fn poll_loop<'a>(
    consumer: &Consumer,
    shutdown: &CancellationToken,
    lock: &impl Fn() -> std::sync::MutexGuard<'a, Driver>,
) -> Result<(), SourceError> {
    let mut clock = Heartbeat::default();
    let mut timeout = lock().poll_timeout();
    // Shutdown is checked before every poll; a poll blocks at most 100 ms.
    while !shutdown.is_cancelled() {
        // The driver lock must not be held here: rebalance callbacks run inside poll.
        let polled = consumer.poll(timeout);
        let mut driver = lock();
        // One clock read per poll serves the heartbeat, the batch deadline
        // and the idle clock.
        let now = Instant::now();
        driver
            .stats
            .heartbeat_ms
            .store(clock.ms(now), std::sync::atomic::Ordering::Relaxed);
        match polled {
            None => {
                // Idle polls (at most every 100 ms) look for a fatal client error,
                // which librdkafka may only report through its error callback.
                if let Some(e) = fatal(consumer) {
                    return Err(e);
                }
                driver.tick(consumer, now)?
            }
            Some(Ok(msg)) => {
                driver.on_message(&msg, now)?;
                driver.tick(consumer, now)?;
            }
            Some(Err(e)) if unreadable_records(&e) => return Err(SourceError::Unreadable(e)),
            Some(Err(e)) => {
                if let Some(fatal) = fatal(consumer) {
                    return Err(fatal);
                }
                // The context already logged client-level errors; this is the per-poll echo.
                tracing::debug!(error = %e, "kafka consumer error");
            }
        }
        if let Some(e) = driver.failed.take() {
            return Err(e);
        }
        timeout = driver.poll_timeout();
    }
    Ok(())
}

/// librdkafka's fatal error, if the client has one: it cannot recover.
fn fatal(consumer: &Consumer) -> Option<SourceError> {
    consumer
        .client()
        .fatal_error()
        .map(|(_, reason)| SourceError::fatal(reason))
}

/// Wall-clock milliseconds for the heartbeat from the poll loop's monotonic
/// reading: the wall clock is read again at most once a second.
#[derive(Default)]
struct Heartbeat {
    base: Option<(Instant, u64)>,
}

impl Heartbeat {
    fn ms(&mut self, now: Instant) -> u64 {
        match self.base {
            Some((at, ms)) if now.duration_since(at) < std::time::Duration::from_secs(1) => {
                ms + now.duration_since(at).as_millis() as u64
            }
            _ => {
                let ms = crate::observe::stats::now_ms();
                self.base = Some((now, ms));
                ms
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::error::KafkaError;
    use rdkafka::types::RDKafkaErrorCode as Code;

    #[test]
    fn heartbeat_follows_the_monotonic_clock_between_wall_clock_reads() {
        let mut beat = Heartbeat::default();
        let t0 = Instant::now();
        let first = beat.ms(t0);
        assert!(first > 0);
        let later = beat.ms(t0 + std::time::Duration::from_millis(250));
        assert_eq!(later, first + 250);
        // Past a second the wall clock is read again.
        let rebased = beat.ms(t0 + std::time::Duration::from_secs(2));
        assert!(rebased >= first, "{rebased} < {first}");
    }

    #[test]
    fn unreadable_records_stop_the_pipeline_but_broker_hiccups_do_not() {
        for code in [
            Code::BadCompression,
            Code::UnsupportedCompressionType,
            Code::BadMessage,
        ] {
            assert!(
                unreadable_records(&KafkaError::MessageConsumption(code)),
                "{code:?}"
            );
        }
        for code in [
            Code::BrokerTransportFailure,
            Code::AllBrokersDown,
            Code::UnknownTopicOrPartition,
        ] {
            assert!(
                !unreadable_records(&KafkaError::MessageConsumption(code)),
                "{code:?}"
            );
        }
    }
}
