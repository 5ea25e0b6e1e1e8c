//! Table-driven: (column type, value) → the form sent, or the refusal.

use super::number::Decimal;
use super::*;
use crate::codec::base64;
use crate::config::TimestampFormat::{self, EpochMs, EpochS, EpochUs, Rfc3339};
use serde_json::{json, Value};

const PG: Target = crate::db::postgres::dialect::TARGET;
const MY: Target = crate::db::mysql::dialect::TARGET;
const LITE: Target = crate::db::sqlite::dialect::TARGET;

/// `Ok(expected)` or `Err(substring of the reason)`.
type Case = (&'static str, Value, Result<Value, &'static str>);

/// The form sent: the rewritten value, or `value` itself when it fits as is.
fn convert(
    ty: &ColumnType,
    value: &Value,
    format: TimestampFormat,
    target: Target,
) -> Result<Value, String> {
    Ok(fit(ty, value, format, target)?.unwrap_or_else(|| value.clone()))
}

fn run(target: Target, format: TimestampFormat, cases: &[Case]) {
    for (ty, value, expected) in cases {
        let parsed = parse(ty, target);
        let got = convert(&parsed, value, format, target);
        match (expected, &got) {
            (Ok(want), Ok(have)) => assert_eq!(have, want, "{ty} ← {value}"),
            (Err(part), Err(reason)) => {
                assert!(
                    reason.contains(part),
                    "{ty} ← {value}: `{reason}` lacks `{part}`"
                )
            }
            _ => panic!("{ty} ← {value}: expected {expected:?}, got {got:?} ({parsed:?})"),
        }
    }
}

#[test]
fn integers_refuse_overflow_fractions_and_other_types() {
    run(
        MY,
        Rfc3339,
        &[
            ("int", json!(42), Ok(json!(42))),
            ("int", json!(12.0), Ok(json!(12))),
            ("int", json!(12.5), Err("has a fraction")),
            ("smallint", json!(300), Ok(json!(300))),
            ("tinyint(4)", json!(300), Err("out of range -128..=127")),
            (
                "tinyint(3) unsigned",
                json!(-1),
                Err("out of range 0..=255"),
            ),
            ("int", json!(2147483648_i64), Err("out of range")),
            ("bigint unsigned", json!(u64::MAX), Ok(json!(u64::MAX))),
            ("int", json!("42"), Err("a string where an integer")),
            ("int", json!(true), Err("a boolean")),
            ("int", Value::Null, Ok(Value::Null)),
        ],
    );
    run(
        PG,
        Rfc3339,
        &[("smallint", json!(40000), Err("out of range -32768..=32767"))],
    );
}

#[test]
fn decimals_are_exact_and_refuse_extra_digits() {
    run(
        PG,
        Rfc3339,
        &[
            ("numeric(10,4)", json!(12345.6789), Ok(json!("12345.6789"))),
            (
                "numeric(10,4)",
                json!("12345.6789"),
                Ok(json!("12345.6789")),
            ),
            ("numeric(10,4)", json!(1.5e2), Ok(json!("150"))),
            ("numeric(10,4)", json!("-0.50"), Ok(json!("-0.5"))),
            (
                "numeric(10,4)",
                json!(1.23456),
                Err("more than 4 fractional digits"),
            ),
            (
                "numeric(5,2)",
                json!(1234),
                Err("more than 3 integer digits"),
            ),
            (
                "numeric",
                json!("123456789012345678901234567890.123"),
                Ok(json!("123456789012345678901234567890.123")),
            ),
            (
                "numeric",
                json!(0.30000000000000004),
                Err("send it as a string"),
            ),
            ("numeric", json!("12,5"), Err("not a decimal number")),
            ("numeric", json!([1]), Err("an array where")),
        ],
    );
}

#[test]
fn floats_bools_and_text() {
    run(
        PG,
        Rfc3339,
        &[
            ("double precision", json!(1.5), Ok(json!(1.5))),
            ("real", json!(1e300), Err("single-precision")),
            ("real", json!("1.5"), Err("a string where a number")),
            ("boolean", json!(true), Ok(json!(true))),
            ("boolean", json!(1), Ok(json!(true))),
            ("boolean", json!("yes"), Err("a string where a boolean")),
            ("character varying(3)", json!("abc"), Ok(json!("abc"))),
            ("character varying(3)", json!("äöü"), Ok(json!("äöü"))),
            (
                "character varying(3)",
                json!("toolong"),
                Err("7 characters, the column holds at most 3"),
            ),
            ("text", json!(5), Err("a number where a string")),
            ("text", json!({"a": 1}), Err("an object where a string")),
        ],
    );
    run(
        MY,
        Rfc3339,
        &[("longtext", json!({"a": 1}), Ok(json!({"a": 1})))],
    );
}

