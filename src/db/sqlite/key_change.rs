//! SQLite's copy of a row to its new key (a change stream's primary-key
//! change, [`crate::model::Move`]): every column but the key's from the old
//! row, in one `INSERT … SELECT`, before the batch's delete of the old key.
//! A row that has the new key already is left as it is; with the ordering
//! guard, so is an old row newer than the change, and the moved row takes
//! the change's position (a marker older than it must not delete it again).

use super::SqliteQuery;
use crate::ident::{column_list, quote};
use crate::model::Move;
use crate::sink::order::Guard;
use crate::sink::schema::TableSchema;
use serde_json::Value;

/// Parameters: the old key's values (1..=n), the new key's (n+1..=2n),
/// with the guard the change's position (2n+1).
pub fn move_sql(schema: &TableSchema, keys: &[String], guard: Option<&Guard>) -> String {
    let t = schema.table.quoted();
    let n = keys.len();
    let rest = schema.other_columns(keys);
    let columns: Vec<String> = keys.iter().chain(&rest).cloned().collect();
    // With the guard the moved row is as new as the change that moved it.
    let from = |c: &String| match guard {
        Some(g) if *c == g.column => format!("?{}", 2 * n + 1),
        _ => format!("o.{}", quote(c)),
    };
    let select: Vec<String> = (0..n)
        .map(|i| format!("?{}", n + i + 1))
        .chain(rest.iter().map(from))
        .collect();
    let on: Vec<String> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| format!("o.{} = ?{}", quote(k), i + 1))
        .collect();
    let newer = guard.map_or(String::new(), |g| {
        let (c, p) = (quote(&g.column), 2 * n + 1);
        format!(" AND (o.{c} IS NULL OR ?{p} IS NULL OR o.{c} <= ?{p})")
    });
    format!(
        "INSERT INTO {t} ({}) SELECT {} FROM {t} AS o WHERE {}{newer} ON CONFLICT ({}) DO NOTHING",
        column_list(&columns),
        select.join(", "),
        on.join(" AND "),
        column_list(keys)
    )
}

/// Binds [`move_sql`]'s parameters for `m`.
pub fn bind_move<'q>(
    mut query: SqliteQuery<'q>,
    m: &'q Move,
    keys: &[String],
    guard: Option<&Guard>,
) -> SqliteQuery<'q> {
    for row in [&m.from, &m.to] {
        for k in keys {
            query = bind_value(query, row.get(k).unwrap_or(&Value::Null));
        }
    }
    if let Some(g) = guard {
        query = bind_value(query, m.from.get(&g.column).unwrap_or(&Value::Null));
    }
    query
}

/// One JSON value as SQLite's own type (a document as its text).
fn bind_value<'q>(query: SqliteQuery<'q>, value: &'q Value) -> SqliteQuery<'q> {
    match value {
        Value::Null => query.bind(None::<i64>),
        Value::Bool(b) => query.bind(i64::from(*b)),
        Value::Number(n) => match n.as_i64() {
            Some(i) => query.bind(i),
            None => query.bind(n.as_f64()),
        },
        Value::String(s) => query.bind(s.as_str()),
        other => query.bind(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ident::TableName;
    use crate::sink::schema::Column;

    #[test]
    fn a_moved_row_takes_every_other_column_from_the_old_key() {
        let column = |name: &str| Column {
            name: name.into(),
            data_type: "TEXT".into(),
            nullable: true,
            has_default: false,
        };
        let t = TableName::parse("t", true).expect("valid");
        let schema = TableSchema::read(&t, vec![column("a"), column("b"), column("memo")], vec![]);
        let guard = Guard::new("memo", &t, std::time::Duration::from_secs(60));
        assert_eq!(
            move_sql(&schema, &["a".into(), "b".into()], Some(&guard)),
            r#"INSERT INTO "t" ("a", "b", "memo") SELECT ?3, ?4, ?5 FROM "t" AS o WHERE o."a" = ?1 AND o."b" = ?2 AND (o."memo" IS NULL OR ?5 IS NULL OR o."memo" <= ?5) ON CONFLICT ("a", "b") DO NOTHING"#
        );
    }
}
