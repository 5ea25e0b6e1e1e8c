//! Secrets never leak. Pipelines whose database password (in the URL's
//! userinfo or its query string) and Kafka SASL password are distinctive
//! sentinels are driven through a config error, `tidemill check`, a database
//! that refuses the password, a database that is down (which `run` waits
//! for, saying why on its status page), a broker that refuses
//! the client, and a full run with debug logging, JSON logs, exported traces
//! and metrics, a dead letter and shutdown. The sentinels appear nowhere: not
//! in stdout or stderr (pretty and JSON logs, error chains), `/metrics`,
//! `/readyz`, the status page and its `/status`, the OTLP exports (spans, their attributes, metrics), or the
//! dead letter's headers.

mod common;

use common::db::TestDb;
use common::http::{free_port, get_raw};
use common::kafka::{self, TestProducer};
use common::otlp::receiver;
use common::process::{output_text, run_once, write_config, Tidemill};
use common::{pipeline_toml, unique, wait_for_showing};
use std::time::Duration;

/// The database role's real password.
const DB_PW: &str = "SentinelDbPw4b1e";
/// A wrong password for the same role.
const WRONG_DB_PW: &str = "SentinelWrongPw7c3a";
/// The Kafka SASL password.
const KAFKA_PW: &str = "SentinelKafkaPw9c2d";
const ROLE: &str = "tidemill_sentinel";

/// Panics, showing `text`, if any sentinel appears in it.
fn assert_clean(what: &str, text: &str) {
    for secret in [DB_PW, WRONG_DB_PW, KAFKA_PW] {
        assert!(
            !text.contains(secret),
            "{what} shows the secret {secret}:\n{text}"
        );
    }
}

/// A test database that [`ROLE`] (password [`DB_PW`]) may use, and the URL of
/// it with `userinfo` and `query` in place of the test's own credentials.
async fn sentinel_db() -> (TestDb, impl Fn(&str, &str) -> String) {
    let db = TestDb::postgres().await;
    // Roles are cluster-wide and the tests run at once: the first creates it.
    db.exec(&format!(
        "DO $$ BEGIN CREATE ROLE {ROLE} LOGIN PASSWORD '{DB_PW}'; \
         EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
    ))
    .await;
    db.exec(&format!("GRANT ALL ON SCHEMA public TO {ROLE}"))
        .await;
    db.exec("CREATE TABLE t (id BIGINT PRIMARY KEY)").await;
    db.exec(&format!("GRANT ALL ON TABLE t TO {ROLE}")).await;
    let url = db.url().to_string();
    let with = move |userinfo: &str, query: &str| {
        let (scheme, rest) = url.split_once("://").expect("url has a scheme");
        let (_, host_db) = rest.split_once('@').expect("url has userinfo");
        let query = if query.is_empty() {
            String::new()
        } else {
            format!("?{query}")
        };
        format!("{scheme}://{userinfo}@{host_db}{query}")
    };
    (db, with)
}

/// One pipeline `p` into `url`, with SASL settings (password [`KAFKA_PW`]),
/// librdkafka's `debug` contexts, and `tail` after them.
fn toml_with_secrets(topic: &str, url: &str, protocol: &str, tail: &str) -> String {
    format!(
        "{}\n[pipelines.p.kafka.options]\n\"security.protocol\" = \"{protocol}\"\n\
         \"sasl.mechanism\" = \"SCRAM-SHA-512\"\n\"sasl.username\" = \"tidemill\"\n\
         \"sasl.password\" = \"{KAFKA_PW}\"\n\"debug\" = \"conf,security,broker\"\n{tail}",
        pipeline_toml(topic, &unique("g"), url, "t", "")
    )
}

