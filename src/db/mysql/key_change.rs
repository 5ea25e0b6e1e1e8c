//! MySQL's and MariaDB's copy of a row to its new key (a change stream's
//! primary-key change, [`crate::model::Move`]): every column but the key's
//! from the old row, in one `INSERT … SELECT`, before the batch's delete of
//! the old key. A row that has the new key already is left as it is
//! (`NOT EXISTS`: no `INSERT IGNORE`, which would turn every error into a
//! warning); with the ordering guard, so is an old row newer than the change,
//! and the moved row takes the change's position (a marker older than it
//! must not delete it again).

use super::values::{push_value, MyQuery};
use super::Q;
use crate::model::Move;
use crate::sink::order::Guard;
use crate::sink::schema::TableSchema;
use serde_json::Value;

/// Parameters, in order: the new key's values, with the guard the change's
/// position (the moved row's), the old key's values, with the guard the
/// change's position again, and the new key's values again.
pub fn move_sql(schema: &TableSchema, keys: &[String], guard: Option<&Guard>) -> String {
    let t = schema.table.quoted_in(Q);
    let rest = schema.other_columns(keys);
    let columns: Vec<String> = keys.iter().chain(&rest).cloned().collect();
    // With the guard the moved row is as new as the change that moved it.
    let from = |c: &String| match guard {
        Some(g) if *c == g.column => "?".to_string(),
        _ => format!("o.{}", Q.quote(c)),
    };
    let select: Vec<String> = keys
        .iter()
        .map(|_| "?".to_string())
        .chain(rest.iter().map(from))
        .collect();
    let equal = |alias: &str| -> String {
        let m: Vec<String> = keys
            .iter()
            .map(|k| format!("{alias}.{} = ?", Q.quote(k)))
            .collect();
        m.join(" AND ")
    };
    let newer = guard.map_or(String::new(), |g| {
        let c = Q.quote(&g.column);
        format!(" AND (o.{c} IS NULL OR o.{c} <= COALESCE(?, o.{c}))")
    });
    format!(
        "INSERT INTO {t} ({}) SELECT {} FROM {t} AS o WHERE {}{newer} \
         AND NOT EXISTS (SELECT 1 FROM {t} AS x WHERE {})",
        Q.column_list(&columns),
        select.join(", "),
        equal("o"),
        equal("x")
    )
}

/// Binds [`move_sql`]'s parameters for `m`.
pub fn bind_move<'q>(
    mut query: MyQuery<'q>,
    m: &'q Move,
    keys: &[String],
    guard: Option<&Guard>,
) -> MyQuery<'q> {
    let value = |row: &'q crate::model::Row, k: &str| row.get(k).unwrap_or(&Value::Null);
    for k in keys {
        query = push_value(query, value(&m.to, k));
    }
    if let Some(g) = guard {
        query = push_value(query, value(&m.from, &g.column));
    }
    for k in keys {
        query = push_value(query, value(&m.from, k));
    }
    if let Some(g) = guard {
        query = push_value(query, value(&m.from, &g.column));
    }
    for k in keys {
        query = push_value(query, value(&m.to, k));
    }
    query
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ident::TableName;
    use crate::sink::schema::Column;

    #[test]
    fn a_moved_row_takes_every_other_column_from_the_old_key_unless_the_new_one_exists() {
        let column = |name: &str| Column {
            name: name.into(),
            data_type: "text".into(),
            nullable: true,
            has_default: false,
        };
        let t = TableName::parse("db.t", false).expect("valid");
        let schema = TableSchema::read(
            &t,
            vec![column("id"), column("memo"), column("pos")],
            vec![],
        );
        let guard = Guard::new("pos", &t, std::time::Duration::from_secs(60));
        assert_eq!(
            move_sql(&schema, &["id".into()], Some(&guard)),
            "INSERT INTO `db`.`t` (`id`, `memo`, `pos`) SELECT ?, o.`memo`, ? FROM `db`.`t` AS o \
             WHERE o.`id` = ? AND (o.`pos` IS NULL OR o.`pos` <= COALESCE(?, o.`pos`)) \
             AND NOT EXISTS (SELECT 1 FROM `db`.`t` AS x WHERE x.`id` = ?)"
        );
    }
}
