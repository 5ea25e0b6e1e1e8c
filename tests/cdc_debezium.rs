//! Proven against real Debezium: the PostgreSQL connector (pgoutput, Kafka
//! Connect standalone from Maven Central's jars) captures a source table of
//! the test bed's PostgreSQL, and tidemill applies its stream — the JSON
//! converter with schemas on, and off — to each database. Snapshot, then
//! streaming inserts, updates, deletes, a primary-key change, an update that
//! leaves a TOASTed column unchanged, a multi-statement transaction; NUMERIC
//! of two precisions, timestamptz, bytea, jsonb. tidemill is SIGKILLed
//! mid-stream and Kafka Connect is stopped and restarted mid-stream, with
//! changes made while it is down; the target must end up equal to the
//! source, row for row and column for column. With the ordering guard on
//! (the schemas-on table), every streamed change sent again newest first
//! must leave it so.

mod common;

use common::connect::{Connect, Connector};
use common::db::{Kind, TestDb};
use common::process::{write_config, Tidemill};
use common::{kafka, unique, wait_for_showing};
use serde_json::Value;
use sqlx::PgPool;
use std::time::Duration;

per_backend!(a_real_debezium_stream_leaves_the_target_equal_to_the_source,);

/// The source table: every type the issue names, and a column stored out of
/// line (`STORAGE EXTERNAL`) so that an update leaving it unchanged sends
/// Debezium's placeholder instead of its value.
const SOURCE_TABLE: &str = "CREATE TABLE orders (id BIGINT PRIMARY KEY, customer_id BIGINT, \
     amount NUMERIC(12,2), big NUMERIC(38,10), placed TIMESTAMPTZ, payload BYTEA, doc JSONB, memo TEXT)";

/// `n` rows from `from`, each with a 6.4 kB memo (out of line).
fn rows(from: i64, n: i64) -> String {
    format!(
        "INSERT INTO orders SELECT g, g % 7, g * 1.25, ('12345678901234567890.' || lpad(g::text, 10, '0'))::numeric, \
         timestamptz '2026-01-01 00:00:00+00' + g * interval '1 hour 0.123456 second', decode(md5(g::text), 'hex'), \
         jsonb_build_object('g', g, 'tags', jsonb_build_array('a', g)), \
         (SELECT string_agg(md5(g::text || i::text), '') FROM generate_series(1, 200) i) \
         FROM generate_series({from}, {}) g",
        from + n - 1
    )
}

/// The changes streamed after the snapshot, in two halves (Kafka Connect is
/// stopped and restarted between them).
const STREAM_1: &[&str] = &[
    "UPDATE orders SET amount = amount + 100 WHERE id <= 5",
    "DELETE FROM orders WHERE id IN (6, 7)",
    "UPDATE orders SET id = 1000, memo = memo || '+' WHERE id = 8",
    // A key change leaving the out-of-line memo unchanged: PostgreSQL does
    // not send the memo, so Debezium's create of the new key lacks it.
    "UPDATE orders SET id = 2000 WHERE id = 14",
    "BEGIN; UPDATE orders SET doc = '{\"nested\": {\"x\": [1, 2.5, null]}}', big = -0.0000000001 WHERE id = 9; \
     DELETE FROM orders WHERE id = 10; UPDATE orders SET customer_id = NULL, payload = NULL WHERE id = 11; COMMIT",
];
/// The events the first half and the 10 inserts after it make: 5 updates,
/// 2 deletes and their tombstones, two key changes (delete, tombstone,
/// create), the transaction's update, delete, tombstone and update.
const STREAM_1_EVENTS: i64 = 5 + 4 + 3 + 3 + 4 + 10;

const STREAM_2: &[&str] = &[
    "UPDATE orders SET memo = repeat('z', 5000) WHERE id = 12",
    "UPDATE orders SET placed = timestamptz '1999-12-31 23:59:59.999999+00' WHERE id = 13",
    "DELETE FROM orders WHERE id = 31",
    "UPDATE orders SET amount = -amount WHERE id BETWEEN 32 AND 35",
];

