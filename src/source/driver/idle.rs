//! Idle partitions: when a pipeline has event-time windows, a partition that
//! had no record for the idle timeout is reported in the next batch (an empty
//! one if need be), so its watermark advances with the wall clock and its
//! windows close. A partition counts as idle only when it is read to its end
//! (the next offset to read reached the high watermark librdkafka last
//! reported in its statistics) — a backlog is never idleness. Silence counts
//! only while records can flow: while the
//! pipeline is paused for backpressure or a batch waits for the writer, the
//! clock is held, so a backlog is never mistaken for an idle topic; so is a
//! partition librdkafka's statistics show is not being fetched (its leader's
//! broker unreachable: a broker outage is not an idle topic). Nor does
//! silence count while nobody listened: a gap between two polls longer than
//! [`MAX_POLL_GAP`] (the process was frozen, swapped out or starved of CPU)
//! restarts every partition's silence, so a paused instance does not wake up
//! to find its watermarks jumped ahead by the pause and its unread records late.

use crate::model::TopicPartition;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The longest gap between two polls that still counts as listening; a poll
/// blocks at most 100 ms, so a longer gap means the loop did not run.
pub const MAX_POLL_GAP: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct IdleClock {
    timeout: Duration,
    last_record: HashMap<TopicPartition, Instant>,
    /// The next offset this member will read, per partition, when known.
    next: HashMap<TopicPartition, i64>,
    last_report: Instant,
    /// When the poll loop last ticked the clock.
    last_tick: Option<Instant>,
}

impl IdleClock {
    pub fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            last_record: HashMap::new(),
            next: HashMap::new(),
            last_report: Instant::now(),
            last_tick: None,
        }
    }

    /// Called on every pass of the poll loop: after a gap longer than
    /// [`MAX_POLL_GAP`] (or half the timeout, if shorter), silence restarts.
    pub fn tick(&mut self, now: Instant) {
        let max_gap = MAX_POLL_GAP.min(self.timeout / 2);
        if self
            .last_tick
            .is_some_and(|prev| now.saturating_duration_since(prev) > max_gap)
        {
            self.held(now);
        }
        self.last_tick = Some(now);
    }

    /// `resume`: the offset the partition was assigned at, when known.
    pub fn assigned(&mut self, tp: &TopicPartition, now: Instant, resume: Option<i64>) {
        self.last_record.insert(tp.clone(), now);
        match resume {
            Some(next) => self.next.insert(tp.clone(), next),
            None => self.next.remove(tp),
        };
    }

    pub fn revoked(&mut self, tp: &TopicPartition) {
        self.last_record.remove(tp);
        self.next.remove(tp);
    }

    pub fn record(&mut self, tp: &TopicPartition, now: Instant, offset: i64) {
        if let Some(t) = self.last_record.get_mut(tp) {
            *t = now;
            self.next.insert(tp.clone(), offset + 1);
        }
    }

    /// The next offset to read, when known: a partition is idle only if this
    /// reached the partition's end (nothing is waiting to be read).
    pub fn next_offset(&self, tp: &TopicPartition) -> Option<i64> {
        self.next.get(tp).copied()
    }

    /// `tp` cannot be read right now (its broker is unreachable): its silence
    /// restarts.
    pub fn hold(&mut self, tp: &TopicPartition, now: Instant) {
        if let Some(t) = self.last_record.get_mut(tp) {
            *t = now;
        }
    }

    /// Consumption is held back (paused, or a batch waits for the writer):
    /// silence now says nothing about the topic, so no partition counts as idle.
    pub fn held(&mut self, now: Instant) {
        for t in self.last_record.values_mut() {
            *t = now;
        }
    }

    /// Partitions idle past the timeout, with how long (ms); reported at most
    /// every half timeout.
    pub fn due(&mut self, now: Instant) -> Vec<(TopicPartition, i64)> {
        if now.duration_since(self.last_report) < self.timeout / 2 {
            return Vec::new();
        }
        self.last_report = now;
        self.last_record
            .iter()
            .filter_map(|(tp, t)| {
                let idle = now.duration_since(*t);
                (idle >= self.timeout).then(|| {
                    (
                        tp.clone(),
                        i64::try_from(idle.as_millis()).unwrap_or(i64::MAX),
                    )
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_only_partitions_idle_past_the_timeout() {
        let start = Instant::now();
        let mut clock = IdleClock::new(Duration::from_secs(10));
        let (a, b) = (TopicPartition::new("t", 0), TopicPartition::new("t", 1));
        clock.assigned(&a, start, Some(5));
        clock.assigned(&b, start, None);
        assert_eq!(clock.next_offset(&b), None);
        clock.record(&b, start + Duration::from_secs(8), 41);
        assert_eq!(
            (clock.next_offset(&a), clock.next_offset(&b)),
            (Some(5), Some(42))
        );
        let due = clock.due(start + Duration::from_secs(12));
        assert_eq!(due, vec![(a.clone(), 12_000)]);
        assert!(
            clock.due(start + Duration::from_secs(13)).is_empty(),
            "rate-limited"
        );
        clock.revoked(&a);
        assert!(clock
            .due(start + Duration::from_secs(30))
            .iter()
            .all(|(tp, _)| tp == &b));
    }

    #[test]
    fn a_pause_of_the_poll_loop_is_not_silence() {
        let start = Instant::now();
        let mut clock = IdleClock::new(Duration::from_secs(2));
        let tp = TopicPartition::new("t", 0);
        clock.assigned(&tp, start, Some(7));
        let mut now = start;
        // Polled every 100 ms for half a second, then frozen for 9 s.
        for _ in 0..5 {
            now += Duration::from_millis(100);
            clock.tick(now);
        }
        now += Duration::from_secs(9);
        clock.tick(now);
        assert!(clock.due(now).is_empty(), "the frozen 9 s are not silence");
        // Listening again, the partition is idle once the timeout passes.
        for _ in 0..21 {
            now += Duration::from_millis(100);
            clock.tick(now);
        }
        assert_eq!(clock.due(now), vec![(tp, 2_100)]);
    }
}
