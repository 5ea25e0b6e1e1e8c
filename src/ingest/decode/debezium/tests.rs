//! Change events as Debezium's PostgreSQL connector writes them (JSON
//! converter, schemas on and off).

use super::*;
use serde_json::json;

fn event(op: &str, after: Value) -> Value {
    json!({
        "before": null,
        "after": after,
        "source": {"connector": "postgresql", "db": "shop", "schema": "public", "table": "orders", "lsn": 28581784},
        "op": op,
        "ts_ms": 1_601_213_844_598_i64
    })
}

/// What an event asks of the target (its source left aside).
fn change(value: Value) -> Result<Change, ChangeError> {
    super::event(value).map(|(change, _)| change)
}

fn upserted(change: Result<Change, ChangeError>) -> Row {
    match change {
        Ok(Change::Upsert(row)) => row,
        other => panic!("want an upsert, got {other:?}"),
    }
}

#[test]
fn creates_snapshot_reads_and_updates_upsert_the_after_row() {
    for op in ["c", "r", "u"] {
        let row = upserted(change(event(op, json!({"id": 1, "status": "paid"}))));
        assert_eq!(
            Value::Object(row),
            json!({"id": 1, "status": "paid"}),
            "op {op}"
        );
    }
}

#[test]
fn deletes_and_truncates_say_so_and_other_ops_are_errors() {
    let delete = json!({"before": {"id": 1}, "after": null, "op": "d", "source": {}});
    assert_eq!(change(delete), Ok(Change::Delete));
    assert_eq!(
        change(json!({"op": "t", "source": {}})),
        Ok(Change::Truncate)
    );
    assert!(
        matches!(change(json!({"op": "x"})), Err(ChangeError::Envelope(m)) if m.contains("\"x\""))
    );
    assert!(change(json!({"after": {"id": 1}})).is_err(), "no op");
    assert!(
        change(json!({"op": "c", "after": null})).is_err(),
        "a create without its row"
    );
    assert!(change(json!([1, 2])).is_err());
}

#[test]
fn an_unchanged_toasted_value_is_left_out_of_the_row() {
    let after = json!({"id": 1, "notes": UNAVAILABLE, "blob": "X19kZWJleml1bV91bmF2YWlsYWJsZV92YWx1ZQ==", "qty": 2});
    let row = upserted(change(event("u", after)));
    assert_eq!(Value::Object(row), json!({"id": 1, "qty": 2}));
}

/// The converter's wrapper with a schema: logical types decoded exactly.
#[test]
fn with_the_schema_logical_types_decode_exactly() {
    let field = |name: &str, logical: &str, scale: Option<&str>| {
        let mut f = json!({"type": "bytes", "optional": true, "field": name, "name": logical});
        if let Some(s) = scale {
            f["parameters"] = json!({"scale": s});
        }
        f
    };
    let schema = json!({
        "type": "struct",
        "name": "shop.public.orders.Envelope",
        "fields": [
            {"type": "struct", "optional": true, "field": "before", "fields": []},
            {"type": "struct", "optional": true, "field": "after", "fields": [
                {"type": "int32", "optional": false, "field": "id"},
                field("amount", "org.apache.kafka.connect.data.Decimal", Some("2")),
                field("refund", "org.apache.kafka.connect.data.Decimal", Some("2")),
                field("big", "org.apache.kafka.connect.data.Decimal", Some("0")),
                field("ratio", "io.debezium.data.VariableScaleDecimal", None),
                field("day", "io.debezium.time.Date", None),
                field("at", "io.debezium.time.MicroTimestamp", None),
                field("at_ms", "io.debezium.time.Timestamp", None),
                field("at_tz", "io.debezium.time.ZonedTimestamp", None),
                field("clock", "io.debezium.time.MicroTime", None),
                field("doc", "io.debezium.data.Json", None),
                field("gone", "io.debezium.time.Date", None)
            ]},
            {"type": "string", "optional": false, "field": "op"}
        ]
    });
    let after = json!({
        "id": 7,
        "amount": "EtaH",
        "refund": "/2o=",
        "big": "CUmw9vACMxPESZBQ3jjzTg==",
        "ratio": {"scale": 3, "value": "MDk="},
        "day": 19_700,
        "at": 1_700_000_000_123_456_i64,
        "at_ms": -1,
        "at_tz": "2023-11-14T22:13:20.123456Z",
        "clock": 45_296_000_001_i64,
        "doc": "{\"a\":[1,2]}",
        "gone": null
    });
    let value = json!({"schema": schema, "payload": event("c", after)});
    let row = upserted(change(value));
    assert_eq!(
        Value::Object(row),
        json!({
            "id": 7,
            "amount": "12345.67",
            "refund": "-1.50",
            "big": "12345678901234567890123456789012345678",
            "ratio": "12.345",
            "day": "2023-12-09",
            "at": "2023-11-14T22:13:20.123456Z",
            "at_ms": "1969-12-31T23:59:59.999Z",
            "at_tz": "2023-11-14T22:13:20.123456Z",
            "clock": "12:34:56.000001",
            "doc": {"a": [1, 2]},
            "gone": null
        })
    );
}

