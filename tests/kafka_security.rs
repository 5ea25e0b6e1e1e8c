//! Secured Kafka, against the test bed's real secured listeners
//! (scripts/kafka/secured.properties: SASL_SSL with SCRAM-SHA-512 and PLAIN
//! users, mutual TLS, and a listener whose certificate names another host).
//! A stateful exactly-once pipeline runs through each way in — its consumer,
//! its Kafka offset commits and its dead-letter producer alike — and loads
//! exactly; a wrong password, an untrusted CA, a certificate for another
//! host and a client certificate the broker does not know each fail
//! `tidemill check` and `tidemill run` at start-up with a message naming the
//! setting to fix.

mod common;

use common::db::TestDb;
use common::events::{self, Event};
use common::kafka::{self, TestProducer};
use common::process::{output_text, run_once, write_config, Tidemill};
use common::{all_committed, pipeline_toml, tls_file, unique, wait_for, wait_for_showing, Running};
use std::time::Duration;

const SASL_SSL: &str = "127.0.0.1:9094";
const MTLS: &str = "127.0.0.1:9095";
const WRONG_HOST: &str = "127.0.0.1:9096";

/// The `[pipelines.p.kafka.options]` lines of each way in.
fn scram(password: &str, ca: &str) -> String {
    format!(
        "\"security.protocol\" = \"sasl_ssl\"\n\"sasl.mechanism\" = \"SCRAM-SHA-512\"\n\
         \"sasl.username\" = \"tidemill\"\n\"sasl.password\" = \"{password}\"\n\
         \"ssl.ca.location\" = \"{}\"\n",
        tls_file(ca)
    )
}

fn plain() -> String {
    format!(
        "\"security.protocol\" = \"sasl_ssl\"\n\"sasl.mechanism\" = \"PLAIN\"\n\
         \"sasl.username\" = \"tidemill\"\n\"sasl.password\" = \"tidemill-plain\"\n\
         \"ssl.ca.location\" = \"{}\"\n",
        tls_file("ca.crt")
    )
}

fn mtls(client: &str) -> String {
    format!(
        "\"security.protocol\" = \"ssl\"\n\"ssl.ca.location\" = \"{}\"\n\
         \"ssl.certificate.location\" = \"{}\"\n\"ssl.key.location\" = \"{}\"\n",
        tls_file("ca.crt"),
        tls_file(&format!("{client}.crt")),
        tls_file(&format!("{client}.key"))
    )
}

/// Running totals per user into `totals`, through `brokers` with `options`,
/// dead letters to `dlq`.
fn totals_toml(
    topic: &str,
    group: &str,
    db: &TestDb,
    brokers: &str,
    options: &str,
    dlq: &str,
) -> String {
    pipeline_toml(
        topic,
        group,
        db.url(),
        "totals",
        "mode = \"upsert\"\nkey_columns = [\"user_id\"]",
    )
    .replace(
        &format!("brokers = \"{}\"", kafka::brokers()),
        &format!("brokers = \"{brokers}\""),
    ) + &format!(
        r#"
[[pipelines.p.transforms]]
type = "key"
fields = ["user_id"]
[[pipelines.p.transforms]]
type = "aggregate"
columns = {{ n = "count()", total = "sum(amount)" }}
[pipelines.p.dead_letter]
topic = "{dlq}"
[pipelines.p.kafka.options]
{options}"#
    )
}

async fn totals_table() -> TestDb {
    let db = TestDb::postgres().await;
    db.exec("CREATE TABLE totals (user_id BIGINT PRIMARY KEY, n BIGINT NOT NULL, total BIGINT NOT NULL)")
        .await;
    db
}

