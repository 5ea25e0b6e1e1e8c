//! SQL injection through names and values, on every backend: a table and a
//! column whose names hold quotes, backticks, semicolons and `--`, fed values
//! that are SQL fragments. Everything is loaded verbatim and nothing else in
//! the database is touched. Names the validator cannot accept are refused
//! with the offending key named.

mod common;

use common::db::{Kind, TestDb};
use common::kafka::{self, TestProducer};
use common::{all_committed, pipeline_toml, unique, wait_for, Running};
use std::time::Duration;
use tidemill::config::ConfigError;
use tidemill::ident::Quoting;

per_backend!(crafted_names_and_values_are_loaded_verbatim_and_touch_nothing_else);

const TABLE: &str = r#"t"q'b`s; DROP TABLE victim; --"#;
const COLUMN: &str = r#"c"q'b`\; DELETE FROM victim --"#;
const VALUES: [&str; 4] = [
    "'); DROP TABLE victim; --",
    r#""); DROP TABLE victim; --"#,
    "`); DROP TABLE victim; --",
    "x' OR '1'='1",
];

fn dialect(kind: Kind) -> Quoting {
    match kind {
        Kind::MariaDb => Quoting::Backtick,
        Kind::Postgres | Kind::Sqlite => Quoting::Ansi,
    }
}

/// A TOML basic string's content for `text`.
fn toml_escape(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// An SQL string literal (no backslashes in the test values, so this is
/// the same on every backend).
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

async fn crafted_names_and_values_are_loaded_verbatim_and_touch_nothing_else(kind: Kind) {
    let (topic, group) = (unique("inject"), unique("g"));
    kafka::create_topic(&topic, 1).await;
    let db = TestDb::new(kind).await;
    let q = dialect(kind);
    let (t, c) = (q.quote(TABLE), q.quote(COLUMN));
    db.exec("CREATE TABLE victim (id BIGINT PRIMARY KEY)").await;
    db.exec("INSERT INTO victim (id) VALUES (1)").await;
    db.exec(&format!(
        "CREATE TABLE {t} (id BIGINT PRIMARY KEY, {c} VARCHAR(100))"
    ))
    .await;

    let producer = TestProducer::new(&topic);
    for round in 0..2 {
        for (id, value) in VALUES.iter().enumerate() {
            let v = if round == 0 { "first" } else { value };
            let record = serde_json::json!({ "id": id, COLUMN: v, "--": "ignored" });
            producer.send(Some(&id.to_string()), Some(&record.to_string()));
        }
    }
    producer.flush();

    let extra = "mode = \"upsert\"\nkey_columns = [\"id\"]";
    let toml = pipeline_toml(&topic, &group, db.url(), &toml_escape(TABLE), extra);
    let running = Running::start(&toml).await;
    wait_for("every offset committed", Duration::from_secs(60), || {
        all_committed(&group, &topic, 1)
    })
    .await;
    running.stop().await;

    assert_eq!(
        db.scalar(&format!("SELECT count(*) FROM {t}")).await,
        VALUES.len() as i64
    );
    for (id, value) in VALUES.iter().enumerate() {
        let sql = format!(
            "SELECT count(*) FROM {t} WHERE id = {id} AND {c} = {}",
            literal(value)
        );
        assert_eq!(db.scalar(&sql).await, 1, "{value} loaded verbatim");
    }
    assert_eq!(
        db.scalar("SELECT count(*) FROM victim").await,
        1,
        "the other table untouched"
    );
}

fn problems(table: &str, key_columns: &str) -> Vec<String> {
    let extra = format!("key_columns = {key_columns}\nmode = \"upsert\"");
    let toml = pipeline_toml(
        "t",
        "g",
        "mysql://u:p@127.0.0.1/db",
        &toml_escape(table),
        &extra,
    );
    match tidemill::check::from_toml(&toml) {
        Err(ConfigError::Invalid(problems)) => problems.iter().map(|p| p.to_string()).collect(),
        other => panic!("expected validation problems, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn names_the_validator_refuses_are_reported_with_their_key() {
    let control = problems("a\nb", r#"["id"]"#);
    assert!(
        control
            .iter()
            .any(|p| p.starts_with("pipelines.p.sink.table:") && p.contains("control")),
        "{control:?}"
    );
    let long = problems(&"x".repeat(64), r#"["id"]"#);
    assert!(
        long.iter()
            .any(|p| p.starts_with("pipelines.p.sink.table:") && p.contains("longer than 63")),
        "{long:?}"
    );
    let parts = problems("a.b.c", r#"["", "k\u0000"]"#);
    assert!(
        parts
            .iter()
            .any(|p| p.starts_with("pipelines.p.sink.table:") && p.contains("more than one")),
        "{parts:?}"
    );
    let empty = parts
        .iter()
        .filter(|p| p.starts_with("pipelines.p.sink.key_columns:"))
        .count();
    assert_eq!(
        empty, 2,
        "the empty and the control-character key: {parts:?}"
    );
}
