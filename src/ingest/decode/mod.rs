//! Decode: Kafka payload bytes → JSON value. Pure and synchronous.
//!
//! A payload that is not valid UTF-8 JSON is an error naming its position; the
//! caller decides where the record goes (it is never silently skipped). A null
//! payload is a tombstone and decodes to `None`.
//!
//! With a [`Projection`] (a pipeline whose records only feed aggregates), an
//! object payload is still parsed in full — invalid JSON is the same error —
//! but only the fields the keyed steps read are built; see [`projection`].

pub mod debezium;
pub mod projection;

pub use projection::Projection;

use crate::config::DecodeFormat;
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("payload is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// Decodes one payload; `None` in, `None` out (a tombstone).
pub fn decode(format: DecodeFormat, payload: Option<&[u8]>) -> Result<Option<Value>, DecodeError> {
    Decoder::new(format, None).decode(payload)
}

/// A pipeline's decoder: its format and, when the transforms allow it, the
/// only top-level fields its records need.
#[derive(Debug, Clone)]
pub struct Decoder {
    format: DecodeFormat,
    projection: Option<Projection>,
}

impl Decoder {
    pub fn new(format: DecodeFormat, projection: Option<Projection>) -> Self {
        Self { format, projection }
    }

    pub fn format(&self) -> DecodeFormat {
        self.format
    }

    /// The fields decoded, when projected.
    pub fn projection(&self) -> Option<&Projection> {
        self.projection.as_ref()
    }

    /// Decodes one payload; `None` in, `None` out (a tombstone).
    pub fn decode(&self, payload: Option<&[u8]>) -> Result<Option<Value>, DecodeError> {
        match (self.format, payload) {
            (_, None) => Ok(None),
            // The envelope; `debezium::event` reads it.
            (DecodeFormat::Debezium, Some(bytes)) => Ok(Some(serde_json::from_slice(bytes)?)),
            (DecodeFormat::Json, Some(bytes)) => {
                if let Some(projection) = &self.projection {
                    if let Some(row) = projection.decode(bytes)? {
                        return Ok(Some(Value::Object(row)));
                    }
                }
                // Not projected, or not an object: decoded in full, so a
                // non-object fails in the transform exactly as it always did.
                Ok(Some(serde_json::from_slice(bytes)?))
            }
        }
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
