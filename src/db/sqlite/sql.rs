//! SQLite's batch statements: `INSERT … SELECT … FROM json_each(?1)` with
//! the upsert clause, and `DELETE … WHERE (keys) IN (SELECT … FROM
//! json_each(?1))`; parameter 1 is the JSON array, 2.. the paths of its
//! columns ([`column_param`]).

use crate::config::SinkMode;
use crate::ident::{column_list, on_conflict, TableName};

/// Builds the batch statement; parameter 1 is the JSON array, 2.. are the
/// JSON paths of `columns`, in order ([`column_param`]). A column flagged in
/// `bytes` is read through `unhex(…)` (its values arrive as hex, [`crate::sink::types`]).
pub fn insert_sql(
    table: &TableName,
    mode: SinkMode,
    keys: &[String],
    columns: &[String],
    bytes: &[bool],
) -> String {
    let cols = column_list(columns);
    let values = value_exprs(columns, bytes);
    // `WHERE true` resolves SQLite's parsing ambiguity between a join's ON and the upsert clause.
    let mut sql = format!(
        "INSERT INTO {} ({cols}) SELECT {values} FROM json_each(?1) AS r WHERE true",
        table.quoted()
    );
    if mode == SinkMode::Upsert {
        sql.push_str(&on_conflict(keys, columns));
    }
    sql
}

/// For each column, the expression that reads it from the JSON row `r.value`
/// (parameters 2.., see [`column_param`]); `unhex(…)` for the flagged ones.
fn value_exprs(columns: &[String], bytes: &[bool]) -> String {
    columns
        .iter()
        .enumerate()
        .map(|(i, c)| value_expr(i, c, bytes.get(i) == Some(&true)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The expression that reads the `i`th column from the JSON row `r.value`.
pub(super) fn value_expr(i: usize, column: &str, bytes: bool) -> String {
    let value = if path_safe(column) {
        format!("json_extract(r.value, ?{})", i + 2)
    } else {
        format!(
            "(SELECT e.value FROM json_each(r.value) AS e WHERE e.key = ?{})",
            i + 2
        )
    };
    if bytes {
        format!("unhex({value})")
    } else {
        value
    }
}

/// Deletes the rows whose key columns match one of the JSON array's objects;
/// parameters as for [`insert_sql`] with the key columns. The comparison
/// applies the key columns' affinity, as an `=` would.
pub fn delete_sql(table: &TableName, keys: &[String]) -> String {
    let target = match keys {
        [one] => column_list(std::slice::from_ref(one)),
        _ => format!("({})", column_list(keys)),
    };
    format!(
        "DELETE FROM {} WHERE {target} IN (SELECT {} FROM json_each(?1) AS r)",
        table.quoted(),
        value_exprs(keys, &[])
    )
}

/// Whether SQLite's JSON path parser reads `$."column"` as exactly this key:
/// a `"` would end the label early, and a backslash does not match itself.
fn path_safe(column: &str) -> bool {
    !column.contains(['"', '\\'])
}

/// The parameter that selects `column` in the statement: a JSON path, or the
/// key itself when no path can address it (see [`path_safe`]).
pub(super) fn column_param(column: &str) -> String {
    if path_safe(column) {
        format!("$.\"{column}\"")
    } else {
        column.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_addressed_by_path_or_by_itself() {
        assert_eq!(column_param("a.b"), r#"$."a.b""#);
        assert_eq!(column_param(r"x\y"), r"x\y");
        assert_eq!(column_param(r#"x"y"#), r#"x"y"#);
    }

    #[test]
    fn insert_sql_binds_paths_after_the_document() {
        let t = TableName::parse("t", true).expect("valid");
        let sql = insert_sql(&t, SinkMode::Insert, &[], &["a".into(), "b".into()], &[]);
        assert_eq!(
            sql,
            r#"INSERT INTO "t" ("a", "b") SELECT json_extract(r.value, ?2), json_extract(r.value, ?3) FROM json_each(?1) AS r WHERE true"#
        );
    }

    #[test]
    fn delete_sql_compares_one_key_or_a_row_of_keys() {
        let t = TableName::parse("t", true).expect("valid");
        assert_eq!(
            delete_sql(&t, &["id".into()]),
            r#"DELETE FROM "t" WHERE "id" IN (SELECT json_extract(r.value, ?2) FROM json_each(?1) AS r)"#
        );
        assert!(
            delete_sql(&t, &["a".into(), "b".into()]).contains(r#"WHERE ("a", "b") IN (SELECT"#)
        );
    }

    #[test]
    fn a_key_with_a_double_quote_is_matched_by_name() {
        let t = TableName::parse("t", true).expect("valid");
        let sql = insert_sql(&t, SinkMode::Insert, &[], &[r#"a"b"#.into()], &[]);
        assert!(
            sql.contains("(SELECT e.value FROM json_each(r.value) AS e WHERE e.key = ?2)"),
            "{sql}"
        );
    }
}