async fn loads_exactly_through(brokers: &str, options: String) {
    const N: i64 = 600;
    let (topic, group, dlq) = (unique("secured"), unique("g"), unique("secured-dlq"));
    kafka::create_topic(&topic, 2).await;
    kafka::create_topic(&dlq, 1).await;
    let db = totals_table().await;
    let all: Vec<Event> = (0..N).map(|i| events::event(i, 20)).collect();
    let producer = TestProducer::new(&topic);
    for e in &all {
        producer.send(Some(&e.key()), Some(&e.json()));
    }
    producer.send(Some("poison"), Some(r#"{"user_id": 1, "amount": "#));
    producer.flush();
    let running = Running::start(&totals_toml(&topic, &group, &db, brokers, &options, &dlq)).await;
    wait_for("every record counted", Duration::from_secs(60), || async {
        db.try_scalar("SELECT coalesce(sum(n), 0) FROM totals")
            .await
            == Some(N)
    })
    .await;
    // The offsets went to Kafka through the secured listener as well.
    wait_for(
        "kafka offsets committed to the end",
        Duration::from_secs(60),
        || all_committed(&group, &topic, 2),
    )
    .await;
    let letters = tokio::task::spawn_blocking(move || kafka::read_all(&dlq, 1))
        .await
        .expect("read dead letters");
    assert_eq!(
        letters.len(),
        1,
        "the poison record dead-lettered through the secured listener"
    );
    running.stop().await;
    let totals = db
        .pairs("SELECT user_id * 1000000 + n, total FROM totals ORDER BY user_id")
        .await;
    assert_eq!(totals, events::totals(&all), "running totals exact");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stateful_pipeline_loads_exactly_through_sasl_scram_over_tls() {
    loads_exactly_through(SASL_SSL, scram("tidemill-scram", "ca.crt")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stateful_pipeline_loads_exactly_through_sasl_plain_over_tls() {
    loads_exactly_through(SASL_SSL, plain()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stateful_pipeline_loads_exactly_through_mutual_tls() {
    loads_exactly_through(MTLS, mtls("client")).await;
}

/// `check` and `run` both fail, each naming `key` and saying `says`.
async fn refused_at_start_up(brokers: &str, options: String, key: &str, says: &str) {
    let topic = unique("secured");
    kafka::create_topic(&topic, 1).await;
    let db = totals_table().await;
    let toml = totals_toml(&topic, &unique("g"), &db, brokers, &options, &unique("dlq"));
    let (dir, path) = write_config(&toml);
    let out = run_once(&["check", "--config", &path], &[]);
    let text = output_text(&out);
    assert!(!out.status.success(), "check passed:\n{text}");
    assert!(
        text.contains(key) && text.contains(says),
        "check does not name {key} / say {says}:\n{text}"
    );

    let process = Tidemill::start(std::path::Path::new(&path), "refused");
    wait_for_showing(
        "run to stop at start-up",
        Duration::from_secs(60),
        &|| process.log_text(),
        || async { process.exit_status().is_some() },
    )
    .await;
    let status = process.exit_status().expect("the process has exited");
    let log = process.log_text();
    assert!(!status.success(), "run exited cleanly:\n{log}");
    let last = log.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("tidemill:") && last.contains(key) && last.contains(says),
        "run's last word does not name {key} / say {says}:\n{log}"
    );
    drop(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_refused_at_start_up_naming_the_password() {
    refused_at_start_up(
        SASL_SSL,
        scram("not-the-password", "ca.crt"),
        "pipelines.p.kafka.options.sasl.password",
        "refused the SASL credentials",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_broker_certificate_is_refused_at_start_up_naming_the_ca() {
    refused_at_start_up(
        SASL_SSL,
        scram("tidemill-scram", "other-ca.crt"),
        "pipelines.p.kafka.options.ssl.ca.location",
        "could not be verified",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_for_another_host_is_refused_at_start_up() {
    let options = format!(
        "\"security.protocol\" = \"ssl\"\n\"ssl.ca.location\" = \"{}\"\n",
        tls_file("ca.crt")
    );
    refused_at_start_up(
        WRONG_HOST,
        options,
        "pipelines.p.kafka.options.ssl.ca.location",
        "does not name the host",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_from_another_ca_is_refused_at_start_up() {
    refused_at_start_up(
        MTLS,
        mtls("rogue-client"),
        "pipelines.p.kafka.options.ssl.certificate.location",
        "refused this client's TLS certificate",
    )
    .await;
}

/// The Kubernetes way: the password comes from a Secret as the environment
/// variable `TIDEMILL__PIPELINES__P__KAFKA__OPTIONS__SASL.PASSWORD`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sasl_password_from_the_environment_reaches_the_broker() {
    let topic = unique("secured");
    kafka::create_topic(&topic, 1).await;
    let db = totals_table().await;
    let options: String = scram("unused", "ca.crt")
        .lines()
        .filter(|l| !l.starts_with("\"sasl.password\""))
        .map(|l| format!("{l}\n"))
        .collect();
    let toml = totals_toml(
        &topic,
        &unique("g"),
        &db,
        SASL_SSL,
        &options,
        &unique("dlq"),
    );
    let (_dir, path) = write_config(&toml);
    let var = "TIDEMILL__PIPELINES__P__KAFKA__OPTIONS__SASL.PASSWORD";
    let out = run_once(&["check", "--config", &path], &[(var, "tidemill-scram")]);
    assert!(out.status.success(), "{}", output_text(&out));
    let out = run_once(&["check", "--config", &path], &[(var, "not-the-password")]);
    let text = output_text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("pipelines.p.kafka.options.sasl.password"),
        "{text}"
    );
}
