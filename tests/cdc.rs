//! Change data capture: Debezium change events (as its PostgreSQL connector
//! writes them through the JSON converter, schemas on and off) applied to
//! each database — snapshot reads, inserts, updates, deletes and their
//! tombstones, an unchanged TOASTed column, an exact decimal — and a
//! truncate dead-lettered with its reason, never applied silently.

mod common;
#[path = "cdc/key_change.rs"]
mod key_change;
#[path = "cdc/order.rs"]
mod order;

use common::db::{Kind, TestDb};
use common::kafka::{self, TestProducer};
use common::{all_committed, pipeline_toml, unique, wait_for, Running};

/// A config applying `topic`'s change stream to `table` (upsert by `id`).
fn cdc_toml(topic: &str, group: &str, url: &str, table: &str, extra: &str) -> String {
    pipeline_toml(
        topic,
        group,
        url,
        table,
        "mode = \"upsert\"\nkey_columns = [\"id\"]",
    )
    .replace(
        &format!("group_id = \"{group}\"\n"),
        &format!("group_id = \"{group}\"\nformat = \"debezium\"\n"),
    ) + extra
}
use serde_json::{json, Value};
use std::time::Duration;
use tidemill::observe::stats::Stats;

per_backend!(
    a_change_stream_leaves_the_target_as_the_source_is,
    lineage_columns_record_where_each_row_came_from,
    a_truncate_on_request_empties_the_table_between_the_changes_around_it,
);

/// The key struct Debezium writes for a table keyed by `id`, wrapped in the
/// converter's schema when `schemas` is on.
fn key(id: i64, schemas: bool) -> String {
    let payload = json!({ "id": id });
    if !schemas {
        return payload.to_string();
    }
    json!({
        "schema": {"type": "struct", "optional": false, "name": "shop.public.orders.Key",
                   "fields": [{"type": "int64", "optional": false, "field": "id"}]},
        "payload": payload
    })
    .to_string()
}

/// A change event; with `schemas`, `amount` is Kafka Connect's Decimal
/// (base64 of the unscaled value, scale 2) as Debezium sends NUMERIC(10,2).
fn event(op: &str, before: Value, after: Value, schemas: bool) -> String {
    let payload = json!({
        "before": before,
        "after": after,
        "source": {"version": "3.3.1.Final", "connector": "postgresql", "name": "shop", "db": "shop",
                   "schema": "public", "table": "orders", "lsn": 28_581_784, "snapshot": "false"},
        "op": op,
        "ts_ms": 1_700_000_000_000_i64
    });
    if !schemas {
        return payload.to_string();
    }
    let row = json!({"type": "struct", "optional": true, "name": "shop.public.orders.Value", "fields": [
        {"type": "int64", "optional": false, "field": "id"},
        {"type": "string", "optional": true, "field": "status"},
        {"type": "string", "optional": true, "field": "notes"},
        {"type": "bytes", "optional": true, "field": "amount", "name": "org.apache.kafka.connect.data.Decimal",
         "parameters": {"scale": "2", "connect.decimal.precision": "10"}}
    ]});
    let part = |name: &str| {
        let mut part = row.clone();
        part["field"] = json!(name);
        part
    };
    json!({
        "schema": {"type": "struct", "name": "shop.public.orders.Envelope", "optional": false, "fields": [
            part("before"),
            part("after"),
            {"type": "string", "optional": false, "field": "op"},
            {"type": "int64", "optional": true, "field": "ts_ms"}
        ]},
        "payload": payload
    })
    .to_string()
}

