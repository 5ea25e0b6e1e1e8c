//! Debezium's and Kafka Connect's logical types, read from the event's
//! schema, decoded exactly into the text the type layer reads: decimals to
//! their digits (any precision), dates to `YYYY-MM-DD`, times to
//! `HH:MM:SS.fraction`, timestamps to RFC 3339 in UTC, JSON text to the
//! document. Types it does not list pass through unchanged.

use crate::codec::{base64, civil_from_days, fraction, rfc3339_utc};
use serde_json::Value;
use std::collections::HashMap;

/// One field's logical type and its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// The logical type's name (`org.apache.kafka.connect.data.Decimal`, …).
    pub logical: String,
    /// A decimal's scale.
    pub scale: Option<u32>,
}

/// The fields of one struct, by name (only those with a logical type).
pub type Fields = HashMap<String, Field>;

/// The logical types of the fields of `part` (`after`, `before`) in an
/// envelope's schema.
pub fn fields_of(schema: &Value, part: &str) -> Option<Fields> {
    let parts = schema.get("fields")?.as_array()?;
    let row = parts
        .iter()
        .find(|f| f.get("field") == Some(&Value::from(part)))?;
    let fields = row
        .get("fields")?
        .as_array()?
        .iter()
        .filter_map(|f| {
            let logical = f.get("name")?.as_str()?.to_string();
            let scale = f
                .pointer("/parameters/scale")
                .and_then(Value::as_str)
                .and_then(|s| s.parse().ok());
            Some((
                f.get("field")?.as_str()?.to_string(),
                Field { logical, scale },
            ))
        })
        .collect();
    Some(fields)
}

impl Field {
    /// The value in the form the type layer reads; `null` stays `null`.
    pub fn decode(&self, value: Value) -> Result<Value, String> {
        if value.is_null() {
            return Ok(value);
        }
        let text = |t: String| Ok(Value::String(t));
        match self.logical.as_str() {
            "org.apache.kafka.connect.data.Decimal" => {
                let scale = self.scale.ok_or("a Decimal without its scale parameter")?;
                text(decimal(base64_of(&value)?, scale))
            }
            "io.debezium.data.VariableScaleDecimal" => {
                let scale = value
                    .get("scale")
                    .and_then(Value::as_u64)
                    .and_then(|s| u32::try_from(s).ok())
                    .ok_or("a VariableScaleDecimal without its scale")?;
                let digits = value
                    .get("value")
                    .ok_or("a VariableScaleDecimal without its value")?;
                text(decimal(base64_of(digits)?, scale))
            }
            "org.apache.kafka.connect.data.Date" | "io.debezium.time.Date" => {
                let (y, m, d) = civil_from_days(integer(&value)?);
                text(format!("{y:04}-{m:02}-{d:02}"))
            }
            "org.apache.kafka.connect.data.Time" | "io.debezium.time.Time" => {
                text(time_of_day(integer(&value)?, 1_000_000))
            }
            "io.debezium.time.MicroTime" => text(time_of_day(integer(&value)?, 1_000)),
            "io.debezium.time.NanoTime" => text(time_of_day(integer(&value)?, 1)),
            "org.apache.kafka.connect.data.Timestamp" | "io.debezium.time.Timestamp" => {
                text(timestamp(integer(&value)?, 1_000_000))
            }
            "io.debezium.time.MicroTimestamp" => text(timestamp(integer(&value)?, 1_000)),
            "io.debezium.time.NanoTimestamp" => text(timestamp(integer(&value)?, 1)),
            "io.debezium.data.Json" => match &value {
                Value::String(s) => serde_json::from_str(s).map_err(|e| format!("not JSON: {e}")),
                _ => Err("a Json value that is not text".into()),
            },
            _ => Ok(value),
        }
    }
}

fn integer(value: &Value) -> Result<i64, String> {
    value
        .as_i64()
        .ok_or_else(|| format!("expected an integer, got {value}"))
}

fn base64_of(value: &Value) -> Result<Vec<u8>, String> {
    let text = value
        .as_str()
        .ok_or_else(|| format!("expected base64 text, got {value}"))?;
    base64(text).ok_or_else(|| format!("`{text}` is not base64"))
}

/// A big-endian two's-complement unscaled value and its scale, as digits.
pub fn decimal(bytes: Vec<u8>, scale: u32) -> String {
    let negative = bytes.first().is_some_and(|b| b & 0x80 != 0);
    let mut magnitude = bytes;
    if negative {
        // Two's complement: invert and add one.
        for b in magnitude.iter_mut() {
            *b = !*b;
        }
        for b in magnitude.iter_mut().rev() {
            let (sum, carry) = b.overflowing_add(1);
            *b = sum;
            if !carry {
                break;
            }
        }
    }
    let mut digits = to_decimal_digits(&magnitude);
    let scale = scale as usize;
    if digits.len() <= scale {
        digits = format!("{}{digits}", "0".repeat(scale + 1 - digits.len()));
    }
    let (whole, fraction) = digits.split_at(digits.len() - scale);
    let sign = if negative && digits.bytes().any(|d| d != b'0') {
        "-"
    } else {
        ""
    };
    if fraction.is_empty() {
        format!("{sign}{whole}")
    } else {
        format!("{sign}{whole}.{fraction}")
    }
}

/// Base-256 digits (big-endian) → base-10 text, any length.
fn to_decimal_digits(bytes: &[u8]) -> String {
    let mut number: Vec<u8> = bytes.to_vec();
    let mut out = Vec::new();
    while number.iter().any(|b| *b != 0) {
        let mut remainder = 0_u32;
        for b in number.iter_mut() {
            let current = remainder * 256 + u32::from(*b);
            *b = (current / 10) as u8;
            remainder = current % 10;
        }
        out.push(b'0' + remainder as u8);
    }
    if out.is_empty() {
        out.push(b'0');
    }
    out.reverse();
    String::from_utf8(out).expect("ASCII digits")
}

/// `units` of `nanos_per_unit` nanoseconds since midnight, as `HH:MM:SS[.f]`.
fn time_of_day(units: i64, nanos_per_unit: i64) -> String {
    let nanos = units * nanos_per_unit;
    let secs = nanos.div_euclid(1_000_000_000);
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    format!(
        "{h:02}:{m:02}:{s:02}{}",
        fraction(nanos.rem_euclid(1_000_000_000))
    )
}

/// `units` of `nanos_per_unit` nanoseconds since the epoch, as RFC 3339 UTC.
fn timestamp(units: i64, nanos_per_unit: i64) -> String {
    rfc3339_utc(i128::from(units) * i128::from(nanos_per_unit))
}
