//! Shared by every backend: groups a batch's rows into parts, one per set of
//! target columns, each holding its values column by column (see
//! [`super::columnar`]); and its deletes into one part of keys.
//!
//! Guarantee: every row is written with exactly the columns it carries — rows
//! that carry different fields go into different parts — so a column absent
//! from a record gets its database default (insert) or keeps its current value
//! (upsert), on every backend and path, never a NULL it did not ask for.

use super::columnar::Columnar;
use super::schema::TableSchema;
use super::SinkError;
use crate::config::SinkMode;
use crate::model::Row;
use foldhash::{HashMap, HashMapExt};
use serde_json::Value;

/// One statement's worth of rows that all carry the same columns.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedBatch<'r> {
    /// Table columns the rows carry, in table order. Columns the rows do not
    /// carry are left out of the statement, so they keep their default
    /// (insert) or their current value (upsert).
    pub columns: Vec<String>,
    /// The rows' values of `columns`, row by row.
    pub data: Columnar<'r>,
    pub rows: usize,
}

impl PreparedBatch<'_> {
    /// The rows as one JSON array of objects (the statement paths bind it).
    pub fn json(&self) -> String {
        self.data.to_json(&self.columns)
    }
}

/// A batch ready for the database: the deletes (run first), then the rows.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PreparedWrite<'r> {
    /// The rows, grouped by the set of columns they carry.
    pub parts: Vec<PreparedBatch<'r>>,
    /// Keys of the rows to delete (`columns` are the key columns).
    pub deletes: Option<PreparedBatch<'r>>,
    /// Empty the table before the deletes and rows (a change stream's
    /// truncate).
    pub truncate: bool,
    /// Primary-key changes: each row copied to its new key, before the
    /// deletes (which remove the old key).
    pub moves: &'r [crate::model::Move],
    /// The ordering guard (`sink.order_column`): the markers the deletes
    /// leave (key columns, position, `marked_at`), written after them.
    pub markers: Option<PreparedBatch<'r>>,
    /// The ordering guard: keys of the rows written, checked against the
    /// markers after the rows (an older change does not revive a row).
    pub revive: Option<PreparedBatch<'r>>,
}

impl PreparedWrite<'_> {
    /// Rows to insert or upsert.
    pub fn rows(&self) -> usize {
        self.parts.iter().map(|p| p.rows).sum()
    }

    /// Keys to delete.
    pub fn deletes(&self) -> usize {
        self.deletes.as_ref().map_or(0, |d| d.rows)
    }

    pub fn is_empty(&self) -> bool {
        self.rows() == 0 && self.deletes() == 0 && !self.truncate && self.moves.is_empty()
    }
}

/// Prepares rows for the statement path. In upsert mode the rows of one key
/// become one (a database statement may not touch one row twice): each
/// column from the last row that carries it, as if they were applied one
/// after another; a row without every key column is rejected.
pub fn prepare<'r>(
    schema: &TableSchema,
    mode: SinkMode,
    key_columns: &[String],
    rows: &'r [Row],
) -> Result<PreparedWrite<'r>, SinkError> {
    let kept: Vec<Kept<'r>> = match mode {
        SinkMode::Insert => rows.iter().map(Kept::One).collect(),
        SinkMode::Upsert => merged_per_key(schema, key_columns, rows)?,
    };
    let mut groups: HashMap<Vec<usize>, usize> = HashMap::new();
    // Per part: the columns present (table order), then the values row by row.
    let mut parts: Vec<(Vec<usize>, Vec<&'r Value>)> = Vec::new();
    // Rows of a stream mostly carry the same fields: compare with the previous
    // row's set first, without hashing or allocating. One lookup per column
    // finds both whether the row carries it and its value.
    let mut present: Vec<usize> = Vec::with_capacity(schema.columns.len());
    let mut values: Vec<&'r Value> = Vec::with_capacity(schema.columns.len());
    let mut last: Option<usize> = None;
    for row in kept {
        present.clear();
        values.clear();
        for (i, column) in schema.columns.iter().enumerate() {
            if let Some(v) = row.get(&column.name) {
                present.push(i);
                values.push(v);
            }
        }
        if present.is_empty() {
            return Err(SinkError::Row {
                table: schema.table.to_string(),
                message: "no field of the row matches a column of the table".into(),
            });
        }
        let at = match last {
            Some(at) if parts[at].0 == present => at,
            _ => {
                let next = parts.len();
                let at = *groups.entry(present.clone()).or_insert(next);
                if at == next {
                    parts.push((present.clone(), Vec::new()));
                }
                at
            }
        };
        last = Some(at);
        parts[at].1.extend_from_slice(&values);
    }
    let parts = parts
        .into_iter()
        .map(|(present, values)| PreparedBatch {
            columns: present
                .iter()
                .map(|&i| schema.columns[i].name.clone())
                .collect(),
            rows: values.len() / present.len(),
            data: Columnar {
                width: present.len(),
                values,
            },
        })
        .collect();
    Ok(PreparedWrite {
        parts,
        ..PreparedWrite::default()
    })
}

