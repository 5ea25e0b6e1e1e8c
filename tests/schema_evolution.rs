//! Schema handling on every backend: `auto_create` makes the declared table,
//! `auto_evolve` adds a nullable column for a new field (quoting any name
//! safely), and a column a record does not carry gets its database default on
//! every path (insert, upsert, and PostgreSQL's `COPY`).

mod common;

use common::db::{Kind, TestDb};
use common::kafka::{self, TestProducer};
use common::{all_committed, pipeline_toml, unique, wait_for, Running};
use std::time::Duration;
use tidemill::ident::Quoting;

per_backend!(
    auto_create_creates_the_declared_table_and_rows_load,
    auto_evolve_adds_a_column_for_a_new_field_and_loads_its_values,
    auto_evolve_quotes_an_injection_shaped_field_name,
    absent_columns_get_their_default_on_insert,
    absent_columns_get_their_default_on_upsert,
    absent_columns_get_their_default_through_copy,
    a_field_that_appears_mid_run_adds_its_column_on_the_bulk_upsert_path,
    a_column_another_member_added_first_counts_as_added,
);

/// Sends `records` (key, JSON) to a new one-partition topic, runs a pipeline
/// over `table` with `extra` sink keys until every offset is committed.
async fn run(db: &TestDb, table: &str, extra: &str, records: &[(String, String)]) {
    let (topic, group) = (unique("schema"), unique("g"));
    kafka::create_topic(&topic, 1).await;
    let producer = TestProducer::new(&topic);
    for (key, value) in records {
        producer.send(Some(key), Some(value));
    }
    producer.flush();
    let running = Running::start(&pipeline_toml(&topic, &group, db.url(), table, extra)).await;
    wait_for("every offset committed", Duration::from_secs(60), || {
        all_committed(&group, &topic, 1)
    })
    .await;
    running.stop().await;
}

fn records(ids: std::ops::Range<i64>, json: impl Fn(i64) -> String) -> Vec<(String, String)> {
    ids.map(|id| (id.to_string(), json(id))).collect()
}

const DECLARED: &str = r#"mode = "upsert"
key_columns = ["id"]
auto_create = true
[pipelines.p.sink.schema]
columns = [
  { name = "id", type = "bigint", nullable = false },
  { name = "name", type = "varchar(40)" },
  { name = "qty", type = "int" },
  { name = "price", type = "numeric(10,2)" },
  { name = "ok", type = "bool" },
  { name = "body", type = "text" },
]
primary_key = ["id"]"#;

