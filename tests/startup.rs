//! A database that is not up yet when the process starts (a pod scheduled
//! before its database, a database restarting during a rollout) is waited
//! for: the process stays alive, `/readyz` answers 503 and the status page
//! names the database error, and once the database is there every record
//! loads — on PostgreSQL and MariaDB (the private server stopped) and SQLite
//! (the file held locked by another writer).

mod common;

use common::db::Kind;
use common::http::{free_port, get};
use common::kafka::{self, TestProducer};
use common::outage::OutageDb;
use common::process::{write_config, Tidemill};
use common::{pipeline_toml, unique, wait_for_showing};
use std::path::Path;
use std::time::Duration;

const RECORDS: i64 = 100;

per_backend!(a_pipeline_waits_for_a_database_that_is_not_up_yet);

async fn a_pipeline_waits_for_a_database_that_is_not_up_yet(kind: Kind) {
    let (topic, group) = (unique("startup"), unique("g"));
    kafka::create_topic(&topic, 2).await;
    let mut server = OutageDb::start(kind).await;
    server
        .db()
        .exec("CREATE TABLE t (id BIGINT PRIMARY KEY)")
        .await;
    let port = free_port();
    let toml = format!(
        "[health]\nlisten = \"127.0.0.1:{port}\"\n{}",
        pipeline_toml(&topic, &group, server.url(), "t", "")
    );
    let (_dir, path) = write_config(&toml);
    let producer = TestProducer::new(&topic);
    for i in 0..RECORDS {
        producer.send(Some(&i.to_string()), Some(&format!(r#"{{"id":{i}}}"#)));
    }
    producer.flush();
    server.stop().await;

    let mut process = Tidemill::start(Path::new(&path), "startup");
    let log = || process.log_text();
    wait_for_showing(
        "alive, not ready, and the database error on the status page",
        Duration::from_secs(60),
        &log,
        || async {
            let (_, status) = get(port, "/status").await;
            let error = serde_json::from_str::<serde_json::Value>(&status)
                .is_ok_and(|doc| doc["pipelines"][0]["db_error"]["message"].is_string());
            error && get(port, "/livez").await.0 == 200 && get(port, "/readyz").await.0 == 503
        },
    )
    .await;
    assert!(
        process.is_running(),
        "exited instead of waiting:\n{}",
        log()
    );

    server.start_again().await;
    wait_for_showing(
        "every record loaded",
        Duration::from_secs(90),
        &log,
        || async { server.db().try_scalar("SELECT count(*) FROM t").await == Some(RECORDS) },
    )
    .await;
    wait_for_showing("ready", Duration::from_secs(30), &log, || async {
        get(port, "/readyz").await.0 == 200
    })
    .await;
    assert!(process.terminate(), "{}", process.log_text());
}
