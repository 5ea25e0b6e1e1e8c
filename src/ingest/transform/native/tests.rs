use super::{Expr, Native, Unsupported};
use serde_json::{json, Value};

fn run(code: &str, input: Value) -> Result<Option<Value>, Unsupported> {
    let n = Native::compile(code).expect("in the subset");
    n.run(input).map_err(|(u, _)| u)
}

#[test]
fn the_benchmark_map_filter_is_native() {
    let code = r#"select(.type != "view") | {event_id, key, value: (.amount * .qty)}"#;
    let input = json!({"event_id": "e1", "key": 7, "type": "buy", "amount": 2.5, "qty": 4});
    assert_eq!(
        run(code, input),
        Ok(Some(json!({"event_id": "e1", "key": 7, "value": 10.0})))
    );
    assert_eq!(run(code, json!({"type": "view"})), Ok(None));
}

#[test]
fn expressions_outside_the_subset_are_not_compiled() {
    for code in [
        ".[]",
        ".a, .b",
        "def f: 1; f",
        "length",
        ".a?",
        "\"\\(.a)\"",
        "{(.k): 1}",
    ] {
        assert!(Native::compile(code).is_none(), "{code}");
    }
}

#[test]
fn cases_jaq_would_fail_or_widen_are_left_to_jaq() {
    assert_eq!(run(".a + 1", json!({"a": "s"})), Err(Unsupported));
    assert_eq!(run(".a * 2", json!({"a": i64::MAX})), Err(Unsupported));
    assert_eq!(run(".a / 0", json!({"a": 1})), Err(Unsupported));
    assert_eq!(run(".a.b", json!({"a": 1})), Err(Unsupported));
    assert_eq!(
        run(".a == .b", json!({"a": [1], "b": [1]})),
        Err(Unsupported)
    );
    assert_eq!(run(".a", json!({"a": u64::MAX})).map(|_| ()), Ok(()));
    assert_eq!(run(".a + 0", json!({"a": u64::MAX})), Err(Unsupported));
    // jaq: -1 / inf is -0, and inf / 1e308 stays inf (clamped on output);
    // a clamp in between would differ.
    assert_eq!(run("-(1) / 1e400", json!(null)), Err(Unsupported));
    assert_eq!(run(".a * 10 / .a", json!({"a": 1e308})), Err(Unsupported));
}

#[test]
fn numbers_keep_jaq_types() {
    assert_eq!(run(".a + 1", json!({"a": 1})), Ok(Some(json!(2))));
    assert_eq!(run(".a / 2", json!({"a": 4})), Ok(Some(json!(2.0))));
    assert_eq!(run("1.5", json!(null)), Ok(Some(json!(1.5))));
    assert_eq!(run("-.a", json!({"a": -0.0})), Ok(Some(json!(0.0))));
    assert_eq!(run("1 == 1.0", json!(null)), Ok(Some(json!(true))));
    assert_eq!(run("null < false", json!(null)), Ok(Some(json!(true))));
}

/// Per entry, whether an owned record keeps that field in place; `None` when
/// the object is not built in place.
fn copies(code: &str) -> Option<Vec<bool>> {
    let Native(e) = Native::compile(code).expect("in the subset");
    let obj = match e {
        Expr::Obj(o) => o,
        Expr::Pipe(_, r) => match *r {
            Expr::Obj(o) => o,
            other => panic!("not an object: {other:?}"),
        },
        other => panic!("not an object: {other:?}"),
    };
    obj.in_place.map(|edit| edit.copies)
}

#[test]
fn objects_with_distinct_keys_are_built_in_place_keeping_copied_fields() {
    assert_eq!(copies("{a, b}"), Some(vec![true, true]));
    assert_eq!(copies("{x: .a, b}"), Some(vec![false, true]));
    assert_eq!(copies("select(.a) | {a, b: 1}"), Some(vec![true, false]));
    assert_eq!(
        copies("{a, v: (.a * 2), all: .}"),
        Some(vec![true, false, false])
    );
    assert_eq!(copies("{a: .a.b}"), Some(vec![false]));
    // A repeated key: the later entry wins, so the object is built afresh.
    assert_eq!(copies("{a, a: 1}"), None);
}

#[test]
fn in_place_objects_give_jaqs_object_and_hand_back_the_record_on_unsupported() {
    let code = r#"select(.t != "x") | {id, k: .key, missing, v: (.n + 1)}"#;
    let input = json!({"id": "e1", "key": "k7", "t": "buy", "n": 2, "tag": "z"});
    assert_eq!(
        run(code, input),
        Ok(Some(
            json!({"id": "e1", "k": "k7", "missing": null, "v": 3})
        ))
    );
    // `.n + 1` on a string is jaq's error: the record must come back whole.
    let input = json!({"id": "e1", "key": "k7", "t": "buy", "n": "s"});
    let n = Native::compile(code).expect("in the subset");
    assert_eq!(n.run(input.clone()), Err((Unsupported, input)));
    // A computed value replaces the record's field of the same name.
    assert_eq!(
        run("{n: (.n * 2), id}", json!({"n": 2, "id": 1, "x": 0})),
        Ok(Some(json!({"n": 4, "id": 1})))
    );
    // Null and non-objects take the borrowing path, as before.
    assert_eq!(
        run("{a, b}", json!(null)),
        Ok(Some(json!({"a": null, "b": null})))
    );
    assert_eq!(run("{a, b}", json!([1])), Err(Unsupported));
}

#[test]
fn reads_name_the_top_level_fields_an_output_depends_on() {
    let reads = |code: &str| Native::compile(code).expect("in the subset").reads();
    let fields = |f: &[&str]| Some(f.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    assert_eq!(
        reads(r#"select(.type != "view") | {event_id, v: (.amount * .qty)}"#),
        fields(&["amount", "event_id", "qty", "type"])
    );
    assert_eq!(reads(".a.b | .c"), fields(&["a"]));
    assert_eq!(reads("{a: (.x // .y)} | .a"), fields(&["x", "y"]));
    assert_eq!(reads(". | {b}"), fields(&["b"]));
    assert_eq!(reads("1"), fields(&[]));
    // The record itself (or its truthiness) is the output or part of it.
    for code in [".", "select(.a)", "{a, all: .}", "not", "select(.a) | ."] {
        assert_eq!(reads(code), None, "{code}");
    }
}
