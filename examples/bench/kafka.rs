//! Kafka side of the generator: topics, the backlog producer (produce N as
//! fast as the broker takes them) and the open-loop rate producer.
//!
//! In rate mode record `i` is scheduled at `t0 + i / R` and sent as soon as
//! its time has come (never earlier); if the sender stalls it catches up, and
//! latency is still measured from the schedule, so a stall cannot hide
//! latency. Delivery reports map each record to its (partition, offset).

use crate::gen::{Expected, Generator, BACKLOG_EVENTS_PER_SEC, PARTITIONS};
use anyhow::{bail, Context as _};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::message::Message as _;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub const BROKERS: &str = "127.0.0.1:9092";

pub fn now_ms() -> i64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(d.as_millis()).expect("ms fit i64")
}

fn admin() -> anyhow::Result<AdminClient<DefaultClientContext>> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", BROKERS)
        .create()?)
}

pub async fn create_topic(topic: &str) -> anyhow::Result<()> {
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let new = NewTopic::new(topic, PARTITIONS, TopicReplication::Fixed(1));
    for r in admin()?.create_topics(&[new], &opts).await? {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, e)) => bail!("creating topic {t}: {e}"),
        }
    }
    Ok(())
}

pub async fn delete_topics(topics: &[String]) -> anyhow::Result<()> {
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    admin()?.delete_topics(&names, &AdminOptions::new()).await?;
    Ok(())
}

/// (record index within a send, partition, offset, when acknowledged) of each
/// acknowledged record.
#[derive(Default)]
pub struct Deliveries {
    pub acked: Mutex<Vec<(usize, i32, i64, Instant)>>,
    pub count: AtomicU64,
    pub errors: AtomicU64,
}

struct Ctx(Arc<Deliveries>);

impl ClientContext for Ctx {}

impl ProducerContext for Ctx {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, idx: usize) {
        match result {
            Ok(m) => {
                if let Ok(mut v) = self.0.acked.lock() {
                    v.push((idx, m.partition(), m.offset(), Instant::now()));
                }
                self.0.count.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                self.0.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

type Prod = ThreadedProducer<Ctx>;

fn producer(linger_ms: &str, track: Arc<Deliveries>) -> anyhow::Result<Prod> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", BROKERS)
        .set("linger.ms", linger_ms)
        .set("batch.size", "1000000")
        .set("compression.type", "lz4")
        .set("queue.buffering.max.messages", "1000000")
        .create_with_context(Ctx(track))?)
}

fn send(p: &Prod, topic: &str, key: &str, value: &str, idx: usize) -> anyhow::Result<()> {
    let mut record = BaseRecord::with_opaque_to(topic, idx)
        .key(key)
        .payload(value);
    loop {
        match p.send(record) {
            Ok(()) => return Ok(()),
            Err((e, r)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) => {
                record = r;
                p.poll(Duration::from_millis(1));
            }
            Err((e, _)) => return Err(e).context("producing"),
        }
    }
}

fn finish(p: &Prod, d: &Deliveries) -> anyhow::Result<()> {
    p.flush(Duration::from_secs(120))?;
    let errors = d.errors.load(Ordering::Relaxed);
    if errors > 0 {
        bail!("{errors} records were not delivered");
    }
    Ok(())
}

/// Event time of backlog record `i` given the run's base (epoch ms).
pub fn backlog_ts(base: i64, i: u64) -> i64 {
    base + i64::try_from(i * 1000 / BACKLOG_EVENTS_PER_SEC).expect("small")
}

/// Produces `n` records (event time synthetic at 100k records/s, ending in
/// the past); returns the seconds it took and the event-time base.
pub fn produce_backlog(
    topic: &str,
    gen: &mut Generator,
    n: u64,
    expected: &mut Expected,
) -> anyhow::Result<(f64, i64)> {
    let track = Arc::new(Deliveries::default());
    let p = producer("20", track.clone())?;
    let span_ms = i64::try_from(n * 1000 / BACKLOG_EVENTS_PER_SEC).expect("small");
    let base = now_ms() - span_ms - 60_000;
    let started = Instant::now();
    let mut buf = String::with_capacity(256);
    for i in 0..n {
        let e = gen.next(backlog_ts(base, i));
        e.write_json(&mut buf);
        expected.add(&e);
        send(&p, topic, &e.key_str(), &buf, 0)?;
    }
    finish(&p, &track)?;
    Ok((started.elapsed().as_secs_f64(), base))
}

/// The outcome of one open-loop send.
pub struct RateRun {
    pub t0: Instant,
    pub rate: f64,
    pub sent: u64,
    /// Records actually sent per second of wall time (below `rate` when the
    /// sender could not keep up).
    pub achieved: f64,
    pub deliveries: Arc<Deliveries>,
}

impl RateRun {
    /// Scheduled send time of record `idx`, as an offset from `t0`.
    pub fn scheduled(&self, idx: usize) -> Duration {
        Duration::from_secs_f64(idx as f64 / self.rate)
    }
}

/// Sends `rate` records/s for `secs` seconds, open loop. `deliveries` is
/// shared so a sampler can watch `count` while this runs.
pub fn produce_rate(
    topic: &str,
    gen: &mut Generator,
    rate: f64,
    secs: f64,
    expected: &mut Expected,
    deliveries: Arc<Deliveries>,
) -> anyhow::Result<RateRun> {
    // librdkafka's default linger (5 ms). With 1 ms the broker, sharing two
    // cores with everything else, fell behind the stream of small produce
    // requests and the send → broker-ack leg alone reached p99 ≈ 1 s at 18k/s.
    let p = producer("5", deliveries.clone())?;
    let total = (rate * secs) as usize;
    let t0 = Instant::now();
    let wall0 = now_ms();
    let mut buf = String::with_capacity(256);
    let mut i = 0usize;
    while i < total {
        let due = ((t0.elapsed().as_secs_f64() * rate) as usize + 1).min(total);
        while i < due {
            let at_ms = (i as f64 * 1000.0 / rate) as i64;
            let e = gen.next(wall0 + at_ms);
            e.write_json(&mut buf);
            expected.add(&e);
            send(&p, topic, &e.key_str(), &buf, i)?;
            i += 1;
        }
        std::thread::sleep(Duration::from_micros(500)); // pacing tick, not synchronisation
    }
    let achieved = total as f64 / t0.elapsed().as_secs_f64();
    finish(&p, &deliveries)?;
    Ok(RateRun {
        t0,
        rate,
        sent: total as u64,
        achieved,
        deliveries,
    })
}
