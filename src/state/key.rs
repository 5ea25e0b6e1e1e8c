//! State keys: the Kafka record key, or the values of the `key` step's fields.

use crate::model::Row;
use serde_json::Value;
use std::fmt::Write as _;

/// Where a stateful step's key comes from, and the output columns it fills.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum KeySpec {
    /// The Kafka record key (as a string), written to column `key`.
    #[default]
    KafkaKey,
    /// These fields of the record, written back under their own names.
    Fields(Vec<String>),
}

impl KeySpec {
    /// The key of a record, or why it has none.
    pub fn of(&self, row: &Row, kafka_key: &Value) -> Result<Value, String> {
        match self {
            KeySpec::KafkaKey => {
                Self::check(self, kafka_key)?;
                Ok(kafka_key.clone())
            }
            KeySpec::Fields(fields) => fields
                .iter()
                .map(|f| match row.get(f) {
                    None | Some(Value::Null) => Err(format!("key field `{f}` is missing or null")),
                    Some(v) => Ok(v.clone()),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
        }
    }

    /// Appends the JSON text of the key [`KeySpec::of`] gives (the state
    /// table's `state_key`) to `out` without building the key: what a stage
    /// needs for every record, where the key itself is needed once per key.
    pub fn write_text(&self, row: &Row, kafka_key: &Value, out: &mut String) -> Result<(), String> {
        // `Display` of a JSON value is its compact text, as `to_string`.
        let text = |out: &mut String, v: &Value| write!(out, "{v}").map_err(|e| e.to_string());
        match self {
            KeySpec::KafkaKey => {
                Self::check(self, kafka_key)?;
                text(out, kafka_key)
            }
            KeySpec::Fields(fields) => {
                out.push('[');
                for (i, f) in fields.iter().enumerate() {
                    match row.get(f) {
                        None | Some(Value::Null) => {
                            return Err(format!("key field `{f}` is missing or null"))
                        }
                        Some(v) => {
                            if i > 0 {
                                out.push(',');
                            }
                            text(out, v)?;
                        }
                    }
                }
                out.push(']');
                Ok(())
            }
        }
    }

    /// Whether a record's Kafka key can be its state key (it is not null).
    pub fn check(&self, kafka_key: &Value) -> Result<(), String> {
        if matches!(self, KeySpec::KafkaKey) && kafka_key.is_null() {
            return Err("the record has no Kafka key; declare a `key` step with fields".into());
        }
        Ok(())
    }

    /// Adds the key's columns to an output row.
    pub fn fill(&self, key: &Value, row: &mut Row) {
        match (self, key) {
            (KeySpec::Fields(fields), Value::Array(values)) => {
                for (f, v) in fields.iter().zip(values) {
                    row.insert(f.clone(), v.clone());
                }
            }
            _ => {
                row.insert("key".into(), key.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn field_keys_round_trip_into_output_columns() {
        let spec = KeySpec::Fields(vec!["user".into(), "region".into()]);
        let row = json!({"user": "u1", "region": 7, "x": 1});
        let row = row.as_object().expect("object");
        let key = spec.of(row, &Value::Null).expect("fields present");
        assert_eq!(key, json!(["u1", 7]));
        let mut out = Row::new();
        spec.fill(&key, &mut out);
        assert_eq!(Value::Object(out), json!({"user": "u1", "region": 7}));
    }

    #[test]
    fn written_key_text_is_the_keys_json_text() {
        let rows = [
            json!({"user": "u1", "region": 7}),
            json!({"user": "quote \" and \\ and é", "region": [1, {"b": 2.5, "a": null}]}),
            json!({"user": 1e300, "region": -0.0}),
            json!({"user": "u1"}),
            json!({"user": null, "region": 1}),
        ];
        for spec in [
            KeySpec::Fields(vec!["user".into(), "region".into()]),
            KeySpec::Fields(vec!["user".into()]),
            KeySpec::KafkaKey,
        ] {
            for kafka in [json!("k-1"), Value::Null] {
                for row in &rows {
                    let row = row.as_object().expect("object");
                    let mut text = String::from("left over ");
                    let written = spec.write_text(row, &kafka, &mut text);
                    let want = spec
                        .of(row, &kafka)
                        .map(|k| format!("left over {}", serde_json::to_string(&k).expect("json")));
                    assert_eq!(written.map(|()| text), want, "{spec:?} {row:?} {kafka}");
                }
            }
        }
    }

    #[test]
    fn missing_keys_are_errors() {
        let spec = KeySpec::Fields(vec!["user".into()]);
        assert!(spec.of(&Row::new(), &Value::Null).is_err());
        assert!(KeySpec::KafkaKey.of(&Row::new(), &Value::Null).is_err());
    }
}
