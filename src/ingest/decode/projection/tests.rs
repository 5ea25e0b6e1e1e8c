use super::*;
use crate::config::DecodeFormat;
use crate::ingest::decode::Decoder;
use serde_json::json;

fn steps(doc: Value) -> Vec<TransformConfig> {
    serde_json::from_value(doc).expect("valid transforms")
}

fn projection(fields: &[&str]) -> Projection {
    Projection {
        fields: fields.iter().map(|f| Box::from(*f)).collect(),
    }
}

fn fields(p: Option<Projection>) -> Option<Vec<String>> {
    p.map(|p| p.fields().map(str::to_string).collect())
}

#[test]
fn records_ending_in_an_aggregate_need_only_the_fields_read() {
    let running = steps(json!([
        {"type": "key", "fields": ["region", "key"]},
        {"type": "aggregate", "columns": {"n": "count()", "total": "sum(amount)", "top": "max(amount)"}},
        {"type": "jq", "expr": ". + {seen: .unread}"},
    ]));
    assert_eq!(
        fields(Projection::for_transforms(&running)),
        Some(vec!["amount".into(), "key".into(), "region".into()])
    );
    let windowed = steps(json!([
        {"type": "dedup", "field": "event_id", "ttl": "1h"},
        {"type": "aggregate", "columns": {"q": "last(qty)"},
         "window": {"kind": "tumbling", "size": "1s", "time_field": "ts"}},
    ]));
    assert_eq!(
        fields(Projection::for_transforms(&windowed)),
        Some(vec!["event_id".into(), "qty".into(), "ts".into()])
    );
    let kafka_keyed = steps(json!([{"type": "aggregate", "columns": {"n": "count()"}}]));
    assert_eq!(
        fields(Projection::for_transforms(&kafka_keyed)),
        Some(vec![])
    );
}

