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

fn moves(code: &str) -> Vec<Option<String>> {
    let Native(e) = Native::compile(code).expect("in the subset");
    let obj = match e {
        Expr::Obj(o) => o,
        Expr::Pipe(_, r) => match *r {
            Expr::Obj(o) => o,
            other => panic!("not an object: {other:?}"),
        },
        other => panic!("not an object: {other:?}"),
    };
    obj.moves
}

#[test]
fn fields_copied_verbatim_and_read_once_are_moved() {
    let some = |s: &str| Some(s.to_string());
    assert_eq!(moves("{a, b}"), vec![some("a"), some("b")]);
    assert_eq!(moves("{x: .a, b}"), vec![some("a"), some("b")]);
    assert_eq!(moves("select(.a) | {a, b: 1}"), vec![some("a"), None]);
    // `.a` is read twice, `.b` below the top level, `.` whole: nothing to move.
    assert_eq!(moves("{a, v: (.a * 2), c}"), vec![None, None, some("c")]);
    assert_eq!(moves("{a: .a.b}"), vec![None]);
    assert_eq!(moves("{a, all: .}"), vec![None, None]);
    assert_eq!(moves("{a, n: (. | not)}"), vec![None, None]);
    assert_eq!(moves("{a, v: {w: .a}}"), vec![None, None]);
}

#[test]
fn moving_fields_gives_jaqs_object_and_hands_back_the_record_on_unsupported() {
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
    // Null and non-objects take the borrowing path, as before.
    assert_eq!(
        run("{a, b}", json!(null)),
        Ok(Some(json!({"a": null, "b": null})))
    );
    assert_eq!(run("{a, b}", json!([1])), Err(Unsupported));
}