/// Adds the keys of rows to delete (each carrying every key column) to `write`.
pub fn with_deletes<'r>(
    key_columns: &[String],
    mut write: PreparedWrite<'r>,
    keys: &'r [Row],
) -> PreparedWrite<'r> {
    if !keys.is_empty() {
        let refs: Vec<&Row> = keys.iter().collect();
        write.deletes = Some(part(key_columns.to_vec(), &refs));
    }
    write
}

/// `rows`' values of `columns`, as one part (keys, markers).
pub fn part<'r>(columns: Vec<String>, rows: &[&'r Row]) -> PreparedBatch<'r> {
    PreparedBatch {
        data: Columnar::from_rows(&columns, rows),
        columns,
        rows: rows.len(),
    }
}

/// A row to write: one record's, or the records of one key merged.
enum Kept<'r> {
    One(&'r Row),
    /// In arrival order; a column's value is the last one carrying it.
    Merged(Vec<&'r Row>),
}

impl<'r> Kept<'r> {
    fn get(&self, column: &str) -> Option<&'r Value> {
        match self {
            Kept::One(row) => row.get(column),
            Kept::Merged(rows) => rows.iter().rev().find_map(|r| r.get(column)),
        }
    }
}

/// One entry per key, placed where its last row arrived.
fn merged_per_key<'r>(
    schema: &TableSchema,
    key_columns: &[String],
    rows: &'r [Row],
) -> Result<Vec<Kept<'r>>, SinkError> {
    let mut index: HashMap<Vec<&Value>, usize> = HashMap::with_capacity(rows.len());
    let mut kept: Vec<Option<Kept<'r>>> = Vec::with_capacity(rows.len());
    for row in rows {
        let key = key_columns
            .iter()
            .map(|k| match row.get(k) {
                Some(Value::Null) | None => Err(SinkError::Row {
                    table: schema.table.to_string(),
                    message: format!("key column `{k}` is missing or null"),
                }),
                Some(v) => Ok(v),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let entry = match index.insert(key, kept.len()).and_then(|p| kept[p].take()) {
            None => Kept::One(row),
            Some(Kept::One(earlier)) => Kept::Merged(vec![earlier, row]),
            Some(Kept::Merged(mut earlier)) => {
                earlier.push(row);
                Kept::Merged(earlier)
            }
        };
        kept.push(Some(entry));
    }
    Ok(kept.into_iter().flatten().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ident::TableName;
    use crate::sink::schema::Column;
    use serde_json::json;

    fn schema() -> TableSchema {
        let col = |name: &str| Column {
            name: name.into(),
            data_type: "text".into(),
            nullable: true,
            has_default: false,
        };
        TableSchema {
            table: TableName::parse("t", false).expect("valid"),
            columns: vec![col("id"), col("a"), col("b")],
            unique_keys: vec![vec!["id".into()]],
        }
    }

    fn row(v: serde_json::Value) -> Row {
        match v {
            Value::Object(m) => m,
            _ => unreachable!("test rows are objects"),
        }
    }

    #[test]
    fn upsert_keeps_the_last_row_per_key_in_arrival_order() {
        let rows = vec![
            row(json!({"id": 1, "a": "old"})),
            row(json!({"id": 2, "a": "x"})),
            row(json!({"id": 1, "a": "new"})),
        ];
        let p = prepare(&schema(), SinkMode::Upsert, &["id".into()], &rows).expect("keys present");
        assert_eq!(p.rows(), 2);
        assert_eq!(p.parts.len(), 1);
        assert_eq!(
            p.parts[0].json(),
            r#"[{"id":2,"a":"x"},{"id":1,"a":"new"}]"#
        );
    }

    /// An update that leaves a column out (a change stream's unchanged
    /// TOASTed value, a partial record) keeps the value the key's earlier row
    /// in the same batch set, as applying them one by one would.
    #[test]
    fn upsert_merges_the_rows_of_a_key_each_column_from_its_last_row() {
        let rows = vec![
            row(json!({"id": 1, "a": "first", "b": "kept"})),
            row(json!({"id": 2, "a": "x"})),
            row(json!({"id": 1, "a": "second"})),
            row(json!({"id": 1, "b": null})),
        ];
        let p = prepare(&schema(), SinkMode::Upsert, &["id".into()], &rows).expect("keys present");
        assert_eq!(p.rows(), 2);
        let json: Vec<String> = p.parts.iter().map(PreparedBatch::json).collect();
        assert_eq!(
            json,
            [
                r#"[{"id":2,"a":"x"}]"#,
                r#"[{"id":1,"a":"second","b":null}]"#
            ]
        );
    }

    #[test]
    fn only_columns_some_row_carries_are_listed() {
        let rows = vec![row(json!({"b": 1, "unknown": 2}))];
        let p = prepare(&schema(), SinkMode::Insert, &[], &rows).expect("insert");
        assert_eq!(p.parts[0].columns, vec!["b".to_string()]);
    }

    #[test]
    fn rows_carrying_different_fields_go_into_different_parts() {
        let rows = vec![
            row(json!({"id": 1, "a": "x"})),
            row(json!({"id": 2})),
            row(json!({"id": 3, "a": "y"})),
        ];
        let p = prepare(&schema(), SinkMode::Insert, &[], &rows).expect("insert");
        let columns: Vec<&[String]> = p.parts.iter().map(|p| p.columns.as_slice()).collect();
        assert_eq!(
            columns,
            [
                &["id".to_string(), "a".to_string()][..],
                &["id".to_string()][..]
            ]
        );
        assert_eq!(p.parts[0].json(), r#"[{"id":1,"a":"x"},{"id":3,"a":"y"}]"#);
        assert_eq!(p.parts[1].json(), r#"[{"id":2}]"#);
    }

    #[test]
    fn deletes_are_one_document_of_keys() {
        let keys = vec![row(json!({"id": 1})), row(json!({"id": "2"}))];
        let p = with_deletes(&["id".into()], PreparedWrite::default(), &keys);
        let d = p.deletes.expect("deletes");
        assert_eq!(
            (d.columns.clone(), d.json().as_str(), d.rows),
            (vec!["id".to_string()], r#"[{"id":1},{"id":"2"}]"#, 2)
        );
    }

    #[test]
    fn a_row_with_no_field_that_is_a_column_is_refused() {
        let rows = vec![row(json!({"a": 1})), row(json!({"unknown": 2}))];
        let err = prepare(&schema(), SinkMode::Insert, &[], &rows).expect_err("no column");
        assert_eq!(
            err.class(&crate::db::postgres::dialect::DIALECT),
            crate::sink::RetryClass::Data
        );
        assert!(err.to_string().contains("no field of the row"), "{err}");
    }

    #[test]
    fn upsert_rejects_rows_without_the_key() {
        let rows = vec![row(json!({"a": 1}))];
        let err = prepare(&schema(), SinkMode::Upsert, &["id".into()], &rows).expect_err("no key");
        assert!(err.to_string().contains("`id`"), "{err}");
    }
}