#[test]
fn a_native_jq_step_reading_named_fields_needs_only_those() {
    let w1 = steps(json!([{"type": "jq", "expr":
        r#"select(.type != "view") | {event_id, key, value: (.amount * .qty)}"#}]));
    assert_eq!(
        fields(Projection::for_transforms(&w1)),
        Some(vec![
            "amount".into(),
            "event_id".into(),
            "key".into(),
            "qty".into(),
            "type".into()
        ])
    );
    // Fields read before the jq step count too; steps after it see its output.
    let keyed = steps(json!([
        {"type": "key", "fields": ["region"]},
        {"type": "jq", "expr": "{n: .amount}"},
        {"type": "aggregate", "columns": {"total": "sum(n)"}},
    ]));
    assert_eq!(
        fields(Projection::for_transforms(&keyed)),
        Some(vec!["amount".into(), "region".into()])
    );
}

#[test]
fn records_that_reach_the_sink_or_jq_or_an_operator_are_decoded_in_full() {
    for chain in [
        json!([]),
        json!([{"type": "jq", "expr": "."}, {"type": "aggregate", "columns": {"n": "count()"}}]),
        json!([{"type": "key", "fields": ["k"]}, {"type": "jq", "expr": "."},
               {"type": "aggregate", "columns": {"n": "count()"}}]),
        json!([{"type": "key", "fields": ["k"]}, {"type": "dedup", "ttl": "1m"}]),
        // jq that hands the record on, or outside the native subset.
        json!([{"type": "jq", "expr": "select(.a > 1)"}]),
        json!([{"type": "jq", "expr": "{a, all: .}"}]),
        json!([{"type": "jq", "expr": "{a, n: (.items | length)}"}]),
        json!([{"type": "key", "fields": ["k"]}, {"type": "operator", "name": "custom"},
               {"type": "aggregate", "columns": {"n": "count()"}}]),
    ] {
        assert_eq!(
            Projection::for_transforms(&steps(chain.clone())),
            None,
            "{chain}"
        );
    }
}

/// What a full decode gives, restricted to `fields` (`None`: not an object).
fn restricted(bytes: &[u8], fields: &[&str]) -> Option<Result<Row, ()>> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(row)) => Some(Ok(row
            .into_iter()
            .filter(|(k, _)| fields.contains(&k.as_str()))
            .collect())),
        Ok(_) => None,
        Err(_) => Some(Err(())),
    }
}

#[test]
fn projected_objects_equal_the_full_decode_restricted_to_their_fields() {
    let wanted = ["amount", "key", "ts"];
    let p = projection(&wanted);
    let payloads: &[&[u8]] = &[
        br#"{"key":"k1","amount":12.5,"ts":1700000000000,"tag":"x","type":"buy"}"#,
        br#"  {"k\u0065y":"escaped key","amount":{"nested":[1,2,{"a":null}]}}  "#,
        br#"{"key":"first","key":"last","amount":1,"amount":2}"#,
        br#"{"other":[[[{"deep":"\"quoted\" \\ \n"}]]],"key":"\ud83d\ude00"}"#,
        br#"{}"#,
        b"\n\t{\"ts\":-0.0,\"amount\":18446744073709551615,\"x\":true}\r\n",
        br#"{"amount":1e5,"big":123456789012345678901234567890}"#,
    ];
    for bytes in payloads {
        let text = String::from_utf8_lossy(bytes);
        let got = p.decode(bytes).expect("valid JSON").expect("an object");
        assert_eq!(Some(Ok(got)), restricted(bytes, &wanted), "{text}");
    }
}

#[test]
fn invalid_json_anywhere_is_the_same_error_as_a_full_decode() {
    let decoder = Decoder::new(DecodeFormat::Json, Some(projection(&["key"])));
    for bytes in [
        &br#"{"key":"k","skipped":[1,2}"#[..],
        br#"{"key":"k","skipped":"bad \q escape"}"#,
        b"{\"key\":\"k\",\"skipped\":\"raw \x01 control\"}",
        br#"{"key":"k","skipped":"unterminated"#,
        br#"{"key":"k"} trailing"#,
        br#"{"key":"k","skipped":01}"#,
        br#"{"key":"k","#,
        b"{\"key\":\"k\",\"skipped\":\"\xff\"}",
        b"{\"key\":\"\xc3\"}",
    ] {
        let full = decode_full(bytes).expect_err("invalid in full");
        let projected = decoder.decode(Some(bytes)).expect_err("invalid projected");
        let text = String::from_utf8_lossy(bytes);
        // Positions may differ by where parsing stopped; the kind may not.
        assert_eq!(
            error_kind(&full.to_string()),
            error_kind(&projected.to_string()),
            "{text}"
        );
    }
}

fn decode_full(bytes: &[u8]) -> Result<Option<Value>, DecodeError> {
    Decoder::new(DecodeFormat::Json, None).decode(Some(bytes))
}

fn error_kind(message: &str) -> &str {
    message.split(" at line").next().unwrap_or(message)
}

#[test]
fn a_payload_that_is_not_an_object_is_decoded_in_full() {
    let decoder = Decoder::new(DecodeFormat::Json, Some(projection(&["key"])));
    for bytes in [&b"[1,2]"[..], b"\"text\"", b" 42", b"null", b"true"] {
        assert_eq!(
            decoder.decode(Some(bytes)).expect("valid JSON"),
            decode_full(bytes).expect("valid JSON"),
        );
    }
}

#[test]
fn read_fields_keep_the_nesting_limit_and_unread_ones_are_only_parsed() {
    let deep = |n: usize| format!("{}1{}", "[".repeat(n), "]".repeat(n));
    let p = projection(&["key"]);
    let read = format!(r#"{{"key":{}}}"#, deep(200));
    assert!(p.decode(read.as_bytes()).is_err());
    assert!(decode_full(read.as_bytes()).is_err());
    // Documented: JSON syntax serde_json refuses only when building the value.
    for unread in [deep(200), r#""\ud800""#.into(), "1e400".into()] {
        let payload = format!(r#"{{"key":"k","unread":{unread}}}"#);
        assert!(decode_full(payload.as_bytes()).is_err(), "{unread}");
        let row = p.decode(payload.as_bytes()).expect("valid syntax");
        assert_eq!(
            row,
            Some(json!({"key": "k"}).as_object().cloned().expect("object"))
        );
    }
}
