//! SQLite's statements of the ordering guard ([`crate::sink::order`]);
//! parameters as for the batch's other statements: 1 is the JSON array, 2..
//! the paths of its columns.
//!
//! - A delete removes a row only when it is newer than the row
//!   ([`delete_sql`]); its marker is an upsert of the markers table, newer
//!   positions only.
//! - After the upserts, a row that a marker says was deleted later than the
//!   change that wrote it goes again ([`revived_sql`]).
//!
//! Both look the batch's keys up through the key's index (`json_each`
//! joined to the table), never by scanning the table.

use super::sql::value_expr;
use crate::ident::{column_list, quote, TableName};
use crate::sink::order::Guard;

/// `"k"` or `("k1", "k2")`, and the subquery's `cur."k1", cur."k2"`.
fn key_tuple(keys: &[String]) -> (String, String) {
    let cur: Vec<String> = keys.iter().map(|k| format!("cur.{}", quote(k))).collect();
    let target = match keys {
        [one] => quote(one),
        _ => format!("({})", column_list(keys)),
    };
    (target, cur.join(", "))
}

/// `cur."k" = <the JSON row's k> AND …`.
fn matches(keys: &[String]) -> String {
    let m: Vec<String> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| format!("cur.{} = {}", quote(k), value_expr(i, k, false)))
        .collect();
    m.join(" AND ")
}

/// Deletes the rows the JSON array's keys name that are older than the
/// delete (or have no position). Its columns: the keys, then the position.
pub fn delete_sql(table: &TableName, keys: &[String], guard: &Guard) -> String {
    let (target, cur) = key_tuple(keys);
    let c = quote(&guard.column);
    let t = table.quoted();
    let pos = value_expr(keys.len(), &guard.column, false);
    format!(
        "DELETE FROM {t} WHERE {target} IN (SELECT {cur} FROM json_each(?1) AS r \
         JOIN {t} AS cur ON {} WHERE cur.{c} IS NULL OR {pos} IS NULL OR cur.{c} <= {pos})",
        matches(keys),
    )
}

/// Deletes the rows the JSON array's keys name whose marker is as new as or
/// newer than the row. Its columns: the keys.
pub fn revived_sql(table: &TableName, keys: &[String], guard: &Guard) -> String {
    let (target, cur) = key_tuple(keys);
    let c = quote(&guard.column);
    let t = table.quoted();
    let on_marker: Vec<String> = keys
        .iter()
        .map(|k| format!("m.{q} = cur.{q}", q = quote(k)))
        .collect();
    format!(
        "DELETE FROM {t} WHERE {target} IN (SELECT {cur} FROM json_each(?1) AS r \
         JOIN {t} AS cur ON {} JOIN {} AS m ON {} WHERE m.{c} >= cur.{c})",
        matches(keys),
        guard.markers.quoted(),
        on_marker.join(" AND ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard() -> (TableName, Guard) {
        let t = TableName::parse("t", true).expect("valid");
        let g = Guard::new("pos", &t, std::time::Duration::from_secs(60));
        (t, g)
    }

    #[test]
    fn a_guarded_delete_spares_rows_at_or_past_its_position() {
        let (t, g) = guard();
        assert_eq!(
            delete_sql(&t, &["id".into()], &g),
            r#"DELETE FROM "t" WHERE "id" IN (SELECT cur."id" FROM json_each(?1) AS r JOIN "t" AS cur ON cur."id" = json_extract(r.value, ?2) WHERE cur."pos" IS NULL OR json_extract(r.value, ?3) IS NULL OR cur."pos" <= json_extract(r.value, ?3))"#
        );
    }

    #[test]
    fn a_row_no_newer_than_its_marker_is_deleted_again() {
        let (t, g) = guard();
        assert_eq!(
            revived_sql(&t, &["a".into(), "b".into()], &g),
            r#"DELETE FROM "t" WHERE ("a", "b") IN (SELECT cur."a", cur."b" FROM json_each(?1) AS r JOIN "t" AS cur ON cur."a" = json_extract(r.value, ?2) AND cur."b" = json_extract(r.value, ?3) JOIN "tidemill_deleted__t" AS m ON m."a" = cur."a" AND m."b" = cur."b" WHERE m."pos" >= cur."pos")"#
        );
    }
}