/// The target table on each database. Without schemas Debezium sends a
/// jsonb value as its text, and nothing says it is JSON: the schemaless
/// stream's table keeps it in a text column.
fn target_table(kind: Kind, table: &str, schemas: bool) -> String {
    let sql = match kind {
        Kind::Postgres => SOURCE_TABLE.replace("orders", table),
        Kind::MariaDb => format!(
            "CREATE TABLE {table} (id BIGINT PRIMARY KEY, customer_id BIGINT, amount DECIMAL(12,2), \
             big DECIMAL(38,10), placed DATETIME(6), payload VARBINARY(64), doc JSON, memo LONGTEXT)"
        ),
        Kind::Sqlite => format!(
            "CREATE TABLE {table} (id BIGINT PRIMARY KEY, customer_id BIGINT, amount DECIMAL(12,2), \
             big TEXT, placed TIMESTAMP, payload BLOB, doc JSON, memo TEXT)"
        ),
    };
    if schemas {
        return sql;
    }
    sql.replace("doc JSONB", "doc TEXT")
        .replace("doc JSON", "doc TEXT")
}

/// One row per line, every column in one text form whatever the database:
/// cents, the decimal's digits, microseconds since the epoch, hex bytes, the
/// memo; the JSON document after a `§` (compared as JSON, not as text).
fn normalised(kind: Kind, table: &str) -> String {
    let n = "'~'";
    match kind {
        Kind::Postgres => format!(
            "SELECT concat_ws('|', id, coalesce(customer_id::text, {n}), coalesce((amount * 100)::bigint::text, {n}), \
             coalesce(big::text, {n}), coalesce((extract(epoch FROM placed) * 1000000)::bigint::text, {n}), \
             coalesce(encode(payload, 'hex'), {n}), coalesce(memo, {n})) || '§' || coalesce(doc::text, 'null') \
             FROM {table} ORDER BY id"
        ),
        Kind::MariaDb => format!(
            "SELECT CONVERT(CONCAT(CONCAT_WS('|', id, COALESCE(customer_id, {n}), COALESCE(CAST(amount * 100 AS SIGNED), {n}), \
             COALESCE(CAST(big AS CHAR), {n}), COALESCE(TIMESTAMPDIFF(MICROSECOND, '1970-01-01', placed), {n}), \
             COALESCE(LOWER(HEX(payload)), {n}), COALESCE(memo, {n})), '§', COALESCE(doc, 'null')) USING utf8mb4) \
             FROM {table} ORDER BY id"
        ),
        Kind::Sqlite => format!(
            "SELECT id || '|' || coalesce(customer_id, {n}) || '|' || coalesce(CAST(round(amount * 100) AS INTEGER), {n}) \
             || '|' || coalesce(big, {n}) || '|' || coalesce(unixepoch(substr(placed, 1, 19)) * 1000000 \
             + CAST(substr(substr(placed, 21) || '000000', 1, 6) AS INTEGER), {n}) || '|' || CASE WHEN payload IS NULL THEN {n} ELSE lower(hex(payload)) END \
             || '|' || coalesce(memo, {n}) || '§' || coalesce(doc, 'null') FROM {table} ORDER BY id"
        ),
    }
}

/// Rows as (columns, document) for comparison.
fn parse(lines: Vec<String>) -> Vec<(String, Value)> {
    lines
        .into_iter()
        .map(|l| {
            let (cols, doc) = l.split_once('§').unwrap_or((&l, "null"));
            let doc = serde_json::from_str(doc).unwrap_or(Value::String(doc.into()));
            (cols.to_string(), doc)
        })
        .collect()
}

