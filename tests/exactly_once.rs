//! Exactly-once delivery against real Kafka and real databases: rows and
//! offsets commit together, so crashes never duplicate, and a zombie's batch
//! is fenced by the generation its successor claimed.

mod common;

use common::db::TableLock;
use common::db::{Kind, TestDb};
use common::kafka::{self, TestProducer};
use common::process::{signal, Tidemill};
use common::{all_committed, health_port, http, pipeline_toml, unique, wait_for, writer_blocked};
use std::time::Duration;
use tidemill::config::{SinkConfig, SinkMode};
use tidemill::db;
use tidemill::model::OffsetRange;
use tidemill::model::TopicPartition;
use tidemill::sink::checkpoint::{Checkpoint, Entry};
use tidemill::sink::{prepare, Sink, SinkError};

per_backend!(
    a_batch_from_an_older_generation_is_refused_and_writes_nothing,
    a_batch_committed_before_is_not_written_again,
    a_fence_on_one_partition_names_it_and_moves_no_checkpoint,
    an_unchanged_checkpoint_under_the_current_generation_is_not_fenced,
    members_starting_together_all_get_the_checkpoint_table,
    insert_mode_stays_exact_through_ten_sigkills,
    a_zombie_paused_past_its_session_timeout_cannot_land_its_batch,
);

/// Offsets `first..=last` of `tp` under `generation`; `None`: an idle entry.
fn entry(tp: &TopicPartition, offsets: Option<(i64, i64)>, generation: i64) -> Entry {
    Entry {
        tp: tp.clone(),
        offsets: offsets.map(|(first, last)| OffsetRange { first, last }),
        generation,
    }
}

/// MySQL reports an UPDATE that changes nothing as 0 rows affected unless the
/// client asks for found rows: a checkpoint rewritten with the same offset
/// (an idle partition whose state moved) must still count as advanced.
async fn an_unchanged_checkpoint_under_the_current_generation_is_not_fenced(kind: Kind) {
    let db = TestDb::new(kind).await;
    db.exec("CREATE TABLE t (id BIGINT)").await;
    let sink = db::open(&toml_sink(db.url())).await.expect("open sink");
    let store = sink.offset_store();
    store.ensure_table().await.expect("checkpoint table");
    let tp = TopicPartition::new("topic", 0);
    let claim = store
        .claim("p", std::slice::from_ref(&tp))
        .await
        .expect("claim")[0]
        .clone();
    let advance = Checkpoint {
        pipeline: "p".into(),
        entries: vec![entry(&tp, Some((0, 6)), claim.generation)],
    };
    let idle = Checkpoint {
        pipeline: "p".into(),
        entries: vec![entry(&tp, None, claim.generation)],
    };
    let (first, second) = write(sink, &[], &advance, &idle).await;
    first.expect("first advance");
    second.expect("the same offset again is not a fence");
}

/// The connection drops after the server committed a batch but before the
/// answer came back: the writer retries the same batch under the same
/// generation. Its checkpoint is then past the batch's first offset, so the
/// retry is refused as already committed and writes nothing.
async fn a_batch_committed_before_is_not_written_again(kind: Kind) {
    let db = TestDb::new(kind).await;
    db.exec("CREATE TABLE t (id BIGINT)").await;
    let sink = db::open(&toml_sink(db.url())).await.expect("open sink");
    let store = sink.offset_store();
    store.ensure_table().await.expect("checkpoint table");
    let tps: Vec<TopicPartition> = (0..2).map(|p| TopicPartition::new("topic", p)).collect();
    let claims = store.claim("p", &tps).await.expect("claim");
    let batch = Checkpoint {
        pipeline: "p".into(),
        entries: vec![
            entry(&tps[0], Some((0, 9)), claims[0].generation),
            entry(&tps[1], Some((0, 4)), claims[1].generation),
        ],
    };
    let rows = vec![serde_json::json!({"id": 1})
        .as_object()
        .expect("object")
        .clone()];
    let (first, again) = write(sink, &rows, &batch, &batch).await;
    first.expect("the batch commits");
    match again {
        Err(SinkError::AlreadyCommitted { partitions }) => {
            assert_eq!(partitions, "topic/0,topic/1")
        }
        other => panic!("want already committed, got {other:?}"),
    }
    assert_eq!(
        db.scalar("SELECT count(*) FROM t").await,
        1,
        "the retry wrote nothing"
    );
    let resumed = store.claim("p", &tps).await.expect("claim");
    let offsets: Vec<Option<i64>> = resumed.iter().map(|c| c.next_offset).collect();
    assert_eq!(offsets, vec![Some(10), Some(5)]);
}

