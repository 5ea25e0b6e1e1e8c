//! End-to-end scenarios against real Kafka and real databases. Each scenario
//! is written once and run per backend.

mod common;

use common::db::{Kind, TestDb};
use common::kafka::{self, TestProducer};
use common::{pipeline_toml, unique, wait_for, Running};
use std::time::Duration;
use tidemill::observe::stats::Stats;

const PARTITIONS: i32 = 4;

per_backend!(
    insert_loads_every_record_exactly_once_and_commits_to_the_end,
    upsert_keeps_the_last_value_per_key,
    filtered_records_and_tombstones_still_advance_offsets,
    a_map_filter_that_reads_few_fields_loads_them_and_dead_letters_as_a_full_decode_would,
);

async fn insert_loads_every_record_exactly_once_and_commits_to_the_end(kind: Kind) {
    const N: i64 = 3000;
    let (topic, group) = (unique("insert"), unique("g"));
    kafka::create_topic(&topic, PARTITIONS).await;
    let db = TestDb::new(kind).await;
    db.exec("CREATE TABLE events (id BIGINT NOT NULL, k TEXT, v BIGINT, note TEXT DEFAULT 'none')")
        .await;
    let producer = TestProducer::new(&topic);
    for i in 0..N {
        let value = format!(
            r#"{{"id":{i},"k":"k{}","v":{},"unmapped":true}}"#,
            i % 50,
            i * 3
        );
        producer.send(Some(&format!("k{}", i % 50)), Some(&value));
    }
    producer.flush();

    let running = Running::start(&pipeline_toml(&topic, &group, db.url(), "events", "")).await;
    wait_for(
        "every record in the table",
        Duration::from_secs(60),
        || async { db.try_scalar("SELECT count(*) FROM events").await == Some(N) },
    )
    .await;
    wait_for(
        "offsets committed to the end",
        Duration::from_secs(30),
        || common::all_committed(&group, &topic, PARTITIONS),
    )
    .await;
    running.stop().await;

    assert_eq!(db.scalar("SELECT count(DISTINCT id) FROM events").await, N);
    assert_eq!(
        db.scalar("SELECT count(*) FROM events").await,
        N,
        "no duplicates"
    );
    assert_eq!(
        db.scalar("SELECT sum(v) FROM events").await,
        3 * N * (N - 1) / 2
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM events WHERE note = 'none'")
            .await,
        N,
        "columns absent from the records keep their default"
    );
}

