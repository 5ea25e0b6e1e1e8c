//! MySQL/MariaDB row values: binding JSON values as parameters, and cutting a
//! batch into statements that fit the server's limits.
//!
//! Contract: [`chunks`] never yields a statement over 65,535 placeholders, and
//! never one whose estimated parameter bytes exceed the budget unless a
//! single row alone does (the server then refuses that row as a data error).
//! [`push_value`] binds by JSON type; nothing is formatted into SQL text.

use super::ident::TableName;
use super::{PreparedBatch, SinkError};
use serde_json::{Map, Value};
use sqlx::mysql::{MySql, MySqlArguments};
use sqlx::query::Query;

/// The most placeholders one prepared statement may carry.
pub const MAX_PLACEHOLDERS: usize = 65_535;

pub type Row = Map<String, Value>;
type MyQuery<'q> = Query<'q, MySql, MySqlArguments>;

/// The batch's rows, decoded from its JSON document.
pub fn parse_rows(table: &TableName, batch: &PreparedBatch) -> Result<Vec<Row>, SinkError> {
    if batch.rows == 0 {
        return Ok(Vec::new());
    }
    serde_json::from_str(&batch.json).map_err(|e| SinkError::Row {
        table: table.to_string(),
        message: format!("cannot decode the prepared rows: {e}"),
    })
}

/// Splits `rows` into consecutive slices, each one statement. Each slice's
/// length is a power of two, so a stream of batches reuses a handful of
/// prepared statements instead of preparing one per distinct batch size.
pub fn chunks<'r>(rows: &'r [Row], columns: &[String], budget: usize) -> Vec<&'r [Row]> {
    let max_rows = (MAX_PLACEHOLDERS / columns.len().max(1)).max(1);
    let mut out = Vec::new();
    let mut start = 0;
    while start < rows.len() {
        let mut end = start;
        let mut bytes = 0;
        while end < rows.len() && end - start < max_rows {
            let size = row_size(&rows[end], columns);
            if end > start && bytes + size > budget {
                break;
            }
            bytes += size;
            end += 1;
        }
        let len = end - start;
        let len = 1 << (usize::BITS - 1 - len.leading_zeros()); // largest power of two ≤ len
        out.push(&rows[start..start + len]);
        start += len;
    }
    out
}

/// Estimated bytes of one row's parameters in `COM_STMT_EXECUTE`: 2 type bytes
/// per parameter, the value, and up to 9 bytes of length prefix.
fn row_size(row: &Row, columns: &[String]) -> usize {
    columns
        .iter()
        .map(|c| {
            2 + match row.get(c) {
                None | Some(Value::Null) => 1,
                Some(Value::Bool(_)) => 1,
                Some(Value::Number(_)) => 8,
                Some(Value::String(s)) => s.len() + 9,
                Some(v) => v.to_string().len() + 9,
            }
        })
        .sum()
}

/// Binds one value by its JSON type; a missing field is NULL.
pub fn push_value<'q>(query: MyQuery<'q>, value: Option<&'q Value>) -> MyQuery<'q> {
    match value {
        None | Some(Value::Null) => query.bind(None::<&str>),
        Some(Value::Bool(b)) => query.bind(*b),
        Some(Value::Number(n)) => {
            if let Some(i) = n.as_i64() {
                query.bind(i)
            } else if let Some(u) = n.as_u64() {
                query.bind(u)
            } else {
                query.bind(n.as_f64())
            }
        }
        Some(Value::String(s)) => query.bind(s.as_str()),
        Some(v) => query.bind(v.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rows(n: usize, text: &str) -> Vec<Row> {
        (0..n)
            .map(|i| match json!({"a": i, "b": text}) {
                Value::Object(m) => m,
                _ => unreachable!("an object"),
            })
            .collect()
    }

    fn rows_of(n: usize) -> Vec<Row> {
        rows(n, "")
    }

    #[test]
    fn chunks_respect_the_byte_budget() {
        let cols = vec!["a".to_string(), "b".to_string()];
        let rows = rows(10, &"x".repeat(100)); // 10 + 111 bytes each
        let sizes: Vec<usize> = chunks(&rows, &cols, 500).iter().map(|c| c.len()).collect();
        assert_eq!(sizes, vec![4, 4, 2]);
        let rows = rows_of(13);
        let sizes: Vec<usize> = chunks(&rows, &cols, usize::MAX)
            .iter()
            .map(|c| c.len())
            .collect();
        assert_eq!(sizes, vec![8, 4, 1], "powers of two");
    }

    #[test]
    fn chunks_respect_the_placeholder_limit() {
        let cols: Vec<String> = (0..1000).map(|i| format!("c{i}")).collect();
        let rows = rows(200, "");
        let sizes: Vec<usize> = chunks(&rows, &cols, usize::MAX)
            .iter()
            .map(|c| c.len())
            .collect();
        assert_eq!(sizes, vec![64, 64, 64, 8]);
        assert!(sizes.iter().all(|n| n * cols.len() <= MAX_PLACEHOLDERS));
    }

    #[test]
    fn a_row_over_the_budget_goes_alone() {
        let cols = vec!["a".to_string(), "b".to_string()];
        let rows = rows(3, &"x".repeat(1000));
        let sizes: Vec<usize> = chunks(&rows, &cols, 100).iter().map(|c| c.len()).collect();
        assert_eq!(sizes, vec![1, 1, 1]);
    }
}