async fn a_batch_from_an_older_generation_is_refused_and_writes_nothing(kind: Kind) {
    let db = TestDb::new(kind).await;
    db.exec("CREATE TABLE t (id BIGINT)").await;
    let cfg: SinkConfig = toml_sink(db.url());
    let sink = db::open(&cfg).await.expect("open sink");
    let store = sink.offset_store();
    store.ensure_table().await.expect("checkpoint table");
    let tp = TopicPartition::new("topic", 0);
    let old = store
        .claim("p", std::slice::from_ref(&tp))
        .await
        .expect("claim")[0]
        .clone();
    assert_eq!(old.next_offset, None, "no checkpoint yet");
    let new = store
        .claim("p", std::slice::from_ref(&tp))
        .await
        .expect("claim again")[0]
        .clone();
    assert!(new.generation > old.generation);

    let rows = vec![serde_json::json!({"id": 1})
        .as_object()
        .expect("object")
        .clone()];
    let checkpoint = |generation| Checkpoint {
        pipeline: "p".into(),
        entries: vec![entry(&tp, Some((0, 9)), generation)],
    };
    let result = write(
        sink,
        &rows,
        &checkpoint(old.generation),
        &checkpoint(new.generation),
    )
    .await;
    let (stale, current) = result;
    assert!(matches!(stale, Err(SinkError::Fenced { .. })), "{stale:?}");
    current.expect("the current generation writes");
    assert_eq!(
        db.scalar("SELECT count(*) FROM t").await,
        1,
        "the fenced batch wrote nothing"
    );
    let resumed = store
        .claim("p", std::slice::from_ref(&tp))
        .await
        .expect("claim")[0]
        .clone();
    assert_eq!(resumed.next_offset, Some(10));
}

/// A batch spanning three partitions, one of them claimed by a newer owner
/// since: the error names that partition alone, and none of the batch's
/// checkpoints moves, not even those of the partitions it still owns.
async fn a_fence_on_one_partition_names_it_and_moves_no_checkpoint(kind: Kind) {
    let db = TestDb::new(kind).await;
    db.exec("CREATE TABLE t (id BIGINT)").await;
    let sink = db::open(&toml_sink(db.url())).await.expect("open sink");
    let store = sink.offset_store();
    store.ensure_table().await.expect("checkpoint table");
    let tps: Vec<TopicPartition> = (0..3).map(|p| TopicPartition::new("topic", p)).collect();
    let claims = store.claim("p", &tps).await.expect("claim");
    let reclaimed = store
        .claim("p", std::slice::from_ref(&tps[1]))
        .await
        .expect("a newer owner claims partition 1")[0]
        .clone();
    let stale = Checkpoint {
        pipeline: "p".into(),
        entries: vec![
            entry(&tps[0], Some((0, 4)), claims[0].generation),
            entry(&tps[1], Some((0, 5)), claims[1].generation),
            entry(&tps[2], None, claims[2].generation),
        ],
    };
    // Leaves partition 0 as it finds it: a leak of the stale batch's 5 would show.
    let current = Checkpoint {
        pipeline: "p".into(),
        entries: vec![
            entry(&tps[0], None, claims[0].generation),
            entry(&tps[1], Some((0, 5)), reclaimed.generation),
            entry(&tps[2], Some((0, 6)), claims[2].generation),
        ],
    };
    let (stale, current) = write(sink, &[], &stale, &current).await;
    match stale {
        Err(SinkError::Fenced { partitions }) => assert_eq!(partitions, "topic/1"),
        other => panic!("want a fence on topic/1, got {other:?}"),
    }
    current.expect("under the current generations the batch lands");
    let resumed = store.claim("p", &tps).await.expect("claim");
    let offsets: Vec<Option<i64>> = resumed.iter().map(|c| c.next_offset).collect();
    assert_eq!(
        offsets,
        vec![None, Some(6), Some(7)],
        "only the batch that landed moved checkpoints"
    );
}

