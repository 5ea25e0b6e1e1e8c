//! Decode: Kafka payload bytes → JSON value. Pure and synchronous.
//!
//! A payload that is not valid UTF-8 JSON is an error naming its position; the
//! caller decides where the record goes (it is never silently skipped). A null
//! payload is a tombstone and decodes to `None`.

use crate::config::DecodeFormat;
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("payload is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// Decodes one payload; `None` in, `None` out (a tombstone).
pub fn decode(format: DecodeFormat, payload: Option<&[u8]>) -> Result<Option<Value>, DecodeError> {
    match (format, payload) {
        (_, None) => Ok(None),
        (DecodeFormat::Json, Some(bytes)) => Ok(Some(serde_json::from_slice(bytes)?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_json_decodes() {
        let v = decode(DecodeFormat::Json, Some(br#"{"a":1}"#)).expect("valid");
        assert_eq!(v, Some(serde_json::json!({"a": 1})));
    }

    #[test]
    fn null_payload_is_a_tombstone() {
        assert_eq!(decode(DecodeFormat::Json, None).expect("tombstone"), None);
    }

    #[test]
    fn invalid_json_and_utf8_are_errors() {
        assert!(decode(DecodeFormat::Json, Some(b"{nope")).is_err());
        assert!(decode(DecodeFormat::Json, Some(&[b'"', 0xff, b'"'])).is_err());
    }
}
