//! MySQL's and MariaDB's statements of the ordering guard
//! ([`crate::sink::order`]); `?` placeholders bound row by row, each value
//! once, as the batch's other statements are.
//!
//! - An upsert updates a row unless the change is older than the row
//!   ([`super::sql::on_duplicate_key_newer`]); the markers table is upserted
//!   the same way.
//! - A delete removes a row only when it is not older than the row
//!   ([`delete_sql`], its keys one JSON document read by `JSON_TABLE`).
//! - After the upserts, a row that a marker says was deleted later than the
//!   change that wrote it goes again ([`revived_sql`]).

use super::Q;
use crate::ident::TableName;
use crate::sink::order::Guard;
use crate::sink::schema::TableSchema;

/// Deletes the rows the JSON array's keys name (each object: its key
/// columns and its position) that are not newer than the delete; an
/// unknown position on either side deletes. The keys are read with
/// `JSON_TABLE`, typed as the table's columns, and joined to the table
/// through its primary key (an `OR` of 5,000 key terms made MariaDB scan).
pub fn delete_sql(schema: &TableSchema, keys: &[String], guard: &Guard) -> String {
    let p = Q.quote(&guard.column);
    let ty = |c: &str| {
        schema
            .column(c)
            .map_or_else(|| "TEXT".to_string(), |c| c.data_type.clone())
    };
    let mut columns: Vec<String> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| format!("k{i} {} PATH '{}'", ty(k), path(k)))
        .collect();
    columns.push(format!(
        "p {} PATH '{}'",
        ty(&guard.column),
        path(&guard.column)
    ));
    let on: Vec<String> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| format!("d.{} = j.k{i}", Q.quote(k)))
        .collect();
    format!(
        "DELETE d FROM JSON_TABLE(?, '$[*]' COLUMNS ({})) AS j JOIN {} AS d ON {} \
         WHERE d.{p} IS NULL OR j.p IS NULL OR d.{p} <= j.p",
        columns.join(", "),
        schema.table.quoted_in(Q),
        on.join(" AND ")
    )
}

/// The JSON path of a member named `column`, inside a SQL string literal.
fn path(column: &str) -> String {
    let member = column.replace('\\', "\\\\").replace('"', "\\\"");
    format!("$.\"{member}\"").replace('\'', "''")
}

/// Deletes the rows of `rows` keys whose marker is as new as or newer than
/// the row.
pub fn revived_sql(table: &TableName, keys: &[String], guard: &Guard, rows: usize) -> String {
    let t = table.quoted_in(Q);
    let p = Q.quote(&guard.column);
    let on: Vec<String> = keys
        .iter()
        .map(|k| format!("m.{q} = {t}.{q}", q = Q.quote(k)))
        .collect();
    format!(
        "{} AND EXISTS (SELECT 1 FROM {} AS m WHERE {} AND m.{p} >= {t}.{p})",
        super::delete_sql(table, keys, rows),
        guard.markers.quoted_in(Q),
        on.join(" AND ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard() -> (TableName, Guard) {
        let t = TableName::parse("db.t", false).expect("valid");
        let g = Guard::new("pos", &t, std::time::Duration::from_secs(60));
        (t, g)
    }

    #[test]
    fn a_guarded_delete_joins_the_keys_typed_as_the_table_through_its_key() {
        let (t, g) = guard();
        let column = |name: &str, ty: &str| crate::sink::schema::Column {
            name: name.into(),
            data_type: ty.into(),
            nullable: true,
            has_default: false,
        };
        let schema = TableSchema::read(
            &t,
            vec![column("id", "bigint(20)"), column("pos", "varchar(64)")],
            vec![vec!["id".into()]],
        );
        assert_eq!(
            delete_sql(&schema, &["id".into()], &g),
            "DELETE d FROM JSON_TABLE(?, '$[*]' COLUMNS (k0 bigint(20) PATH '$.\"id\"', p varchar(64) PATH '$.\"pos\"')) \
             AS j JOIN `db`.`t` AS d ON d.`id` = j.k0 WHERE d.`pos` IS NULL OR j.p IS NULL OR d.`pos` <= j.p"
        );
    }

    #[test]
    fn a_member_name_is_escaped_for_the_path_and_the_literal() {
        assert_eq!(path(r#"a"b'c"#), r#"$."a\"b''c""#);
    }

    #[test]
    fn a_row_no_newer_than_its_marker_is_deleted_again() {
        let (t, g) = guard();
        assert_eq!(
            revived_sql(&t, &["id".into()], &g, 1),
            "DELETE FROM `db`.`t` WHERE `id` IN (?) AND EXISTS (SELECT 1 FROM `db`.`tidemill_deleted__t` AS m \
             WHERE m.`id` = `db`.`t`.`id` AND m.`pos` >= `db`.`t`.`pos`)"
        );
    }
}
