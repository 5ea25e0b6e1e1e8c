//! Real Kafka: topics, producing, and reading a group's committed offsets.

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::time::Duration;

pub fn brokers() -> String {
    std::env::var("TIDEMILL_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

pub async fn create_topic(name: &str, partitions: i32) {
    create_topic_on(&brokers(), name, partitions, &[]).await
}

/// Creates a topic on `brokers` with topic-level `config` entries.
pub async fn create_topic_on(brokers: &str, name: &str, partitions: i32, config: &[(&str, &str)]) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("admin client");
    let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    for (k, v) in config {
        topic = topic.set(k, v);
    }
    let results = admin
        .create_topics(
            &[topic],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .expect("create_topics request");
    for r in results {
        r.expect("topic created");
    }
}

pub struct TestProducer {
    inner: ThreadedProducer<DefaultProducerContext>,
    topic: String,
}

impl TestProducer {
    pub fn new(topic: &str) -> Self {
        Self::on(&brokers(), topic)
    }

    pub fn on(brokers: &str, topic: &str) -> Self {
        let inner = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("message.max.bytes", "8000000")
            .set("linger.ms", "5")
            .set("enable.idempotence", "true")
            .create()
            .expect("producer");
        Self {
            inner,
            topic: topic.to_string(),
        }
    }

    /// Sends one record (keyed records of one key keep their order) without waiting.
    pub fn send(&self, key: Option<&str>, value: Option<&str>) {
        let mut record: BaseRecord<'_, str, str> = BaseRecord::to(&self.topic);
        if let Some(k) = key {
            record = record.key(k);
        }
        if let Some(v) = value {
            record = record.payload(v);
        }
        loop {
            match self.inner.send(record) {
                Ok(()) => return,
                Err((e, r)) => {
                    assert_eq!(
                        e.rdkafka_error_code(),
                        Some(rdkafka::types::RDKafkaErrorCode::QueueFull),
                        "produce failed: {e}"
                    );
                    record = r;
                    self.inner.poll(Duration::from_millis(10));
                }
            }
        }
    }

    /// Sends one record with headers to an explicit partition.
    pub fn send_with_headers(
        &self,
        partition: i32,
        key: &str,
        value: &str,
        headers: &[(&str, &str)],
    ) {
        let mut owned = rdkafka::message::OwnedHeaders::new();
        for (k, v) in headers {
            owned = owned.insert(rdkafka::message::Header {
                key: k,
                value: Some(*v),
            });
        }
        let record: BaseRecord<'_, str, str> = BaseRecord::to(&self.topic)
            .partition(partition)
            .key(key)
            .payload(value)
            .headers(owned);
        self.inner.send(record).map_err(|(e, _)| e).expect("send");
    }

    /// Sends one record to an explicit partition.
    pub fn send_to(&self, partition: i32, key: &str, value: &str) {
        let record: BaseRecord<'_, str, str> = BaseRecord::to(&self.topic)
            .partition(partition)
            .key(key)
            .payload(value);
        self.inner.send(record).map_err(|(e, _)| e).expect("send");
    }

    /// Waits until every record sent so far is acknowledged by the broker.
    pub fn flush(&self) {
        self.inner.flush(Duration::from_secs(30)).expect("flush");
    }
}

/// Sets one topic-level config entry.
pub async fn alter_topic(topic: &str, key: &str, value: &str) {
    use rdkafka::admin::{AlterConfig, ResourceSpecifier};
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .expect("admin client");
    let results = admin
        .alter_configs(
            &[AlterConfig::new(ResourceSpecifier::Topic(topic)).set(key, value)],
            &AdminOptions::new(),
        )
        .await
        .expect("alter_configs request");
    for r in results {
        r.expect("config altered");
    }
}

/// Adds partitions to a topic, up to `total`.
pub async fn add_partitions(topic: &str, total: usize) {
    use rdkafka::admin::NewPartitions;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .expect("admin client");
    let results = admin
        .create_partitions(&[NewPartitions::new(topic, total)], &AdminOptions::new())
        .await
        .expect("create_partitions request");
    for r in results {
        r.expect("partitions added");
    }
}

/// Per partition: the group's committed offset (next to read), or -1 when none.
pub fn committed(group: &str, topic: &str, partitions: i32) -> Vec<i64> {
    committed_on(&brokers(), group, topic, partitions)
}

pub fn committed_on(brokers: &str, group: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let offsets = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets");
    (0..partitions)
        .map(
            |p| match offsets.find_partition(topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => o,
                _ => -1,
            },
        )
        .collect()
}

/// Per partition: the high watermark (one past the last offset).
pub fn high_watermarks(topic: &str, partitions: i32) -> Vec<i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .expect("consumer");
    (0..partitions)
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .expect("watermarks")
                .1
        })
        .collect()
}

/// A consumed record, for checking dead letters.
#[derive(Debug, Clone)]
pub struct Consumed {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, String)>,
}

impl Consumed {
    pub fn header(&self, key: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads `topic` from the start until `n` records arrived (or 30 s passed).
pub fn read_all(topic: &str, n: usize) -> Vec<Consumed> {
    use rdkafka::message::{Headers, Message};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", super::unique("reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut out = Vec::new();
    while out.len() < n && std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let headers = m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| {
                            (
                                h.key.to_string(),
                                String::from_utf8_lossy(h.value.unwrap_or_default()).to_string(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            out.push(Consumed {
                key: m.key().map(<[u8]>::to_vec),
                value: m.payload().map(<[u8]>::to_vec),
                headers,
            });
        }
    }
    out
}
