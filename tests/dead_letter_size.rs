//! A dead letter larger than its topic accepts does not stall the pipeline:
//! a record refused at decode and one the database refuses, each larger than
//! the dead-letter topic's `max.message.bytes`, reach it as stubs (why, and
//! where the record is, with the sizes of what was left out), and every good
//! record around them loads exactly once — on each database.

mod common;

use common::db::{Kind, TestDb};
use common::kafka::{self, TestProducer};
use common::{all_committed, pipeline_toml, unique, wait_for, Running};
use std::collections::BTreeSet;
use std::time::Duration;
use tidemill::observe::stats::Stats;

/// The dead-letter topic's limit; each bad record is about ten times that.
const TOPIC_LIMIT: usize = 2_000;

per_backend!(a_letter_too_large_for_its_topic_goes_as_a_stub_and_the_pipeline_keeps_going);

async fn a_letter_too_large_for_its_topic_goes_as_a_stub_and_the_pipeline_keeps_going(kind: Kind) {
    let (topic, group, dlq) = (unique("big"), unique("g"), unique("big-dlq"));
    kafka::create_topic(&topic, 1).await;
    let limit = TOPIC_LIMIT.to_string();
    kafka::create_topic_on(&kafka::brokers(), &dlq, 1, &[("max.message.bytes", &limit)]).await;
    let db = TestDb::new(kind).await;
    let check = match kind {
        Kind::Sqlite => "CREATE TABLE items (id INTEGER PRIMARY KEY, qty INTEGER NOT NULL CHECK (qty >= 0), doc TEXT) STRICT",
        _ => "CREATE TABLE items (id BIGINT PRIMARY KEY, qty INT NOT NULL CHECK (qty >= 0), doc TEXT)",
    };
    db.exec(check).await;

    let producer = TestProducer::new(&topic);
    let pad = "z".repeat(TOPIC_LIMIT * 10);
    let mut good = BTreeSet::new();
    for id in 0..30_i64 {
        if id == 10 {
            // Not JSON: refused at decode.
            producer.send(
                Some("decode"),
                Some(&format!("{{\"id\":{id},\"doc\":\"{pad}")),
            );
        }
        if id == 20 {
            // A negative quantity: the database's CHECK refuses the row.
            producer.send(
                Some("data"),
                Some(&format!(r#"{{"id":1000,"qty":-1,"doc":"{pad}"}}"#)),
            );
        }
        producer.send(
            Some(&id.to_string()),
            Some(&format!(r#"{{"id":{id},"qty":1}}"#)),
        );
        good.insert(id);
    }
    producer.flush();

    let toml = pipeline_toml(&topic, &group, db.url(), "items", "")
        + &format!("\n[pipelines.p.dead_letter]\ntopic = \"{dlq}\"\n");
    let running = Running::start(&toml).await;
    wait_for("every offset committed", Duration::from_secs(60), || {
        all_committed(&group, &topic, 1)
    })
    .await;
    assert_eq!(Stats::get(&running.stats.dead_lettered), 2);
    running.stop().await;

    let ids: BTreeSet<i64> = db
        .pairs("SELECT id, CAST(qty AS BIGINT) FROM items")
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(ids, good, "every good record once, no bad one");
    let letters = tokio::task::spawn_blocking(move || kafka::read_all(&dlq, 2))
        .await
        .expect("read dead letters");
    let mut classes: Vec<&str> = letters
        .iter()
        .map(|l| l.header("tidemill.error.class").expect("class header"))
        .collect();
    classes.sort_unstable();
    assert_eq!(classes, ["data", "decode"]);
    for letter in &letters {
        assert_eq!(
            (&letter.key, &letter.value),
            (&None, &None),
            "a stub carries no record bytes"
        );
        let dropped: usize = letter
            .header("tidemill.dropped.value_bytes")
            .and_then(|v| v.parse().ok())
            .expect("the dropped value's size");
        assert!(dropped > TOPIC_LIMIT * 10, "{dropped}");
        assert_eq!(letter.header("tidemill.source.topic"), Some(topic.as_str()));
        assert!(letter.header("tidemill.source.offset").is_some());
    }
}