/// The first rows that differ, for a failure's message.
fn differences(got: &[(String, Value)], want: &[(String, Value)]) -> String {
    let diff: Vec<String> = got
        .iter()
        .zip(want)
        .filter(|(g, w)| g != w)
        .take(3)
        .map(|(g, w)| {
            let short = |(cols, doc): &(String, Value)| {
                format!("{}… {doc}", cols.chars().take(110).collect::<String>())
            };
            format!("got  {}\nwant {}", short(g), short(w))
        })
        .collect();
    let ids = |rows: &[(String, Value)]| -> Vec<String> {
        rows.iter()
            .map(|(cols, _)| cols.split('|').next().unwrap_or_default().to_string())
            .collect()
    };
    format!(
        "ids {:?}\nwant {:?}\n{} rows (want {}); first differences:\n{}",
        ids(got),
        ids(want),
        got.len(),
        want.len(),
        diff.join("\n")
    )
}

async fn source_rows(source: &PgPool) -> Vec<(String, Value)> {
    let lines = sqlx::query_scalar(&normalised(Kind::Postgres, "orders"))
        .fetch_all(source)
        .await
        .expect("source rows");
    parse(lines)
}

/// Replication slots and source databases an earlier run of this binary
/// left behind (a failed test does not clean up): a slot keeps its WAL
/// forever, and the server has 20 of them. Names carry the process id, so
/// a concurrent test's own are never touched.
async fn drop_leftovers(admin: &PgPool) {
    let mine = format!("\\_{}\\_%", std::process::id());
    let slots: Vec<String> = sqlx::query_scalar(
        "SELECT slot_name::text FROM pg_replication_slots WHERE slot_name LIKE 'dbz\\_%' \
         AND slot_name NOT LIKE 'dbz\\_o%' || $1 AND NOT active",
    )
    .bind(&mine)
    .fetch_all(admin)
    .await
    .expect("slots");
    for slot in slots {
        let _ = sqlx::query("SELECT pg_drop_replication_slot($1)")
            .bind(slot)
            .execute(admin)
            .await;
    }
    let dbs: Vec<String> = sqlx::query_scalar(
        "SELECT datname::text FROM pg_database WHERE datname LIKE 'cdc\\_src\\_%' AND datname NOT LIKE 'cdc\\_src' || $1",
    )
    .bind(&mine)
    .fetch_all(admin)
    .await
    .expect("databases");
    for db in dbs {
        let _ = sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
            .execute(admin)
            .await;
    }
}

/// Whether each topic (one partition) holds at least `n` events.
async fn published(topics: &[String; 2], n: i64) -> bool {
    let topics = topics.clone();
    tokio::task::spawn_blocking(move || {
        topics
            .iter()
            .all(|t| kafka::high_watermarks(t, 1).first() >= Some(&n))
    })
    .await
    .expect("watermarks")
}

/// A fresh source database holding the snapshot's rows.
async fn source_db() -> (String, PgPool) {
    let name = unique("cdc_src");
    let admin = PgPool::connect(&common::db::admin_url())
        .await
        .expect("test PostgreSQL (make services-up)");
    drop_leftovers(&admin).await;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .expect("create the source database");
    let url = common::db::admin_url().replace("/postgres", &format!("/{name}"));
    let pool = PgPool::connect(&url).await.expect("source database");
    for sql in [
        SOURCE_TABLE,
        "ALTER TABLE orders ALTER COLUMN memo SET STORAGE EXTERNAL",
        &rows(1, 30),
    ] {
        sqlx::raw_sql(sql).execute(&pool).await.expect(sql);
    }
    (name, pool)
}

/// The tidemill config: one pipeline per converter setting, each applying
/// its topic to its own table (upsert by id, exactly-once).
fn config(group: &str, url: &str, topics: [(&str, &str); 2]) -> String {
    let mut toml = "[shutdown]\ngrace = \"10s\"\n".to_string();
    for (name, (topic, table)) in ["on", "off"].iter().zip(topics) {
        toml += &format!(
            "\n[pipelines.{name}]\ntopics = [\"{topic}\"]\ngroup_id = \"{group}_{name}\"\nformat = \"debezium\"\n\n\
             [pipelines.{name}.kafka]\nbrokers = \"{brokers}\"\n{group_lines}\n\n\
             [pipelines.{name}.sink]\nurl = \"{url}\"\ntable = \"{table}\"\nmode = \"upsert\"\nkey_columns = [\"id\"]\n\
             retry_initial = \"50ms\"\nretry_max = \"1s\"\n{guard}\n\
             [pipelines.{name}.batch]\nmax_rows = 7\nmax_linger = \"20ms\"\n",
            brokers = kafka::brokers(),
            group_lines = common::group_settings(),
            // The ordering guard on one of the two; its column added by auto_evolve.
            guard = if *name == "on" {
                "order_column = \"pos\"\nauto_evolve = true\n"
            } else {
                ""
            }
        );
    }
    toml
}

