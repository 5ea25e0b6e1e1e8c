//! One JSON value against one column type: the form the backend reads
//! exactly, or the reason it does not fit.

use super::number::Decimal;
use super::{time, ColumnType, Target};
use crate::codec::{base64, hex};
use crate::config::TimestampFormat;
use serde_json::Value;

/// Significant digits every f64 carries exactly: a JSON number with more may
/// already have been rounded when it was parsed.
const EXACT_DIGITS: usize = 15;

/// `value` as `target` should receive it for a column of type `ty`, or why it
/// does not fit, without copying what passes unchanged: `null` always passes,
/// [`ColumnType::Unknown`] passes anything. `Ok(None)` means `value` fits as
/// it is (the common case: text, numbers, JSON); `Ok(Some)` is the rewritten
/// form (timestamps, UUIDs, bytes, decimals, whole floats in integer columns).
pub fn fit(
    ty: &ColumnType,
    value: &Value,
    timestamps: TimestampFormat,
    target: Target,
) -> Result<Option<Value>, String> {
    if value.is_null() {
        return Ok(None);
    }
    match ty {
        ColumnType::Int { min, max } => integer(value, *min, *max),
        ColumnType::Decimal { precision, scale } => decimal(value, *precision, *scale).map(Some),
        ColumnType::Float { single } => float(value, *single).map(|()| None),
        ColumnType::Bool => boolean(value),
        ColumnType::Text {
            max_chars,
            structured,
        } => text(value, *max_chars, *structured).map(|()| None),
        ColumnType::Timestamp { zone, precision } => {
            timestamp(value, *zone, *precision, timestamps, target).map(Some)
        }
        ColumnType::Date => {
            let s = string(value, "a YYYY-MM-DD date")?;
            time::date(s).ok_or_else(|| format!("`{s}` is not a YYYY-MM-DD date"))?;
            Ok(None)
        }
        ColumnType::Uuid => uuid(value).map(Some),
        ColumnType::Json | ColumnType::Unknown => Ok(None),
        ColumnType::Bytes { max_len } => bytes(value, *max_len, target).map(Some),
        ColumnType::Array(element) => {
            let Value::Array(items) = value else {
                return Err(wrong(value, "an array"));
            };
            let mut fitted = Vec::with_capacity(items.len());
            let mut changed = false;
            for (i, v) in items.iter().enumerate() {
                let f =
                    fit(element, v, timestamps, target).map_err(|e| format!("element {i}: {e}"))?;
                changed |= f.is_some();
                fitted.push(f);
            }
            Ok(changed.then(|| {
                let items = items.iter().zip(fitted);
                Value::Array(items.map(|(v, f)| f.unwrap_or_else(|| v.clone())).collect())
            }))
        }
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn wrong(v: &Value, wanted: &str) -> String {
    format!("{} where {wanted} is expected", kind(v))
}

fn string<'v>(v: &'v Value, wanted: &str) -> Result<&'v str, String> {
    v.as_str().ok_or_else(|| wrong(v, wanted))
}

fn integer(v: &Value, min: i128, max: i128) -> Result<Option<Value>, String> {
    let Value::Number(n) = v else {
        return Err(wrong(v, "an integer"));
    };
    let whole = n.as_i64().map(i128::from).or(n.as_u64().map(i128::from));
    if let Some(i) = whole {
        if i < min || i > max {
            return Err(format!("{i} is out of range {min}..={max}"));
        }
        return Ok(None);
    }
    let i: i128 = {
        // A float: only a whole number within range passes (12.0 → 12).
        let d = Decimal::parse(&n.to_string()).ok_or_else(|| format!("`{n}` is not a number"))?;
        if !d.frac.is_empty() {
            return Err(format!("`{n}` has a fraction; the column holds integers"));
        }
        if d.int.len() > 20 {
            return Err(format!("`{n}` is out of range {min}..={max}"));
        }
        let m: i128 = if d.int.is_empty() {
            0
        } else {
            d.int
                .parse()
                .map_err(|_| format!("`{n}` is not an integer"))?
        };
        if d.negative {
            -m
        } else {
            m
        }
    };
    if i < min || i > max {
        return Err(format!("{i} is out of range {min}..={max}"));
    }
    Ok(Some(match (i64::try_from(i), u64::try_from(i)) {
        (Ok(s), _) => Value::Number(s.into()),
        (_, Ok(u)) => Value::Number(u.into()),
        _ => unreachable!("range checked against a 64-bit column"),
    }))
}

