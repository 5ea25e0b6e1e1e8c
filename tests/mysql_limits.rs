//! MySQL/MariaDB statement limits: a batch bigger than the server's
//! `max_allowed_packet`, or with more than 65,535 values, is split into
//! several statements in the same transaction and loads whole; and a value
//! that does not fit is refused rather than truncated (strict mode).

mod common;

use common::db::TestDb;
use common::pipeline_toml;
use serde_json::json;
use tidemill::config::SinkMode;
use tidemill::model::Row;
use tidemill::sink::{prepare, RetryClass, Sink};

async fn open(db: &TestDb, table: &str) -> tidemill::db::mysql::MySqlSink {
    let text = pipeline_toml("t", "g", db.url(), table, "");
    let cfg = tidemill::check::from_toml(&text).expect("config").pipelines["p"]
        .sink
        .clone();
    tidemill::db::mysql::MySqlSink::open(&cfg)
        .await
        .expect("a MySQL sink")
}

fn row(v: serde_json::Value) -> Row {
    v.as_object().expect("object").clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_over_max_allowed_packet_loads_in_several_statements() {
    let db = TestDb::mariadb().await;
    let packet = db.scalar("SELECT @@max_allowed_packet").await;
    db.exec("CREATE TABLE big (id BIGINT PRIMARY KEY, doc LONGTEXT)")
        .await;
    let mut sink = open(&db, "big").await;
    let doc = "x".repeat(1 << 20);
    let n = 2 * packet / (1 << 20) + 3; // well over one packet in total
    let rows: Vec<Row> = (0..n)
        .map(|id| row(json!({"id": id, "doc": doc})))
        .collect();
    let prepared = prepare(sink.schema(), SinkMode::Insert, &[], &rows).expect("prepare");
    sink.write(&prepared, None, None).await.expect("loads");
    assert_eq!(db.scalar("SELECT count(*) FROM big").await, n);
    assert_eq!(
        db.scalar("SELECT sum(length(doc)) FROM big").await,
        n * (1 << 20)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_over_65535_placeholders_loads_in_several_statements() {
    let db = TestDb::mariadb().await;
    let columns: Vec<String> = (0..20).map(|i| format!("c{i} INT")).collect();
    db.exec(&format!(
        "CREATE TABLE wide (id INT, {})",
        columns.join(", ")
    ))
    .await;
    let mut sink = open(&db, "wide").await;
    let rows: Vec<Row> = (0..5000)
        .map(|id| {
            let mut r = row(json!({ "id": id }));
            for c in 0..20 {
                r.insert(format!("c{c}"), json!(c));
            }
            r
        })
        .collect();
    let prepared = prepare(sink.schema(), SinkMode::Insert, &[], &rows).expect("prepare");
    sink.write(&prepared, None, None).await.expect("loads");
    assert_eq!(db.scalar("SELECT count(*) FROM wide").await, 5000);
    assert_eq!(db.scalar("SELECT sum(c19) FROM wide").await, 5000 * 19);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_that_do_not_fit_are_refused_not_truncated() {
    let db = TestDb::mariadb().await;
    // A non-transactional engine: only STRICT_ALL_TABLES (not the default
    // STRICT_TRANS_TABLES) refuses a bad value in the second row of a statement.
    db.exec("CREATE TABLE small (id INT, name VARCHAR(3), n TINYINT) ENGINE = MyISAM")
        .await;
    let mut sink = open(&db, "small").await;
    for bad in [
        json!({"id": 2, "name": "toolong"}),
        json!({"id": 2, "n": 300}),
        json!({"id": 2, "n": "abc"}),
    ] {
        let rows = vec![
            row(json!({"id": 1, "name": "ok", "n": 1})),
            row(bad.clone()),
        ];
        let prepared = prepare(sink.schema(), SinkMode::Insert, &[], &rows).expect("prepare");
        let err = sink.trial(&prepared).await.expect_err("refused");
        assert_eq!(err.class(sink.dialect()), RetryClass::Data, "{bad}: {err}");
    }
}
