//! Event time: reading it from a field, and writing window bounds.

use crate::config::TimeFormat;
use serde_json::Value;
use std::time::{Duration, UNIX_EPOCH};

/// Reads an event time in ms since the epoch from a JSON value.
pub fn parse(value: &Value, format: TimeFormat) -> Result<i64, String> {
    let number = || {
        value
            .as_i64()
            .or_else(|| value.as_f64().map(|f| f as i64))
            .ok_or_else(|| format!("event time {value} is not a number"))
    };
    match format {
        TimeFormat::EpochMs => number(),
        TimeFormat::EpochS => number()?
            .checked_mul(1000)
            .ok_or_else(|| "event time out of range".into()),
        TimeFormat::EpochUs => Ok(number()? / 1000),
        TimeFormat::Rfc3339 => {
            let text = value
                .as_str()
                .ok_or_else(|| format!("event time {value} is not an RFC 3339 string"))?;
            let t = humantime::parse_rfc3339_weak(text)
                .map_err(|e| format!("event time `{text}`: {e}"))?;
            let ms = t
                .duration_since(UNIX_EPOCH)
                .map_err(|_| format!("event time `{text}` is before 1970"))?
                .as_millis();
            i64::try_from(ms).map_err(|_| "event time out of range".into())
        }
    }
}

/// Writes a time in ms since the epoch in the given format.
pub fn format(ms: i64, format: TimeFormat) -> Value {
    match format {
        TimeFormat::EpochMs => Value::from(ms),
        TimeFormat::EpochS => Value::from(ms.div_euclid(1000)),
        TimeFormat::EpochUs => Value::from(ms.saturating_mul(1000)),
        TimeFormat::Rfc3339 => {
            let t = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
            Value::String(humantime::format_rfc3339_millis(t).to_string())
        }
    }
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    let elapsed = std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_every_format() {
        assert_eq!(parse(&json!(1500), TimeFormat::EpochMs), Ok(1500));
        assert_eq!(parse(&json!(2), TimeFormat::EpochS), Ok(2000));
        assert_eq!(parse(&json!(2_500_000), TimeFormat::EpochUs), Ok(2500));
        assert_eq!(
            parse(&json!("1970-01-01T00:00:01.5Z"), TimeFormat::Rfc3339),
            Ok(1500)
        );
        assert!(parse(&json!("soon"), TimeFormat::EpochMs).is_err());
        assert!(parse(&json!(5), TimeFormat::Rfc3339).is_err());
    }

    #[test]
    fn formats_round_trip() {
        let v = format(1500, TimeFormat::Rfc3339);
        assert_eq!(v, json!("1970-01-01T00:00:01.500Z"));
        assert_eq!(parse(&v, TimeFormat::Rfc3339), Ok(1500));
        assert_eq!(format(1500, TimeFormat::EpochS), json!(1));
    }
}
