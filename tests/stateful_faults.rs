//! Keyed state under faults, against real Kafka and each real database
//! (PostgreSQL, MariaDB, SQLite; every scenario runs on all three): running
//! totals and windowed aggregates equal an independent computation after ten
//! SIGKILLs, a rebalance storm, a database restart, a zombie and a freeze —
//! zero lost, zero double-counted.

mod common;

use common::db::{self, Kind, TableLock, TestDb};
use common::events::{self, Event};
use common::kafka::{self, brokers, TestProducer};
use common::outage::OutageDb;
use common::process::{signal, Tidemill};
use common::{
    all_committed, health_port, http, unique, wait_for, wait_for_showing, writer_blocked,
};
use std::path::Path;
use std::time::Duration;

const PARTITIONS: i32 = 4;
const USERS: i64 = 50;

per_backend!(
    aggregates_stay_exact_through_ten_sigkills,
    aggregates_stay_exact_through_a_rebalance_storm,
    aggregates_stay_exact_through_a_database_restart,
    a_zombies_state_and_rows_never_land,
    a_frozen_instance_finds_no_record_late_when_it_wakes,
);

/// Two pipelines on one topic: running totals (upsert) and one-second
/// tumbling windows (append, final rows only).
fn aggregates_toml(topic: &str, group: &str, url: &str) -> String {
    let pipeline = |name: &str, table: &str, sink: &str, step: &str| {
        format!(
            r#"
[pipelines.{name}]
topics = ["{topic}"]
group_id = "{group}_{name}"
[pipelines.{name}.kafka]
brokers = "{brokers}"
{group_lines}
[pipelines.{name}.sink]
url = "{url}"
table = "{table}"
retry_initial = "50ms"
retry_max = "1s"
{sink}
[pipelines.{name}.batch]
max_rows = 500
max_linger = "50ms"
[[pipelines.{name}.transforms]]
type = "key"
fields = ["user_id"]
[[pipelines.{name}.transforms]]
type = "aggregate"
columns = {{ n = "count()", total = "sum(amount)" }}
{step}
"#,
            brokers = brokers(),
            group_lines = common::group_settings()
        )
    };
    format!(
        "[shutdown]\ngrace = \"10s\"\n{}{}",
        pipeline(
            "totals",
            "totals",
            "mode = \"upsert\"\nkey_columns = [\"user_id\"]",
            ""
        ),
        pipeline(
            "windows",
            "windows",
            "",
            r#"window = { kind = "tumbling", size = "1s", time_field = "ts", idle_timeout = "2s" }"#
        ),
    )
}

async fn create_tables(db: &TestDb) {
    db.exec("CREATE TABLE totals (user_id BIGINT PRIMARY KEY, n BIGINT NOT NULL, total BIGINT NOT NULL)").await;
    db.exec(
        "CREATE TABLE windows (user_id BIGINT NOT NULL, window_start BIGINT NOT NULL, \
         window_end BIGINT NOT NULL, n BIGINT NOT NULL, total BIGINT NOT NULL)",
    )
    .await;
}

/// Produces the events in chunks of 500, pausing between chunks so the
/// stream is still flowing while the test acts.
fn produce_paced(topic: &str, events: Vec<Event>, pause: Duration) -> std::thread::JoinHandle<()> {
    let topic = topic.to_string();
    std::thread::spawn(move || {
        let producer = TestProducer::new(&topic);
        for chunk in events.chunks(500) {
            for e in chunk {
                producer.send(Some(&e.key()), Some(&e.json()));
            }
            producer.flush();
            std::thread::sleep(pause); // pacing the stream, not synchronisation
        }
    })
}

/// Records counted so far by the totals pipeline.
async fn counted(db: &TestDb) -> i64 {
    db.try_scalar("SELECT coalesce(sum(n), 0) FROM totals")
        .await
        .unwrap_or(0)
}