async fn auto_create_creates_the_declared_table_and_rows_load(kind: Kind) {
    let db = TestDb::new(kind).await;
    let batch = records(0..200, |id| {
        format!(r#"{{"id":{id},"name":"n{id}","qty":{id},"price":1.25,"ok":true,"body":"b"}}"#)
    });
    run(&db, "made", DECLARED, &batch).await;
    assert_eq!(db.scalar("SELECT count(*) FROM made").await, 200);
    assert_eq!(db.scalar("SELECT sum(qty) FROM made").await, 199 * 100);
    assert_eq!(
        db.scalar("SELECT count(*) FROM made WHERE name = 'n7' AND price = 1.25 AND body = 'b'")
            .await,
        1
    );
    // Started again, the table exists: it is used as it is.
    let more = records(200..210, |id| format!(r#"{{"id":{id},"qty":1}}"#));
    run(&db, "made", DECLARED, &more).await;
    assert_eq!(db.scalar("SELECT count(*) FROM made").await, 210);
}

async fn auto_evolve_adds_a_column_for_a_new_field_and_loads_its_values(kind: Kind) {
    let db = TestDb::new(kind).await;
    db.exec("CREATE TABLE ev (id BIGINT PRIMARY KEY, v BIGINT, note VARCHAR(20) DEFAULT 'dflt')")
        .await;
    let extra = "auto_evolve = true";
    run(
        &db,
        "ev",
        extra,
        &records(0..50, |id| format!(r#"{{"id":{id},"v":1}}"#)),
    )
    .await;
    // New fields of every inferred kind; `note` absent from every record.
    let evolved = records(50..150, |id| {
        format!(
            r#"{{"id":{id},"v":1,"n":{id},"score":{}.5,"flag":true,"label":"x{id}","doc":{{"k":[1,2]}},"nothing":null}}"#,
            id % 10
        )
    });
    run(&db, "ev", extra, &evolved).await;

    assert_eq!(db.scalar("SELECT count(*) FROM ev").await, 150);
    assert_eq!(
        db.scalar("SELECT sum(n) FROM ev").await,
        (50..150).sum::<i64>()
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM ev WHERE n IS NULL AND score IS NULL AND label IS NULL AND flag IS NULL AND doc IS NULL")
            .await,
        50,
        "the rows loaded before keep NULL in the new columns"
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM ev WHERE label = 'x60' AND score = 0.5")
            .await,
        1
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM ev WHERE note = 'dflt'")
            .await,
        150,
        "a field missing from every record gets the column default"
    );
    assert_eq!(
        db.try_scalar("SELECT count(nothing) FROM ev").await,
        None,
        "a field that is only ever null adds no column"
    );
}

/// Quotes, backticks, a backslash, `;` and `--` in a new field's name.
const FIELD: &str = r#"f"q'b`\; DROP TABLE victim; --"#;

async fn auto_evolve_quotes_an_injection_shaped_field_name(kind: Kind) {
    let db = TestDb::new(kind).await;
    db.exec("CREATE TABLE victim (id BIGINT PRIMARY KEY)").await;
    db.exec("INSERT INTO victim (id) VALUES (1)").await;
    db.exec("CREATE TABLE target (id BIGINT PRIMARY KEY)").await;
    let batch = records(0..20, |id| {
        serde_json::json!({ "id": id, FIELD: format!("'); DROP TABLE victim; -- {id}") })
            .to_string()
    });
    run(&db, "target", "auto_evolve = true", &batch).await;

    let q = match kind {
        Kind::MariaDb => Quoting::Backtick,
        Kind::Postgres | Kind::Sqlite => Quoting::Ansi,
    };
    let column = q.quote(FIELD);
    assert_eq!(
        db.scalar(&format!("SELECT count({column}) FROM target"))
            .await,
        20,
        "the column exists under exactly that name and holds every value"
    );
    assert_eq!(
        db.scalar(&format!(
            "SELECT count(*) FROM target WHERE {column} = '''); DROP TABLE victim; -- 7'"
        ))
        .await,
        1,
        "values loaded verbatim"
    );
    assert_eq!(db.scalar("SELECT count(*) FROM victim").await, 1);
}

const DEFAULTS_TABLE: &str =
    "CREATE TABLE d (id BIGINT PRIMARY KEY, v BIGINT, note VARCHAR(20) DEFAULT 'dflt', n BIGINT DEFAULT 7)";

/// In one batch, rows that carry `note` and rows that do not: the latter get
/// the default, not NULL.
fn mixed(ids: std::ops::Range<i64>) -> Vec<(String, String)> {
    records(ids, |id| match id % 3 {
        0 => format!(r#"{{"id":{id},"v":1,"note":"given"}}"#),
        1 => format!(r#"{{"id":{id},"v":1}}"#),
        _ => format!(r#"{{"id":{id},"v":1,"note":null,"n":1}}"#),
    })
}

async fn check_defaults(db: &TestDb, total: i64) {
    let third = |r: i64| (0..total).filter(|id| id % 3 == r).count() as i64;
    assert_eq!(db.scalar("SELECT count(*) FROM d").await, total);
    assert_eq!(
        db.scalar("SELECT count(*) FROM d WHERE note = 'given' AND n = 7")
            .await,
        third(0)
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM d WHERE note = 'dflt' AND n = 7")
            .await,
        third(1),
        "absent fields get the column default"
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM d WHERE note IS NULL AND n = 1")
            .await,
        third(2),
        "an explicit null stays NULL"
    );
}

async fn absent_columns_get_their_default_on_insert(kind: Kind) {
    let db = TestDb::new(kind).await;
    db.exec(DEFAULTS_TABLE).await;
    run(&db, "d", "copy_threshold = 0", &mixed(0..300)).await;
    check_defaults(&db, 300).await;
}

/// Upsert: a new row gets the defaults; an existing row keeps the values of
/// the columns the record does not carry.
async fn absent_columns_get_their_default_on_upsert(kind: Kind) {
    upsert_defaults(kind, "copy_threshold = 0").await;
}

/// PostgreSQL's bulk path (every batch of a row or more through `COPY`), for
/// insert and upsert; the other backends run their only path again.
async fn absent_columns_get_their_default_through_copy(kind: Kind) {
    let db = TestDb::new(kind).await;
    db.exec(DEFAULTS_TABLE).await;
    run(&db, "d", "copy_threshold = 1", &mixed(0..300)).await;
    check_defaults(&db, 300).await;
    upsert_defaults(kind, "copy_threshold = 1").await;
}

async fn upsert_defaults(kind: Kind, extra: &str) {
    let db = TestDb::new(kind).await;
    db.exec(DEFAULTS_TABLE).await;
    let extra = format!("mode = \"upsert\"\nkey_columns = [\"id\"]\n{extra}");
    run(&db, "d", &extra, &mixed(0..300)).await;
    check_defaults(&db, 300).await;
    // Again for every id, now without `note` or `n`: existing rows keep theirs.
    run(
        &db,
        "d",
        &extra,
        &records(0..300, |id| format!(r#"{{"id":{id},"v":2}}"#)),
    )
    .await;
    check_defaults(&db, 300).await;
    assert_eq!(db.scalar("SELECT sum(v) FROM d").await, 600);
}

/// One run: rows load (PostgreSQL: upsert through `COPY` and its staging
/// table), then a new field appears; its column is added and the staging
/// table made again, and loading goes on.
async fn a_field_that_appears_mid_run_adds_its_column_on_the_bulk_upsert_path(kind: Kind) {
    let (topic, group) = (unique("midrun"), unique("g"));
    kafka::create_topic(&topic, 1).await;
    let db = TestDb::new(kind).await;
    db.exec("CREATE TABLE m (id BIGINT PRIMARY KEY, v BIGINT)")
        .await;
    let producer = TestProducer::new(&topic);
    let extra = "mode = \"upsert\"\nkey_columns = [\"id\"]\nauto_evolve = true\ncopy_threshold = 1";
    let running = Running::start(&pipeline_toml(&topic, &group, db.url(), "m", extra)).await;
    for id in 0..100 {
        producer.send(
            Some(&id.to_string()),
            Some(&format!(r#"{{"id":{id},"v":1}}"#)),
        );
    }
    producer.flush();
    wait_for("the first rows", Duration::from_secs(60), || async {
        db.try_scalar("SELECT count(*) FROM m").await == Some(100)
    })
    .await;
    for id in 50..150 {
        producer.send(
            Some(&id.to_string()),
            Some(&format!(r#"{{"id":{id},"v":2,"added":{id}}}"#)),
        );
    }
    producer.flush();
    wait_for("every offset committed", Duration::from_secs(60), || {
        all_committed(&group, &topic, 1)
    })
    .await;
    running.stop().await;
    assert_eq!(db.scalar("SELECT count(*) FROM m").await, 150);
    assert_eq!(db.scalar("SELECT count(added) FROM m").await, 100);
    assert_eq!(
        db.scalar("SELECT sum(added) FROM m").await,
        (50..150).sum::<i64>()
    );
    assert_eq!(db.scalar("SELECT sum(v) FROM m").await, 50 + 100 * 2);
}

/// The PostgreSQL scenarios above go through `COPY` when they ask for it:
/// rows of two field sets give two parts, each taking the bulk path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_of_different_fields_each_take_copy_on_postgres() {
    use tidemill::db::postgres::PostgresSink;
    use tidemill::sink::prepare;
    let db = TestDb::new(Kind::Postgres).await;
    db.exec(DEFAULTS_TABLE).await;
    let toml = pipeline_toml(
        "t",
        "g",
        db.url(),
        "d",
        "copy_threshold = 1\nmode = \"upsert\"\nkey_columns = [\"id\"]",
    );
    let settings = tidemill::check::from_toml(&toml).expect("valid");
    let cfg = &settings.pipelines["p"].sink;
    let mut sink = PostgresSink::open(cfg).await.expect("open");
    let rows: Vec<tidemill::model::Row> = mixed(0..30)
        .into_iter()
        .map(|(_, json)| serde_json::from_str(&json).expect("object"))
        .collect();
    let prepared = prepare(
        tidemill::sink::Sink::schema(&sink),
        cfg.mode,
        &cfg.key_columns,
        &rows,
    )
    .expect("prepare");
    assert_eq!(prepared.parts.len(), 3, "three field sets");
    assert!(sink.takes_copy(&prepared));
}

/// Two members read the schema, then both add the same column: the second
/// finds it there (PostgreSQL and MariaDB by `IF NOT EXISTS`, SQLite by its
/// "duplicate column" error) and carries on with the column in its schema.
async fn a_column_another_member_added_first_counts_as_added(kind: Kind) {
    use tidemill::sink::{ddl::Inferred, Sink};
    async fn add(sink: &mut Box<dyn Sink>, fields: &[(String, Inferred)]) {
        sink.add_columns(fields)
            .await
            .expect("adding a column another member added is success");
    }
    let db = TestDb::new(kind).await;
    db.exec("CREATE TABLE race (id BIGINT PRIMARY KEY)").await;
    let toml = pipeline_toml("t", "g", db.url(), "race", "auto_evolve = true");
    let settings = tidemill::check::from_toml(&toml).expect("valid");
    let cfg = &settings.pipelines["p"].sink;
    let mut first = tidemill::db::open(cfg).await.expect("open");
    let mut second = tidemill::db::open(cfg).await.expect("open");
    let fields = vec![("late_field".to_string(), Inferred::Text)];
    add(&mut first, &fields).await;
    add(&mut second, &fields).await;
    assert!(second.schema().column("late_field").is_some());
    db.exec("INSERT INTO race (id, late_field) VALUES (1, 'x')")
        .await;
    assert_eq!(db.scalar("SELECT count(late_field) FROM race").await, 1);
}
