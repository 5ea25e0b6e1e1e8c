//! PostgreSQL's binary `COPY` encoding of JSON values, for the column types the
//! bulk path supports.
//!
//! Contract: a value is encoded only when its binary form is exactly what
//! PostgreSQL's own input function would make of the same JSON on the
//! statement path (`json_populate_recordset`); anything else — another JSON
//! type, a format the strict parsers here do not read, a type not listed in
//! [`PgType`] — is an [`Unencodable`] with the reason, and the caller loads
//! that batch through the statement path instead, so results never depend on
//! the path. Length limits, `NOT NULL`, `CHECK` and keys are left to the server.

use serde_json::Value;

/// Column types with a binary encoder here (from `format_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgType {
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    Numeric,
    Text,
    Bool,
    Timestamptz,
    Timestamp,
    Date,
    Uuid,
    Json,
    Jsonb,
    Bytea,
}

/// Why a value has no binary encoding here.
pub type Unencodable = String;

impl PgType {
    /// The type from `format_type(atttypid, atttypmod)`; `None` when unsupported.
    pub fn from_format_type(name: &str) -> Option<Self> {
        let mut base = String::with_capacity(name.len());
        let mut depth = 0;
        for c in name.chars() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                _ if depth == 0 => base.push(c),
                _ => {}
            }
        }
        Some(match base.trim() {
            "smallint" => PgType::Int2,
            "integer" => PgType::Int4,
            "bigint" => PgType::Int8,
            "real" => PgType::Float4,
            "double precision" => PgType::Float8,
            "numeric" => PgType::Numeric,
            "text" | "character varying" | "character" => PgType::Text,
            "boolean" => PgType::Bool,
            "timestamp with time zone" => PgType::Timestamptz,
            "timestamp without time zone" => PgType::Timestamp,
            "date" => PgType::Date,
            "uuid" => PgType::Uuid,
            "json" => PgType::Json,
            "jsonb" => PgType::Jsonb,
            "bytea" => PgType::Bytea,
            _ => return None,
        })
    }
}