#[tokio::test]
async fn config_errors_name_the_key_and_show_no_secret() {
    let (_db, url) = sentinel_db().await;
    let good = url(&format!("{ROLE}:{DB_PW}"), "");
    let cases = [
        // The secret-bearing key itself is wrong.
        (
            toml_with_secrets(
                "t",
                &good.replacen("postgres", "postgress", 1),
                "plaintext",
                "",
            ),
            "pipelines.p.sink.url",
        ),
        // Another key is wrong, with the secrets beside it.
        (
            toml_with_secrets("t", &good, "plaintext", "")
                .replace("max_rows = 500", "max_rows = 0"),
            "pipelines.p.batch.max_rows",
        ),
    ];
    for (toml, key) in cases {
        let (_dir, path) = write_config(&toml);
        for command in ["check", "run"] {
            let out = run_once(&[command, "--config", &path], &[("RUST_LOG", "debug")]);
            let text = output_text(&out);
            assert!(
                !out.status.success(),
                "{command} accepted a bad config:\n{text}"
            );
            assert!(text.contains(key), "{command} does not name {key}:\n{text}");
            assert_clean(command, &text);
        }
    }
}

/// `run` on the config at `path`, whose database is not there: it waits, its
/// status page names the error (`says`), and neither the page, readiness nor
/// its log shows a secret; SIGTERM ends the wait cleanly.
async fn run_waits_without_the_secret(path: &str, says: &str) {
    let health = free_port();
    let mut process = Tidemill::start_with_env(
        std::path::Path::new(path),
        "waiting",
        &[
            ("RUST_LOG", "debug"),
            ("TIDEMILL__HEALTH__LISTEN", &format!("127.0.0.1:{health}")),
        ],
    );
    let log = || process.log_text();
    wait_for_showing(
        "the status page naming the error",
        Duration::from_secs(60),
        &log,
        || async { get_raw(health, "/status").await.contains(says) },
    )
    .await;
    assert_clean("/status", &get_raw(health, "/status").await);
    assert_clean("/readyz", &get_raw(health, "/readyz").await);
    let stopped = process.terminate();
    assert!(
        stopped,
        "a clean stop while waiting:\n{}",
        process.log_text()
    );
    assert_clean("run", &process.log_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_database_or_broker_is_reported_without_the_secret() {
    let (_db, url) = sentinel_db().await;
    let topic = unique("secrets");
    kafka::create_topic(&topic, 1).await;
    let closed_port = free_port();
    // A refused password stops `run` as it stops `check`; a database that is
    // not there (yet) is waited for by `run`, which says why meanwhile.
    let databases = [
        (
            url(&format!("{ROLE}:{WRONG_DB_PW}"), ""),
            "password authentication failed",
            false,
        ),
        // The password in the query string, and nothing listening.
        (
            url(ROLE, &format!("password={DB_PW}")).replace(":5432/", &format!(":{closed_port}/")),
            "refused",
            true,
        ),
    ];
    for (db_url, says, run_waits) in databases {
        let (_dir, path) = write_config(&toml_with_secrets(&topic, &db_url, "plaintext", ""));
        for command in ["check", "run"] {
            if command == "run" && run_waits {
                run_waits_without_the_secret(&path, says).await;
                continue;
            }
            let out = run_once(&[command, "--config", &path], &[("RUST_LOG", "debug")]);
            let text = output_text(&out);
            assert!(!out.status.success(), "{command} succeeded:\n{text}");
            assert!(
                text.contains(says),
                "{command} does not say {says}:\n{text}"
            );
            assert_clean(command, &text);
        }
    }
    // SASL against the plaintext listener, and the sentinel as a wrong
    // SCRAM password on the secured one: the broker refuses the client.
    let good = url(&format!("{ROLE}:{DB_PW}"), "");
    let secured = format!("\"ssl.ca.location\" = \"{}\"\n", common::tls_file("ca.crt"));
    let brokers = [
        (
            toml_with_secrets(&topic, &good, "sasl_plaintext", ""),
            "pipelines.p.kafka.options.sasl.mechanism",
        ),
        (
            toml_with_secrets(&topic, &good, "sasl_ssl", &secured)
                .replace(&kafka::brokers(), "127.0.0.1:9094"),
            "pipelines.p.kafka.options.sasl.password",
        ),
    ];
    for (toml, key) in brokers {
        let (_dir, path) = write_config(&toml);
        for command in ["check", "run"] {
            let out = run_once(&[command, "--config", &path], &[("RUST_LOG", "debug")]);
            let text = output_text(&out);
            assert!(!out.status.success(), "{command} succeeded:\n{text}");
            assert!(text.contains(key), "{command} does not name {key}:\n{text}");
            assert_clean(command, &text);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_with_debug_logs_traces_metrics_and_a_dead_letter_shows_no_secret() {
    let (db, url) = sentinel_db().await;
    let (otlp_port, posts) = receiver().await;
    let (topic, dlq) = (unique("secrets"), unique("secrets-dlq"));
    kafka::create_topic(&topic, 2).await;
    kafka::create_topic(&dlq, 1).await;
    let health_port = free_port();
    let toml = format!(
        "[telemetry]\nlog_format = \"json\"\n\
         otlp_endpoint = \"http://127.0.0.1:{otlp_port}/v1/traces\"\nmetrics_interval = \"200ms\"\n\
         [health]\nlisten = \"127.0.0.1:{health_port}\"\nstatistics_interval = \"200ms\"\n{}",
        toml_with_secrets(
            &topic,
            &url(&format!("{ROLE}:{DB_PW}"), ""),
            "plaintext",
            &format!("[pipelines.p.dead_letter]\ntopic = \"{dlq}\"\n")
        )
    );
    let (dir, path) = write_config(&toml);
    let producer = TestProducer::new(&topic);
    for i in 0..20 {
        producer.send(Some(&i.to_string()), Some(&format!(r#"{{"id":{i}}}"#)));
    }
    producer.send(Some("poison"), Some(r#"{"id":"#));
    producer.flush();
    let mut process =
        Tidemill::start_with_env(std::path::Path::new(&path), "run", &[("RUST_LOG", "debug")]);
    let log = || process.log_text();
    wait_for_showing("rows loaded", Duration::from_secs(60), &log, || async {
        db.try_scalar("SELECT count(*) FROM t").await == Some(20)
    })
    .await;
    let letters = tokio::task::spawn_blocking(move || kafka::read_all(&dlq, 1))
        .await
        .expect("read dead letters");
    assert_eq!(letters.len(), 1, "the poison record dead-lettered");
    for (key, value) in &letters[0].headers {
        assert_clean("a dead-letter header", &format!("{key}: {value}"));
    }
    let metrics = get_raw(health_port, "/metrics").await;
    assert!(
        metrics.contains("tidemill_rows_loaded_total{pipeline=\"p\"} 20"),
        "{metrics}"
    );
    assert_clean("/metrics", &metrics);
    let ready = get_raw(health_port, "/readyz").await;
    assert!(
        ready.starts_with("HTTP/1.1 "),
        "/readyz answered: {ready:?}"
    );
    assert_clean("/readyz", &ready);
    let status = get_raw(health_port, "/status").await;
    assert!(
        status.contains("\"dead_lettered\":1"),
        "/status shows the dead letter: {status}"
    );
    assert_clean("/status", &status);
    assert_clean("/", &get_raw(health_port, "/").await);
    assert!(process.terminate(), "{}", process.log_text());
    let log = process.log_text();
    assert!(
        log.contains("\"level\":\"DEBUG\""),
        "debug logging was on:\n{log}"
    );
    assert_clean("the JSON log", &log);
    let posts = posts.lock().expect("store").clone();
    for path in ["/v1/traces", "/v1/metrics"] {
        assert!(
            posts.iter().any(|(p, _)| p == path),
            "nothing exported to {path}"
        );
    }
    for (path, body) in posts {
        assert_clean(
            &format!("an OTLP export to {path}"),
            &String::from_utf8_lossy(&body),
        );
    }
    drop(dir);
}
