//! PostgreSQL's bulk path: binary `COPY` (and `COPY` into a staging table for
//! upsert) loads exactly what the statement path loads, value for value; a
//! batch it cannot encode falls back; a refused value is a data error naming
//! its column; a trial through `COPY` leaves nothing behind.

mod common;

use common::db::TestDb;
use common::pipeline_toml;
use serde_json::{json, Value};
use tidemill::config::{SinkConfig, SinkMode};
use tidemill::db::postgres::PostgresSink;
use tidemill::model::Row;
use tidemill::sink::{prepare, RetryClass, Sink};

const COLUMNS: &str = "(id BIGINT PRIMARY KEY, i2 SMALLINT, i4 INT, f4 REAL, f8 DOUBLE PRECISION, \
     n NUMERIC(12,2), nu NUMERIC, t TEXT, vc VARCHAR(10), c CHAR(3), b BOOLEAN, tz TIMESTAMPTZ, \
     ts TIMESTAMP(3), d DATE, u UUID, j JSON, jb JSONB, by BYTEA, nn INT NOT NULL DEFAULT 7)";

fn sink_cfg(url: &str, table: &str, mode: SinkMode, copy_threshold: usize) -> SinkConfig {
    let extra = format!(
        "copy_threshold = {copy_threshold}\nkey_columns = [\"id\"]\nmode = \"{}\"",
        if mode == SinkMode::Upsert {
            "upsert"
        } else {
            "insert"
        }
    );
    let text = pipeline_toml("t", "g", url, table, &extra);
    tidemill::check::from_toml(&text).expect("config").pipelines["p"]
        .sink
        .clone()
}

async fn open(db: &TestDb, table: &str, mode: SinkMode, copy: usize) -> PostgresSink {
    PostgresSink::open(&sink_cfg(db.url(), table, mode, copy))
        .await
        .expect("a PostgreSQL sink")
}

fn rows(values: Vec<Value>) -> Vec<Row> {
    values
        .into_iter()
        .map(|v| v.as_object().expect("object").clone())
        .collect()
}

fn typed_rows(version: i64) -> Vec<Row> {
    rows(vec![
        json!({"id": 1, "i2": -32768, "i4": 2147483647, "f4": 0.1, "f8": 1e300, "n": 12.5, "nu": "-0.000123e2",
               "t": "héllo ✓", "vc": "ten chars!", "c": "ab", "b": true, "tz": "2026-11-23T12:34:56.789012+05:30",
               "ts": "2026-11-23 12:34:56.5Z", "d": "2024-02-29", "u": "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
               "j": {"k": [1, 2.5, null]}, "jb": "a string", "by": "\\x00ff10", "nn": version}),
        json!({"id": 2, "n": "-1234567890.12", "nu": 1e-7, "f4": -3.4e38, "tz": "1970-01-01T00:00:00Z",
               "d": "0001-01-01", "jb": [true, {"x": null}], "j": 3, "nn": version + 1}),
        json!({"id": 3, "i2": null, "t": "", "b": false, "nu": 123456789012345678901234567890_u128.to_string(),
               "ts": "1999-12-31T23:59:59.999", "nn": version + 2}),
        json!({"id": 4, "nu": 0, "n": 0.005, "f8": -0.0, "nn": version + 3}),
    ])
}

async fn dump(db: &TestDb, table: &str) -> Vec<String> {
    let TestDb::Postgres { pool, .. } = db else {
        panic!("PostgreSQL")
    };
    sqlx::query_scalar(&format!(
        "SELECT row_to_json(x)::text FROM {table} x ORDER BY id"
    ))
    .fetch_all(pool)
    .await
    .expect("dump")
}

/// Writes `rows`; returns whether they went through `COPY`.
async fn load(sink: &mut PostgresSink, mode: SinkMode, rows: &[Row]) -> bool {
    let prepared = prepare(sink.schema(), mode, &["id".into()], rows).expect("prepare");
    let copied = sink.takes_copy(&prepared);
    sink.write(&prepared, None, None).await.expect("write");
    copied
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_loads_exactly_what_the_statement_path_loads() {
    let db = TestDb::postgres().await;
    for mode in [SinkMode::Insert, SinkMode::Upsert] {
        db.exec("DROP TABLE IF EXISTS via_copy, via_stmt").await;
        db.exec(&format!("CREATE TABLE via_copy {COLUMNS}")).await;
        db.exec(&format!("CREATE TABLE via_stmt {COLUMNS}")).await;
        let mut copy = open(&db, "via_copy", mode, 1).await;
        let mut stmt = open(&db, "via_stmt", mode, 0).await;
        assert!(load(&mut copy, mode, &typed_rows(10)).await, "COPY used");
        assert!(!load(&mut stmt, mode, &typed_rows(10)).await);
        if mode == SinkMode::Upsert {
            // Partial rows update only the columns they carry.
            let update = rows(vec![
                json!({"id": 1, "t": "new"}),
                json!({"id": 5, "t": "ins"}),
            ]);
            assert!(load(&mut copy, mode, &update).await);
            load(&mut stmt, mode, &update).await;
        }
        // A batch the encoder cannot take (an integer as a string) falls back.
        let fallback = rows(vec![json!({"id": 9, "i4": "42", "t": 5, "nn": 1})]);
        assert!(!load(&mut copy, mode, &fallback).await, "statement path");
        load(&mut stmt, mode, &fallback).await;
        let (a, b) = (dump(&db, "via_copy").await, dump(&db, "via_stmt").await);
        assert_eq!(a, b, "{mode:?}");
        assert_eq!(a.len(), if mode == SinkMode::Upsert { 6 } else { 5 });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_copy_refuses_is_a_data_error_naming_its_column_and_trials_leave_nothing() {
    let db = TestDb::postgres().await;
    db.exec(&format!("CREATE TABLE t {COLUMNS}")).await;
    for mode in [SinkMode::Insert, SinkMode::Upsert] {
        let mut sink = open(&db, "t", mode, 1).await;
        let good = rows(vec![json!({"id": 1, "vc": "fits"})]);
        let prepared = prepare(sink.schema(), mode, &["id".into()], &good).expect("prepare");
        sink.trial(&prepared)
            .await
            .expect("a trial that would pass");
        assert_eq!(db.scalar("SELECT count(*) FROM t").await, 0, "rolled back");

        let bad = rows(vec![
            json!({"id": 1, "vc": "fits"}),
            json!({"id": 2, "vc": "eleven chars"}),
        ]);
        let prepared = prepare(sink.schema(), mode, &["id".into()], &bad).expect("prepare");
        let err = sink
            .write(&prepared, None, None)
            .await
            .expect_err("too long");
        assert_eq!(err.class(sink.dialect()), RetryClass::Data, "{err}");
        assert!(err.to_string().contains("column vc"), "{err}");
        assert_eq!(db.scalar("SELECT count(*) FROM t").await, 0);
    }
}
