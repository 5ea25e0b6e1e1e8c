//! The command line: `check` against the real test bed, start-up failures
//! that name the key, `--help`.

mod common;

use common::db::TestDb;
use common::process::{output_text as text, run_once as tidemill, write_config};
use common::{kafka, pipeline_toml, unique};

#[test]
fn help_describes_the_commands() {
    let out = tidemill(&["--help"], &[]);
    assert!(out.status.success());
    let help = text(&out);
    for word in ["run", "check", "demo"] {
        assert!(help.contains(word), "{help}");
    }
}

#[tokio::test]
async fn check_passes_when_kafka_topic_and_table_are_ready() {
    let topic = unique("check_ok");
    kafka::create_topic(&topic, 1).await;
    let db = TestDb::postgres().await;
    db.exec("CREATE TABLE t (id BIGINT PRIMARY KEY, v TEXT)")
        .await;
    let (_dir, path) = write_config(&pipeline_toml(
        &topic,
        "g",
        db.url(),
        "t",
        "mode = \"upsert\"\nkey_columns = [\"id\"]",
    ));
    let out = tidemill(&["check", "--config", &path], &[]);
    assert!(out.status.success(), "{}", text(&out));
}

#[tokio::test]
async fn check_reports_missing_topic_and_table_at_once_naming_keys() {
    let db = TestDb::postgres().await;
    let (_dir, path) = write_config(&pipeline_toml(
        &unique("absent"),
        "g",
        db.url(),
        "no_such_table",
        "",
    ));
    let out = tidemill(&["check", "--config", &path], &[]);
    assert!(!out.status.success());
    let report = text(&out);
    assert!(report.contains("pipelines.p.topics"), "{report}");
    assert!(
        report.contains("pipelines.p.sink") && report.contains("no_such_table"),
        "{report}"
    );
    assert!(!report.contains(":tidemill@"), "password leaked: {report}");
}

#[test]
fn check_reports_every_config_problem_at_once() {
    let db_dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", db_dir.path().join("x.db").display());
    let toml = pipeline_toml("t", "g", &url, "t", "mode = \"upsert\"")
        .replace("max_rows = 500", "max_rows = 0")
        .replace("brokers = \"", "brokers = \"\" #");
    let (_dir, path) = write_config(&toml);
    let out = tidemill(&["check", "--config", &path], &[]);
    assert!(!out.status.success());
    let report = text(&out);
    for key in [
        "pipelines.p.sink.key_columns",
        "pipelines.p.batch.max_rows",
        "pipelines.p.kafka.brokers",
    ] {
        assert!(report.contains(key), "{key} missing: {report}");
    }
}

#[test]
fn run_fails_at_start_up_naming_an_unknown_key() {
    let db_dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", db_dir.path().join("x.db").display());
    let toml = pipeline_toml("t", "g", &url, "t", "batch_size = 10");
    let (_dir, path) = write_config(&toml);
    let out = tidemill(&["run", "--config", &path], &[]);
    assert!(!out.status.success());
    assert!(text(&out).contains("batch_size"), "{}", text(&out));
}

#[tokio::test]
async fn environment_overrides_the_file() {
    let topic = unique("env");
    kafka::create_topic(&topic, 1).await;
    let db = TestDb::postgres().await;
    db.exec("CREATE TABLE t (id BIGINT)").await;
    let (_dir, path) = write_config(&pipeline_toml(&topic, "g", db.url(), "t", ""));
    let out = tidemill(
        &["check", "--config", &path],
        &[("TIDEMILL__PIPELINES__P__SINK__TABLE", "from_env")],
    );
    assert!(!out.status.success());
    assert!(text(&out).contains("from_env"), "{}", text(&out));
}

#[tokio::test]
async fn a_fatal_database_error_exits_non_zero_with_a_clear_message() {
    let topic = unique("fatal");
    kafka::create_topic(&topic, 1).await;
    let url = common::db::admin_url().replace("tidemill:tidemill@", "tidemill:wrong-secret@");
    let (_dir, path) = write_config(&pipeline_toml(&topic, "g", &url, "t", ""));
    let out = tidemill(&["run", "--config", &path], &[]);
    assert!(!out.status.success());
    let report = text(&out);
    assert!(
        report.contains("password authentication failed"),
        "{report}"
    );
    assert!(
        !report.contains("wrong-secret"),
        "password leaked: {report}"
    );
}