#[test]
fn a_value_its_logical_type_cannot_read_is_an_error_naming_the_field() {
    let schema = json!({"fields": [{"field": "after", "fields": [
        {"field": "amount", "type": "bytes", "name": "org.apache.kafka.connect.data.Decimal", "parameters": {"scale": "2"}}
    ]}]});
    let value = json!({"schema": schema, "payload": event("c", json!({"amount": "not base64!"}))});
    match change(value) {
        Err(ChangeError::Field { field, message }) => {
            assert_eq!(field, "amount");
            assert!(message.contains("base64"), "{message}");
        }
        other => panic!("want a field error, got {other:?}"),
    }
}

#[test]
fn a_record_key_is_the_key_struct_with_or_without_its_schema() {
    let wrapped = br#"{"schema":{"type":"struct","fields":[{"type":"int32","field":"id"}]},"payload":{"id":1005}}"#;
    assert_eq!(key(wrapped), Some(br#"{"id":1005}"#.to_vec()));
    let plain = br#"{"id":1005}"#;
    assert_eq!(key(plain), Some(plain.to_vec()));
    assert_eq!(key(b"not json"), None);
}

#[test]
fn decimals_of_any_sign_and_scale() {
    assert_eq!(logical::decimal(vec![0x00], 2), "0.00");
    assert_eq!(logical::decimal(vec![0x05], 3), "0.005");
    assert_eq!(logical::decimal(vec![0xff], 0), "-1");
    assert_eq!(logical::decimal(vec![0x80], 1), "-12.8");
    assert_eq!(logical::decimal(Vec::new(), 0), "0");
}

fn order(op: &str, source: Value) -> Option<String> {
    let value = json!({"op": op, "before": {"id": 1}, "after": {"id": 1}, "source": source});
    super::event(value).expect("an event").1.order
}

#[test]
fn postgres_changes_order_by_the_last_commit_then_their_own_lsn() {
    // Captured from Debezium 3.6's PostgreSQL connector: transaction 752
    // began first, committed after 753 (whose commit ends at 31025176).
    let t753 = order(
        "u",
        json!({"lsn": 31025032, "sequence": "[\"31025100\",\"31025032\"]"}),
    );
    let t752a = order(
        "u",
        json!({"lsn": 31024936, "sequence": "[\"31025176\",\"31024936\"]"}),
    );
    let t752b = order(
        "u",
        json!({"lsn": 31025272, "sequence": "[\"31025176\",\"31025272\"]"}),
    );
    assert_eq!(
        t752a.as_deref(),
        Some("0000000000003102517600000000000031024936")
    );
    assert!(
        t753 < t752a && t752a < t752b,
        "{t753:?} {t752a:?} {t752b:?}"
    );
}

#[test]
fn a_change_with_no_known_predecessor_and_a_snapshot_read_have_no_order() {
    let first = json!({"lsn": 31025032, "sequence": "[null,\"31025032\"]"});
    assert_eq!(order("u", first), None);
    let snapshot =
        json!({"lsn": 31024896, "sequence": "[\"31024000\",\"31024896\"]", "snapshot": "true"});
    assert_eq!(order("r", snapshot), None);
}

#[test]
fn mysql_changes_order_by_binlog_file_position_and_row() {
    let a = order(
        "u",
        json!({"file": "mysql-bin.000009", "pos": 9999, "row": 3}),
    );
    let b = order("u", json!({"file": "mysql-bin.000010", "pos": 4, "row": 0}));
    let c = order("u", json!({"file": "mysql-bin.000010", "pos": 4, "row": 1}));
    assert!(a < b && b < c, "{a:?} {b:?} {c:?}");
    assert_eq!(order("u", json!({"file": "x"})), None, "no position");
}
