//! Crashes, rebalances and outages against real Kafka and each real database
//! (PostgreSQL, MariaDB, SQLite; every scenario runs on all three): nothing
//! lost, upserts end exact, nothing committed before it is loaded.

mod common;

use common::db::{Kind, TableLock, TestDb};
use common::http;
use common::kafka::{self, TestProducer};
use common::outage::OutageDb;
use common::process::Tidemill;
use common::{all_committed, pipeline_toml, unique, wait_for, wait_for_showing, Running};
use std::time::Duration;
use tidemill::observe::stats::Stats;

const KEYS: i64 = 100;

per_backend!(
    sigkill_mid_stream_then_restart_loses_nothing_and_upsert_ends_exact,
    two_processes_split_partitions_and_the_survivor_finishes_after_one_stops,
    database_outage_commits_nothing_unloaded_then_recovers,
    a_blocked_writer_holds_at_most_max_in_flight_batches_then_catches_up,
);

/// SQLite has no connections to refuse (a locked file is its outage, above).
mod a_fenced_member_waits_for_a_refusing_database_and_rejoins {
    use super::*;
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::a_fenced_member_waits_for_a_refusing_database_and_rejoins(Kind::Postgres).await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mariadb() {
        super::a_fenced_member_waits_for_a_refusing_database_and_rejoins(Kind::MariaDb).await
    }
}