async fn a_change_stream_leaves_the_target_as_the_source_is(kind: Kind) {
    let (topic, group, dlq) = (unique("cdc"), unique("g"), unique("cdc_dlq"));
    kafka::create_topic(&topic, 1).await;
    kafka::create_topic(&dlq, 1).await;
    let db = TestDb::new(kind).await;
    db.exec("CREATE TABLE orders (id BIGINT PRIMARY KEY, status VARCHAR(20), notes VARCHAR(200), amount DECIMAL(10,2))")
        .await;
    let producer = TestProducer::new(&topic);
    let send = |id: i64, schemas: bool, value: Option<String>| {
        producer.send(Some(&key(id, schemas)), value.as_deref());
    };
    // The snapshot, schemas off (amount as text, as decimal.handling.mode=string sends it).
    for id in 1..=3 {
        let after =
            json!({"id": id, "status": "new", "notes": format!("note {id}"), "amount": "1.00"});
        send(id, false, Some(event("r", Value::Null, after, false)));
    }
    // Streaming: an insert, an update whose notes were not sent, a delete and its tombstone.
    let created = json!({"id": 4, "status": "new", "notes": "gift", "amount": "2.50"});
    send(4, false, Some(event("c", Value::Null, created, false)));
    let updated = json!({"id": 2, "status": "shipped", "notes": "__debezium_unavailable_value", "amount": "1.00"});
    send(2, false, Some(event("u", json!({"id": 2}), updated, false)));
    send(
        3,
        false,
        Some(event("d", json!({"id": 3}), Value::Null, false)),
    );
    send(3, false, None);
    // Schemas on: an exact decimal (12345.67 is 1234567 unscaled: base64 "EtaH"),
    // and an update that deletes nothing but moves the row on.
    let decimal = json!({"id": 5, "status": "new", "notes": null, "amount": "EtaH"});
    send(5, true, Some(event("c", Value::Null, decimal, true)));
    let again = json!({"id": 1, "status": "paid", "notes": "note 1", "amount": "/2o="});
    send(1, true, Some(event("u", json!({"id": 1}), again, true)));
    // A truncate: refused, to the dead-letter topic with its reason.
    producer.send(
        None,
        Some(&json!({"op": "t", "source": {"table": "orders"}, "ts_ms": 1}).to_string()),
    );
    producer.flush();

    let toml = pipeline_toml(
        &topic,
        &group,
        db.url(),
        "orders",
        "mode = \"upsert\"\nkey_columns = [\"id\"]",
    )
    .replace(
        &format!("group_id = \"{group}\"\n"),
        &format!("group_id = \"{group}\"\nformat = \"debezium\"\n"),
    ) + &format!("\n[pipelines.p.dead_letter]\ntopic = \"{dlq}\"\n");
    let running = Running::start(&toml).await;
    wait_for(
        "every change applied and committed",
        Duration::from_secs(60),
        || all_committed(&group, &topic, 1),
    )
    .await;
    assert_eq!(
        Stats::get(&running.stats.dead_lettered),
        1,
        "the truncate, only"
    );
    running.stop().await;

    let rows = db
        .pairs("SELECT id, CAST(amount * 100 AS BIGINT) FROM orders ORDER BY id")
        .await;
    assert_eq!(
        rows,
        [(1, -150), (2, 100), (4, 250), (5, 1_234_567)],
        "3 deleted, the rest exact"
    );
    let kept =
        "SELECT count(*) FROM orders WHERE id = 2 AND status = 'shipped' AND notes = 'note 2'";
    assert_eq!(
        db.scalar(kept).await,
        1,
        "the unchanged TOASTed notes kept, not overwritten"
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM orders WHERE id = 1 AND status = 'paid'")
            .await,
        1
    );
    let letters = tokio::task::spawn_blocking(move || kafka::read_all(&dlq, 1))
        .await
        .expect("read dead letters");
    assert_eq!(letters[0].header("tidemill.error.class"), Some("decode"));
    let reason = letters[0]
        .header("tidemill.error.message")
        .unwrap_or_default();
    assert!(reason.contains("truncate"), "{reason}");
}