/// Appends one field (length, then bytes; length -1 for NULL) to `out`.
pub fn encode(ty: PgType, value: Option<&Value>, out: &mut Vec<u8>) -> Result<(), Unencodable> {
    let value = match value {
        None | Some(Value::Null) => {
            out.extend_from_slice(&(-1_i32).to_be_bytes());
            return Ok(());
        }
        Some(v) => v,
    };
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    encode_value(ty, value, out)?;
    let len = i32::try_from(out.len() - start - 4).map_err(|_| "value over 2 GiB".to_string())?;
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

fn encode_value(ty: PgType, value: &Value, out: &mut Vec<u8>) -> Result<(), Unencodable> {
    let wrong = || format!("a JSON {} has no binary {ty:?} encoding here", kind(value));
    match (ty, value) {
        (PgType::Int2, Value::Number(n)) => {
            let v = n
                .as_i64()
                .and_then(|i| i16::try_from(i).ok())
                .ok_or_else(wrong)?;
            out.extend_from_slice(&v.to_be_bytes());
        }
        (PgType::Int4, Value::Number(n)) => {
            let v = n
                .as_i64()
                .and_then(|i| i32::try_from(i).ok())
                .ok_or_else(wrong)?;
            out.extend_from_slice(&v.to_be_bytes());
        }
        (PgType::Int8, Value::Number(n)) => {
            out.extend_from_slice(&n.as_i64().ok_or_else(wrong)?.to_be_bytes());
        }
        // Parsed from the same decimal text PostgreSQL would read.
        (PgType::Float4, Value::Number(n)) => {
            let v: f32 = n.to_string().parse().map_err(|_| wrong())?;
            if !v.is_finite() {
                return Err(wrong());
            }
            out.extend_from_slice(&v.to_be_bytes());
        }
        (PgType::Float8, Value::Number(n)) => {
            out.extend_from_slice(&n.as_f64().ok_or_else(wrong)?.to_be_bytes());
        }
        (PgType::Numeric, Value::Number(n)) => numeric(&n.to_string(), out)?,
        (PgType::Numeric, Value::String(s)) => numeric(s, out)?,
        (PgType::Text, Value::String(s)) => out.extend_from_slice(s.as_bytes()),
        (PgType::Bool, Value::Bool(b)) => out.push(u8::from(*b)),
        (PgType::Timestamptz, Value::String(s)) => {
            let (micros, offset) = timestamp(s)?;
            let offset = offset.ok_or("a timestamp without zone offset")?;
            out.extend_from_slice(&(micros - offset * 1_000_000).to_be_bytes());
        }
        // `timestamp without time zone` ignores a zone in its input.
        (PgType::Timestamp, Value::String(s)) => {
            out.extend_from_slice(&timestamp(s)?.0.to_be_bytes());
        }
        (PgType::Date, Value::String(s)) => {
            let days = date(s.as_bytes()).ok_or("not a YYYY-MM-DD date")?;
            out.extend_from_slice(&days.to_be_bytes());
        }
        (PgType::Uuid, Value::String(s)) => out.extend_from_slice(&uuid(s)?),
        (PgType::Json, v) => out.extend_from_slice(v.to_string().as_bytes()),
        (PgType::Jsonb, v) => {
            out.push(1);
            out.extend_from_slice(v.to_string().as_bytes());
        }
        (PgType::Bytea, Value::String(s)) => bytea_hex(s, out)?,
        _ => return Err(wrong()),
    }
    Ok(())
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// `[+-]digits[.digits][e[+-]digits]` as PostgreSQL's binary numeric:
/// base-10000 digits, weight, sign and display scale.
fn numeric(text: &str, out: &mut Vec<u8>) -> Result<(), Unencodable> {
    let bad = || format!("`{text}` is not a plain decimal number");
    let (negative, rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let (mantissa, exp) = match rest.find(['e', 'E']) {
        Some(i) => (&rest[..i], rest[i + 1..].parse::<i32>().map_err(|_| bad())?),
        None => (rest, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !all_digits(int) || !all_digits(frac) {
        return Err(bad());
    }
    if exp.abs() > 1000 || int.len() + frac.len() > 1000 {
        return Err(bad());
    }
    // value = digits × 10^point, with `digits` the mantissa's decimal digits.
    let digits: Vec<u8> = int.bytes().chain(frac.bytes()).map(|b| b - b'0').collect();
    let point = exp - frac.len() as i32;
    let dscale = (-point).max(0);
    // Pad so the decimal point falls on a group boundary.
    let int_len = digits.len() as i32 + point; // digits before the point
    let lead = (4 - int_len.rem_euclid(4)) % 4;
    let mut padded: Vec<u8> = vec![0; lead as usize];
    padded.extend_from_slice(&digits);
    padded.extend(std::iter::repeat_n(0, point.max(0) as usize));
    padded.extend(std::iter::repeat_n(0, (4 - padded.len() % 4) % 4));
    let mut groups: Vec<i16> = padded
        .chunks(4)
        .map(|c| c.iter().fold(0_i16, |acc, d| acc * 10 + i16::from(*d)))
        .collect();
    let mut weight = (int_len + lead) / 4 - 1;
    let leading = groups.iter().take_while(|g| **g == 0).count();
    groups.drain(..leading);
    weight -= leading as i32;
    while groups.last() == Some(&0) {
        groups.pop();
    }
    if groups.is_empty() {
        weight = 0;
    }
    let sign: u16 = if negative && !groups.is_empty() {
        0x4000
    } else {
        0
    };
    let header = [groups.len() as i16, weight as i16];
    header
        .iter()
        .for_each(|v| out.extend_from_slice(&v.to_be_bytes()));
    out.extend_from_slice(&sign.to_be_bytes());
    out.extend_from_slice(&(dscale as i16).to_be_bytes());
    groups
        .iter()
        .for_each(|g| out.extend_from_slice(&g.to_be_bytes()));
    Ok(())
}

/// Days from 1970-01-01 (proleptic Gregorian; H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

const PG_EPOCH_DAYS: i64 = 10_957; // 2000-01-01 from 1970-01-01

fn num(b: &[u8]) -> Option<i64> {
    b.iter().try_fold(0_i64, |acc, c| {
        c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
    })
}

/// `YYYY-MM-DD` as days since 2000-01-01.
fn date(b: &[u8]) -> Option<i32> {
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (y, m, d) = (num(&b[..4])?, num(&b[5..7])?, num(&b[8..10])?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if y == 0 || !(1..=12).contains(&m) || d < 1 || d > month_days[(m - 1) as usize] {
        return None;
    }
    i32::try_from(days_from_civil(y, m, d) - PG_EPOCH_DAYS).ok()
}

/// RFC 3339 (`T` or space; up to 6 fractional digits; `Z` or `±HH:MM`):
/// microseconds since 2000-01-01 as written, and the offset in seconds.
fn timestamp(s: &str) -> Result<(i64, Option<i64>), Unencodable> {
    let bad = || format!("`{s}` is not an RFC 3339 timestamp");
    let b = s.as_bytes();
    if b.len() < 19 || !matches!(b[10], b'T' | b't' | b' ') || b[13] != b':' || b[16] != b':' {
        return Err(bad());
    }
    let days = i64::from(date(&b[..10]).ok_or_else(bad)?);
    let (h, mi, sec) = (num(&b[11..13]), num(&b[14..16]), num(&b[17..19]));
    let (h, mi, sec) = (
        h.ok_or_else(bad)?,
        mi.ok_or_else(bad)?,
        sec.ok_or_else(bad)?,
    );
    if h > 23 || mi > 59 || sec > 59 {
        return Err(bad());
    }
    let mut rest = &b[19..];
    let mut micros = 0;
    if let Some(frac) = rest.strip_prefix(b".") {
        let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 || n > 6 {
            return Err(bad());
        }
        micros = num(&frac[..n]).ok_or_else(bad)? * 10_i64.pow(6 - n as u32);
        rest = &frac[n..];
    }
    let offset = match rest {
        [] => None,
        [b'Z' | b'z'] => Some(0),
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let (oh, om) = (
                num(&[*h1, *h2]).ok_or_else(bad)?,
                num(&[*m1, *m2]).ok_or_else(bad)?,
            );
            let secs = oh * 3600 + om * 60;
            Some(if *sign == b'-' { -secs } else { secs })
        }
        _ => return Err(bad()),
    };
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec;
    Ok((secs * 1_000_000 + micros, offset))
}

/// A UUID with or without hyphens (8-4-4-4-12), any case.
fn uuid(s: &str) -> Result<[u8; 16], Unencodable> {
    let hex: Vec<u8> = if s.len() == 36 {
        let dashes = [8, 13, 18, 23].iter().all(|&i| s.as_bytes()[i] == b'-');
        if !dashes {
            return Err(format!("`{s}` is not a UUID"));
        }
        s.bytes().filter(|&c| c != b'-').collect()
    } else {
        s.bytes().collect()
    };
    let mut out = [0; 16];
    if hex.len() != 32 || !hex_into(&hex, &mut out) {
        return Err(format!("`{s}` is not a UUID"));
    }
    Ok(out)
}

fn hex_into(hex: &[u8], out: &mut [u8]) -> bool {
    let val = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    for (i, pair) in hex.chunks(2).enumerate() {
        match (val(pair[0]), pair.get(1).copied().and_then(val)) {
            (Some(hi), Some(lo)) => out[i] = hi << 4 | lo,
            _ => return false,
        }
    }
    true
}

/// bytea's hex input format `\x0a1b…`.
fn bytea_hex(s: &str, out: &mut Vec<u8>) -> Result<(), Unencodable> {
    let hex = s
        .strip_prefix("\\x")
        .ok_or("bytea other than \\x hex")?
        .as_bytes();
    let mut bytes = vec![0; hex.len() / 2];
    if hex.len() % 2 != 0 || !hex_into(hex, &mut bytes) {
        return Err(format!("`{s}` is not bytea hex"));
    }
    out.extend_from_slice(&bytes);
    Ok(())
}

#[cfg(test)]
#[path = "binary_tests.rs"]
mod tests;