#[test]
fn timestamps_read_rfc3339_and_epochs_into_utc() {
    run(
        PG,
        Rfc3339,
        &[
            (
                "timestamp with time zone",
                json!("2024-03-01T12:00:00+02:00"),
                Ok(json!("2024-03-01T10:00:00.000000Z")),
            ),
            (
                "timestamp without time zone",
                json!("2024-03-01 12:00:00.5"),
                Ok(json!("2024-03-01T12:00:00.500000")),
            ),
            (
                "timestamp(0) with time zone",
                json!("2024-03-01T12:00:00.5Z"),
                Err("fractional-second digits, the column keeps 0"),
            ),
            (
                "timestamp with time zone",
                json!("yesterday"),
                Err("not an RFC 3339 timestamp"),
            ),
            (
                "timestamp with time zone",
                json!("2024-02-30T00:00:00Z"),
                Err("not an RFC 3339"),
            ),
            (
                "timestamp with time zone",
                json!("2024-03-01T00:00:00.1234567Z"),
                Err("more precise than microseconds"),
            ),
            (
                "timestamp with time zone",
                json!(1_700_000_000),
                Err("timestamp_format"),
            ),
        ],
    );
    run(
        MY,
        Rfc3339,
        &[
            (
                "datetime",
                json!("2024-03-01T12:00:00Z"),
                Ok(json!("2024-03-01 12:00:00")),
            ),
            (
                "datetime(6)",
                json!("2024-03-01T12:00:00.000001-01:00"),
                Ok(json!("2024-03-01 13:00:00.000001")),
            ),
            (
                "datetime",
                json!("2024-03-01T12:00:00.5Z"),
                Err("the column keeps 0"),
            ),
        ],
    );
    run(
        PG,
        EpochMs,
        &[
            (
                "timestamp with time zone",
                json!(1_700_000_000_123_i64),
                Ok(json!("2023-11-14T22:13:20.123000Z")),
            ),
            (
                "timestamp with time zone",
                json!(-1),
                Ok(json!("1969-12-31T23:59:59.999000Z")),
            ),
            (
                "timestamp with time zone",
                json!("2024-03-01T00:00:00Z"),
                Ok(json!("2024-03-01T00:00:00.000000Z")),
            ),
            (
                "timestamp with time zone",
                json!(1.0005),
                Err("more precise than microseconds"),
            ),
        ],
    );
    run(
        LITE,
        EpochS,
        &[
            (
                "TIMESTAMP",
                json!(1_700_000_000.25),
                Ok(json!("2023-11-14 22:13:20.250000")),
            ),
            ("TIMESTAMP", json!(1e12), Err("outside years 0001 to 9999")),
        ],
    );
    run(
        PG,
        EpochUs,
        &[(
            "timestamp with time zone",
            json!(1),
            Ok(json!("1970-01-01T00:00:00.000001Z")),
        )],
    );
}

#[test]
fn dates_uuids_json_bytes_and_arrays() {
    run(
        PG,
        Rfc3339,
        &[
            ("date", json!("2024-02-29"), Ok(json!("2024-02-29"))),
            ("date", json!("2023-02-29"), Err("not a YYYY-MM-DD date")),
            (
                "uuid",
                json!("A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11"),
                Ok(json!("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")),
            ),
            ("uuid", json!("not-a-uuid"), Err("is not a UUID")),
            ("jsonb", json!({"a": [1]}), Ok(json!({"a": [1]}))),
            ("bytea", json!("3q2+7w=="), Ok(json!("\\xdeadbeef"))),
            ("bytea", json!("3q2+7w"), Ok(json!("\\xdeadbeef"))),
            ("bytea", json!("not base64!"), Err("not valid base64")),
            ("integer[]", json!([1, null, 3]), Ok(json!([1, null, 3]))),
            (
                "integer[]",
                json!([1, 2.5]),
                Err("element 1: `2.5` has a fraction"),
            ),
            ("text[]", json!("a"), Err("a string where an array")),
        ],
    );
    run(
        MY,
        Rfc3339,
        &[
            (
                "varbinary(2)",
                json!("3q2+7w=="),
                Err("4 bytes, the column holds at most 2"),
            ),
            ("blob", json!("3q2+7w=="), Ok(json!("deadbeef"))),
        ],
    );
}