/// A topic holding `topic`'s streamed changes (not its snapshot reads: a
/// read has no order, and applies whenever it comes), newest first.
async fn replayed_newest_first(topic: &str) -> String {
    let replay = unique("dbz_replay");
    kafka::create_topic(&replay, 1).await;
    let (from, to) = (topic.to_string(), replay.clone());
    tokio::task::spawn_blocking(move || {
        let n = kafka::high_watermarks(&from, 1)[0];
        let records = kafka::read_all(&from, usize::try_from(n).expect("a count"));
        let producer = kafka::TestProducer::new(&to);
        let text =
            |b: &Option<Vec<u8>>| b.as_ref().map(|b| String::from_utf8_lossy(b).into_owned());
        for r in records.iter().rev() {
            let value = text(&r.value);
            if value.as_deref().is_some_and(|v| v.contains(r#""op":"r""#)) {
                continue;
            }
            producer.send(text(&r.key).as_deref(), value.as_deref());
        }
        producer.flush();
    })
    .await
    .expect("replay the stream");
    replay
}

/// One guarded pipeline (`p`) applying `topic` to `orders_on`.
fn replay_config(topic: &str, url: &str) -> String {
    format!(
        "[pipelines.p]\ntopics = [\"{topic}\"]\ngroup_id = \"{topic}_g\"\nformat = \"debezium\"\n\n\
         [pipelines.p.kafka]\nbrokers = \"{brokers}\"\n{group_lines}\n\n\
         [pipelines.p.sink]\nurl = \"{url}\"\ntable = \"orders_on\"\nmode = \"upsert\"\nkey_columns = [\"id\"]\n\
         order_column = \"pos\"\n",
        brokers = kafka::brokers(),
        group_lines = common::group_settings()
    )
}

async fn a_real_debezium_stream_leaves_the_target_equal_to_the_source(kind: Kind) {
    let (source_name, source) = source_db().await;
    let (on, off) = (unique("dbz_on"), unique("dbz_off"));
    let tables = "public.orders";
    let topics = [
        format!("{on}.public.orders"),
        format!("{off}.public.orders"),
    ];
    for t in &topics {
        kafka::create_topic(t, 1).await;
    }
    let mut connect = Connect::start(&[
        Connector::postgres(&on, &source_name, tables, true, &[]),
        // Without schemas a decimal cannot be read exactly from its bytes:
        // Debezium's documented choice for schemaless JSON is text.
        Connector::postgres(
            &off,
            &source_name,
            tables,
            false,
            &[("decimal.handling.mode", "string")],
        ),
    ]);
    let topics = [
        format!("{on}.public.orders"),
        format!("{off}.public.orders"),
    ];
    wait_for_showing(
        "Debezium's snapshot of 30 rows in both topics",
        Duration::from_secs(180),
        &|| connect.log_tail(),
        || published(&topics, 30),
    )
    .await;

    let db = TestDb::new(kind).await;
    db.exec(&target_table(kind, "orders_on", true)).await;
    db.exec(&target_table(kind, "orders_off", false)).await;
    let group = unique("g");
    let toml = config(
        &group,
        db.url(),
        [(&topics[0], "orders_on"), (&topics[1], "orders_off")],
    );
    let (_dir, path) = write_config(&toml);
    let mut tidemill = Tidemill::start(path.as_ref(), "first");

    // Streaming, while tidemill applies: first half, then tidemill is killed.
    for sql in STREAM_1 {
        sqlx::raw_sql(sql).execute(&source).await.expect(sql);
    }
    wait_for_showing(
        "tidemill applying the stream",
        Duration::from_secs(60),
        &|| tidemill.log_text(),
        || async {
            db.try_scalar("SELECT count(*) FROM orders_on")
                .await
                .unwrap_or(0)
                > 0
        },
    )
    .await;
    tidemill.kill();
    let first_log = tidemill.log_text();
    let tidemill = Tidemill::start(path.as_ref(), "second");

    // Kafka Connect restarted mid-stream, once it has published the first
    // half: changes made while it is down, and the rest, go through a new
    // worker resuming from the stored position.
    sqlx::raw_sql(&rows(31, 10))
        .execute(&source)
        .await
        .expect("insert");
    wait_for_showing(
        "the first half's change events in both topics",
        Duration::from_secs(60),
        &|| connect.log_tail(),
        || published(&topics, 30 + STREAM_1_EVENTS),
    )
    .await;
    connect.stop().await;
    sqlx::raw_sql(STREAM_2[0])
        .execute(&source)
        .await
        .expect("while Connect is down");
    connect.restart();
    for sql in &STREAM_2[1..] {
        sqlx::raw_sql(sql).execute(&source).await.expect(sql);
    }

    // Row 14 moved to 2000 with its out-of-line memo unchanged: PostgreSQL
    // did not send it, so the create lacks it; the row moved with it.
    let want = source_rows(&source).await;
    for table in ["orders_on", "orders_off"] {
        let last = std::cell::RefCell::new(String::new());
        wait_for_showing(
            &format!("{table} equal to the source"),
            Duration::from_secs(180),
            &|| {
                format!(
                    "{}\n--- tidemill, killed:\n{first_log}\n--- tidemill:\n{}\n--- connect:\n{}",
                    last.borrow(),
                    tidemill.log_text(),
                    connect.log_tail()
                )
            },
            || async {
                let got = parse(db.texts(&normalised(kind, table)).await);
                *last.borrow_mut() = differences(&got, &want);
                got == want
            },
        )
        .await;
    }
    // The restarted worker resumed from its stored position: the only
    // snapshot reads are the first snapshot's 30.
    let topic = topics[0].clone();
    let reads = tokio::task::spawn_blocking(move || {
        let n = kafka::high_watermarks(&topic, 1)[0];
        kafka::read_all(&topic, usize::try_from(n).expect("a count"))
            .iter()
            .filter_map(|r| r.value.as_deref())
            .filter(|v| String::from_utf8_lossy(v).contains(r#""op":"r""#))
            .count()
    })
    .await
    .expect("read the stream");
    assert_eq!(
        reads, 30,
        "Kafka Connect snapshotted again after its restart"
    );
    drop(tidemill);
    // The ordering guard (on the schemas-on table): every streamed change
    // sent again, newest first — the worst a connector re-sending old
    // changes can do — leaves the table as it is.
    let rows_with_a_position = "SELECT count(*) FROM orders_on WHERE pos IS NOT NULL";
    assert!(
        db.scalar(rows_with_a_position).await > 0,
        "{kind:?}: positions kept"
    );
    let replay = replayed_newest_first(&topics[0]).await;
    let replay_group = format!("{replay}_g");
    let running = common::Running::start(&replay_config(&replay, db.url())).await;
    wait_for_showing(
        "the replay consumed",
        Duration::from_secs(60),
        &|| String::new(),
        || common::all_committed(&replay_group, &replay, 1),
    )
    .await;
    running.stop().await;
    let got = parse(db.texts(&normalised(kind, "orders_on")).await);
    assert!(
        got == want,
        "{kind:?}: the replay changed the table:\n{}",
        differences(&got, &want)
    );
    drop(connect);
    let admin = PgPool::connect(&common::db::admin_url())
        .await
        .expect("admin");
    for slot in [&on, &off] {
        let _ = sqlx::query("SELECT pg_drop_replication_slot($1)")
            .bind(slot)
            .execute(&admin)
            .await;
    }
}