fn decimal(v: &Value, precision: Option<u32>, scale: u32) -> Result<Value, String> {
    let (text, from_float) = match v {
        Value::Number(n) => (n.to_string(), n.is_f64()),
        Value::String(s) => (s.clone(), false),
        other => return Err(wrong(other, "a decimal number or decimal string")),
    };
    let d = Decimal::parse(&text).ok_or_else(|| format!("`{text}` is not a decimal number"))?;
    if from_float && d.significant() > EXACT_DIGITS {
        return Err(format!(
            "`{text}` has more than {EXACT_DIGITS} significant digits, more than a JSON number keeps exactly; send it as a string"
        ));
    }
    if d.frac.len() > scale as usize && precision.is_some() {
        return Err(format!("`{text}` has more than {scale} fractional digits"));
    }
    if let Some(p) = precision {
        let int_digits = (p - scale) as usize;
        if d.int.len() > int_digits {
            return Err(format!(
                "`{text}` has more than {int_digits} integer digits (precision {p}, scale {scale})"
            ));
        }
    }
    Ok(Value::String(d.plain()))
}

fn float(v: &Value, single: bool) -> Result<(), String> {
    let Value::Number(n) = v else {
        return Err(wrong(v, "a number"));
    };
    let f = n.as_f64().ok_or_else(|| format!("`{n}` is not a number"))?;
    if single && f.is_finite() && f.abs() > f64::from(f32::MAX) {
        return Err(format!("`{n}` is out of range of a single-precision float"));
    }
    Ok(())
}

fn boolean(v: &Value) -> Result<Option<Value>, String> {
    match v {
        Value::Bool(_) => Ok(None),
        Value::Number(n) if n.as_u64() == Some(0) => Ok(Some(Value::Bool(false))),
        Value::Number(n) if n.as_u64() == Some(1) => Ok(Some(Value::Bool(true))),
        other => Err(wrong(other, "a boolean (or 0/1)")),
    }
}

fn text(v: &Value, max_chars: Option<usize>, structured: bool) -> Result<(), String> {
    let s = match v {
        Value::String(s) => s,
        Value::Array(_) | Value::Object(_) if structured => return Ok(()),
        other => return Err(wrong(other, "a string")),
    };
    if let Some(max) = max_chars {
        let chars = s.chars().count();
        if chars > max {
            return Err(format!(
                "{chars} characters, the column holds at most {max}"
            ));
        }
    }
    Ok(())
}

fn timestamp(
    v: &Value,
    zone: bool,
    precision: u8,
    format: TimestampFormat,
    target: Target,
) -> Result<Value, String> {
    let (at, digits) = match (v, format) {
        (Value::String(s), _) => time::rfc3339(s)?,
        (Value::Number(n), TimestampFormat::EpochS) => time::epoch(&n.to_string(), 0)?,
        (Value::Number(n), TimestampFormat::EpochMs) => time::epoch(&n.to_string(), 3)?,
        (Value::Number(n), TimestampFormat::EpochUs) => time::epoch(&n.to_string(), 6)?,
        (Value::Number(n), TimestampFormat::Rfc3339) => {
            return Err(format!(
                "the number {n} where an RFC 3339 timestamp is expected (timestamp_format = \"rfc3339\")"
            ))
        }
        (other, _) => return Err(wrong(other, "a timestamp")),
    };
    if digits > precision {
        return Err(format!(
            "{digits} fractional-second digits, the column keeps {precision}"
        ));
    }
    Ok(Value::String(time::format(at, zone, precision, target)))
}

fn uuid(v: &Value) -> Result<Value, String> {
    let s = string(v, "a UUID")?;
    let hex_digits: String =
        if s.len() == 36 && [8, 13, 18, 23].iter().all(|&i| s.as_bytes()[i] == b'-') {
            s.chars().filter(|&c| c != '-').collect()
        } else {
            s.to_string()
        };
    if hex_digits.len() != 32 || !hex_digits.bytes().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!("`{s}` is not a UUID"));
    }
    let h = hex_digits.to_ascii_lowercase();
    Ok(Value::String(format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )))
}

fn bytes(v: &Value, max_len: Option<usize>, target: Target) -> Result<Value, String> {
    let s = string(v, "base64 bytes")?;
    let decoded = base64(s).ok_or_else(|| "not valid base64".to_string())?;
    if let Some(max) = max_len {
        if decoded.len() > max {
            return Err(format!(
                "{} bytes, the column holds at most {max}",
                decoded.len()
            ));
        }
    }
    Ok(Value::String(format!(
        "{}{}",
        target.bytes_hex_prefix,
        hex(&decoded)
    )))
}
