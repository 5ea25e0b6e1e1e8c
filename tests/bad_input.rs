//! Bad input loses nothing: one stream mixing good records with every kind of
//! bad one ends with each good record in the table exactly once (exactly-once
//! mode) and each bad one in the dead-letter topic, bytes untouched, with its reason.

mod common;

use common::db::{Kind, TestDb};
use common::kafka::{self, TestProducer};
use common::{all_committed, pipeline_toml, unique, wait_for, Running};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::ClientConfig;
use std::collections::BTreeSet;
use std::time::Duration;
use tidemill::observe::stats::Stats;

per_backend!(every_good_record_loads_once_and_every_bad_one_is_dead_lettered_with_its_reason);

fn ddl(kind: Kind) -> &'static str {
    match kind {
        Kind::Postgres | Kind::MariaDb => "CREATE TABLE items (id BIGINT PRIMARY KEY, qty INT NOT NULL CHECK (qty >= 0), name VARCHAR(20), doc TEXT)",
        // STRICT: SQLite then refuses values of the wrong type, as PostgreSQL does.
        Kind::Sqlite => "CREATE TABLE items (id INTEGER PRIMARY KEY, qty INTEGER NOT NULL CHECK (qty >= 0), name TEXT CHECK (length(name) <= 20), doc TEXT) STRICT",
    }
}

fn send_bytes(topic: &str, key: Option<&[u8]>, value: &[u8]) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", kafka::brokers())
        .create()
        .expect("producer");
    let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic).payload(value);
    if let Some(k) = key {
        record = record.key(k);
    }
    producer.send(record).map_err(|(e, _)| e).expect("send");
    producer.flush(Duration::from_secs(10)).expect("flush");
}

async fn every_good_record_loads_once_and_every_bad_one_is_dead_lettered_with_its_reason(
    kind: Kind,
) {
    bad_input_scenario(kind, "").await
}

/// The same stream through PostgreSQL's `COPY` path (every batch qualifies).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_postgres_copy_every_good_record_loads_once_and_every_bad_one_is_dead_lettered() {
    bad_input_scenario(Kind::Postgres, "copy_threshold = 1").await
}