async fn upsert_keeps_the_last_value_per_key(kind: Kind) {
    const KEYS: i64 = 20;
    const UPDATES: i64 = 150;
    let (topic, group) = (unique("upsert"), unique("g"));
    kafka::create_topic(&topic, PARTITIONS).await;
    let db = TestDb::new(kind).await;
    db.exec("CREATE TABLE latest (k BIGINT PRIMARY KEY, v BIGINT NOT NULL, seen BIGINT)")
        .await;
    let producer = TestProducer::new(&topic);
    for u in 0..UPDATES {
        for k in 0..KEYS {
            producer.send(
                Some(&k.to_string()),
                Some(&format!(r#"{{"k":{k},"v":{u},"seen":{}}}"#, u + 1)),
            );
        }
    }
    producer.flush();

    let extra = "mode = \"upsert\"\nkey_columns = [\"k\"]";
    let running = Running::start(&pipeline_toml(&topic, &group, db.url(), "latest", extra)).await;
    wait_for(
        "offsets committed to the end",
        Duration::from_secs(60),
        || common::all_committed(&group, &topic, PARTITIONS),
    )
    .await;
    running.stop().await;

    let rows = db.pairs("SELECT k, v FROM latest ORDER BY k").await;
    let expected: Vec<(i64, i64)> = (0..KEYS).map(|k| (k, UPDATES - 1)).collect();
    assert_eq!(rows, expected);
    assert_eq!(
        db.scalar("SELECT sum(seen) FROM latest").await,
        KEYS * UPDATES
    );
}

async fn filtered_records_and_tombstones_still_advance_offsets(kind: Kind) {
    let (topic, group) = (unique("filter"), unique("g"));
    kafka::create_topic(&topic, PARTITIONS).await;
    let db = TestDb::new(kind).await;
    db.exec("CREATE TABLE kept (id BIGINT PRIMARY KEY, doubled BIGINT)")
        .await;
    let producer = TestProducer::new(&topic);
    for i in 0..400 {
        producer.send(Some(&i.to_string()), Some(&format!(r#"{{"id":{i}}}"#)));
        if i % 10 == 0 {
            producer.send(Some(&i.to_string()), None);
        }
    }
    producer.flush();

    let toml = pipeline_toml(&topic, &group, db.url(), "kept", "")
        + "\n[[pipelines.p.transforms]]\ntype = \"jq\"\nexpr = 'select(.id % 4 == 0) | {id, doubled: (.id * 2)}'\n";
    let running = Running::start(&toml).await;
    wait_for(
        "offsets committed past filtered records and tombstones",
        Duration::from_secs(60),
        || common::all_committed(&group, &topic, PARTITIONS),
    )
    .await;
    assert_eq!(Stats::get(&running.stats.tombstones_skipped), 40);
    running.stop().await;

    assert_eq!(db.scalar("SELECT count(*) FROM kept").await, 100);
    assert_eq!(
        db.scalar("SELECT sum(doubled) FROM kept").await,
        (0..400).filter(|i| i % 4 == 0).map(|i| i * 2).sum::<i64>()
    );
}

/// `select(…) | {…}` on named fields decodes only those fields (projection
/// pushdown); bad payloads and records the fast path leaves to jaq still end
/// as a full decode would have them end.
async fn a_map_filter_that_reads_few_fields_loads_them_and_dead_letters_as_a_full_decode_would(
    kind: Kind,
) {
    const N: i64 = 600;
    let (topic, group, dlq) = (unique("project"), unique("g"), unique("dlq"));
    kafka::create_topic(&topic, PARTITIONS).await;
    let db = TestDb::new(kind).await;
    db.exec("CREATE TABLE picked (id BIGINT PRIMARY KEY, kind TEXT, value BIGINT)")
        .await;
    let producer = TestProducer::new(&topic);
    for i in 0..N {
        let kind = if i % 3 == 0 { "b" } else { "a" };
        let value = format!(
            r#"{{"id":{i},"kind":"{kind}","amount":{i},"qty":2,"tag":"t{i}","nested":{{"x":[1,{{"y":null}}]}}}}"#
        );
        producer.send(Some(&i.to_string()), Some(&value));
    }
    let poison = [
        (r#"{"id": 1, "kind": "#, "decode"),
        (
            r#"{"id": 1, "kind": "a", "amount": 1, "qty": 1, "tag": [1, }"#,
            "decode",
        ),
        ("[1, 2]", "transform"),
        (
            r#"{"id": 2, "kind": "a", "amount": {"a": 1}, "qty": 2}"#,
            "transform",
        ),
    ];
    for (payload, _) in poison {
        producer.send(Some("poison"), Some(payload));
    }
    producer.flush();

    let toml = format!(
        r#"{}
[pipelines.p.dead_letter]
topic = "{dlq}"

[[pipelines.p.transforms]]
type = "jq"
expr = 'select(.kind != "b") | {{id, kind, value: (.amount * .qty)}}'
"#,
        pipeline_toml(&topic, &group, db.url(), "picked", "")
    );
    let running = Running::start(&toml).await;
    wait_for("everything committed", Duration::from_secs(60), || {
        common::all_committed(&group, &topic, PARTITIONS)
    })
    .await;
    assert_eq!(
        Stats::get(&running.stats.dead_lettered),
        poison.len() as u64
    );
    running.stop().await;

    let kept: Vec<i64> = (0..N).filter(|i| i % 3 != 0).collect();
    assert_eq!(
        db.scalar("SELECT count(*) FROM picked WHERE kind = 'a'")
            .await,
        kept.len() as i64
    );
    assert_eq!(
        db.scalar("SELECT sum(value) FROM picked").await,
        kept.iter().map(|i| i * 2).sum::<i64>()
    );
    let letters = tokio::task::spawn_blocking(move || kafka::read_all(&dlq, poison.len()))
        .await
        .expect("read");
    for (payload, class) in poison {
        let letter = letters
            .iter()
            .find(|l| l.value.as_deref() == Some(payload.as_bytes()));
        assert_eq!(
            letter.and_then(|l| l.header("tidemill.error.class")),
            Some(class),
            "{payload}"
        );
    }
}
