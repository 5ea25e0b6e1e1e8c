//! PostgreSQL's copy of a row to its new key (a change stream's primary-key
//! change, [`crate::model::Move`]): every column but the key's from the old
//! row, in one `INSERT … SELECT`, before the batch's delete of the old key.
//! A row that has the new key already is left as it is; with the ordering
//! guard, so is an old row newer than the change, and the moved row takes
//! the change's position (a marker older than it must not delete it again). Both keys travel as JSON
//! objects that the table's own column types read (`json_populate_record`).

use crate::ident::{column_list, quote};
use crate::sink::order::Guard;
use crate::sink::schema::TableSchema;

/// Parameter 1: the old key (with the guard, and its position); 2: the new key.
pub fn move_sql(schema: &TableSchema, keys: &[String], guard: Option<&Guard>) -> String {
    let t = schema.table.quoted();
    let rest = schema.other_columns(keys);
    let columns: Vec<String> = keys.iter().chain(&rest).cloned().collect();
    // With the guard the moved row is as new as the change that moved it.
    let from = |c: &String| match guard {
        Some(g) if *c == g.column => format!("f.{}", quote(c)),
        _ => format!("o.{}", quote(c)),
    };
    let select: Vec<String> = keys
        .iter()
        .map(|k| format!("n.{}", quote(k)))
        .chain(rest.iter().map(from))
        .collect();
    let on: Vec<String> = keys
        .iter()
        .map(|k| format!("o.{q} = f.{q}", q = quote(k)))
        .collect();
    let newer = guard.map_or(String::new(), |g| {
        let c = quote(&g.column);
        format!(" AND (o.{c} IS NULL OR f.{c} IS NULL OR o.{c} <= f.{c})")
    });
    format!(
        "INSERT INTO {t} ({}) SELECT {} FROM {t} AS o, json_populate_record(NULL::{t}, $1::json) AS f, \
         json_populate_record(NULL::{t}, $2::json) AS n WHERE {}{newer} ON CONFLICT ({}) DO NOTHING",
        column_list(&columns),
        select.join(", "),
        on.join(" AND "),
        column_list(keys)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ident::TableName;
    use crate::sink::schema::Column;

    fn schema() -> TableSchema {
        let column = |name: &str| Column {
            name: name.into(),
            data_type: "text".into(),
            nullable: true,
            has_default: false,
        };
        let t = TableName::parse("t", false).expect("valid");
        TableSchema::read(
            &t,
            vec![column("id"), column("memo"), column("pos")],
            vec![vec!["id".into()]],
        )
    }

    #[test]
    fn a_moved_row_takes_every_other_column_from_the_old_key() {
        assert_eq!(
            move_sql(&schema(), &["id".into()], None),
            r#"INSERT INTO "t" ("id", "memo", "pos") SELECT n."id", o."memo", o."pos" FROM "t" AS o, json_populate_record(NULL::"t", $1::json) AS f, json_populate_record(NULL::"t", $2::json) AS n WHERE o."id" = f."id" ON CONFLICT ("id") DO NOTHING"#
        );
    }

    #[test]
    fn with_the_guard_an_old_row_newer_than_the_change_stays() {
        let t = TableName::parse("t", false).expect("valid");
        let guard = Guard::new("pos", &t, std::time::Duration::from_secs(60));
        let sql = move_sql(&schema(), &["id".into()], Some(&guard));
        assert!(
            sql.contains(
                r#"AND (o."pos" IS NULL OR f."pos" IS NULL OR o."pos" <= f."pos") ON CONFLICT"#
            ),
            "{sql}"
        );
        assert!(
            sql.contains(r#"SELECT n."id", o."memo", f."pos" FROM"#),
            "the moved row takes the change's position: {sql}"
        );
    }
}
