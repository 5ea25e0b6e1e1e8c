//! The JSON → column-type mapping end to end: one table with a column per type
//! family; good values load exactly (read back and compared), and each value
//! that does not fit its column is dead-lettered with the column and the
//! reason while the rest of the batch loads.

mod common;

use common::db::{Kind, TestDb};
use common::kafka::{self, TestProducer};
use common::{all_committed, pipeline_toml, unique, wait_for, Running};
use serde_json::{json, Value};
use sqlx::Row as _;
use std::time::Duration;
use tidemill::db;
use tidemill::observe::stats::Stats;
use tidemill::sink::types::RowTypes;
use tidemill::sink::{prepare, Sink as _};

per_backend!(good_values_load_exactly_and_each_unfit_value_is_dead_lettered_with_its_column);

async fn good_values_load_exactly_and_each_unfit_value_is_dead_lettered_with_its_column(
    kind: Kind,
) {
    scenario(kind, "").await
}

/// The same records through PostgreSQL's binary `COPY` (every batch qualifies:
/// no record carries the array column, which only the statement path loads).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_postgres_copy_the_same_values_load_and_the_same_ones_are_refused() {
    scenario(Kind::Postgres, "copy_threshold = 1").await
}

/// An override for a column the table lacks, or one that is no timestamp,
/// stops the sink from opening and names the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timestamp_override_for_a_missing_or_untimed_column_fails_at_open() {
    let db = TestDb::new(Kind::Sqlite).await;
    db.exec(ddl(Kind::Sqlite)).await;
    for (column, expected) in [
        ("nope", "has no column `nope`"),
        ("code", "not a timestamp"),
    ] {
        let extra =
            format!("\n[pipelines.p.sink.columns.{column}]\ntimestamp_format = \"epoch_s\"\n");
        let toml = pipeline_toml("t", "g", db.url(), "typed", &extra);
        let cfg = tidemill::check::from_toml(&toml).expect("config").pipelines["p"]
            .sink
            .clone();
        let err = match db::open(&cfg).await {
            Ok(_) => panic!("an override of `{column}` must not open"),
            Err(e) => e.to_string(),
        };
        assert!(
            err.contains(&format!("sink.columns.{column}")) && err.contains(expected),
            "{err}"
        );
    }
}

fn ddl(kind: Kind) -> &'static str {
    match kind {
        Kind::Postgres => {
            "CREATE TABLE typed (id BIGINT PRIMARY KEY, small SMALLINT, n INTEGER, \
            amount NUMERIC(10,4), ratio DOUBLE PRECISION, flag BOOLEAN, code VARCHAR(3), \
            at TIMESTAMP WITH TIME ZONE, at_ms TIMESTAMP WITH TIME ZONE, day DATE, uid UUID, \
            doc JSONB, bin BYTEA, tags INTEGER[])"
        }
        Kind::MariaDb => {
            "CREATE TABLE typed (id BIGINT PRIMARY KEY, small TINYINT, n INT, \
            amount DECIMAL(10,4), ratio DOUBLE, flag BOOLEAN, code VARCHAR(3), at DATETIME(6), \
            at_ms DATETIME(6), day DATE, uid UUID, doc JSON, bin VARBINARY(16))"
        }
        Kind::Sqlite => {
            "CREATE TABLE typed (id INTEGER PRIMARY KEY, small SMALLINT, n INTEGER, \
            amount NUMERIC(10,4), ratio REAL, flag BOOLEAN, code VARCHAR(3), at TIMESTAMP, \
            at_ms TIMESTAMP, day DATE, uid UUID, doc JSON, bin BLOB)"
        }
    }
}

/// Every column as text, in one form per backend: timestamps in UTC as
/// `YYYY-MM-DDTHH:MM:SS.ffffff`, bytes as lowercase hex, arrays (PostgreSQL) as `{…}`.
fn select(kind: Kind) -> &'static str {
    match kind {
        Kind::Postgres => {
            "SELECT id::text, small::text, n::text, amount::text, ratio::text, \
            CASE WHEN flag THEN '1' WHEN NOT flag THEN '0' END, code, \
            to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US'), \
            to_char(at_ms AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US'), day::text, \
            uid::text, doc::text, encode(bin, 'hex'), tags::text FROM typed ORDER BY id"
        }
        Kind::MariaDb => {
            "SELECT CAST(id AS CHAR), CAST(small AS CHAR), CAST(n AS CHAR), \
            CAST(amount AS CHAR), CAST(ratio AS CHAR), CAST(flag AS CHAR), code, \
            DATE_FORMAT(at, '%Y-%m-%dT%H:%i:%s.%f'), DATE_FORMAT(at_ms, '%Y-%m-%dT%H:%i:%s.%f'), \
            CAST(day AS CHAR), CAST(uid AS CHAR), CAST(doc AS CHAR), LOWER(HEX(bin)), \
            CAST(NULL AS CHAR) FROM typed ORDER BY id"
        }
        Kind::Sqlite => {
            "SELECT CAST(id AS TEXT), CAST(small AS TEXT), CAST(n AS TEXT), \
            CAST(amount AS TEXT), CAST(ratio AS TEXT), CAST(flag AS TEXT), code, \
            REPLACE(at, ' ', 'T'), REPLACE(at_ms, ' ', 'T'), day, uid, doc, \
            CASE WHEN typeof(bin) = 'blob' THEN lower(hex(bin)) END, NULL FROM typed ORDER BY id"
        }
    }
}

