//! The row a tombstone deletes, read from its Kafka message key.
//!
//! Contract: [`delete_key`] answers an object holding exactly the key
//! columns, each a non-null scalar, or says why the key cannot name a row.
//! A key is a JSON object carrying the key columns, or — with exactly one key
//! column — a bare value: a JSON string, or the key's text as it is (so `42`
//! and `"42"` both name the row whose key is 42; the database converts the
//! text to the column's type, as it does for row values).

use crate::model::Row;
use serde_json::Value;

pub fn delete_key(key_columns: &[String], key: Option<&[u8]>) -> Result<Row, String> {
    let Some(bytes) = key else {
        return Err("tombstone without a key: cannot tell which row to delete".into());
    };
    let parsed = serde_json::from_slice::<Value>(bytes);
    let object = match parsed {
        Ok(Value::Object(map)) => map,
        Ok(Value::String(text)) => return bare(key_columns, text),
        Ok(Value::Array(_) | Value::Null | Value::Bool(_)) => {
            return Err("tombstone key is neither an object nor a scalar".into())
        }
        Ok(Value::Number(_)) | Err(_) => match std::str::from_utf8(bytes) {
            Ok(text) => return bare(key_columns, text.to_string()),
            Err(_) => return Err("tombstone key is not UTF-8".into()),
        },
    };
    let mut row = Row::new();
    for column in key_columns {
        match object.get(column) {
            Some(v @ (Value::String(_) | Value::Number(_) | Value::Bool(_))) => {
                row.insert(column.clone(), v.clone());
            }
            _ => {
                return Err(format!(
                    "tombstone key has no value for key column `{column}`"
                ))
            }
        }
    }
    Ok(row)
}

fn bare(key_columns: &[String], text: String) -> Result<Row, String> {
    match key_columns {
        [one] => Ok(Row::from_iter([(one.clone(), Value::String(text))])),
        _ => Err(format!(
            "tombstone key is a bare value but the key has {} columns ({}); send an object",
            key_columns.len(),
            key_columns.join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn keys(k: &[&str]) -> Vec<String> {
        k.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn an_object_key_gives_exactly_the_key_columns() {
        let row = delete_key(&keys(&["a", "b"]), Some(br#"{"b":"x","a":1,"c":2}"#)).expect("ok");
        assert_eq!(Value::Object(row), json!({"a": 1, "b": "x"}));
    }

    #[test]
    fn a_bare_key_names_the_single_key_column() {
        let row = delete_key(&keys(&["id"]), Some(b"42")).expect("number");
        assert_eq!(Value::Object(row), json!({"id": "42"}));
        let row = delete_key(&keys(&["id"]), Some(br#""k-1""#)).expect("string");
        assert_eq!(Value::Object(row), json!({"id": "k-1"}));
        let row = delete_key(&keys(&["id"]), Some(b"plain text")).expect("text");
        assert_eq!(Value::Object(row), json!({"id": "plain text"}));
    }

    #[test]
    fn keys_that_cannot_name_a_row_say_why() {
        let cols = keys(&["a", "b"]);
        assert!(delete_key(&cols, None)
            .unwrap_err()
            .contains("without a key"));
        assert!(delete_key(&cols, Some(b"7"))
            .unwrap_err()
            .contains("2 columns"));
        assert!(delete_key(&cols, Some(br#"{"a":1}"#))
            .unwrap_err()
            .contains("`b`"));
        assert!(delete_key(&cols, Some(br#"{"a":1,"b":null}"#))
            .unwrap_err()
            .contains("`b`"));
        assert!(delete_key(&keys(&["a"]), Some(b"[1]")).is_err());
        assert!(delete_key(&keys(&["a"]), Some(b"\xff\xfe")).is_err());
    }
}