/// Waits for both pipelines to finish the stream, then checks them exactly.
async fn assert_exact(
    db: &TestDb,
    topic: &str,
    group: &str,
    all: &[Event],
    diagnose: impl Fn() -> String,
) {
    let expected_windows = events::tumbling(all, 1000);
    let n = all.len() as i64;
    let diagnosis = || {
        format!(
            "of {n} records and {} windows\n{}",
            expected_windows.len(),
            diagnose()
        )
    };
    wait_for_showing(
        "both pipelines to reach the stream's end",
        Duration::from_secs(180),
        &diagnosis,
        || async {
            counted(db).await >= n
                && db
                    .try_scalar("SELECT count(*) FROM windows")
                    .await
                    .unwrap_or(0)
                    >= expected_windows.len() as i64
        },
    )
    .await;
    for name in ["totals", "windows"] {
        let group = format!("{group}_{name}");
        wait_for(
            "kafka offsets committed to the end",
            Duration::from_secs(60),
            || all_committed(&group, topic, PARTITIONS),
        )
        .await;
    }
    let totals = db
        .pairs("SELECT user_id * 1000000 + n, total FROM totals ORDER BY user_id")
        .await;
    assert_eq!(totals, events::totals(all), "running totals exact");
    let windows = db
        .quads("SELECT user_id, window_start, n, total FROM windows ORDER BY user_id, window_start")
        .await;
    assert_eq!(windows, expected_windows, "each window once, exact");
}

fn stream(n: i64) -> Vec<Event> {
    (0..n).map(|i| events::event(i, USERS)).collect()
}

fn write_config(dir: &Path, topic: &str, group: &str, url: &str) -> std::path::PathBuf {
    let config = dir.join("tidemill.toml");
    std::fs::write(&config, aggregates_toml(topic, group, url)).expect("config");
    config
}

async fn aggregates_stay_exact_through_ten_sigkills(kind: Kind) {
    const N: i64 = 30_000;
    let (topic, group) = (unique("agg_kill"), unique("g"));
    kafka::create_topic(&topic, PARTITIONS).await;
    let db = TestDb::new(kind).await;
    create_tables(&db).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(dir.path(), &topic, &group, db.url());
    let all = stream(N);
    let producer = produce_paced(&topic, all.clone(), Duration::from_millis(100));
    let mut process = Tidemill::start(&config, "run0");
    let mut rng = fastrand::Rng::with_seed(17);
    for round in 1..=10 {
        let target = counted(&db).await + rng.i64(200..2_000);
        wait_for("counting to progress", Duration::from_secs(60), || async {
            counted(&db).await >= target.min(N)
        })
        .await;
        process.kill();
        process = Tidemill::start(&config, &format!("run{round}"));
    }
    producer.join().expect("producer thread");
    assert_exact(&db, &topic, &group, &all, String::new).await;
    assert!(process.terminate(), "{}", process.log_text());
}

async fn aggregates_stay_exact_through_a_rebalance_storm(kind: Kind) {
    const N: i64 = 24_000;
    let (topic, group) = (unique("agg_storm"), unique("g"));
    kafka::create_topic(&topic, PARTITIONS).await;
    let db = TestDb::new(kind).await;
    create_tables(&db).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(dir.path(), &topic, &group, db.url());
    let all = stream(N);
    let producer = produce_paced(&topic, all.clone(), Duration::from_millis(300));
    let mut members: Vec<Option<Tidemill>> = vec![Some(Tidemill::start(&config, "m0")), None, None];
    let mut rng = fastrand::Rng::with_seed(23);
    let mut changes = 0;
    // Members join and leave (clean stops and SIGKILLs) every 2-4 s while the stream flows.
    while !producer.is_finished() || changes < 6 {
        let before = counted(&db).await;
        let pause = Duration::from_millis(rng.u64(2_000..4_000));
        // Waiting on progress (or the pause's deadline) paces the storm.
        let _ = tokio::time::timeout(
            pause,
            wait_for("progress", pause * 2, || async {
                counted(&db).await > before + 2_000
            }),
        )
        .await;
        let slot = rng.usize(..members.len());
        match members[slot].take() {
            None => members[slot] = Some(Tidemill::start(&config, &format!("m{slot}_{changes}"))),
            Some(mut m) if rng.bool() => m.kill(),
            Some(mut m) => assert!(m.terminate(), "{}", m.log_text()),
        }
        changes += 1;
    }
    if members.iter().all(Option::is_none) {
        members[0] = Some(Tidemill::start(&config, "last"));
    }
    assert_exact(&db, &topic, &group, &all, String::new).await;
    for m in members.iter_mut().flatten() {
        assert!(m.terminate(), "{}", m.log_text());
    }
}

