//! Database connections over TLS, against the test bed's real servers
//! (scripts/lib/tls.sh makes the CA and certificates; PostgreSQL and MariaDB
//! run with them): a pipeline loads exactly once through PostgreSQL with
//! `sslmode=verify-full` and with client-certificate authentication, and
//! through MariaDB with TLS required and with an X509 client certificate; a
//! wrong CA or a client certificate from another CA fails `tidemill check`
//! and `tidemill run` at start-up with a message that says so.

mod common;

use common::db::TestDb;
use common::kafka::{self, TestProducer};
use common::process::{output_text as text, run_once, write_config};
use common::{pipeline_toml, tls_file, unique, wait_for, Running};
use std::process::Output;
use std::time::Duration;

/// `url` (a test database's) with other credentials and a query string.
fn as_user(url: &str, userinfo: &str, query: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("url has a scheme");
    let (_, host_db) = rest.split_once('@').expect("url has userinfo");
    format!("{scheme}://{userinfo}@{host_db}?{query}")
}

fn pg_verify_full(db: &TestDb, ca: &str) -> String {
    as_user(
        db.url(),
        "tidemill_tls:tidemill",
        &format!("sslmode=verify-full&sslrootcert={}", tls_file(ca)),
    )
}

fn pg_client_cert(db: &TestDb, cert: &str) -> String {
    as_user(
        db.url(),
        "tidemill_cert",
        &format!(
            "sslmode=verify-full&sslrootcert={}&sslcert={}&sslkey={}",
            tls_file("ca.crt"),
            tls_file(&format!("{cert}.crt")),
            tls_file(&format!("{cert}.key"))
        ),
    )
}

fn mariadb_tls(db: &TestDb, user: &str, cert: Option<&str>) -> String {
    let mut query = format!("ssl-mode=VERIFY_IDENTITY&ssl-ca={}", tls_file("ca.crt"));
    if let Some(cert) = cert {
        query.push_str(&format!(
            "&ssl-cert={}&ssl-key={}",
            tls_file(&format!("{cert}.crt")),
            tls_file(&format!("{cert}.key"))
        ));
    }
    as_user(db.url(), &format!("{user}:tidemill"), &query)
}

/// Runs an exactly-once pipeline writing through `url` into `db` and checks
/// every record landed once and the offsets reached the end.
async fn loads_exactly_once_through(db: &TestDb, url: &str) {
    const N: i64 = 500;
    let (topic, group) = (unique("tls"), unique("g"));
    kafka::create_topic(&topic, 2).await;
    db.exec("CREATE TABLE t (id BIGINT PRIMARY KEY, v BIGINT)")
        .await;
    let producer = TestProducer::new(&topic);
    for i in 0..N {
        producer.send(
            Some(&i.to_string()),
            Some(&format!(r#"{{"id":{i},"v":{i}}}"#)),
        );
    }
    producer.flush();
    let running = Running::start(&pipeline_toml(&topic, &group, url, "t", "")).await;
    wait_for(
        "every record in the table",
        Duration::from_secs(60),
        || async { db.try_scalar("SELECT count(*) FROM t").await == Some(N) },
    )
    .await;
    wait_for(
        "offsets committed to the end",
        Duration::from_secs(30),
        || common::all_committed(&group, &topic, 2),
    )
    .await;
    running.stop().await;
    assert_eq!(db.scalar("SELECT count(DISTINCT id) FROM t").await, N);
    assert_eq!(db.scalar("SELECT sum(v) FROM t").await, N * (N - 1) / 2);
}

/// How many of `user`'s sessions on this database are encrypted.
async fn pg_tls_sessions(db: &TestDb, user: &str) -> i64 {
    db.scalar(&format!(
        "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
         WHERE s.ssl AND a.usename = '{user}' AND a.datname = current_database()"
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_with_verify_full_loads_exactly_once_over_tls() {
    let db = TestDb::postgres().await;
    let url = pg_verify_full(&db, "ca.crt");
    // The pipeline's pool stays open until it stops: its sessions are visible.
    let (topic, group) = (unique("tls_seen"), unique("g"));
    kafka::create_topic(&topic, 1).await;
    db.exec("CREATE TABLE seen (id BIGINT PRIMARY KEY)").await;
    let running = Running::start(&pipeline_toml(&topic, &group, &url, "seen", "")).await;
    let producer = TestProducer::new(&topic);
    producer.send(Some("1"), Some(r#"{"id":1}"#));
    producer.flush();
    wait_for(
        "the record in the table",
        Duration::from_secs(30),
        || async { db.try_scalar("SELECT count(*) FROM seen").await == Some(1) },
    )
    .await;
    assert!(
        pg_tls_sessions(&db, "tidemill_tls").await >= 1,
        "the pipeline's sessions are encrypted"
    );
    running.stop().await;
    loads_exactly_once_through(&db, &url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_with_a_client_certificate_loads_exactly_once() {
    let db = TestDb::postgres().await;
    loads_exactly_once_through(&db, &pg_client_cert(&db, "client")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_with_tls_required_loads_exactly_once() {
    let db = TestDb::mariadb().await;
    loads_exactly_once_through(&db, &mariadb_tls(&db, "tidemill_tls", None)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_with_an_x509_client_certificate_loads_exactly_once() {
    let db = TestDb::mariadb().await;
    loads_exactly_once_through(&db, &mariadb_tls(&db, "tidemill_x509", Some("client"))).await;
}

fn tidemill(args: &[&str], config: &str) -> Output {
    let (_dir, path) = write_config(config);
    let mut all = args.to_vec();
    all.extend(["--config", &path]);
    run_once(&all, &[])
}

/// `check` and `run` both refuse `url` at start-up, naming the sink's url
/// and a reason containing `reason`; the password never shows.
async fn refused_at_start_up(db: &TestDb, url: &str, reason: &str) {
    let topic = unique("tls_bad");
    kafka::create_topic(&topic, 1).await;
    db.exec("CREATE TABLE t (id BIGINT PRIMARY KEY)").await;
    let config = pipeline_toml(&topic, &unique("g"), url, "t", "");
    for command in ["check", "run"] {
        let out = tidemill(&[command], &config);
        let said = text(&out);
        assert!(!out.status.success(), "{command} succeeded: {said}");
        assert!(said.contains("sink.url"), "{command}: {said}");
        assert!(
            said.contains(reason),
            "{command} should say {reason:?}: {said}"
        );
        assert!(!said.contains(":tidemill@"), "password leaked: {said}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_refuses_a_server_certificate_from_an_untrusted_ca() {
    let db = TestDb::postgres().await;
    let url = pg_verify_full(&db, "other-ca.crt");
    refused_at_start_up(&db, &url, "server certificate not trusted").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_refuses_a_client_certificate_from_another_ca() {
    let db = TestDb::postgres().await;
    let url = pg_client_cert(&db, "rogue-client");
    refused_at_start_up(&db, &url, "certificate").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_refuses_a_server_certificate_from_an_untrusted_ca() {
    let db = TestDb::mariadb().await;
    let url = as_user(
        db.url(),
        "tidemill_tls:tidemill",
        &format!("ssl-mode=VERIFY_CA&ssl-ca={}", tls_file("other-ca.crt")),
    );
    refused_at_start_up(&db, &url, "server certificate not trusted").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_ca_file_is_named_at_start_up() {
    let db = TestDb::postgres().await;
    let url = as_user(
        db.url(),
        "tidemill_tls:tidemill",
        "sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
    );
    refused_at_start_up(&db, &url, "/nonexistent/ca.pem").await;
}
