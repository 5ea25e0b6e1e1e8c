//! PostgreSQL's statements of the ordering guard ([`crate::sink::order`]).
//! Each binds one JSON array of objects, as the batch's other statements do.
//!
//! - A delete removes a row only when it is newer than the row
//!   ([`delete_sql`]), and leaves a marker (an upsert of the markers table,
//!   newer positions only).
//! - After the upserts, a row that a marker says was deleted later than the
//!   change that wrote it goes again ([`revived_sql`]): an old change
//!   replayed after the delete cannot bring the row back.

use crate::ident::{quote, TableName};
use crate::sink::order::Guard;

/// `d."k" = k."k" AND …` over the key columns.
fn matches(keys: &[String], a: &str, b: &str) -> String {
    let m: Vec<String> = keys
        .iter()
        .map(|k| format!("{a}.{q} = {b}.{q}", q = quote(k)))
        .collect();
    m.join(" AND ")
}

/// Deletes the rows named by the JSON array's keys that are older than the
/// delete (or have no position).
pub fn delete_sql(table: &TableName, keys: &[String], guard: &Guard) -> String {
    let (t, c) = (table.quoted(), quote(&guard.column));
    format!(
        "DELETE FROM {t} AS d USING json_populate_recordset(NULL::{t}, $1::json) AS k \
         WHERE {} AND (d.{c} IS NULL OR k.{c} IS NULL OR d.{c} <= k.{c})",
        matches(keys, "d", "k")
    )
}

/// Deletes the rows named by the JSON array's keys whose marker is as new
/// as or newer than the row.
pub fn revived_sql(table: &TableName, keys: &[String], guard: &Guard) -> String {
    let (t, c) = (table.quoted(), quote(&guard.column));
    format!(
        "DELETE FROM {t} AS d USING json_populate_recordset(NULL::{t}, $1::json) AS k, {} AS m \
         WHERE {} AND {} AND m.{c} >= d.{c}",
        guard.markers.quoted(),
        matches(keys, "d", "k"),
        matches(keys, "m", "d"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard() -> (TableName, Guard) {
        let t = TableName::parse("s.t", false).expect("valid");
        let g = Guard::new("pos", &t, std::time::Duration::from_secs(60));
        (t, g)
    }

    #[test]
    fn a_guarded_delete_spares_rows_at_or_past_its_position() {
        let (t, g) = guard();
        assert_eq!(
            delete_sql(&t, &["id".into()], &g),
            r#"DELETE FROM "s"."t" AS d USING json_populate_recordset(NULL::"s"."t", $1::json) AS k WHERE d."id" = k."id" AND (d."pos" IS NULL OR k."pos" IS NULL OR d."pos" <= k."pos")"#
        );
    }

    #[test]
    fn a_row_no_newer_than_its_marker_is_deleted_again() {
        let (t, g) = guard();
        assert_eq!(
            revived_sql(&t, &["a".into(), "b".into()], &g),
            r#"DELETE FROM "s"."t" AS d USING json_populate_recordset(NULL::"s"."t", $1::json) AS k, "s"."tidemill_deleted__t" AS m WHERE d."a" = k."a" AND d."b" = k."b" AND m."a" = d."a" AND m."b" = d."b" AND m."pos" >= d."pos""#
        );
    }
}