async fn bad_input_scenario(kind: Kind, sink_extra: &str) {
    let (topic, group, dlq) = (unique("bad"), unique("g"), unique("dlq"));
    kafka::create_topic(&topic, 1).await;
    let db = TestDb::new(kind).await;
    db.exec(ddl(kind)).await;

    let producer = TestProducer::new(&topic);
    let mut good = BTreeSet::new();
    let mut bad: Vec<(Vec<u8>, &str)> = Vec::new(); // (value bytes, expected error class)
    for id in 0..40_i64 {
        let key = (id % 3 != 0).then(|| id.to_string()); // a third with null keys
        producer.send(
            key.as_deref(),
            Some(&format!(r#"{{"id":{id},"qty":{id},"name":"n{id}"}}"#)),
        );
        good.insert(id);
        if id == 10 {
            producer.send(Some("t"), None); // tombstone: skipped, offset advances
        }
    }
    let refused = [
        (r#"{"id":100,"qty":-1}"#, "data"),        // CHECK violation
        (r#"{"id":101,"name":"no qty"}"#, "data"), // NOT NULL violation
        (r#"{"id":102,"qty":"lots"}"#, "data"),    // wrong type
        (
            r#"{"id":103,"qty":1,"name":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}"#,
            "data",
        ), // too long
        (r#"{"id":5,"qty":5,"name":"duplicate key"}"#, "data"), // unique violation within the stream
        (r#"{"id":104,"qty":1"#, "decode"),                     // invalid JSON
    ];
    for (value, class) in refused {
        producer.send(Some("bad"), Some(value));
        bad.push((value.as_bytes().to_vec(), class));
    }
    producer.flush();
    let invalid_utf8 = b"{\"id\":105,\"qty\":1,\"name\":\"\xff\xfe\"}".to_vec();
    send_bytes(&topic, None, &invalid_utf8);
    bad.push((invalid_utf8, "decode"));
    let nested = format!(
        r#"{{"id":106,"qty":1,"doc":{}1{}}}"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    send_bytes(&topic, Some(b"deep"), nested.as_bytes());
    bad.push((nested.into_bytes(), "decode"));
    let not_an_object = br#"[1,2,3]"#.to_vec();
    send_bytes(&topic, Some(b"array"), &not_an_object);
    bad.push((not_an_object, "transform"));
    // `"x" * .pad` with a huge `pad` would ask for exabytes: refused, not an abort.
    let huge_repeat = br#"{"id":107,"qty":1,"pad":9223372036854775807}"#.to_vec();
    send_bytes(&topic, Some(b"pad"), &huge_repeat);
    bad.push((huge_repeat, "transform"));
    send_bytes(&topic, Some(b"pad"), br#"{"id":60,"qty":1,"pad":3}"#);
    good.insert(60);
    for id in 40..60_i64 {
        producer.send(
            Some(&id.to_string()),
            Some(&format!(
                r#"{{"id":{id},"qty":1,"doc":"{}"}}"#,
                "y".repeat(5000)
            )),
        );
        good.insert(id);
    }
    producer.flush();

    let toml = pipeline_toml(&topic, &group, db.url(), "items", sink_extra)
        + &format!("\n[pipelines.p.dead_letter]\ntopic = \"{dlq}\"\n")
        + "\n[[pipelines.p.transforms]]\ntype = \"jq\"\n"
        + "expr = 'if .pad then .name = \"x\" * .pad | del(.pad) else . end'\n";
    let running = Running::start(&toml).await;
    wait_for("every offset committed", Duration::from_secs(60), || {
        all_committed(&group, &topic, 1)
    })
    .await;
    assert_eq!(Stats::get(&running.stats.dead_lettered), bad.len() as u64);
    assert_eq!(Stats::get(&running.stats.tombstones_skipped), 1);
    running.stop().await;

    let ids: BTreeSet<i64> = db
        .pairs("SELECT id, CAST(qty AS BIGINT) FROM items")
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(ids, good, "every good record exactly once, no bad one");
    assert_eq!(
        db.scalar("SELECT count(*) FROM items").await,
        good.len() as i64
    );
    let padded = "SELECT count(*) FROM items WHERE id = 60 AND name = 'xxx'";
    assert_eq!(
        db.scalar(padded).await,
        1,
        "the jq step ran on the good record"
    );

    let expected = bad.len();
    let letters = tokio::task::spawn_blocking(move || kafka::read_all(&dlq, expected))
        .await
        .expect("read dlq");
    assert_eq!(
        letters.len(),
        bad.len(),
        "one letter per bad record: {letters:#?}"
    );
    for (value, class) in &bad {
        let letter = letters
            .iter()
            .find(|l| l.value.as_deref() == Some(value.as_slice()))
            .unwrap_or_else(|| {
                panic!(
                    "no letter with the original bytes of {}",
                    String::from_utf8_lossy(value)
                )
            });
        assert_eq!(
            letter.header("tidemill.error.class"),
            Some(*class),
            "{letter:?}"
        );
        assert!(!letter
            .header("tidemill.error.message")
            .unwrap_or_default()
            .is_empty());
        assert_eq!(letter.header("tidemill.pipeline"), Some("p"));
        assert_eq!(letter.header("tidemill.source.topic"), Some(topic.as_str()));
        assert!(letter.header("tidemill.source.offset").is_some());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_dead_letter_topic_stops_the_pipeline_advancing_until_it_is_fixed() {
    let (topic, group, dlq) = (unique("stuck"), unique("g"), unique("dlq"));
    kafka::create_topic(&topic, 1).await;
    // Too small for the letter: the broker refuses it until the limit is raised.
    kafka::create_topic_on(&kafka::brokers(), &dlq, 1, &[("max.message.bytes", "100")]).await;
    let db = TestDb::postgres().await;
    db.exec("CREATE TABLE t (id BIGINT PRIMARY KEY)").await;
    let producer = TestProducer::new(&topic);
    for id in 0..10 {
        producer.send(None, Some(&format!(r#"{{"id":{id}}}"#)));
    }
    producer.send(
        None,
        Some(&format!(r#"{{"id": not json {}"#, "x".repeat(300))),
    );
    for id in 10..20 {
        producer.send(None, Some(&format!(r#"{{"id":{id}}}"#)));
    }
    producer.flush();
    let toml = pipeline_toml(&topic, &group, db.url(), "t", "")
        + &format!("\n[pipelines.p.dead_letter]\ntopic = \"{dlq}\"\n");
    let running = Running::start(&toml).await;
    wait_for(
        "the dead-letter write failing repeatedly",
        Duration::from_secs(60),
        || async { Stats::get(&running.stats.dead_letter_retries) >= 2 },
    )
    .await;
    // The undeliverable record is at offset 10. Whatever committed before it
    // (nothing, if it shares the stalled batch) is exactly the rows loaded,
    // and Kafka's commit never passes the database's checkpoint.
    let checkpoint = db.checkpoint_next().await;
    assert!(checkpoint <= 10, "checkpoint past the record: {checkpoint}");
    assert_eq!(
        db.scalar("SELECT count(*) FROM t").await,
        checkpoint,
        "the rows loaded are those the checkpoint covers"
    );
    let committed = kafka::committed(&group, &topic, 1)[0];
    assert!(
        committed <= checkpoint,
        "Kafka's commit {committed} is past the checkpoint {checkpoint}"
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM t WHERE id >= 10").await,
        0,
        "nothing after it loaded"
    );

    kafka::alter_topic(&dlq, "max.message.bytes", "1000000").await;
    wait_for(
        "the pipeline advancing again",
        Duration::from_secs(60),
        || all_committed(&group, &topic, 1),
    )
    .await;
    running.stop().await;
    assert_eq!(db.scalar("SELECT count(*) FROM t").await, 20);
    let letters = tokio::task::spawn_blocking(move || kafka::read_all(&dlq, 1))
        .await
        .expect("read dlq");
    assert_eq!(letters[0].header("tidemill.error.class"), Some("decode"));
}
