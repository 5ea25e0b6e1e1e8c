//! Load generator: creates a topic (if missing) and produces N generated JSON
//! events of ~150 bytes as fast as the broker takes them, with a fixed seed.
//!
//! cargo run --release --example loadgen -- BROKERS TOPIC PARTITIONS RECORDS
//!
//! With `LOADGEN_TRACEPARENT=P` set, every record carries a W3C `traceparent`
//! header with a random trace id, flagged sampled on P percent of them (as a
//! producer sampling at P% would send them): to measure tracing's cost.

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;
use std::time::{Duration, Instant};

const TYPES: [&str; 8] = [
    "view", "click", "cart", "buy", "refund", "login", "logout", "search",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [brokers, topic, partitions, records] = args.as_slice() else {
        return Err("usage: loadgen BROKERS TOPIC PARTITIONS RECORDS".into());
    };
    let (partitions, records): (i32, u64) = (partitions.parse()?, records.parse()?);
    create_topic(brokers, topic, partitions)?;
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("compression.type", "lz4")
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    let traced: Option<f64> = match std::env::var("LOADGEN_TRACEPARENT") {
        Ok(p) => Some(p.parse::<f64>()? / 100.0),
        Err(_) => None,
    };
    let mut rng = fastrand::Rng::with_seed(42);
    let started = Instant::now();
    let mut value = String::with_capacity(200);
    for i in 0..records {
        let key = format!("k{}", rng.u32(..100_000));
        value.clear();
        value.push_str(&format!(
            r#"{{"event_id":{i},"key":"{key}","ts":"2026-11-23T12:{:02}:{:02}.{:03}Z","type":"{}","amount":{}.{:02},"qty":{},"tag":"t{}"}}"#,
            (i / 60_000) % 60,
            (i / 1000) % 60,
            i % 1000,
            TYPES[rng.usize(..TYPES.len())],
            rng.u32(..10_000),
            rng.u32(..100),
            rng.u32(1..20),
            rng.u32(..1000)
        ));
        let mut record = BaseRecord::to(topic).key(&key).payload(&value);
        if let Some(share) = traced {
            let flags = if rng.f64() < share { "01" } else { "00" };
            let parent = format!("00-{:032x}-{:016x}-{flags}", rng.u128(1..), rng.u64(1..));
            let headers = rdkafka::message::OwnedHeaders::new().insert(rdkafka::message::Header {
                key: "traceparent",
                value: Some(&parent),
            });
            record = record.headers(headers);
        }
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((e, r)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) => {
                    record = r;
                    producer.poll(Duration::from_millis(5));
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
    }
    producer.flush(Duration::from_secs(120))?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "loadgen: produced {records} records to {topic} in {secs:.2}s ({:.0} records/s)",
        records as f64 / secs
    );
    Ok(())
}

fn create_topic(
    brokers: &str,
    topic: &str,
    partitions: i32,
) -> Result<(), Box<dyn std::error::Error>> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let results = runtime.block_on(admin.create_topics(
        &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
        &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
    ))?;
    for r in results {
        match r {
            Ok(_) => {}
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, e)) => return Err(format!("creating {t}: {e}").into()),
        }
    }
    Ok(())
}
