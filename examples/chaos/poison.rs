//! The records a burst of poison is made of. Each is bad for every pipeline
//! of the run (the append table, the running totals and the windows all need
//! integer `id`, `k`, `v` and `ts`), so each must reach every pipeline's
//! dead-letter topic; a tombstone (no value) is skipped, never loaded.
//! Every poison record carries the header `chaos.poison` = its kind.

/// (kind, payload; `None` is a tombstone).
pub fn burst(first_id: i64) -> Vec<(&'static str, Option<Vec<u8>>)> {
    let id = first_id;
    let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    let huge = "x".repeat(512 * 1024);
    vec![
        ("invalid json", Some(br#"{"id": 1, "k": "#.to_vec())),
        (
            "invalid utf-8",
            Some(
                [
                    br#"{"id": 2, "k": 1, "v": "#.as_slice(),
                    b"\"\xff\xfe\"",
                    br#", "ts": 3}"#.as_slice(),
                ]
                .concat(),
            ),
        ),
        ("not an object", Some(b"[1, 2, 3]".to_vec())),
        (
            "wrong types",
            Some(format!(r#"{{"id": {id}, "k": "seven", "v": "lots", "ts": "yesterday"}}"#).into_bytes()),
        ),
        (
            "overflowing number",
            Some(format!(r#"{{"id": {id}, "k": 1, "v": 1e400, "ts": 1}}"#).into_bytes()),
        ),
        (
            "NaN",
            Some(format!(r#"{{"id": {id}, "k": 1, "v": NaN, "ts": 1}}"#).into_bytes()),
        ),
        (
            "deep nesting",
            Some(format!(r#"{{"id": {id}, "k": 1, "v": {deep}, "ts": 1}}"#).into_bytes()),
        ),
        (
            "huge value",
            Some(format!(r#"{{"id": {id}, "k": 1, "v": "{huge}", "ts": 1}}"#).into_bytes()),
        ),
        (
            "null key",
            Some(format!(r#"{{"id": {id}, "k": null, "v": 1, "ts": 1}}"#).into_bytes()),
        ),
        (
            "sql injection",
            Some(
                format!(
                    r#"{{"id": {id}, "k": "1'); DROP TABLE totals; --", "v": "'; DELETE FROM events_log; --", "ts": "1; TRUNCATE windows", "k\"; DROP TABLE events_log; --": 1}}"#
                )
                .into_bytes(),
            ),
        ),
        ("tombstone", None),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_poison_record_decodes_as_a_good_record() {
        for (kind, payload) in burst(7) {
            let Some(bytes) = payload else { continue };
            let good = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| {
                    ["id", "k", "v", "ts"]
                        .iter()
                        .all(|f| v.get(f).is_some_and(serde_json::Value::is_i64))
                        .then_some(())
                });
            assert!(good.is_none(), "{kind} would load");
        }
    }
}
