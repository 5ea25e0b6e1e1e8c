//! MySQL/MariaDB row values: binding JSON values as parameters, and cutting a
//! batch into statements that fit the server's limits.
//!
//! Contract: [`chunks`] never yields a statement over 65,535 placeholders, and
//! never one whose estimated parameter bytes exceed the budget unless a
//! single row alone does (the server then refuses that row as a data error).
//! [`push_value`] binds by JSON type; nothing is formatted into SQL text.

use crate::sink::columnar::Columnar;
use serde_json::Value;
use sqlx::mysql::{MySql, MySqlArguments};
use sqlx::query::Query;

/// The most placeholders one prepared statement may carry.
pub const MAX_PLACEHOLDERS: usize = 65_535;

pub(super) type MyQuery<'q> = Query<'q, MySql, MySqlArguments>;

/// Splits the rows into consecutive statements (each slice holds whole rows,
/// `width` values each). Each statement's row count is a power of two, so a
/// stream of batches reuses a handful of prepared statements instead of
/// preparing one per distinct batch size.
pub fn chunks<'a>(data: &'a Columnar<'_>, budget: usize) -> Vec<&'a [&'a Value]> {
    let width = data.width.max(1);
    let max_rows = (MAX_PLACEHOLDERS / width).max(1);
    let rows = data.values.len() / width;
    let mut out = Vec::new();
    let mut start = 0;
    while start < rows {
        let (mut end, mut bytes) = (start, 0);
        while end < rows && end - start < max_rows {
            let size = row_size(&data.values[end * width..(end + 1) * width]);
            if end > start && bytes + size > budget {
                break;
            }
            bytes += size;
            end += 1;
        }
        let len = end - start;
        let len = 1 << (usize::BITS - 1 - len.leading_zeros()); // largest power of two ≤ len
        out.push(&data.values[start * width..(start + len) * width]);
        start += len;
    }
    out
}

/// Estimated bytes of one row's parameters in `COM_STMT_EXECUTE`: 2 type bytes
/// per parameter, the value, and up to 9 bytes of length prefix.
fn row_size(row: &[&Value]) -> usize {
    row.iter()
        .map(|v| {
            2 + match v {
                Value::Null | Value::Bool(_) => 1,
                Value::Number(_) => 8,
                Value::String(s) => s.len() + 9,
                v => v.to_string().len() + 9,
            }
        })
        .sum()
}

/// Binds one value by its JSON type; objects and arrays as JSON text.
pub fn push_value<'q>(query: MyQuery<'q>, value: &'q Value) -> MyQuery<'q> {
    match value {
        Value::Null => query.bind(None::<&str>),
        Value::Bool(b) => query.bind(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                query.bind(i)
            } else if let Some(u) = n.as_u64() {
                query.bind(u)
            } else {
                query.bind(n.as_f64())
            }
        }
        Value::String(s) => query.bind(s.as_str()),
        v => query.bind(v.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Chunk sizes (in rows) of `n` rows of `width` values, `text` in all but the first.
    fn sizes(n: usize, width: usize, text: &str, budget: usize) -> Vec<usize> {
        let owned: Vec<Value> = (0..n)
            .flat_map(|i| {
                let mut row = vec![json!(text); width];
                row[0] = json!(i);
                row
            })
            .collect();
        let data = Columnar {
            width,
            values: owned.iter().collect(),
        };
        chunks(&data, budget)
            .iter()
            .map(|c| c.len() / data.width)
            .collect()
    }

    #[test]
    fn chunks_respect_the_byte_budget() {
        // 10 + 111 bytes each
        assert_eq!(sizes(10, 2, &"x".repeat(100), 500), vec![4, 4, 2]);
        assert_eq!(sizes(13, 2, "", usize::MAX), vec![8, 4, 1], "powers of two");
    }

    #[test]
    fn chunks_respect_the_placeholder_limit() {
        let sizes = sizes(200, 1000, "", usize::MAX);
        assert_eq!(sizes, vec![64, 64, 64, 8]);
        assert!(sizes.iter().all(|n| n * 1000 <= MAX_PLACEHOLDERS));
    }

    #[test]
    fn a_row_over_the_budget_goes_alone() {
        assert_eq!(sizes(3, 2, &"x".repeat(1000), 100), vec![1, 1, 1]);
    }
}