async fn aggregates_stay_exact_through_a_database_restart(kind: Kind) {
    const N: i64 = 12_000;
    let mut server = OutageDb::start(kind).await;
    let url = server.url().to_string();
    create_tables(server.db()).await;
    let (topic, group) = (unique("agg_dbdown"), unique("g"));
    kafka::create_topic(&topic, PARTITIONS).await;
    let settings =
        tidemill::check::from_toml(&aggregates_toml(&topic, &group, &url)).expect("config");
    let shutdown = tokio_util::sync::CancellationToken::new();
    let run = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move { tidemill::pipeline::run_all(&settings, shutdown).await })
    };
    let all = stream(N);
    let producer = produce_paced(&topic, all.clone(), Duration::from_millis(150));
    wait_for("counting under way", Duration::from_secs(60), || async {
        counted(server.db()).await >= 2_000
    })
    .await;
    server.stop().await;
    // The database stays away while the rest of the stream arrives.
    producer.join().expect("producer thread");
    server.start_again().await;
    let db = server.db();
    // A pipeline that gave up on the database would stop: exactness then
    // never comes, and the timeout says whether the pipelines had finished.
    assert_exact(db, &topic, &group, &all, || {
        format!("pipelines finished on their own: {}", run.is_finished())
    })
    .await;
    assert!(!run.is_finished(), "pipelines stopped: {:?}", run.await);
    shutdown.cancel();
    run.await.expect("join").expect("pipelines stop cleanly");
}

async fn a_zombies_state_and_rows_never_land(kind: Kind) {
    let (topic, group) = (unique("agg_zombie"), unique("g"));
    kafka::create_topic(&topic, PARTITIONS).await;
    let db = TestDb::new(kind).await;
    create_tables(&db).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(dir.path(), &topic, &group, db.url());
    // A rebalance waits for the frozen zombie at most this long (librdkafka's
    // rebalance timeout is max.poll.interval.ms, 300 s by default; a CI run
    // on two loaded cores once waited past 320 s for it).
    let text = std::fs::read_to_string(&config).expect("config");
    let text = ["totals", "windows"].iter().fold(text, |t, name| {
        t.replace(
            &format!("[pipelines.{name}.sink]"),
            &format!("[pipelines.{name}.kafka.options]\n\"max.poll.interval.ms\" = \"45000\"\n[pipelines.{name}.sink]"),
        )
    });
    std::fs::write(&config, text).expect("config");
    // The third wave comes after a pause of several seconds; its event times
    // move on with the wall clock, as live data's do, so the watermark that
    // idleness advanced during the pause does not make it late.
    let all: Vec<Event> = stream(3_000)
        .into_iter()
        .map(|e| {
            if e.id >= 2000 {
                Event {
                    ts: e.ts + 600_000,
                    ..e
                }
            } else {
                e
            }
        })
        .collect();
    let (zombie_port, zombie_listen) = health_port();
    let (successor_port, successor_listen) = health_port();
    let mut zombie = Tidemill::start_with_env(
        &config,
        "zombie",
        &[("TIDEMILL__HEALTH__LISTEN", zombie_listen.as_str())],
    );
    produce_paced(&topic, all[..1000].to_vec(), Duration::ZERO)
        .join()
        .expect("first wave");
    wait_for("first wave counted", Duration::from_secs(60), || async {
        counted(&db).await == 1000
    })
    .await;

    // The zombie's next totals batch is held up by a lock; then the zombie is frozen.
    let lock = TableLock::take(&db, "totals").await;
    produce_paced(&topic, all[1000..2000].to_vec(), Duration::ZERO)
        .join()
        .expect("second wave");
    wait_for(
        "the zombie's upsert held up by the lock",
        Duration::from_secs(30),
        || writer_blocked(&db, "totals", zombie_port, "totals"),
    )
    .await;
    signal(&zombie, "-STOP");
    // SQLite has one writer: the successor's claim needs the file, so the
    // lock goes now (the frozen zombie's batch stays unwritten all the same).
    let lock = match kind {
        Kind::Sqlite => {
            lock.release().await;
            None
        }
        _ => Some(lock),
    };
    let tail = |t: &Tidemill| {
        let text = t.log_text();
        text.lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    };
    let mut successor = Tidemill::start_with_env(
        &config,
        "successor",
        &[("TIDEMILL__HEALTH__LISTEN", successor_listen.as_str())],
    );
    // On a timeout: both members' logs and what the database's sessions wait for.
    let sessions = std::sync::Mutex::new(String::new());
    wait_for_showing(
        "the successor owning the totals partitions",
        // The frozen zombie holds the group until its session times out, or at
        // worst until the rebalance timeout set above (45 s), plus slack.
        Duration::from_secs(120),
        &|| {
            format!(
                "successor running: {}\nzombie:\n{}\nsuccessor:\n{}\nsessions:\n{}",
                successor.is_running(),
                tail(&zombie),
                tail(&successor),
                sessions.lock().map(|s| s.clone()).unwrap_or_default()
            )
        },
        || async {
            *sessions.lock().expect("sessions") = db::sessions(&db).await;
            http::member_metric(successor_port, "tidemill_assigned_partitions", "totals").await > 0
        },
    )
    .await;
    // Resumed, the zombie finishes its transaction: its checkpoint update finds a
    // newer generation, so rows and state roll back together.
    if let Some(lock) = lock {
        lock.release().await;
    }
    signal(&zombie, "-CONT");
    wait_for(
        "the zombie's batch fenced",
        Duration::from_secs(60),
        || async { http::member_metric(zombie_port, "tidemill_fenced_total", "totals").await > 0 },
    )
    .await;
    wait_for(
        "the successor counting the second wave",
        Duration::from_secs(60),
        || async { counted(&db).await == 2000 },
    )
    .await;
    produce_paced(&topic, all[2000..].to_vec(), Duration::ZERO)
        .join()
        .expect("third wave");
    assert_exact(&db, &topic, &group, &all, || {
        format!(
            "zombie:\n{}\nsuccessor:\n{}",
            tail(&zombie),
            tail(&successor)
        )
    })
    .await;
    assert!(zombie.terminate(), "{}", zombie.log_text());
    assert!(successor.terminate(), "{}", successor.log_text());
}

