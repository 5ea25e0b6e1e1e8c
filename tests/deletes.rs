//! Tombstones with the sink's `delete` on: the row their Kafka key names is
//! deleted, in order with the upserts of the same key, in the batch's one
//! transaction; with `delete` off they are skipped and counted. Each scenario
//! runs on PostgreSQL (statement and COPY paths), MariaDB and SQLite.

mod common;

use common::db::{Kind, TestDb};
use common::kafka::{self, TestProducer};
use common::{all_committed, pipeline_toml, unique, wait_for, Running};
use std::time::Duration;
use tidemill::observe::stats::Stats;

const PARTITIONS: i32 = 2;
const DELETES: &str = "mode = \"upsert\"\nkey_columns = [\"id\"]\ndelete = true";

per_backend!(
    deletes_the_row_when_a_tombstone_arrives,
    deletes_through_the_bulk_path_too,
    upsert_and_delete_of_one_key_keep_their_order_within_and_across_batches,
    tombstones_are_skipped_and_counted_when_delete_is_off,
    a_tombstone_whose_key_names_no_row_is_dead_lettered_with_the_reason,
);

/// Loads ids 0..n (key = id), waits for them, then sends tombstones for the
/// multiples of three — half with a bare key, half with an object key — and
/// checks exactly those rows go and the deleted counter matches.
async fn load_then_delete(kind: Kind, n: i64, extra: &str) {
    let (topic, group) = (unique("del"), unique("g"));
    kafka::create_topic(&topic, PARTITIONS).await;
    let db = TestDb::new(kind).await;
    db.exec("CREATE TABLE items (id BIGINT PRIMARY KEY, v BIGINT)")
        .await;
    let producer = TestProducer::new(&topic);
    for id in 0..n {
        producer.send(
            Some(&id.to_string()),
            Some(&format!(r#"{{"id":{id},"v":{id}}}"#)),
        );
    }
    producer.flush();
    let toml = pipeline_toml(
        &topic,
        &group,
        db.url(),
        "items",
        &format!("{DELETES}\n{extra}"),
    );
    let running = Running::start(&toml).await;
    wait_for("every row loaded", Duration::from_secs(60), || async {
        db.try_scalar("SELECT count(*) FROM items").await == Some(n)
    })
    .await;

    let doomed: Vec<i64> = (0..n).filter(|id| id % 3 == 0).collect();
    for id in &doomed {
        // The same partitioner input as the upsert: bare keys hash like the
        // row's key; object keys may land on another partition, which is
        // fine here (the row was committed before any tombstone was sent).
        let key = if id % 2 == 0 {
            id.to_string()
        } else {
            format!(r#"{{"id":{id}}}"#)
        };
        producer.send(Some(&key), None);
    }
    producer.flush();
    wait_for("every offset committed", Duration::from_secs(60), || {
        all_committed(&group, &topic, PARTITIONS)
    })
    .await;
    assert_eq!(Stats::get(&running.stats.rows_deleted), doomed.len() as u64);
    assert_eq!(Stats::get(&running.stats.tombstones_skipped), 0);
    assert_eq!(Stats::get(&running.stats.rows_loaded), n as u64);
    running.stop().await;

    let left = n - doomed.len() as i64;
    assert_eq!(db.scalar("SELECT count(*) FROM items").await, left);
    assert_eq!(
        db.scalar("SELECT count(*) FROM items WHERE id % 3 = 0")
            .await,
        0,
        "exactly the rows named by tombstones are gone"
    );
    assert_eq!(
        db.scalar("SELECT sum(v) FROM items").await,
        (0..n).filter(|id| id % 3 != 0).sum::<i64>()
    );
}

async fn deletes_the_row_when_a_tombstone_arrives(kind: Kind) {
    load_then_delete(kind, 300, "copy_threshold = 0").await;
}

/// PostgreSQL: batches of at least one row take `COPY`; deletes run before it
/// in the same transaction. (The other backends have one path.)
async fn deletes_through_the_bulk_path_too(kind: Kind) {
    load_then_delete(kind, 300, "copy_threshold = 1").await;
}

/// Every key's operations go through one partition (keyed by id), so their
/// order is the order sent. Sent before the pipeline starts, most land in
/// one batch (collapsed there); the second phase crosses batches.
async fn upsert_and_delete_of_one_key_keep_their_order_within_and_across_batches(kind: Kind) {
    let (topic, group) = (unique("order"), unique("g"));
    kafka::create_topic(&topic, PARTITIONS).await;
    let db = TestDb::new(kind).await;
    db.exec(
        "CREATE TABLE items (id BIGINT PRIMARY KEY, v BIGINT, note VARCHAR(20) DEFAULT 'fresh')",
    )
    .await;
    let producer = TestProducer::new(&topic);
    let upsert = |id: i64, v: i64| {
        producer.send(
            Some(&id.to_string()),
            Some(&format!(r#"{{"id":{id},"v":{v},"note":"set"}}"#)),
        )
    };
    let delete = |id: i64| producer.send(Some(&id.to_string()), None);
    for id in 0..100 {
        match id % 4 {
            // upsert → delete → upsert: present with the last values.
            0 => {
                upsert(id, 1);
                delete(id);
                upsert(id, 2);
            }
            // upsert → delete: gone.
            1 => {
                upsert(id, 1);
                delete(id);
            }
            // delete → upsert: present.
            2 => {
                delete(id);
                upsert(id, 2);
            }
            // upsert, upsert: present, untouched by deletes.
            _ => {
                upsert(id, 1);
                upsert(id, 2);
            }
        }
    }
    producer.flush();
    let running = Running::start(&pipeline_toml(&topic, &group, db.url(), "items", DELETES)).await;
    wait_for("first phase committed", Duration::from_secs(60), || {
        all_committed(&group, &topic, PARTITIONS)
    })
    .await;
    assert_eq!(db.scalar("SELECT count(*) FROM items").await, 75);
    assert_eq!(
        db.scalar("SELECT count(*) FROM items WHERE id % 4 = 1")
            .await,
        0
    );
    assert_eq!(db.scalar("SELECT sum(v) FROM items").await, 75 * 2);

    // Across batches: delete every row with a multiple of 4 as id (25 rows
    // in the table), wait, then upsert them again without `note`: the row
    // starts afresh, so `note` takes its default.
    let deleted_before = Stats::get(&running.stats.rows_deleted);
    for id in (0..100).filter(|id| id % 4 == 0) {
        delete(id);
    }
    producer.flush();
    wait_for("the deletes committed", Duration::from_secs(60), || async {
        db.try_scalar("SELECT count(*) FROM items").await == Some(50)
    })
    .await;
    wait_for("the deleted counter", Duration::from_secs(10), || async {
        Stats::get(&running.stats.rows_deleted) == deleted_before + 25
    })
    .await;
    for id in (0..100).filter(|id| id % 4 == 0) {
        producer.send(
            Some(&id.to_string()),
            Some(&format!(r#"{{"id":{id},"v":3}}"#)),
        );
    }
    producer.flush();
    wait_for("second phase committed", Duration::from_secs(60), || {
        all_committed(&group, &topic, PARTITIONS)
    })
    .await;
    running.stop().await;

    assert_eq!(db.scalar("SELECT count(*) FROM items").await, 75);
    assert_eq!(
        db.scalar("SELECT count(*) FROM items WHERE id % 4 = 0 AND v = 3 AND note = 'fresh'")
            .await,
        25,
        "a row upserted after its delete starts afresh"
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM items WHERE id % 4 IN (2, 3) AND v = 2 AND note = 'set'")
            .await,
        50
    );
}

async fn tombstones_are_skipped_and_counted_when_delete_is_off(kind: Kind) {
    let (topic, group) = (unique("skip"), unique("g"));
    kafka::create_topic(&topic, PARTITIONS).await;
    let db = TestDb::new(kind).await;
    db.exec("CREATE TABLE items (id BIGINT PRIMARY KEY, v BIGINT)")
        .await;
    let producer = TestProducer::new(&topic);
    for id in 0..50 {
        producer.send(
            Some(&id.to_string()),
            Some(&format!(r#"{{"id":{id},"v":1}}"#)),
        );
        if id % 5 == 0 {
            producer.send(Some(&id.to_string()), None);
        }
    }
    producer.flush();
    let extra = "mode = \"upsert\"\nkey_columns = [\"id\"]";
    let running = Running::start(&pipeline_toml(&topic, &group, db.url(), "items", extra)).await;
    wait_for("every offset committed", Duration::from_secs(60), || {
        all_committed(&group, &topic, PARTITIONS)
    })
    .await;
    assert_eq!(Stats::get(&running.stats.tombstones_skipped), 10);
    assert_eq!(Stats::get(&running.stats.rows_deleted), 0);
    running.stop().await;
    assert_eq!(db.scalar("SELECT count(*) FROM items").await, 50);
}

/// A composite key: a tombstone must carry both columns. One without a key,
/// one with a bare value and one missing a column are dead-lettered (reason
/// `key`); a complete one deletes its row.
async fn a_tombstone_whose_key_names_no_row_is_dead_lettered_with_the_reason(kind: Kind) {
    let (topic, group, dlq) = (unique("badkey"), unique("g"), unique("dlq"));
    kafka::create_topic(&topic, 1).await;
    let db = TestDb::new(kind).await;
    db.exec("CREATE TABLE pairs (a BIGINT NOT NULL, b VARCHAR(10) NOT NULL, v BIGINT, PRIMARY KEY (a, b))")
        .await;
    let producer = TestProducer::new(&topic);
    for a in 0..3 {
        let key = format!(r#"{{"a":{a},"b":"x"}}"#);
        producer.send(Some(&key), Some(&format!(r#"{{"a":{a},"b":"x","v":{a}}}"#)));
    }
    producer.send(None, None);
    producer.send(Some("1"), None);
    producer.send(Some(r#"{"a":1}"#), None);
    producer.send(Some(r#"{"a":1,"b":"x","extra":true}"#), None);
    // `a` is BIGINT: "abc" cannot name a row. Its delete is a counted no-op,
    // and the record after it still loads (the batch does not fail).
    producer.send(Some(r#"{"a":"abc","b":"x"}"#), None);
    producer.send(Some(r#"{"a":5,"b":"x"}"#), Some(r#"{"a":5,"b":"x","v":5}"#));
    producer.flush();
    let extra = "mode = \"upsert\"\nkey_columns = [\"a\", \"b\"]\ndelete = true";
    let toml = pipeline_toml(&topic, &group, db.url(), "pairs", extra)
        + &format!("\n[pipelines.p.dead_letter]\ntopic = \"{dlq}\"\n");
    let running = Running::start(&toml).await;
    wait_for("every offset committed", Duration::from_secs(60), || {
        all_committed(&group, &topic, 1)
    })
    .await;
    assert_eq!(Stats::get(&running.stats.dead_lettered), 3);
    assert_eq!(Stats::get(&running.stats.tombstones_skipped), 1);
    running.stop().await;
    assert_eq!(
        db.pairs("SELECT a, v FROM pairs ORDER BY a").await,
        vec![(0, 0), (2, 2), (5, 5)]
    );

    let letters = tokio::task::spawn_blocking(move || kafka::read_all(&dlq, 3))
        .await
        .expect("read dlq");
    assert_eq!(letters.len(), 3, "{letters:#?}");
    for letter in &letters {
        assert_eq!(
            letter.header("tidemill.error.class"),
            Some("key"),
            "{letter:?}"
        );
        assert_eq!(letter.value, None, "a tombstone stays a tombstone");
    }
    let messages: Vec<&str> = letters
        .iter()
        .filter_map(|l| l.header("tidemill.error.message"))
        .collect();
    assert!(
        messages.iter().any(|m| m.contains("without a key")),
        "{messages:?}"
    );
    assert!(
        messages.iter().any(|m| m.contains("2 columns")),
        "{messages:?}"
    );
    assert!(messages.iter().any(|m| m.contains("`b`")), "{messages:?}");
}
