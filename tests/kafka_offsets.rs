//! Kafka's committed offsets tell the truth: lag monitors, KEDA and
//! `kafka-consumer-groups` read them, so after crashes and rebalances they
//! must converge to the database's exactly-once checkpoint, per partition,
//! even when no new batch comes to carry a retried commit — on every backend.

mod common;

use common::db::{Kind, TestDb};
use common::kafka::{self, TestProducer};
use common::process::Tidemill;
use common::{pipeline_toml, unique, wait_for};
use std::time::Duration;

const PARTITIONS: i32 = 6;

/// The database checkpoint (next offset to read) per partition, -1 where none.
async fn checkpoints(db: &TestDb, topic: &str) -> Vec<i64> {
    let mut out = Vec::new();
    for p in 0..PARTITIONS {
        let next = db
            .try_scalar(&format!(
                "SELECT next_offset FROM tidemill_offsets WHERE topic = '{topic}' AND partition_id = {p}"
            ))
            .await;
        out.push(next.unwrap_or(-1));
    }
    out
}

async fn kafka_committed(group: &str, topic: &str) -> Vec<i64> {
    let (group, topic) = (group.to_string(), topic.to_string());
    tokio::task::spawn_blocking(move || kafka::committed(&group, &topic, PARTITIONS))
        .await
        .expect("committed offsets")
}

async fn after_crashes_and_rebalances_kafka_offsets_equal_the_database_checkpoint(kind: Kind) {
    const N: i64 = 6_000;
    let (topic, group) = (unique("truth"), unique("g"));
    kafka::create_topic(&topic, PARTITIONS).await;
    let db = TestDb::new(kind).await;
    db.exec("CREATE TABLE t (id BIGINT PRIMARY KEY, v BIGINT)")
        .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("tidemill.toml");
    std::fs::write(&config, pipeline_toml(&topic, &group, db.url(), "t", "")).expect("config");

    let producer = TestProducer::new(&topic);
    let send = |from: i64, to: i64| {
        for i in from..to {
            producer.send(
                Some(&i.to_string()),
                Some(&format!(r#"{{"id":{i},"v":{i}}}"#)),
            );
        }
        producer.flush();
    };
    let count = || async { db.try_scalar("SELECT count(*) FROM t").await.unwrap_or(0) };

    // Two members; one is killed and replaced twice while records flow, so
    // commits land in the middle of rebalances.
    let mut a = Tidemill::start(&config, "a0");
    let mut b = Tidemill::start(&config, "b0");
    send(0, N / 3);
    wait_for("loading under way", Duration::from_secs(60), || async {
        count().await >= N / 6
    })
    .await;
    b.kill();
    send(N / 3, 2 * N / 3);
    b = Tidemill::start(&config, "b1");
    wait_for(
        "loading after the first crash",
        Duration::from_secs(60),
        || async { count().await >= N / 2 },
    )
    .await;
    a.kill();
    a = Tidemill::start(&config, "a1");
    send(2 * N / 3, N);
    wait_for(
        "every record in the table",
        Duration::from_secs(120),
        || async { count().await == N },
    )
    .await;

    // Nothing new arrives from here: whatever commit failed must be retried
    // by idle members, until Kafka's offsets equal the database's.
    let db_ref = &db;
    wait_for(
        "Kafka's committed offsets to equal the database checkpoint",
        Duration::from_secs(60),
        || async {
            let at_end = kafka::high_watermarks(&topic, PARTITIONS);
            let in_db = checkpoints(db_ref, &topic).await;
            in_db == at_end && kafka_committed(&group, &topic).await == in_db
        },
    )
    .await;
    assert!(a.is_running() && b.is_running(), "both members still up");
    assert!(a.terminate(), "{}", a.log_text());
    assert!(b.terminate(), "{}", b.log_text());
    assert_eq!(db.scalar("SELECT count(DISTINCT id) FROM t").await, N);
    assert_eq!(db.scalar("SELECT sum(v) FROM t").await, N * (N - 1) / 2);
    assert_eq!(
        kafka_committed(&group, &topic).await,
        checkpoints(&db, &topic).await,
        "still equal after both members left"
    );
}

per_backend!(after_crashes_and_rebalances_kafka_offsets_equal_the_database_checkpoint);