/// A window pipeline frozen (SIGSTOP: a VM pause, a stalled node) while its
/// topic kept flowing wakes up with records waiting. The frozen seconds are not
/// silence: the watermark must not jump ahead by them and make those records
/// late. (It did: the zombie scenario above once died of exactly that.)
async fn a_frozen_instance_finds_no_record_late_when_it_wakes(kind: Kind) {
    const FREEZE: Duration = Duration::from_secs(8);
    let (topic, group) = (unique("agg_frozen"), unique("g"));
    kafka::create_topic(&topic, PARTITIONS).await;
    let db = TestDb::new(kind).await;
    create_tables(&db).await;
    let dir = tempfile::tempdir().expect("temp dir");
    // Only the windows pipeline, with no dead-letter topic: a late record stops it.
    let toml = aggregates_toml(&topic, &group, db.url());
    let windows_only = &toml[toml
        .find("\n[pipelines.windows]")
        .expect("windows pipeline")..];
    let config = dir.path().join("tidemill.toml");
    std::fs::write(
        &config,
        format!("[shutdown]\ngrace = \"10s\"\n{windows_only}"),
    )
    .expect("config");
    let first: Vec<Event> = stream(1_000);
    let mut process = Tidemill::start(&config, "frozen");
    let produced = std::time::Instant::now();
    produce_paced(&topic, first.clone(), Duration::ZERO)
        .join()
        .expect("first wave");
    // Every window of the first wave closed, the last ones by idleness: the
    // partitions were read to their end and librdkafka reported where that is.
    let first_windows = events::tumbling(&first, 1000).len() as i64;
    wait_for(
        "the first wave's windows",
        Duration::from_secs(60),
        || async { db.try_scalar("SELECT count(*) FROM windows").await == Some(first_windows) },
    )
    .await;
    signal(&process, "-STOP");
    let frozen = std::time::Instant::now();
    // The second wave's event times go on from the first by the wall-clock time
    // the instance was listening to silence (idleness legitimately advanced the
    // watermark that far), plus a second; not by the time it is frozen.
    let listened = i64::try_from((frozen - produced).as_millis()).expect("ms") + 1_000;
    let second: Vec<Event> = (1_000..2_000)
        .map(|i| Event {
            ts: events::event(i, USERS).ts + listened,
            ..events::event(i, USERS)
        })
        .collect();
    produce_paced(&topic, second.clone(), Duration::ZERO)
        .join()
        .expect("second wave");
    std::thread::sleep(FREEZE.saturating_sub(frozen.elapsed())); // the fault: how long it stays frozen
    signal(&process, "-CONT");
    let all: Vec<Event> = first.into_iter().chain(second).collect();
    let expected = events::tumbling(&all, 1000);
    wait_for_showing(
        "every window of both waves",
        Duration::from_secs(60),
        &|| process.log_text(),
        || async {
            assert!(
                process.is_running(),
                "the pipeline stopped:\n{}",
                process.log_text()
            );
            db.try_scalar("SELECT count(*) FROM windows").await == Some(expected.len() as i64)
        },
    )
    .await;
    let windows = db
        .quads("SELECT user_id, window_start, n, total FROM windows ORDER BY user_id, window_start")
        .await;
    assert_eq!(windows, expected, "each window once, exact, none late");
    assert!(process.terminate(), "{}", process.log_text());
}
