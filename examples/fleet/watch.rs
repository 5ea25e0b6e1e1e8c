//! What the run observes while it runs: a steady producer (pausable, so a
//! step can settle exactly), and a sampler of every partition's high
//! watermark and database checkpoint every 100 ms, from which the "blip"
//! (the longest time a partition with lag made no progress) is computed.

use crate::db::Db;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer as _, ThreadedProducer};
use rdkafka::ClientConfig;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Keys of the running totals: record `i` has key `i % KEYS` and value `i % 97`.
pub const KEYS: i64 = 500;

pub struct Producer {
    pub produced: Arc<AtomicI64>,
    paused: Arc<AtomicBool>,
    idle: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Producer {
    /// Sends `rate` records/s to `topic` in 10 ms slices until stopped.
    pub fn start(brokers: &str, topic: &str, rate: u64) -> anyhow::Result<Self> {
        // Threaded: librdkafka's events are served on a thread of their own.
        let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("linger.ms", "5")
            .create()?;
        let (produced, paused, idle, stop) = (
            Arc::new(AtomicI64::new(0)),
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let (p, pa, id, st, topic) = (
            Arc::clone(&produced),
            Arc::clone(&paused),
            Arc::clone(&idle),
            Arc::clone(&stop),
            topic.to_string(),
        );
        let thread = std::thread::spawn(move || {
            let per_slice = (rate / 100).max(1) as i64;
            let mut next = Instant::now();
            while !st.load(Ordering::Relaxed) {
                if pa.load(Ordering::Relaxed) {
                    if !id.load(Ordering::Relaxed) {
                        producer
                            .flush(Duration::from_secs(30))
                            .expect("the producer flushes within 30 s");
                        id.store(true, Ordering::Release);
                    }
                    std::thread::sleep(Duration::from_millis(5)); // paced idle
                    next = Instant::now();
                    continue;
                }
                let first = p.load(Ordering::Relaxed);
                for i in first..first + per_slice {
                    let value = format!(
                        r#"{{"id":{i},"k":{},"v":{},"ts":{}}}"#,
                        i % KEYS,
                        i % 97,
                        now_ms()
                    );
                    let key = (i % KEYS).to_string();
                    let mut record = BaseRecord::to(&topic).key(&key).payload(&value);
                    loop {
                        match producer.send(record) {
                            Ok(()) => break,
                            Err((_, r)) => {
                                std::thread::sleep(Duration::from_millis(1)); // queue full: back off
                                record = r;
                            }
                        }
                    }
                }
                p.store(first + per_slice, Ordering::Relaxed);
                next += Duration::from_millis(10);
                if let Some(wait) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait); // pacing the stream, not synchronisation
                }
            }
            producer
                .flush(Duration::from_secs(30))
                .expect("the producer flushes within 30 s");
        });
        Ok(Self {
            produced,
            paused,
            idle,
            stop,
            thread: Some(thread),
        })
    }

    /// Pauses and returns how many records were produced (all acknowledged).
    pub fn pause(&self) -> i64 {
        self.idle.store(false, Ordering::Release);
        self.paused.store(true, Ordering::Release);
        while !self.idle.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(5)); // polling interval
        }
        self.produced.load(Ordering::Relaxed)
    }

    pub fn resume(&self) {
        self.paused.store(false, Ordering::Release);
    }

    pub fn stop(mut self) -> i64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("producer thread");
        }
        self.produced.load(Ordering::Relaxed)
    }
}

#[derive(Clone, Debug)]
pub struct Sample {
    pub t_ms: i64,
    pub high: Vec<i64>,
    pub checkpoint: Vec<i64>,
}

pub struct Sampler {
    pub samples: Arc<Mutex<Vec<Sample>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    /// Samples every partition of `topic` every 100 ms: its high watermark and
    /// the `log` pipeline's database checkpoint.
    pub fn start(
        brokers: &str,
        topic: &str,
        partitions: i32,
        db: Arc<Db>,
        rt: tokio::runtime::Handle,
    ) -> anyhow::Result<Self> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .create()?;
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (out, st, topic) = (Arc::clone(&samples), Arc::clone(&stop), topic.to_string());
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                let t_ms = now_ms();
                let high: Vec<i64> = (0..partitions)
                    .map(|p| {
                        consumer
                            .fetch_watermarks(&topic, p, Duration::from_secs(2))
                            .map_or(-1, |w| w.1)
                    })
                    .collect();
                let mut checkpoint = vec![0; partitions as usize];
                if let Ok(rows) = rt.block_on(db.checkpoints("log")) {
                    for (p, next) in rows {
                        if let Some(slot) = checkpoint.get_mut(p as usize) {
                            *slot = next;
                        }
                    }
                }
                out.lock().expect("samples").push(Sample {
                    t_ms,
                    high,
                    checkpoint,
                });
                std::thread::sleep(Duration::from_millis(100)); // sampling period
            }
        });
        Ok(Self {
            samples,
            stop,
            thread: Some(thread),
        })
    }

    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// The longest time, in `[from, to)`, any partition had lag and its
    /// checkpoint did not move, in ms.
    pub fn blip(&self, from: i64, to: i64) -> i64 {
        blip(&self.samples.lock().expect("samples"), from, to)
    }
}

pub fn blip(samples: &[Sample], from: i64, to: i64) -> i64 {
    let window: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.t_ms >= from && s.t_ms < to)
        .collect();
    let partitions = window.first().map_or(0, |s| s.high.len());
    let mut worst = 0;
    for p in 0..partitions {
        let mut stuck_since: Option<(i64, i64)> = None; // (since, checkpoint then)
        for s in &window {
            let (high, at) = (s.high[p], s.checkpoint[p]);
            let lagging = high >= 0 && high > at;
            stuck_since = match stuck_since {
                Some((since, was)) if lagging && at == was => {
                    worst = worst.max(s.t_ms - since);
                    Some((since, was))
                }
                _ if lagging => Some((s.t_ms, at)),
                _ => None,
            };
        }
    }
    worst
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(t_ms: i64, high: i64, checkpoint: i64) -> Sample {
        Sample {
            t_ms,
            high: vec![high],
            checkpoint: vec![checkpoint],
        }
    }

    #[test]
    fn a_blip_is_the_longest_stretch_with_lag_and_no_progress() {
        let samples = [
            s(0, 10, 10),
            s(100, 20, 10), // lag appears, stuck from 100
            s(200, 30, 10),
            s(600, 40, 10), // still stuck: 500 ms
            s(700, 40, 35), // progress
            s(800, 40, 40), // caught up
            s(900, 50, 40), // lag again, stuck from 900
            s(1000, 50, 40),
        ];
        assert_eq!(blip(&samples, 0, 2000), 500);
        assert_eq!(blip(&samples, 700, 2000), 100);
    }
}
