//! Shared by every backend: turns a batch's rows into one JSON document and
//! the list of target columns it touches.

use super::schema::TableSchema;
use super::SinkError;
use crate::config::SinkMode;
use crate::model::Row;
use serde_json::Value;
use std::collections::HashMap;

/// A batch ready for the database.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedBatch {
    /// Table columns present in at least one row, in table order. Columns no
    /// row carries are left out of the statement, so they keep their default
    /// (insert) or their current value (upsert).
    pub columns: Vec<String>,
    /// The rows as one JSON array of objects.
    pub json: String,
    pub rows: usize,
}

/// Prepares rows for the statement path. In upsert mode only the last row per
/// key is kept (a database statement may not touch one row twice), and a row
/// without every key column is rejected.
pub fn prepare(
    schema: &TableSchema,
    mode: SinkMode,
    key_columns: &[String],
    rows: &[Row],
) -> Result<PreparedBatch, SinkError> {
    let kept: Vec<&Row> = match mode {
        SinkMode::Insert => rows.iter().collect(),
        SinkMode::Upsert => last_per_key(schema, key_columns, rows)?,
    };
    let columns: Vec<String> = schema
        .columns
        .iter()
        .filter(|c| kept.iter().any(|r| r.contains_key(&c.name)))
        .map(|c| c.name.clone())
        .collect();
    if columns.is_empty() && !kept.is_empty() {
        return Err(SinkError::Row {
            table: schema.table.to_string(),
            message: "no field of the rows matches a column of the table".into(),
        });
    }
    let json = serde_json::to_string(&kept).map_err(|e| SinkError::Row {
        table: schema.table.to_string(),
        message: format!("cannot serialise rows: {e}"),
    })?;
    Ok(PreparedBatch {
        columns,
        json,
        rows: kept.len(),
    })
}

fn last_per_key<'r>(
    schema: &TableSchema,
    key_columns: &[String],
    rows: &'r [Row],
) -> Result<Vec<&'r Row>, SinkError> {
    let mut index: HashMap<Vec<&Value>, usize> = HashMap::with_capacity(rows.len());
    let mut kept: Vec<Option<&Row>> = Vec::with_capacity(rows.len());
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
        if let Some(previous) = index.insert(key, kept.len()) {
            kept[previous] = None;
        }
        kept.push(Some(row));
    }
    Ok(kept.into_iter().flatten().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::ident::TableName;
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
        assert_eq!(p.rows, 2);
        assert_eq!(p.json, r#"[{"a":"x","id":2},{"a":"new","id":1}]"#);
    }

    #[test]
    fn only_columns_some_row_carries_are_listed() {
        let rows = vec![row(json!({"b": 1, "unknown": 2}))];
        let p = prepare(&schema(), SinkMode::Insert, &[], &rows).expect("insert");
        assert_eq!(p.columns, vec!["b".to_string()]);
    }

    #[test]
    fn upsert_rejects_rows_without_the_key() {
        let rows = vec![row(json!({"a": 1}))];
        let err = prepare(&schema(), SinkMode::Upsert, &["id".into()], &rows).expect_err("no key");
        assert!(err.to_string().contains("`id`"), "{err}");
    }
}
