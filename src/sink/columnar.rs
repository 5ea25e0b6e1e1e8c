//! A prepared batch's values laid out row by row in column order: what every
//! backend binds or encodes (MySQL/MariaDB parameters, PostgreSQL's binary
//! `COPY`), and what the JSON-document statement paths serialise.
//!
//! Contract: row `r`'s value for `columns[c]` is `values[r * width + c]`; a
//! missing field and a JSON `null` are both [`Value::Null`]; fields that are
//! not columns are left out. The values are borrowed from the rows, with no
//! copy and no JSON text in between.

use crate::model::Row;
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::Value;

/// Stands in for a field the row does not carry.
static NULL: Value = Value::Null;

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Columnar<'r> {
    pub width: usize,
    pub values: Vec<&'r Value>,
}

impl<'r> Columnar<'r> {
    /// The `columns` of each row, in that order.
    pub fn from_rows(columns: &[String], rows: &[&'r Row]) -> Self {
        let mut values = Vec::with_capacity(rows.len() * columns.len());
        for row in rows {
            values.extend(columns.iter().map(|c| row.get(c).unwrap_or(&NULL)));
        }
        Self {
            width: columns.len(),
            values,
        }
    }

    /// The rows, each a slice of `width` values.
    pub fn rows(&self) -> std::slice::ChunksExact<'_, &'r Value> {
        self.values.chunks_exact(self.width.max(1))
    }

    /// The rows as one JSON array of objects keyed by `columns`.
    pub fn to_json(&self, columns: &[String]) -> String {
        serde_json::to_string(&Document {
            columns,
            data: self,
        })
        .expect("JSON values and string keys always serialise")
    }
}

struct Document<'a> {
    columns: &'a [String],
    data: &'a Columnar<'a>,
}

impl Serialize for Document<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let rows = self
            .data
            .values
            .len()
            .checked_div(self.data.width)
            .unwrap_or(0);
        let mut seq = s.serialize_seq(Some(rows))?;
        for row in self.data.rows().take(rows) {
            seq.serialize_element(&Object(self.columns, row))?;
        }
        seq.end()
    }
}

struct Object<'a>(&'a [String], &'a [&'a Value]);

impl Serialize for Object<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0.iter().zip(self.1) {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(v: Value) -> Row {
        match v {
            Value::Object(m) => m,
            _ => unreachable!("test rows are objects"),
        }
    }

    #[test]
    fn values_come_out_in_column_order_with_gaps_as_null() {
        let rows = [
            row(json!({"b\"q": 1, "x": {"deep": [1]}, "a": "s"})),
            row(json!({"a": null})),
            row(json!({})),
        ];
        let refs: Vec<&Row> = rows.iter().collect();
        let columns = ["a".to_string(), "b\"q".to_string()];
        let c = Columnar::from_rows(&columns, &refs);
        let got: Vec<&[&Value]> = c.rows().collect();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0], &[&json!("s"), &json!(1)]);
        assert_eq!(got[1], &[&Value::Null, &Value::Null]);
        assert_eq!(got[2], &[&Value::Null, &Value::Null]);
        assert_eq!(
            c.to_json(&columns),
            r#"[{"a":"s","b\"q":1},{"a":null,"b\"q":null},{"a":null,"b\"q":null}]"#
        );
    }

    #[test]
    fn no_rows_is_an_empty_document() {
        let c = Columnar::from_rows(&["a".to_string()], &[]);
        assert_eq!(c.rows().count(), 0);
        assert_eq!(c.to_json(&["a".to_string()]), "[]");
    }
}
