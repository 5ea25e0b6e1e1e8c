use super::*;
use serde_json::json;

fn field(ty: PgType, v: Value) -> Result<Vec<u8>, Unencodable> {
    let mut out = Vec::new();
    encode(ty, Some(&v), &mut out)?;
    Ok(out[4..].to_vec())
}

fn numeric_parts(text: &str) -> Vec<i16> {
    let mut out = Vec::new();
    numeric(text, &mut out).expect("numeric");
    out.chunks(2)
        .map(|c| i16::from_be_bytes([c[0], c[1]]))
        .collect()
}

#[test]
fn format_types_are_recognised_with_and_without_modifiers() {
    assert_eq!(
        PgType::from_format_type("numeric(12,2)"),
        Some(PgType::Numeric)
    );
    assert_eq!(
        PgType::from_format_type("timestamp(3) with time zone"),
        Some(PgType::Timestamptz)
    );
    assert_eq!(
        PgType::from_format_type("character varying(20)"),
        Some(PgType::Text)
    );
    assert_eq!(PgType::from_format_type("integer[]"), None);
    assert_eq!(PgType::from_format_type("interval"), None);
}

#[test]
fn numerics_become_base_10000_digits() {
    // ndigits, weight, sign, dscale, digits…
    assert_eq!(numeric_parts("12.5"), vec![2, 0, 0, 1, 12, 5000]);
    assert_eq!(numeric_parts("-12345"), vec![2, 1, 0x4000, 0, 1, 2345]);
    assert_eq!(numeric_parts("0.0015"), vec![1, -1, 0, 4, 15]);
    assert_eq!(numeric_parts("1.5e-3"), vec![1, -1, 0, 4, 15]);
    assert_eq!(numeric_parts("1e3"), vec![1, 0, 0, 0, 1000]);
    assert_eq!(numeric_parts("12e-5"), vec![2, -1, 0, 5, 1, 2000]);
    assert_eq!(numeric_parts("-0.00"), vec![0, 0, 0, 2]);
    for bad in ["", ".", "1.2.3", "NaN", "1e", "0x10", "1e99999"] {
        assert!(numeric(bad, &mut Vec::new()).is_err(), "{bad}");
    }
}

#[test]
fn timestamps_count_microseconds_from_2000() {
    let us =
        |v: &str, ty| field(ty, json!(v)).map(|b| i64::from_be_bytes(b.try_into().expect("8")));
    assert_eq!(us("2000-01-01T00:00:00Z", PgType::Timestamptz), Ok(0));
    assert_eq!(
        us("2000-01-01T01:00:00.5+01:00", PgType::Timestamptz),
        Ok(500_000)
    );
    assert_eq!(us("1999-12-31 23:59:59.999999", PgType::Timestamp), Ok(-1));
    // The zone is ignored by timestamp without time zone, as PostgreSQL does.
    assert_eq!(
        us("2000-01-01T00:00:01-05:00", PgType::Timestamp),
        Ok(1_000_000)
    );
    assert!(
        us("2000-01-01T00:00:00", PgType::Timestamptz).is_err(),
        "no zone"
    );
    assert!(us("2000-02-30T00:00:00Z", PgType::Timestamptz).is_err());
    assert!(us("2000-01-01T24:00:00Z", PgType::Timestamptz).is_err());
    assert!(us("2000-01-01T00:00:00.1234567Z", PgType::Timestamptz).is_err());
}

#[test]
fn dates_uuids_and_bytea() {
    assert_eq!(
        field(PgType::Date, json!("2000-03-01")),
        Ok(60_i32.to_be_bytes().to_vec())
    );
    assert_eq!(
        field(PgType::Date, json!("1970-01-01")),
        Ok((-10_957_i32).to_be_bytes().to_vec())
    );
    let u = field(PgType::Uuid, json!("A0EEBC99-9c0b-4ef8-bb6d-6bb9bd380a11")).expect("uuid");
    assert_eq!(u[..2], [0xa0, 0xee]);
    assert_eq!(u.len(), 16);
    assert!(field(PgType::Uuid, json!("a0eebc99")).is_err());
    assert_eq!(field(PgType::Bytea, json!("\\x00ff")), Ok(vec![0, 255]));
    assert!(field(PgType::Bytea, json!("plain")).is_err());
}

#[test]
fn other_json_types_are_left_to_the_statement_path() {
    assert!(field(PgType::Int4, json!("12")).is_err());
    assert!(field(PgType::Int4, json!(1.5)).is_err());
    assert!(field(PgType::Int2, json!(40_000)).is_err());
    assert!(field(PgType::Text, json!(5)).is_err());
    assert!(field(PgType::Bool, json!("t")).is_err());
    assert_eq!(
        field(PgType::Jsonb, json!({"a": 1})),
        Ok(b"\x01{\"a\":1}".to_vec())
    );
    let mut null = Vec::new();
    encode(PgType::Int4, None, &mut null).expect("null");
    assert_eq!(null, (-1_i32).to_be_bytes());
}
