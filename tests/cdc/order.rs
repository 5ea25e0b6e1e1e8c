//! The ordering guard (`sink.order_column`), written once and run on each
//! database: a change older than what its row reflects is skipped — in one
//! batch or across batches and restarts — a delete's marker keeps an older
//! change from bringing its row back, a snapshot read (no order) applies
//! over anything, and markers older than the retention are forgotten.

use super::*;

per_backend!(
    the_ordering_guard_applies_only_changes_not_older_than_the_row,
    a_guarded_key_change_into_a_deleted_key_keeps_the_moved_row,
);

/// A schemaless change to `orders` at PostgreSQL's `sequence` `[commit,
/// lsn]`; `None`: a snapshot read (op `r`, no order).
fn change(op: &str, id: i64, status: &str, at: Option<(u64, u64)>) -> String {
    change_notes(op, id, status, Value::Null, at)
}

fn change_notes(op: &str, id: i64, status: &str, notes: Value, at: Option<(u64, u64)>) -> String {
    let (op, snapshot, sequence) = match at {
        Some((commit, lsn)) => (op, "false", format!("[\"{commit}\",\"{lsn}\"]")),
        None => ("r", "true", "[null,\"1\"]".to_string()),
    };
    let row = json!({"id": id, "status": status, "notes": notes, "amount": "1.00"});
    let (before, after) = if op == "d" {
        (json!({"id": id}), Value::Null)
    } else {
        (Value::Null, row)
    };
    json!({
        "before": before, "after": after, "op": op, "ts_ms": 1,
        "source": {"connector": "postgresql", "db": "shop", "schema": "public", "table": "orders",
                   "snapshot": snapshot, "sequence": sequence, "lsn": 1}
    })
    .to_string()
}

async fn applied(kind: Kind, db: &TestDb, topic: &str, group: &str, retention: &str) {
    let toml = cdc_toml(topic, group, db.url(), "orders", "").replace(
        "key_columns = [\"id\"]",
        &format!(
            "key_columns = [\"id\"]\norder_column = \"pos\"\nmarker_retention = \"{retention}\""
        ),
    );
    let running = Running::start(&toml).await;
    wait_for(
        "every change applied and committed",
        Duration::from_secs(60),
        || all_committed(group, topic, 1),
    )
    .await;
    assert_eq!(Stats::get(&running.stats.dead_lettered), 0, "{kind:?}");
    running.stop().await;
}

