//! A prepared batch's values laid out row by row in column order, for the
//! backends that bind or encode each value themselves (MySQL/MariaDB, and
//! PostgreSQL's `COPY`).
//!
//! Contract: [`Columnar::decode`] reads the batch's JSON document once,
//! without building a map per row: row `r`'s value for `columns[c]` is
//! `values[r * width + c]`; a missing field and a JSON `null` are both
//! [`Value::Null`]; fields that are not columns are skipped.

use super::PreparedBatch;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use std::collections::HashMap;
use std::fmt;

pub struct Columnar {
    pub width: usize,
    pub values: Vec<Value>,
}

impl Columnar {
    pub fn decode(batch: &PreparedBatch) -> Result<Self, serde_json::Error> {
        let index: HashMap<&str, usize> = batch
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| (c.as_str(), i))
            .collect();
        let width = batch.columns.len();
        let mut values = Vec::with_capacity(batch.rows * width);
        if batch.rows > 0 {
            let mut de = serde_json::Deserializer::from_str(&batch.json);
            let seed = Rows {
                index: &index,
                width,
                out: &mut values,
            };
            seed.deserialize(&mut de)?;
            de.end()?;
        }
        Ok(Self { width, values })
    }

    /// The rows, each a slice of `width` values.
    pub fn rows(&self) -> std::slice::ChunksExact<'_, Value> {
        self.values.chunks_exact(self.width.max(1))
    }
}

struct Rows<'a> {
    index: &'a HashMap<&'a str, usize>,
    width: usize,
    out: &'a mut Vec<Value>,
}

impl<'de> DeserializeSeed<'de> for Rows<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Rows<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of row objects")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        loop {
            let row = OneRow {
                index: self.index,
                width: self.width,
                out: &mut *self.out,
            };
            if seq.next_element_seed(row)?.is_none() {
                return Ok(());
            }
        }
    }
}

struct OneRow<'a> {
    index: &'a HashMap<&'a str, usize>,
    width: usize,
    out: &'a mut Vec<Value>,
}

impl<'de> DeserializeSeed<'de> for OneRow<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for OneRow<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a row object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let base = self.out.len();
        self.out.resize(base + self.width, Value::Null);
        while let Some(column) = map.next_key_seed(Key(self.index))? {
            match column {
                Some(i) => self.out[base + i] = map.next_value()?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// A key, resolved to its column's position without allocating.
struct Key<'a>(&'a HashMap<&'a str, usize>);

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = Option<usize>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<usize>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key<'_> {
    type Value = Option<usize>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }
    fn visit_str<E>(self, key: &str) -> Result<Option<usize>, E> {
        Ok(self.0.get(key).copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_come_out_in_column_order_with_gaps_as_null() {
        let batch = PreparedBatch {
            columns: vec!["a".into(), "b\"q".into()],
            json: r#"[{"b\"q":1,"x":{"deep":[1]},"a":"s"},{"a":null},{}]"#.into(),
            rows: 3,
        };
        let c = Columnar::decode(&batch).expect("decodes");
        let rows: Vec<&[Value]> = c.rows().collect();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0], &[json!("s"), json!(1)]);
        assert_eq!(rows[1], &[Value::Null, Value::Null]);
        assert_eq!(rows[2], &[Value::Null, Value::Null]);
    }
}