#[test]
fn unknown_types_pass_through() {
    run(
        PG,
        Rfc3339,
        &[("interval", json!("1 day"), Ok(json!("1 day")))],
    );
}

#[test]
fn decimal_text_and_base64_helpers() {
    let d = Decimal::parse("-001.2300e1").expect("decimal");
    assert_eq!((d.plain(), d.significant()), ("-12.3".to_string(), 3));
    assert_eq!(Decimal::parse("0.000").expect("zero").plain(), "0");
    assert_eq!(Decimal::parse("-0").expect("zero").plain(), "0");
    assert_eq!(Decimal::parse("1e-3").expect("small").plain(), "0.001");
    assert!(Decimal::parse("1.2.3").is_none());
    assert_eq!(base64("aGk="), Some(b"hi".to_vec()));
    assert_eq!(base64(""), Some(Vec::new()));
    assert_eq!(base64("a"), None);
    assert_eq!(base64("aGk=="), None);
}

#[test]
fn delete_keys_read_bare_text_as_their_columns_numbers_and_refuse_what_cannot_fit() {
    let spec = |ty| ColumnSpec {
        ty,
        timestamps: TimestampFormat::Rfc3339,
    };
    let types = RowTypes {
        target: PG,
        columns: [
            (
                "id".to_string(),
                spec(ColumnType::Int {
                    min: i64::MIN as i128,
                    max: i64::MAX as i128,
                }),
            ),
            (
                "name".to_string(),
                spec(ColumnType::Text {
                    max_chars: Some(3),
                    structured: false,
                }),
            ),
            ("u".to_string(), spec(ColumnType::Uuid)),
        ]
        .into_iter()
        .collect(),
    };
    let key = |v: serde_json::Value| v.as_object().cloned().expect("an object");
    let mut bare = key(json!({"id": "42"}));
    types
        .convert_key(&mut bare)
        .expect("a bare numeric key fits");
    assert_eq!(bare, key(json!({"id": 42})));
    let mut text = key(json!({"name": "42", "u": "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11"}));
    types
        .convert_key(&mut text)
        .expect("text stays text; the uuid is normalised");
    assert_eq!(
        text,
        key(json!({"name": "42", "u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"}))
    );
    for bad in [
        json!({"id": "abc"}),
        json!({"id": "4.5"}),
        json!({"name": "long"}),
    ] {
        let mut k = key(bad.clone());
        assert!(types.convert_key(&mut k).is_err(), "{bad}");
    }
}

#[test]
fn rows_that_fit_as_they_are_report_no_changes() {
    let spec = |ty| ColumnSpec {
        ty,
        timestamps: TimestampFormat::Rfc3339,
    };
    let int = ColumnType::Int {
        min: i64::MIN as i128,
        max: i64::MAX as i128,
    };
    let text = ColumnType::Text {
        max_chars: None,
        structured: false,
    };
    let types = RowTypes {
        target: PG,
        columns: [
            ("id".to_string(), spec(int)),
            ("name".to_string(), spec(text)),
            ("u".to_string(), spec(ColumnType::Uuid)),
            ("tags".to_string(), spec(parse("integer[]", PG))),
        ]
        .into_iter()
        .collect(),
    };
    let row = |v: serde_json::Value| v.as_object().cloned().expect("an object");
    let plain = row(json!({"id": 7, "name": "x", "tags": [1, 2], "other": {"a": 1}}));
    assert_eq!(types.changes(&plain).expect("fits"), vec![]);
    let rewritten = row(json!({"id": 12.0, "name": "x", "tags": [1, 2.0]}));
    assert_eq!(
        types.changes(&rewritten).expect("fits"),
        vec![
            ("id".to_string(), json!(12)),
            ("tags".to_string(), json!([1, 2]))
        ]
    );
    let refused = types
        .changes(&row(json!({"id": 1, "u": "nope"})))
        .expect_err("not a uuid");
    assert_eq!(refused.column, "u");
    // convert_row applies exactly those changes.
    let mut converted = rewritten.clone();
    types.convert_row(&mut converted).expect("fits");
    assert_eq!(
        converted,
        row(json!({"id": 12, "name": "x", "tags": [1, 2]}))
    );
}