/// Lineage columns: the Kafka offset, the source table, position and commit
/// time of the change each row last took, and when tidemill read it.
async fn lineage_columns_record_where_each_row_came_from(kind: Kind) {
    let (topic, group) = (unique("cdc_lineage"), unique("g"));
    kafka::create_topic(&topic, 1).await;
    let db = TestDb::new(kind).await;
    db.exec(
        "CREATE TABLE orders (id BIGINT PRIMARY KEY, status VARCHAR(20), notes VARCHAR(200), \
         amount DECIMAL(10,2), src_offset BIGINT, src_table VARCHAR(100), src_lsn VARCHAR(40), \
         src_committed VARCHAR(40), loaded_at VARCHAR(40))",
    )
    .await;
    let producer = TestProducer::new(&topic);
    let change = |lsn: i64, ts_ms: i64, after: Value| {
        let mut e: Value =
            serde_json::from_str(&event("c", Value::Null, after, false)).expect("json");
        e["source"]["lsn"] = json!(lsn);
        e["source"]["ts_ms"] = json!(ts_ms);
        e.to_string()
    };
    producer.send(
        Some(&key(1, false)),
        Some(&change(
            100,
            1_700_000_000_000,
            json!({"id": 1, "status": "new"}),
        )),
    );
    producer.send(
        Some(&key(2, false)),
        Some(&change(
            200,
            1_700_000_000_500,
            json!({"id": 2, "status": "new"}),
        )),
    );
    producer.send(
        Some(&key(1, false)),
        Some(&change(
            300,
            1_700_000_001_250,
            json!({"id": 1, "status": "paid"}),
        )),
    );
    producer.flush();
    let lineage = "\n[pipelines.p.lineage]\noffset = \"src_offset\"\nsource_table = \"src_table\"\n\
                   source_position = \"src_lsn\"\nsource_committed_at = \"src_committed\"\ningested_at = \"loaded_at\"\n";
    let running = Running::start(&cdc_toml(&topic, &group, db.url(), "orders", lineage)).await;
    wait_for(
        "the changes applied and committed",
        Duration::from_secs(60),
        || all_committed(&group, &topic, 1),
    )
    .await;
    running.stop().await;
    assert_eq!(
        db.pairs("SELECT id, src_offset FROM orders ORDER BY id")
            .await,
        [(1, 2), (2, 1)],
        "each row carries the offset of the change it last took"
    );
    let exact = "SELECT count(*) FROM orders WHERE id = 1 AND src_table = 'public.orders' \
                 AND src_lsn = '300' AND src_committed = '2023-11-14T22:13:21.25Z' AND loaded_at LIKE '20%Z'";
    assert_eq!(
        db.scalar(exact).await,
        1,
        "source table, position and commit time, read time"
    );
    let second = "SELECT count(*) FROM orders WHERE id = 2 AND src_lsn = '200' \
                  AND src_committed = '2023-11-14T22:13:20.5Z'";
    assert_eq!(db.scalar(second).await, 1);
}

/// `sink.apply_truncate`: the rows before the truncate are gone, those after
/// it stay — in batches of any size, committed with the offsets.
async fn a_truncate_on_request_empties_the_table_between_the_changes_around_it(kind: Kind) {
    let (topic, group) = (unique("cdc_truncate"), unique("g"));
    kafka::create_topic(&topic, 1).await;
    let db = TestDb::new(kind).await;
    db.exec("CREATE TABLE orders (id BIGINT PRIMARY KEY, status VARCHAR(20), notes VARCHAR(200), amount DECIMAL(10,2))")
        .await;
    db.exec("INSERT INTO orders (id, status) VALUES (100, 'before the stream')")
        .await;
    let producer = TestProducer::new(&topic);
    let create = |id: i64| {
        let after = json!({"id": id, "status": "new", "notes": null, "amount": "1.00"});
        event("c", Value::Null, after, false)
    };
    for id in 1..=3 {
        producer.send(Some(&key(id, false)), Some(&create(id)));
    }
    let truncate = json!({"op": "t", "source": {"table": "orders"}, "ts_ms": 1}).to_string();
    producer.send(None, Some(&truncate));
    for id in 4..=5 {
        producer.send(Some(&key(id, false)), Some(&create(id)));
    }
    producer.send(
        Some(&key(4, false)),
        Some(&event("d", json!({"id": 4}), Value::Null, false)),
    );
    producer.flush();

    let toml = cdc_toml(&topic, &group, db.url(), "orders", "").replace(
        "key_columns = [\"id\"]",
        "key_columns = [\"id\"]\napply_truncate = true",
    );
    let running = Running::start(&toml).await;
    wait_for(
        "every change applied and committed",
        Duration::from_secs(60),
        || all_committed(&group, &topic, 1),
    )
    .await;
    assert_eq!(Stats::get(&running.stats.dead_lettered), 0);
    running.stop().await;
    let rows = db
        .pairs("SELECT id, CAST(amount * 100 AS BIGINT) FROM orders ORDER BY id")
        .await;
    assert_eq!(
        rows,
        [(5, 100)],
        "emptied by the truncate, then 4 and 5 created and 4 deleted"
    );
}
