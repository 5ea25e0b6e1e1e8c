//! Kafka-side faults: a broker restart mid-run (on each database), a topic that does not exist
//! yet, partitions added while running, records over the fetch and batch limits.

mod common;

use common::db::{Kind, TestDb};
use common::kafka::{self, TestProducer};
use common::private_kafka::PrivateKafka;
use common::{all_committed, pipeline_toml, unique, wait_for, Running};
use std::time::Duration;

per_backend!(a_broker_restart_mid_run_loses_and_duplicates_nothing);

async fn a_broker_restart_mid_run_loses_and_duplicates_nothing(kind: Kind) {
    let mut broker = tokio::task::spawn_blocking(PrivateKafka::start)
        .await
        .expect("private kafka");
    let brokers = broker.brokers();
    let (topic, group) = (unique("restart"), unique("g"));
    kafka::create_topic_on(&brokers, &topic, 3, &[]).await;
    let db = TestDb::new(kind).await;
    db.exec("CREATE TABLE log (id BIGINT NOT NULL)").await;
    let send = |range: std::ops::Range<i64>| {
        let producer = TestProducer::on(&brokers, &topic);
        for i in range {
            producer.send(
                Some(&(i % 31).to_string()),
                Some(&format!(r#"{{"id":{i}}}"#)),
            );
        }
        producer.flush();
    };
    send(0..3000);
    let toml =
        pipeline_toml(&topic, &group, db.url(), "log", "").replace(&kafka::brokers(), &brokers);
    let running = Running::start(&toml).await;
    wait_for("first wave loaded", Duration::from_secs(60), || async {
        db.try_scalar("SELECT count(*) FROM log").await == Some(3000)
    })
    .await;

    let mut broker = tokio::task::spawn_blocking(move || {
        broker.stop_broker();
        broker.start_broker();
        broker
    })
    .await
    .expect("restart broker");
    send(3000..6000);
    wait_for(
        "second wave loaded after the restart",
        Duration::from_secs(120),
        || async { db.try_scalar("SELECT count(*) FROM log").await == Some(6000) },
    )
    .await;
    let committed_to_end = || {
        let (b, g, t) = (brokers.clone(), group.clone(), topic.clone());
        async move {
            tokio::task::spawn_blocking(move || {
                let high: Vec<i64> = (0..3).map(|p| high_watermark(&b, &t, p)).collect();
                kafka::committed_on(&b, &g, &t, 3) == high
            })
            .await
            .expect("offset check")
        }
    };
    wait_for(
        "offsets committed on the restarted broker",
        Duration::from_secs(60),
        committed_to_end,
    )
    .await;
    running.stop().await;
    broker.stop_broker();
    assert_eq!(
        db.scalar("SELECT count(*) FROM log").await,
        6000,
        "no duplicates"
    );
    assert_eq!(
        db.scalar("SELECT count(DISTINCT id) FROM log").await,
        6000,
        "nothing lost"
    );
}

fn high_watermark(brokers: &str, topic: &str, partition: i32) -> i64 {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("consumer");
    consumer
        .fetch_watermarks(topic, partition, Duration::from_secs(10))
        .expect("watermarks")
        .1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_created_after_start_and_partitions_added_later_are_consumed() {
    let (topic, group) = (unique("late"), unique("g"));
    let db = TestDb::postgres().await;
    db.exec("CREATE TABLE t (id BIGINT PRIMARY KEY, p INT)")
        .await;
    let running = Running::start(&pipeline_toml(&topic, &group, db.url(), "t", "")).await;

    kafka::create_topic(&topic, 2).await;
    let producer = TestProducer::new(&topic);
    for i in 0..100 {
        producer.send_to(i % 2, "k", &format!(r#"{{"id":{i},"p":{}}}"#, i % 2));
    }
    producer.flush();
    wait_for(
        "records of the late topic loaded",
        Duration::from_secs(60),
        || async { db.try_scalar("SELECT count(*) FROM t").await == Some(100) },
    )
    .await;

    kafka::add_partitions(&topic, 4).await;
    // The producer learns of the new partitions on its own metadata refresh.
    let producer = TestProducer::new(&topic);
    for i in 100..200 {
        producer.send_to(i % 4, "k", &format!(r#"{{"id":{i},"p":{}}}"#, i % 4));
    }
    producer.flush();
    wait_for(
        "records of the added partitions loaded",
        Duration::from_secs(60),
        || async { db.try_scalar("SELECT count(*) FROM t WHERE p >= 2").await == Some(50) },
    )
    .await;
    wait_for("every partition committed", Duration::from_secs(30), || {
        all_committed(&group, &topic, 4)
    })
    .await;
    running.stop().await;
    assert_eq!(db.scalar("SELECT count(*) FROM t").await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_larger_than_the_fetch_and_batch_limits_still_loads() {
    let (topic, group) = (unique("big"), unique("g"));
    kafka::create_topic_on(
        &kafka::brokers(),
        &topic,
        1,
        &[("max.message.bytes", "4000000")],
    )
    .await;
    let db = TestDb::postgres().await;
    db.exec("CREATE TABLE t (id BIGINT PRIMARY KEY, doc TEXT)")
        .await;
    let producer = TestProducer::new(&topic);
    let big = "z".repeat(3_000_000);
    producer.send(None, Some(r#"{"id":1,"doc":"small"}"#));
    producer.send(None, Some(&format!(r#"{{"id":2,"doc":"{big}"}}"#)));
    producer.send(None, Some(r#"{"id":3,"doc":"small"}"#));
    producer.flush();
    let toml = pipeline_toml(&topic, &group, db.url(), "t", "").replace(
        "max_rows = 500",
        "max_rows = 500\nmax_bytes = 1000000\nmax_in_flight_bytes = 1000000",
    );
    let running = Running::start(&toml).await;
    wait_for("all three loaded", Duration::from_secs(60), || {
        all_committed(&group, &topic, 1)
    })
    .await;
    running.stop().await;
    assert_eq!(db.scalar("SELECT count(*) FROM t").await, 3);
    assert_eq!(
        db.scalar("SELECT length(doc) FROM t WHERE id = 2").await,
        3_000_000
    );
}

/// A broker outage is not an idle topic: windows whose partitions could not be
/// fetched while the broker was away must not close early, or the records
/// produced meanwhile (delivered once it is back) would be late.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_does_not_make_the_records_produced_meanwhile_late() {
    const OUTAGE: Duration = Duration::from_secs(10);
    let mut broker = tokio::task::spawn_blocking(PrivateKafka::start)
        .await
        .expect("private kafka");
    let brokers = broker.brokers();
    let (topic, group) = (unique("outage"), unique("g"));
    kafka::create_topic_on(&brokers, &topic, 2, &[]).await;
    let db = TestDb::postgres().await;
    db.exec("CREATE TABLE w (user_id BIGINT NOT NULL, window_start BIGINT NOT NULL, window_end BIGINT NOT NULL, n BIGINT NOT NULL)")
        .await;
    // No dead-letter topic: a late record stops the pipeline.
    let toml = format!(
        "[health]\nstatistics_interval = \"500ms\"\n{}\n\
         [[pipelines.p.transforms]]\ntype = \"key\"\nfields = [\"user_id\"]\n\
         [[pipelines.p.transforms]]\ntype = \"aggregate\"\ncolumns = {{ n = \"count()\" }}\n\
         window = {{ kind = \"tumbling\", size = \"1s\", time_field = \"ts\", idle_timeout = \"3s\" }}\n",
        pipeline_toml(&topic, &group, db.url(), "w", "")
            .replace(&kafka::brokers(), &brokers)
            // The member outlives the outage: its partitions stay assigned
            // (a lost assignment would restart the idle clock anyway).
            .replace(common::group_settings(), "session_timeout = \"30s\"")
    );
    // Event time is the wall clock, as for live data.
    let send = |ids: std::ops::Range<i64>, ts: i64| {
        let producer = TestProducer::on(&brokers, &topic);
        for i in ids {
            let record = format!(r#"{{"user_id":{},"ts":{}}}"#, i % 4, ts + i % 100);
            producer.send(Some(&(i % 4).to_string()), Some(&record));
        }
        producer.flush();
    };
    let now_ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis() as i64
    };
    let running = Running::start(&toml).await;
    send(0..200, now_ms());
    wait_for(
        "the first wave's windows closed by idleness",
        Duration::from_secs(60),
        || async { db.try_scalar("SELECT coalesce(sum(n), 0) FROM w").await == Some(200) },
    )
    .await;
    let broker_down = now_ms();
    let mut broker = tokio::task::spawn_blocking(move || {
        broker.stop_broker();
        std::thread::sleep(OUTAGE); // the fault: how long the broker is away
        broker.start_broker();
        broker
    })
    .await
    .expect("restart broker");
    // Records whose event time is during the outage: a producer buffered them
    // and delivers them now.
    send(200..400, broker_down + 1_000);
    wait_for(
        "the second wave's windows",
        Duration::from_secs(60),
        || async {
            assert!(
                !running.handle.is_finished(),
                "the pipeline stopped (a late record?)"
            );
            db.try_scalar("SELECT coalesce(sum(n), 0) FROM w").await == Some(400)
        },
    )
    .await;
    running.stop().await;
    broker.stop_broker();
}
