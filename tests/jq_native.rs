//! The native jq fast path gives exactly jaq's answer: random expressions of
//! its subset, run on random records both ways, must agree value for value
//! (number types included) and error for error.

use proptest::prelude::*;
use serde_json::{json, Map, Value};
use tidemill::ingest::transform::jq::JqProgram;

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-3i64..4).prop_map(Value::from),
        prop_oneof![Just(i64::MAX), Just(i64::MIN), Just(i64::MAX / 2 + 1)].prop_map(Value::from),
        Just(Value::from(u64::MAX)),
        prop_oneof![
            Just(0.0f64),
            Just(-0.0),
            Just(1.5),
            Just(-2.0),
            Just(1e308),
            Just(0.1)
        ]
        .prop_map(Value::from),
        (-1e6f64..1e6).prop_map(Value::from),
        prop_oneof![Just(""), Just("a"), Just("b"), Just("view"), Just("é😀")]
            .prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(2, 16, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::btree_map("[ab]", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn record() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => prop::collection::btree_map("[abc]", value(), 0..4)
            .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        1 => value(),
    ]
}

/// Expressions of the native subset only (every one must compile natively).
fn expr() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just(".".to_string()),
        Just(".a".to_string()),
        Just(".b".to_string()),
        Just(".c".to_string()),
        Just(".a.b".to_string()),
        Just(r#"."a""#.to_string()),
        Just(r#".["b"]"#.to_string()),
        Just("1".to_string()),
        Just("0".to_string()),
        Just("-2".to_string()),
        Just("1.5".to_string()),
        Just("1e400".to_string()),
        Just("9223372036854775807".to_string()),
        Just(r#""a""#.to_string()),
        Just(r#""view""#.to_string()),
        Just(r#""x\ny""#.to_string()),
        Just("true".to_string()),
        Just("false".to_string()),
        Just("null".to_string()),
        Just("not".to_string()),
    ];
    let ops = [
        "|", "and", "or", "//", "==", "!=", "<", "<=", ">", ">=", "+", "-", "*", "/",
    ];
    leaf.prop_recursive(4, 24, 3, move |inner| {
        prop_oneof![
            (
                inner.clone(),
                prop::sample::select(ops.to_vec()),
                inner.clone()
            )
                .prop_map(|(l, op, r)| format!("({l} {op} {r})")),
            inner.clone().prop_map(|e| format!("select({e})")),
            inner.clone().prop_map(|e| format!("-({e})")),
            (inner.clone(), inner.clone()).prop_map(|(x, y)| format!(r#"{{a: {x}, b, "c": {y}}}"#)),
            // Objects built in place from the record (`{b}` kept, `{d: .a}` computed).
            (inner.clone(), inner.clone())
                .prop_map(|(x, y)| format!(r#"select({x}) | {{b, d: .a, c: {y}}}"#)),
            inner
                .clone()
                .prop_map(|x| format!(r#"{{c, a: {x}, b: .c}}"#)),
        ]
    })
}

fn same(program: &JqProgram, input: Value) -> Result<(), TestCaseError> {
    let fast = program.run(input.clone()).map_err(|e| e.to_string());
    let reference = program.run_jaq(input.clone()).map_err(|e| e.to_string());
    // Value equality tells 1 from 1.0; the text also pins the key order.
    let text = |r: &Result<Vec<Value>, String>| format!("{r:?}");
    prop_assert_eq!(
        text(&fast),
        text(&reference),
        "expr {} on {}",
        program.expr(),
        input
    );
    prop_assert_eq!(fast, reference);
    Ok(())
}

proptest! {
    // 500 cases in `make test`; PROPTEST_CASES=20000 for a long run.
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(500)
    ))]

    #[test]
    fn native_and_jaq_agree_on_random_expressions_and_records(code in expr(), inputs in prop::collection::vec(record(), 1..8)) {
        let program = JqProgram::compile(&code).expect("the subset compiles");
        prop_assert!(program.is_native(), "{} should be in the native subset", code);
        for input in inputs {
            same(&program, input.clone())?;
            same_on_the_fields_read(&program, input)?;
        }
    }
}

/// What projection pushdown relies on: when the expression names the fields
/// its output depends on, the record restricted to them gives the same
/// answer (or the same error), native or on jaq.
fn same_on_the_fields_read(program: &JqProgram, input: Value) -> Result<(), TestCaseError> {
    let (Some(fields), Value::Object(record)) = (program.reads(), &input) else {
        return Ok(());
    };
    let restricted: Map<String, Value> = record
        .iter()
        .filter(|(k, _)| fields.contains(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let full = program.run(input.clone()).map_err(|e| e.to_string());
    let projected = program
        .run(Value::Object(restricted))
        .map_err(|e| e.to_string());
    prop_assert_eq!(
        format!("{full:?}"),
        format!("{projected:?}"),
        "expr {} on {}",
        program.expr(),
        input
    );
    Ok(())
}

#[test]
fn native_and_jaq_agree_on_typical_pipeline_expressions() {
    let exprs = [
        r#"select(.type != "view") | {event_id, key, ts, type, amount, qty, value: (.amount * .qty)}"#,
        r#"select(.a > 1 and .b != null) | {a, total: (.a + (.b // 0))}"#,
        r#"{id: .id, name: (.first + " " + .last), score: (.score / 10)}"#,
        r#"select((.kind == "x" or .kind == "y") | not)"#,
        // Repeated keys: the later entry wins, moved or computed.
        r#"{a, a: 1, b: .a, id}"#,
        r#"{a: 1, a, first: .last, last: .first}"#,
        r#"{score: (.score * 2), a, kind: .id, id: .kind, all: .}"#,
    ];
    let inputs = [
        json!({"event_id": "e", "key": 1, "ts": 5, "type": "buy", "amount": 2.5, "qty": 3}),
        json!({"event_id": "e", "type": "view", "amount": 1, "qty": 2}),
        json!({"a": 2, "b": 3, "first": "A", "last": "B", "score": 95, "id": 1, "kind": "z"}),
        json!({"a": 5, "b": null, "kind": "x", "score": 0}),
        json!({"a": "s", "first": 1}),
        json!([1, 2]),
    ];
    for code in exprs {
        let program = JqProgram::compile(code).expect("compiles");
        assert!(program.is_native(), "{code}");
        for input in &inputs {
            same(&program, input.clone()).expect("agree");
        }
    }
}