/// Produces `n` records `{"id", "k", "seq"}` keyed by `k`, in chunks of 500,
/// pausing between chunks so the stream is still flowing while a test acts.
fn produce_stream(topic: &str, n: i64, pause: Duration) -> std::thread::JoinHandle<()> {
    let topic = topic.to_string();
    std::thread::spawn(move || {
        let producer = TestProducer::new(&topic);
        for i in 0..n {
            let k = i % KEYS;
            let value = format!(r#"{{"id":{i},"k":{k},"seq":{}}}"#, i / KEYS);
            producer.send(Some(&k.to_string()), Some(&value));
            if i % 500 == 499 {
                producer.flush();
                std::thread::sleep(pause); // pacing the stream, not synchronisation
            }
        }
        producer.flush();
    })
}

fn two_pipelines_toml(topic: &str, log_group: &str, latest_group: &str, url: &str) -> String {
    let insert = pipeline_toml(topic, log_group, url, "log", "");
    let upsert = pipeline_toml(
        topic,
        latest_group,
        url,
        "latest",
        "mode = \"upsert\"\nkey_columns = [\"k\"]",
    )
    .replace("[pipelines.p", "[pipelines.q")
    .replace("[shutdown]\ngrace = \"10s\"\n", "");
    insert + &upsert
}

async fn assert_log_and_latest_complete(db: &TestDb, n: i64) {
    assert_eq!(
        db.scalar("SELECT count(DISTINCT id) FROM log").await,
        n,
        "nothing lost"
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM log").await,
        n,
        "nothing duplicated"
    );
    let latest = db.pairs("SELECT k, seq FROM latest ORDER BY k").await;
    let expected: Vec<(i64, i64)> = (0..KEYS)
        .map(|k| (k, (n - 1 - ((n - 1 - k) % KEYS)) / KEYS))
        .collect();
    assert_eq!(latest, expected, "upsert ends with the last value per key");
}

/// A topic, a database with `log` (insert) and `latest` (upsert by `k`), and a
/// config file with one pipeline for each, in groups of their own.
struct LogAndLatest {
    topic: String,
    log_group: String,
    latest_group: String,
    db: TestDb,
    config: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl LogAndLatest {
    async fn new(prefix: &str, partitions: i32, kind: Kind) -> Self {
        let (topic, log_group, latest_group) =
            (unique(prefix), unique("g_log"), unique("g_latest"));
        kafka::create_topic(&topic, partitions).await;
        let db = TestDb::new(kind).await;
        db.exec("CREATE TABLE log (id BIGINT NOT NULL, k BIGINT, seq BIGINT)")
            .await;
        db.exec("CREATE TABLE latest (k BIGINT PRIMARY KEY, seq BIGINT, id BIGINT)")
            .await;
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("tidemill.toml");
        std::fs::write(
            &config,
            two_pipelines_toml(&topic, &log_group, &latest_group, db.url()),
        )
        .expect("config");
        Self {
            topic,
            log_group,
            latest_group,
            db,
            config,
            _dir: dir,
        }
    }
}

async fn sigkill_mid_stream_then_restart_loses_nothing_and_upsert_ends_exact(kind: Kind) {
    const N: i64 = 20_000;
    const PARTITIONS: i32 = 4;
    let bed = LogAndLatest::new("kill", PARTITIONS, kind).await;
    let (topic, log_group, latest_group, db, config) = (
        &bed.topic,
        &bed.log_group,
        &bed.latest_group,
        &bed.db,
        &bed.config,
    );

    let producer = produce_stream(topic, N, Duration::from_millis(100));
    let mut process = Tidemill::start(config, "run0");
    for (round, at_least) in [2_000_i64, 6_000, 11_000].into_iter().enumerate() {
        wait_for("loading to progress", Duration::from_secs(60), || async {
            db.try_scalar("SELECT count(*) FROM log").await.unwrap_or(0) >= at_least
        })
        .await;
        process.kill();
        process = Tidemill::start(config, &format!("run{}", round + 1));
    }
    producer.join().expect("producer thread");
    wait_for(
        "both groups committed to the end",
        Duration::from_secs(120),
        || async {
            all_committed(log_group, topic, PARTITIONS).await
                && all_committed(latest_group, topic, PARTITIONS).await
        },
    )
    .await;
    assert!(
        process.terminate(),
        "SIGTERM exits 0:\n{}",
        process.log_text()
    );
    assert_log_and_latest_complete(db, N).await;
}

async fn two_processes_split_partitions_and_the_survivor_finishes_after_one_stops(kind: Kind) {
    const N: i64 = 12_000;
    const PARTITIONS: i32 = 6;
    let bed = LogAndLatest::new("pair", PARTITIONS, kind).await;
    let (topic, log_group, latest_group, db, config) = (
        &bed.topic,
        &bed.log_group,
        &bed.latest_group,
        &bed.db,
        &bed.config,
    );

    let ports = [http::free_port(), http::free_port()];
    let listen = |port: u16| format!("127.0.0.1:{port}");
    let (listen_a, listen_b) = (listen(ports[0]), listen(ports[1]));
    let mut a = Tidemill::start_with_env(config, "a", &[("TIDEMILL__HEALTH__LISTEN", &listen_a)]);
    let mut b = Tidemill::start_with_env(config, "b", &[("TIDEMILL__HEALTH__LISTEN", &listen_b)]);
    let owns = |port: u16| async move {
        http::member_metric(port, "tidemill_assigned_partitions", "p").await > 0
    };
    wait_for_showing(
        "both members to own partitions",
        Duration::from_secs(90),
        &|| format!("--- a ---\n{}\n--- b ---\n{}", a.log_text(), b.log_text()),
        || async { owns(ports[0]).await && owns(ports[1]).await },
    )
    .await;
    let producer = produce_stream(topic, N, Duration::from_millis(100));
    wait_for("both members loading", Duration::from_secs(60), || async {
        db.try_scalar("SELECT count(*) FROM log").await.unwrap_or(0) >= N / 3
    })
    .await;
    assert!(
        b.terminate(),
        "SIGTERM exits 0 after flushing:\n{}",
        b.log_text()
    );
    assert!(
        b.log_text().contains("flushed and committed"),
        "{}",
        b.log_text()
    );
    assert!(a.is_running());
    producer.join().expect("producer thread");
    wait_for(
        "the survivor commits every partition",
        Duration::from_secs(120),
        || async {
            all_committed(log_group, topic, PARTITIONS).await
                && all_committed(latest_group, topic, PARTITIONS).await
        },
    )
    .await;
    assert!(a.terminate(), "{}", a.log_text());
    assert_log_and_latest_complete(db, N).await;
}

async fn database_outage_commits_nothing_unloaded_then_recovers(kind: Kind) {
    const PARTITIONS: i32 = 4;
    let (topic, group) = (unique("outage"), unique("g"));
    kafka::create_topic(&topic, PARTITIONS).await;
    let mut server = OutageDb::start(kind).await;
    let db = server.db();
    db.exec("CREATE TABLE events (id BIGINT PRIMARY KEY, v BIGINT)")
        .await;
    let producer = TestProducer::new(&topic);
    let send = |range: std::ops::Range<i64>| {
        for i in range {
            producer.send(
                Some(&i.to_string()),
                Some(&format!(r#"{{"id":{i},"v":{i}}}"#)),
            );
        }
        producer.flush();
    };
    send(0..1000);
    let running = Running::start(&pipeline_toml(&topic, &group, db.url(), "events", "")).await;
    wait_for("first wave committed", Duration::from_secs(60), || {
        all_committed(&group, &topic, PARTITIONS)
    })
    .await;
    let before = kafka::committed(&group, &topic, PARTITIONS);

    server.stop().await;
    send(1000..2000);
    wait_for(
        "the writer retrying against the absent database",
        Duration::from_secs(60),
        || async { running.stats.retries_total() >= 2 },
    )
    .await;
    assert!(
        Stats::get(&running.stats.records_in) > 1000,
        "second wave consumed while the database is away"
    );
    assert_eq!(
        kafka::committed(&group, &topic, PARTITIONS),
        before,
        "nothing committed while the database is away"
    );

    server.start_again().await;
    let db = server.db();
    wait_for(
        "second wave loaded and committed",
        Duration::from_secs(90),
        || async {
            db.try_scalar("SELECT count(*) FROM events").await == Some(2000)
                && all_committed(&group, &topic, PARTITIONS).await
        },
    )
    .await;
    running.stop().await;
    assert_eq!(
        db.scalar("SELECT sum(v) FROM events").await,
        1999 * 2000 / 2
    );
}

/// A writer blocked on a table lock: the source hands it at most
/// `max_in_flight` batches, fills one more and pauses; nothing beyond that is
/// consumed (memory stays bounded), and everything loads once the lock goes.
async fn a_blocked_writer_holds_at_most_max_in_flight_batches_then_catches_up(kind: Kind) {
    const ROWS: u64 = 20;
    let (topic, group) = (unique("inflight"), unique("g"));
    kafka::create_topic(&topic, 1).await;
    let db = TestDb::new(kind).await;
    db.exec("CREATE TABLE events (id BIGINT PRIMARY KEY, v BIGINT)")
        .await;
    let toml = pipeline_toml(&topic, &group, db.url(), "events", "").replace(
        "max_rows = 500",
        &format!("max_rows = {ROWS}\nmax_in_flight = 2"),
    );
    let running = Running::start(&toml).await;
    // The lock comes once the pipeline is prepared (on SQLite it locks the
    // whole file, checkpoint table included), before any record is there.
    wait_for(
        "the partition assigned",
        Duration::from_secs(60),
        || async { Stats::get(&running.stats.assigned_partitions) == 1 },
    )
    .await;
    let lock = TableLock::take(&db, "events").await;
    let producer = TestProducer::new(&topic);
    for i in 0..1000 {
        producer.send(None, Some(&format!(r#"{{"id":{i},"v":{i}}}"#)));
    }
    producer.flush();
    let stats = &running.stats;
    wait_for(
        "both slots taken and the partitions paused",
        Duration::from_secs(60),
        || async {
            Stats::get(&stats.batches_in_flight) == 2
                && stats
                    .source_paused
                    .load(std::sync::atomic::Ordering::Relaxed)
        },
    )
    .await;
    let consumed = Stats::get(&stats.records_in);
    assert!(
        consumed <= 3 * ROWS,
        "two batches in flight and one open, at most {} records; consumed {consumed}",
        3 * ROWS
    );
    assert_eq!(
        Stats::get(&stats.batches),
        0,
        "nothing committed under the lock"
    );

    lock.release().await;
    wait_for(
        "all loaded and committed, nothing in flight, partitions resumed",
        Duration::from_secs(60),
        || async {
            db.try_scalar("SELECT count(*) FROM events").await == Some(1000)
                && all_committed(&group, &topic, 1).await
                && Stats::get(&stats.batches_in_flight) == 0
                && !stats
                    .source_paused
                    .load(std::sync::atomic::Ordering::Relaxed)
        },
    )
    .await;
    running.stop().await;
    assert_eq!(db.scalar("SELECT sum(v) FROM events").await, 999 * 1000 / 2);
}

/// A member fenced while its database refuses new connections (a restart, a
/// failover, maintenance) waits for the database, counting the retries, and
/// rejoins: it does not exit (the chaos soak saw one exit on a dropped
/// connection while preparing again), and nothing is lost or repeated.
async fn a_fenced_member_waits_for_a_refusing_database_and_rejoins(kind: Kind) {
    let (topic, group) = (unique("refenced"), unique("g"));
    kafka::create_topic(&topic, 1).await;
    let server = OutageDb::start(kind).await;
    let (db, url) = (server.db(), server.url().to_string());
    db.exec("CREATE TABLE t (id BIGINT NOT NULL)").await;
    let port = http::free_port();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("tidemill.toml");
    let toml = format!(
        "[health]\nlisten = \"127.0.0.1:{port}\"\n{}",
        pipeline_toml(&topic, &group, &url, "t", "")
    );
    std::fs::write(&config, toml).expect("config");
    let producer = TestProducer::new(&topic);
    let send = |range: std::ops::Range<i64>| {
        for i in range {
            producer.send(Some(&i.to_string()), Some(&format!(r#"{{"id":{i}}}"#)));
        }
        producer.flush();
    };
    let mut process = Tidemill::start(&config, "member");
    send(0..100);
    wait_for("the first 100 rows", Duration::from_secs(60), || async {
        db.try_scalar("SELECT count(*) FROM t").await == Some(100)
    })
    .await;

    // Open now: the database stops taking new connections next.
    let fencer = TestDb::one_connection(kind, &url).await;
    server.refuse().await.expect("a server that refuses");
    fencer
        .exec("UPDATE tidemill_offsets SET generation = generation + 1")
        .await;
    send(100..200);
    wait_for_showing(
        "the fenced member retrying the refusing database",
        Duration::from_secs(60),
        &|| process.log_text(),
        || async { http::db_retries(port, "p").await > 0 },
    )
    .await;
    server.allow().await;
    wait_for_showing(
        "the rest loaded after the rejoin",
        Duration::from_secs(60),
        &|| process.log_text(),
        || async { db.try_scalar("SELECT count(DISTINCT id) FROM t").await == Some(200) },
    )
    .await;
    assert_eq!(
        db.scalar("SELECT count(*) FROM t").await,
        200,
        "nothing repeated"
    );
    assert!(process.is_running(), "{}", process.log_text());
    assert!(process.terminate(), "{}", process.log_text());
}
