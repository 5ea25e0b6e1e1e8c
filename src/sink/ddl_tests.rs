use super::*;
use crate::config::ColumnConfig;
use crate::db::mysql::dialect::{MARIADB, MYSQL};
use crate::db::postgres::dialect::DIALECT as PG;
use crate::db::sqlite::dialect::DIALECT as LITE;
use serde_json::json;

fn declared() -> SchemaConfig {
    let col = |name: &str, ty: &str, nullable| ColumnConfig {
        name: name.into(),
        data_type: ty.into(),
        nullable,
    };
    SchemaConfig {
        columns: vec![
            col("id", "bigint", false),
            col("a\"b", "numeric(12,2)", true),
        ],
        primary_key: vec!["id".into()],
    }
}

#[test]
fn create_table_maps_types_and_quotes_names_per_dialect() {
    let t = TableName::parse("s.t", false).expect("valid");
    assert_eq!(
        create_table_sql(&PG, &t, &declared()).expect("valid"),
        r#"CREATE TABLE IF NOT EXISTS "s"."t" ("id" bigint NOT NULL, "a""b" numeric(12,2), PRIMARY KEY ("id"))"#
    );
    assert_eq!(
        create_table_sql(&MYSQL, &t, &declared()).expect("valid"),
        "CREATE TABLE IF NOT EXISTS `s`.`t` (`id` BIGINT NOT NULL, `a\"b` DECIMAL(12,2), PRIMARY KEY (`id`))"
    );
}

#[test]
fn portable_types_parse_with_arguments_and_refuse_others() {
    assert_eq!(
        PortableType::parse(" VARCHAR(20) "),
        Ok(PortableType::Varchar(20))
    );
    assert_eq!(
        PortableType::parse("numeric(10, 3)"),
        Ok(PortableType::Numeric(Some((10, 3))))
    );
    assert!(PortableType::parse("numeric(3,4)").is_err());
    assert!(PortableType::parse("text; drop table x").is_err());
    assert_eq!(PG.declared_type(PortableType::Json), "jsonb");
    assert_eq!(LITE.declared_type(PortableType::Uuid), "TEXT");
}

#[test]
fn new_fields_infer_and_widen_kinds_and_skip_nulls() {
    let schema = TableSchema {
        table: TableName::parse("t", false).expect("valid"),
        columns: vec![],
        unique_keys: vec![],
    };
    let rows: Vec<Row> = [
        json!({"n": 1, "x": null, "s": "a", "o": {"k": 1}}),
        json!({"n": 1.5, "b": true, "s": 2}),
    ]
    .into_iter()
    .map(|v| v.as_object().expect("object").clone())
    .collect();
    let fields = new_fields(&schema, &rows);
    assert_eq!(
        fields,
        vec![
            ("n".into(), Inferred::Double),
            ("o".into(), Inferred::Json),
            ("s".into(), Inferred::Text),
            ("b".into(), Inferred::Bool),
        ]
    );
}

#[test]
fn add_column_uses_if_not_exists_where_the_dialect_has_it() {
    let t = TableName::parse("t", true).expect("valid");
    let sql = add_column_sql(&PG, &t, "x\"y", Inferred::Json).expect("ok");
    assert_eq!(
        sql,
        r#"ALTER TABLE "t" ADD COLUMN IF NOT EXISTS "x""y" jsonb"#
    );
    let sql = add_column_sql(&LITE, &t, "x", Inferred::Bool).expect("ok");
    assert_eq!(sql, r#"ALTER TABLE "t" ADD COLUMN "x" BOOLEAN"#);
    let sql = add_column_sql(&MARIADB, &t, "x", Inferred::Text).expect("ok");
    assert_eq!(sql, "ALTER TABLE `t` ADD COLUMN IF NOT EXISTS `x` LONGTEXT");
}