/// Writes the same rows under a stale, then the current checkpoint.
async fn write(
    mut s: Box<dyn Sink>,
    rows: &[tidemill::model::Row],
    stale: &Checkpoint,
    current: &Checkpoint,
) -> (Result<(), SinkError>, Result<(), SinkError>) {
    let prepared = prepare(s.schema(), SinkMode::Insert, &[], rows).expect("prepare");
    let first = s.write(&prepared, Some(stale), None).await.map(drop);
    let second = s.write(&prepared, Some(current), None).await.map(drop);
    (first, second)
}

fn toml_sink(url: &str) -> SinkConfig {
    let text = pipeline_toml("t", "g", url, "t", "");
    let settings = tidemill::check::from_toml(&text).expect("config");
    settings.pipelines["p"].sink.clone()
}

/// Produces `n` records `{"id"}` in chunks, pausing between chunks so the
/// stream is still flowing while the test acts.
fn produce_stream(topic: &str, from: i64, to: i64, pause: Duration) -> std::thread::JoinHandle<()> {
    let topic = topic.to_string();
    std::thread::spawn(move || {
        let producer = TestProducer::new(&topic);
        for i in from..to {
            producer.send(
                Some(&(i % 97).to_string()),
                Some(&format!(r#"{{"id":{i}}}"#)),
            );
            if i % 500 == 499 {
                producer.flush();
                std::thread::sleep(pause); // pacing the stream, not synchronisation
            }
        }
        producer.flush();
    })
}

async fn insert_mode_stays_exact_through_ten_sigkills(kind: Kind) {
    const N: i64 = 30_000;
    const PARTITIONS: i32 = 4;
    let (topic, group) = (unique("eos_kill"), unique("g"));
    kafka::create_topic(&topic, PARTITIONS).await;
    let db = TestDb::new(kind).await;
    db.exec("CREATE TABLE log (id BIGINT NOT NULL)").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("tidemill.toml");
    std::fs::write(&config, pipeline_toml(&topic, &group, db.url(), "log", "")).expect("config");

    let producer = produce_stream(&topic, 0, N, Duration::from_millis(100));
    let mut process = Tidemill::start(&config, "run0");
    let mut rng = fastrand::Rng::with_seed(11);
    for round in 1..=10 {
        let floor = db.try_scalar("SELECT count(*) FROM log").await.unwrap_or(0);
        let target = floor + rng.i64(200..2_000);
        wait_for("loading to progress", Duration::from_secs(60), || async {
            db.try_scalar("SELECT count(*) FROM log").await.unwrap_or(0) >= target.min(N)
        })
        .await;
        process.kill();
        process = Tidemill::start(&config, &format!("run{round}"));
    }
    producer.join().expect("producer thread");
    wait_for("every record loaded", Duration::from_secs(120), || async {
        db.try_scalar("SELECT count(*) FROM log").await.unwrap_or(0) >= N
    })
    .await;
    wait_for(
        "kafka offsets committed to the end",
        Duration::from_secs(60),
        || all_committed(&group, &topic, PARTITIONS),
    )
    .await;
    assert!(process.terminate(), "{}", process.log_text());
    assert_eq!(
        db.scalar("SELECT count(*) FROM log").await,
        N,
        "no duplicates"
    );
    assert_eq!(
        db.scalar("SELECT count(DISTINCT id) FROM log").await,
        N,
        "nothing lost"
    );
}

async fn a_zombie_paused_past_its_session_timeout_cannot_land_its_batch(kind: Kind) {
    const PARTITIONS: i32 = 2;
    let (topic, group) = (unique("zombie"), unique("g"));
    kafka::create_topic(&topic, PARTITIONS).await;
    let db = TestDb::new(kind).await;
    db.exec("CREATE TABLE log (id BIGINT NOT NULL)").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("tidemill.toml");
    // A rebalance waits for the frozen zombie at most 45 s (librdkafka's
    // rebalance timeout, max.poll.interval.ms, is 300 s by default).
    let toml = pipeline_toml(&topic, &group, db.url(), "log", "").replace(
        "[pipelines.p.sink]",
        "[pipelines.p.kafka.options]\n\"max.poll.interval.ms\" = \"45000\"\n[pipelines.p.sink]",
    );
    std::fs::write(&config, toml).expect("config");

    let (zombie_port, zombie_listen) = health_port();
    let (successor_port, successor_listen) = health_port();
    let mut zombie = Tidemill::start_with_env(
        &config,
        "zombie",
        &[("TIDEMILL__HEALTH__LISTEN", zombie_listen.as_str())],
    );
    produce_stream(&topic, 0, 1000, Duration::ZERO)
        .join()
        .expect("first wave");
    wait_for("first wave loaded", Duration::from_secs(60), || {
        all_committed(&group, &topic, PARTITIONS)
    })
    .await;

    // The zombie's next batch is held up by a lock; then the zombie is frozen.
    let lock = TableLock::take(&db, "log").await;
    produce_stream(&topic, 1000, 2000, Duration::ZERO)
        .join()
        .expect("second wave");
    wait_for(
        "the zombie's insert held up by the lock",
        Duration::from_secs(30),
        || writer_blocked(&db, "log", zombie_port, "p"),
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

    // A successor takes over once the zombie's session (6 s) times out.
    let mut successor = Tidemill::start_with_env(
        &config,
        "successor",
        &[("TIDEMILL__HEALTH__LISTEN", successor_listen.as_str())],
    );
    wait_for(
        "the successor owning partitions",
        Duration::from_secs(120),
        || async {
            http::member_metric(successor_port, "tidemill_assigned_partitions", "p").await > 0
        },
    )
    .await;
    if let Some(lock) = lock {
        lock.release().await;
    }
    wait_for(
        "the successor loading the second wave",
        Duration::from_secs(60),
        || async {
            db.try_scalar("SELECT count(*) FROM log").await == Some(2000)
                && all_committed(&group, &topic, PARTITIONS).await
        },
    )
    .await;

    signal(&zombie, "-CONT");
    wait_for(
        "the zombie's batch fenced",
        Duration::from_secs(60),
        || async { http::member_metric(zombie_port, "tidemill_fenced_total", "p").await > 0 },
    )
    .await;
    produce_stream(&topic, 2000, 3000, Duration::ZERO)
        .join()
        .expect("third wave");
    wait_for("third wave loaded", Duration::from_secs(60), || async {
        db.try_scalar("SELECT count(*) FROM log").await == Some(3000)
            && all_committed(&group, &topic, PARTITIONS).await
    })
    .await;
    assert!(zombie.terminate(), "{}", zombie.log_text());
    assert!(successor.terminate(), "{}", successor.log_text());
    assert_eq!(
        db.scalar("SELECT count(*) FROM log").await,
        3000,
        "the zombie's batch did not land"
    );
    assert_eq!(db.scalar("SELECT count(DISTINCT id) FROM log").await, 3000);
}

async fn members_starting_together_all_get_the_checkpoint_table(kind: Kind) {
    let db = TestDb::new(kind).await;
    db.exec("CREATE TABLE t (id BIGINT)").await;
    let cfg = toml_sink(db.url());
    let mut stores = Vec::new();
    for _ in 0..8 {
        stores.push(db::open(&cfg).await.expect("open sink").offset_store());
    }
    let results = futures_join_all(stores.iter().map(|s| s.ensure_table())).await;
    for r in results {
        r.expect("every member sees the table created");
    }
}

/// Runs the futures concurrently on this task and collects their outputs.
async fn futures_join_all<F: std::future::Future>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in futures {
        set.push(Box::pin(f));
    }
    let mut out: Vec<Option<F::Output>> = (0..set.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in set.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter()
        .map(|o| o.expect("every future finished"))
        .collect()
}