async fn rows(db: &TestDb, kind: Kind) -> Vec<Vec<Option<String>>> {
    let sql = select(kind);
    let text = |r: &dyn Fn(usize) -> Option<String>| (0..14).map(r).collect::<Vec<_>>();
    match db {
        TestDb::Postgres { pool, .. } => sqlx::query(sql)
            .fetch_all(pool)
            .await
            .expect("select")
            .iter()
            .map(|r| text(&|i| r.get(i)))
            .collect(),
        TestDb::MySql { pool, .. } => sqlx::query(sql)
            .fetch_all(pool)
            .await
            .expect("select")
            .iter()
            .map(|r| text(&|i| r.get(i)))
            .collect(),
        TestDb::Sqlite { pool, .. } => sqlx::query(sql)
            .fetch_all(pool)
            .await
            .expect("select")
            .iter()
            .map(|r| text(&|i| r.get(i)))
            .collect(),
    }
}

fn s(v: &str) -> Option<String> {
    Some(v.to_string())
}

/// The records that load, one value per column family in the first.
fn good_rows() -> [Value; 2] {
    [
        json!({"id": 1, "small": 7, "n": 42, "amount": 12345.6789, "ratio": 0.5, "flag": true,
               "code": "abc", "at": "2024-03-01T12:00:00.123456+02:00", "at_ms": 1_700_000_000_123_i64,
               "day": "2024-02-29", "uid": "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
               "doc": {"k": [1, 2]}, "bin": "3q2+7w=="}),
        json!({"id": 2, "amount": "-0.0001", "code": "äöü", "flag": false}),
    ]
}

/// The forms the mapping sends PostgreSQL are ones binary `COPY` encodes, so
/// the COPY variant above really loads through `COPY`, not the statement path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn converted_values_qualify_for_postgres_copy() {
    let db = TestDb::new(Kind::Postgres).await;
    db.exec(ddl(Kind::Postgres)).await;
    let extra =
        "copy_threshold = 1\n[pipelines.p.sink.columns.at_ms]\ntimestamp_format = \"epoch_ms\"\n";
    let toml = pipeline_toml("t", "g", db.url(), "typed", extra);
    let cfg = tidemill::check::from_toml(&toml).expect("config").pipelines["p"]
        .sink
        .clone();
    let mut sink = tidemill::db::postgres::PostgresSink::open(&cfg)
        .await
        .expect("a PostgreSQL sink");
    let types = RowTypes::new(sink.schema(), &cfg, sink.dialect().target());
    let rows: Vec<_> = good_rows()
        .into_iter()
        .map(|v| {
            let mut row = v.as_object().cloned().expect("an object");
            types.convert_row(&mut row).expect("a good row converts");
            row
        })
        .collect();
    let batch = prepare(sink.schema(), cfg.mode, &[], &rows).expect("prepared");
    assert!(
        sink.takes_copy(&batch),
        "{:?}",
        batch.parts.iter().map(|p| p.json()).collect::<Vec<_>>()
    );
}

