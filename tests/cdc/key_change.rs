//! A primary-key change, written once and run on each database: Debezium
//! sends it as a delete of the old key (header `__debezium.newkey`) and a
//! create of the new one, which lacks an out-of-line value the update left
//! unchanged. The row moves to its new key with that value — including a
//! value an earlier change of the old key set.

use super::*;

per_backend!(a_key_change_moves_the_row_with_the_values_its_create_lacks,);

async fn a_key_change_moves_the_row_with_the_values_its_create_lacks(kind: Kind) {
    let (topic, group) = (unique("cdc_key_change"), unique("g"));
    kafka::create_topic(&topic, 1).await;
    let db = TestDb::new(kind).await;
    db.exec("CREATE TABLE orders (id BIGINT PRIMARY KEY, status VARCHAR(20), notes VARCHAR(200), amount DECIMAL(10,2))")
        .await;
    let producer = TestProducer::new(&topic);
    let row = |id: i64, status: &str, notes: &str| json!({"id": id, "status": status, "notes": notes, "amount": "1.00"});
    let send = |key: i64, value: Option<String>, headers: &[(&str, &str)]| match value {
        Some(v) => producer.send_with_headers(0, &key_of(key), &v, headers),
        None => producer.send(Some(&key_of(key)), None),
    };
    let unsent = "__debezium_unavailable_value";
    send(
        8,
        Some(event("c", Value::Null, row(8, "new", "kept"), false)),
        &[],
    );
    send(
        9,
        Some(event("c", Value::Null, row(9, "new", "first"), false)),
        &[],
    );
    send(
        9,
        Some(event("u", Value::Null, row(9, "updated", "changed"), false)),
        &[],
    );
    for (from, to) in [(8, 1000), (9, 2000)] {
        let new_key = json!({ "id": to }).to_string();
        let old_key = json!({ "id": from }).to_string();
        let delete = event("d", json!({ "id": from }), Value::Null, false);
        send(from, Some(delete), &[("__debezium.newkey", &new_key)]);
        send(from, None, &[]);
        let create = event("c", Value::Null, row(to, "moved", unsent), false);
        send(to, Some(create), &[("__debezium.oldkey", &old_key)]);
    }
    producer.flush();

    let running = Running::start(&cdc_toml(&topic, &group, db.url(), "orders", "")).await;
    wait_for(
        "every change applied and committed",
        Duration::from_secs(60),
        || all_committed(&group, &topic, 1),
    )
    .await;
    assert_eq!(Stats::get(&running.stats.dead_lettered), 0);
    running.stop().await;
    let ids = db.pairs("SELECT id, id FROM orders ORDER BY id").await;
    assert_eq!(ids, [(1000, 1000), (2000, 2000)], "{kind:?}: moved");
    assert_eq!(
        db.texts("SELECT notes FROM orders ORDER BY id").await,
        ["kept", "changed"],
        "{kind:?}: the value each create lacked came with its row"
    );
    assert_eq!(
        db.texts("SELECT status FROM orders ORDER BY id").await,
        ["moved", "moved"],
        "{kind:?}: the create's own values"
    );
}

fn key_of(id: i64) -> String {
    key(id, false)
}
