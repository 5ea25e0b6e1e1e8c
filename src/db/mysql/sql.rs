//! MySQL's and MariaDB's batch statements: multi-row `INSERT … VALUES`
//! with the upsert clause, and `DELETE … WHERE key IN (…)`; `?` placeholders
//! bound row by row (see the backend's contract in [`super`]).

use super::Q;
use crate::config::SinkMode;
use crate::ident::TableName;

/// `DELETE FROM t WHERE k IN (?, …)` for `rows` keys (`(k1, k2) IN ((?, ?), …)`
/// for a composite key).
pub fn delete_sql(table: &TableName, keys: &[String], rows: usize) -> String {
    let (target, tuple) = match keys {
        [one] => (Q.quote(one), "?".to_string()),
        _ => (
            format!("({})", Q.column_list(keys)),
            format!("({})", vec!["?"; keys.len()].join(", ")),
        ),
    };
    format!(
        "DELETE FROM {} WHERE {target} IN ({})",
        table.quoted_in(Q),
        vec![tuple; rows].join(", ")
    )
}

/// `INSERT INTO t (cols) VALUES (?, ?), …` for `rows` rows, plus the upsert
/// clause; the placeholder of a column flagged in `bytes` is `UNHEX(?)` (its
/// values arrive as hex, [`crate::sink::types`]).
pub fn insert_sql(
    table: &TableName,
    mode: SinkMode,
    keys: &[String],
    columns: &[String],
    bytes: &[bool],
    rows: usize,
    newer: Option<&str>,
) -> String {
    let placeholders: Vec<&str> = (0..columns.len())
        .map(|i| {
            if bytes.get(i) == Some(&true) {
                "UNHEX(?)"
            } else {
                "?"
            }
        })
        .collect();
    let tuple = format!("({})", placeholders.join(", "));
    let mut sql = format!(
        "INSERT INTO {} ({}) VALUES ",
        table.quoted_in(Q),
        Q.column_list(columns)
    );
    sql.reserve(rows * (tuple.len() + 2) + 64);
    for i in 0..rows {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&tuple);
    }
    match (mode, newer) {
        (SinkMode::Upsert, Some(position)) => {
            sql.push_str(&on_duplicate_key_newer(keys, columns, position))
        }
        (SinkMode::Upsert, None) => sql.push_str(&on_duplicate_key(keys, columns)),
        (SinkMode::Insert, _) => {}
    }
    sql
}

/// Updates every non-key column from the proposed row; with only key columns
/// written, a no-op assignment (never `INSERT IGNORE`, which would also turn
/// every other error into a warning).
fn on_duplicate_key(keys: &[String], columns: &[String]) -> String {
    let updates: Vec<String> = columns
        .iter()
        .filter(|c| !keys.contains(c))
        .map(|c| format!("{q} = VALUES({q})", q = Q.quote(c)))
        .collect();
    let updates = if updates.is_empty() {
        keys.iter()
            .map(|k| format!("{q} = {q}", q = Q.quote(k)))
            .collect()
    } else {
        updates
    };
    format!(" ON DUPLICATE KEY UPDATE {}", updates.join(", "))
}

/// `ON DUPLICATE KEY UPDATE c = IF(newer, VALUES(c), c), …` with the
/// position assigned last: MySQL assigns left to right, and each condition
/// must read the row's position before the change.
pub fn on_duplicate_key_newer(keys: &[String], columns: &[String], position: &str) -> String {
    let p = Q.quote(position);
    let newer = format!("({p} IS NULL OR VALUES({p}) IS NULL OR {p} <= VALUES({p}))");
    let updates: Vec<String> = columns
        .iter()
        .filter(|c| !keys.contains(c) && c.as_str() != position)
        .chain(std::iter::once(&position.to_string()))
        .map(|c| format!("{q} = IF({newer}, VALUES({q}), {q})", q = Q.quote(c)))
        .collect();
    format!(" ON DUPLICATE KEY UPDATE {}", updates.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upsert_sql_updates_non_key_columns_from_values() {
        let t = TableName::parse("db.t", false).expect("valid");
        let cols = ["id".to_string(), "v`x".to_string()];
        let sql = insert_sql(&t, SinkMode::Upsert, &["id".into()], &cols, &[], 2, None);
        assert_eq!(
            sql,
            "INSERT INTO `db`.`t` (`id`, `v``x`) VALUES (?, ?), (?, ?) ON DUPLICATE KEY UPDATE `v``x` = VALUES(`v``x`)"
        );
    }

    #[test]
    fn delete_sql_lists_one_key_or_rows_of_keys() {
        let t = TableName::parse("t", false).expect("valid");
        assert_eq!(
            delete_sql(&t, &["i`d".into()], 2),
            "DELETE FROM `t` WHERE `i``d` IN (?, ?)"
        );
        assert_eq!(
            delete_sql(&t, &["a".into(), "b".into()], 2),
            "DELETE FROM `t` WHERE (`a`, `b`) IN ((?, ?), (?, ?))"
        );
    }

    #[test]
    fn upsert_of_key_only_rows_is_a_no_op_update() {
        let t = TableName::parse("t", false).expect("valid");
        let sql = insert_sql(
            &t,
            SinkMode::Upsert,
            &["id".into()],
            &["id".into()],
            &[],
            1,
            None,
        );
        assert!(
            sql.ends_with("ON DUPLICATE KEY UPDATE `id` = `id`"),
            "{sql}"
        );
    }

    #[test]
    fn an_upsert_assigns_the_position_last_and_only_when_not_older() {
        let cols = ["id".to_string(), "pos".to_string(), "v".to_string()];
        assert_eq!(
            on_duplicate_key_newer(&["id".into()], &cols, "pos"),
            " ON DUPLICATE KEY UPDATE \
             `v` = IF((`pos` IS NULL OR VALUES(`pos`) IS NULL OR `pos` <= VALUES(`pos`)), VALUES(`v`), `v`), \
             `pos` = IF((`pos` IS NULL OR VALUES(`pos`) IS NULL OR `pos` <= VALUES(`pos`)), VALUES(`pos`), `pos`)"
        );
    }
}