async fn scenario(kind: Kind, sink_extra: &str) {
    let copy = !sink_extra.is_empty();
    let (topic, group, dlq) = (unique("types"), unique("g"), unique("dlq"));
    kafka::create_topic(&topic, 1).await;
    let db = TestDb::new(kind).await;
    db.exec(ddl(kind)).await;

    let mut good = good_rows();
    let too_small = if kind == Kind::MariaDb { 300 } else { 40_000 };
    // (record, column, part of the reason)
    let mut bad = vec![
        (json!({"id": 10, "n": 12.5}), "n", "has a fraction"),
        // `small` is a TINYINT on MariaDB, a SMALLINT elsewhere.
        (
            json!({"id": 11, "small": too_small}),
            "small",
            "out of range",
        ),
        (json!({"id": 12, "code": "toolong"}), "code", "7 characters"),
        (json!({"id": 13, "uid": "not-a-uuid"}), "uid", "not a UUID"),
        (json!({"id": 14, "bin": "not base64!"}), "bin", "base64"),
        (json!({"id": 15, "at": "yesterday"}), "at", "RFC 3339"),
        (
            json!({"id": 16, "amount": 1.23456}),
            "amount",
            "fractional digits",
        ),
        (
            json!({"id": 17, "at": 1_700_000_000}),
            "at",
            "timestamp_format",
        ),
    ];
    if kind == Kind::Postgres && !copy {
        good[0]["tags"] = json!([1, 2, 3]);
        bad.push((json!({"id": 18, "tags": [1, "x"]}), "tags", "element 1"));
    }
    let producer = TestProducer::new(&topic);
    for (i, record) in good.iter().enumerate() {
        producer.send(Some(&i.to_string()), Some(&record.to_string()));
        if let Some((record, ..)) = bad.get(i) {
            producer.send(Some("bad"), Some(&record.to_string()));
        }
    }
    for (record, ..) in bad.iter().skip(good.len()) {
        producer.send(Some("bad"), Some(&record.to_string()));
    }
    producer.flush();

    let extra = format!(
        "{sink_extra}\n[pipelines.p.sink.columns.at_ms]\ntimestamp_format = \"epoch_ms\"\n"
    );
    let toml = pipeline_toml(&topic, &group, db.url(), "typed", &extra)
        + &format!("\n[pipelines.p.dead_letter]\ntopic = \"{dlq}\"\n");
    let running = Running::start(&toml).await;
    wait_for("every offset committed", Duration::from_secs(60), || {
        all_committed(&group, &topic, 1)
    })
    .await;
    let dead_lettered = Stats::get(&running.stats.dead_lettered);
    running.stop().await;

    let loaded = rows(&db, kind).await;
    let tags = (kind == Kind::Postgres && !copy).then(|| "{1,2,3}".to_string());
    let doc_row1 = loaded.first().and_then(|r| r[11].clone());
    let mut expected_first = vec![
        s("1"),
        s("7"),
        s("42"),
        s("12345.6789"),
        s("0.5"),
        s("1"),
        s("abc"),
        s("2024-03-01T10:00:00.123456"),
        s("2023-11-14T22:13:20.123000"),
        s("2024-02-29"),
        s("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
        doc_row1.clone(),
        s("deadbeef"),
        tags,
    ];
    let doc: Value = serde_json::from_str(&doc_row1.unwrap_or_default()).expect("doc is JSON");
    assert_eq!(doc, json!({"k": [1, 2]}));
    if kind == Kind::Sqlite {
        expected_first[1] = s("7");
    }
    let none = || None::<String>;
    let expected_second = vec![
        s("2"),
        none(),
        none(),
        s("-0.0001"),
        none(),
        s("0"),
        s("äöü"),
        none(),
        none(),
        none(),
        none(),
        none(),
        none(),
        none(),
    ];
    assert_eq!(
        loaded,
        vec![expected_first, expected_second],
        "good rows exactly, no bad one"
    );

    let expected = bad.len();
    let letters = tokio::task::spawn_blocking(move || kafka::read_all(&dlq, expected))
        .await
        .expect("read dlq");
    assert_eq!(letters.len(), bad.len(), "{letters:#?}");
    assert_eq!(dead_lettered, bad.len() as u64);
    for (record, column, reason) in &bad {
        let bytes = record.to_string().into_bytes();
        let letter = letters
            .iter()
            .find(|l| l.value.as_deref() == Some(bytes.as_slice()))
            .unwrap_or_else(|| panic!("no letter for {record}"));
        assert_eq!(
            letter.header("tidemill.error.class"),
            Some("data"),
            "{letter:?}"
        );
        assert_eq!(
            letter.header("tidemill.error.column"),
            Some(*column),
            "{letter:?}"
        );
        let message = letter.header("tidemill.error.message").unwrap_or_default();
        assert!(
            message.contains(reason) && message.contains(&format!("`{column}`")),
            "{record}: `{message}` should name `{column}` and say `{reason}`"
        );
    }
}

/// Without a dead-letter topic a value that does not fit stops the pipeline,
/// naming the column; the record is neither loaded nor committed past.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_dead_letter_topic_an_unfit_value_stops_the_pipeline_naming_its_column() {
    let (topic, group) = (unique("types"), unique("g"));
    kafka::create_topic(&topic, 1).await;
    let db = TestDb::new(Kind::Sqlite).await;
    db.exec(ddl(Kind::Sqlite)).await;
    let producer = TestProducer::new(&topic);
    producer.send(Some("1"), Some(r#"{"id": 1, "n": 1}"#));
    producer.send(Some("2"), Some(r#"{"id": 2, "n": 12.5}"#));
    producer.flush();
    let running = Running::start(&pipeline_toml(&topic, &group, db.url(), "typed", "")).await;
    let stopped = tokio::time::timeout(Duration::from_secs(60), running.handle)
        .await
        .expect("the pipeline stops by itself")
        .expect("pipeline task");
    let err = stopped.expect_err("an unfit value is an error").to_string();
    assert!(
        err.contains("column `n`") && err.contains("has a fraction"),
        "{err}"
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM typed WHERE id = 2").await,
        0
    );
    // The unfit record is at offset 1: the checkpoint stops before it, and
    // covers exactly the rows loaded (none, if both records were one batch);
    // Kafka's commit never passes it.
    let checkpoint = db.checkpoint_next().await;
    assert!(checkpoint <= 1, "checkpoint past the record: {checkpoint}");
    assert_eq!(db.scalar("SELECT count(*) FROM typed").await, checkpoint);
    let committed = tokio::task::spawn_blocking(move || kafka::committed(&group, &topic, 1))
        .await
        .expect("committed offsets");
    assert!(committed[0] <= checkpoint, "{committed:?} vs {checkpoint}");
}