async fn the_ordering_guard_applies_only_changes_not_older_than_the_row(kind: Kind) {
    let (topic, group) = (unique("cdc_order"), unique("g"));
    kafka::create_topic(&topic, 1).await;
    let db = TestDb::new(kind).await;
    db.exec("CREATE TABLE orders (id BIGINT PRIMARY KEY, status VARCHAR(20), notes VARCHAR(200), amount DECIMAL(10,2), pos VARCHAR(64))")
        .await;
    db.exec("INSERT INTO orders (id, status) VALUES (50, 'before the guard')")
        .await;
    let producer = TestProducer::new(&topic);
    let send = |op: &str, id: i64, status: &str, at: Option<(u64, u64)>| {
        producer.send(Some(&key(id, false)), Some(&change(op, id, status, at)));
    };
    // One run: most of these share a batch.
    send("u", 1, "v2", Some((10, 20)));
    send("u", 1, "v1", Some((10, 15))); // older than the one before it
    send("c", 2, "live", Some((10, 30)));
    send("d", 2, "", Some((10, 40)));
    send("c", 2, "zombie", Some((10, 35))); // older than the delete
    send("c", 3, "live", Some((10, 50)));
    send("d", 3, "", Some((10, 60)));
    send("r", 50, "snapshot", None); // no order: applies over a row of none
    producer.flush();
    applied(kind, &db, &topic, &group, "7d").await;
    let statuses = "SELECT status FROM orders ORDER BY id";
    assert_eq!(db.texts(statuses).await, ["v2", "snapshot"], "{kind:?}");

    // Another run: the same stale changes replayed, checked against the rows
    // and markers the first one left.
    send("u", 1, "v1", Some((10, 15)));
    send("d", 1, "", Some((10, 5))); // a delete older than the row
    send("c", 3, "zombie", Some((10, 55))); // older than its marker
    send("c", 4, "new", Some((10, 70)));
    send("u", 4, "newer", Some((10, 80)));
    send("r", 2, "re-read", None); // a re-snapshot: newer than any marker
    producer.flush();
    applied(kind, &db, &topic, &group, "7d").await;
    assert_eq!(
        db.texts(statuses).await,
        ["v2", "re-read", "newer", "snapshot"],
        "{kind:?}: 1 kept, 2 re-read, 3 stays deleted, 4 at its newest"
    );
    let pos = "SELECT pos FROM orders WHERE id = 4";
    assert_eq!(
        db.texts(pos).await,
        ["0000000000000000001000000000000000000080"]
    );
    let markers = "SELECT count(*) FROM tidemill_deleted__orders WHERE id IN (2, 3)";
    assert_eq!(
        db.scalar(markers).await,
        2,
        "{kind:?}: the deletes' markers"
    );

    // Markers older than the retention are forgotten with the next batch.
    let now_ms = || {
        let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        since.expect("after 1970").as_millis() as i64
    };
    let latest = "SELECT max(marked_at) FROM tidemill_deleted__orders";
    let latest = db.scalar(latest).await;
    wait_for(
        "every marker older than 1 s",
        Duration::from_secs(10),
        || async { now_ms() > latest + 1_500 },
    )
    .await;
    send("u", 4, "newest", Some((10, 90)));
    send("d", 1, "", Some((10, 5))); // older than the row: in a batch of its own key
    producer.flush();
    applied(kind, &db, &topic, &group, "1s").await;
    assert_eq!(
        db.texts("SELECT status FROM orders WHERE id = 1").await,
        ["v2"],
        "{kind:?}: a delete older than its row leaves it"
    );
    let old_markers = "SELECT count(*) FROM tidemill_deleted__orders WHERE id IN (2, 3)";
    assert_eq!(db.scalar(old_markers).await, 0, "{kind:?}: pruned");
    assert_eq!(
        db.texts("SELECT status FROM orders WHERE id = 4").await,
        ["newest"]
    );
}

/// A key change into a key deleted earlier: the moved row takes the change's
/// position, newer than the old delete's marker, so it stays; the create
/// that follows in a later batch updates it.
async fn a_guarded_key_change_into_a_deleted_key_keeps_the_moved_row(kind: Kind) {
    let (topic, group) = (unique("cdc_order_move"), unique("g"));
    kafka::create_topic(&topic, 1).await;
    let db = TestDb::new(kind).await;
    db.exec("CREATE TABLE orders (id BIGINT PRIMARY KEY, status VARCHAR(20), notes VARCHAR(200), amount DECIMAL(10,2), pos VARCHAR(64))")
        .await;
    let producer = TestProducer::new(&topic);
    let send = |op: &str, id: i64, notes: Value, at: (u64, u64), headers: &[(&str, &str)]| {
        let value = change_notes(op, id, op, notes, Some(at));
        producer.send_with_headers(0, &key(id, false), &value, headers);
    };
    send("c", 1, json!("a"), (10, 10), &[]);
    send("c", 2, json!("b"), (10, 20), &[]);
    send("d", 1, Value::Null, (10, 30), &[]);
    producer.flush();
    applied(kind, &db, &topic, &group, "7d").await;

    // 2 → 1: the delete of 2 names the new key; its create comes later.
    send(
        "d",
        2,
        Value::Null,
        (10, 40),
        &[("__debezium.newkey", r#"{"id":1}"#)],
    );
    producer.flush();
    applied(kind, &db, &topic, &group, "7d").await;
    let rows = "SELECT notes FROM orders ORDER BY id";
    assert_eq!(
        db.texts(rows).await,
        ["b"],
        "{kind:?}: moved, not deleted again"
    );
    send(
        "c",
        1,
        json!("__debezium_unavailable_value"),
        (10, 40),
        &[("__debezium.oldkey", r#"{"id":2}"#)],
    );
    producer.flush();
    applied(kind, &db, &topic, &group, "7d").await;
    assert_eq!(
        db.texts(rows).await,
        ["b"],
        "{kind:?}: the value the create lacked"
    );
    assert_eq!(
        db.texts("SELECT status FROM orders").await,
        ["c"],
        "{kind:?}: the create's own"
    );
}
