//! OTLP over gRPC: traces and metrics reach a gRPC receiver built in the test
//! from the OpenTelemetry protobuf definitions (`tests/common/otlp.rs`: the
//! trace and metrics services' `Export` over plain-text HTTP/2, no collector
//! to install) — chosen once by the endpoint's scheme (`grpc://`), once by
//! the specification's variables (`OTEL_EXPORTER_OTLP_ENDPOINT` with
//! `OTEL_EXPORTER_OTLP_PROTOCOL=grpc`).

mod common;

use common::db::TestDb;
use common::otlp::{attr, grpc_receiver, latest_int, spans, Posts};
use common::process::{write_config, Tidemill};
use common::{kafka, pipeline_toml, unique, wait_for_showing};
use std::path::Path;
use std::time::Duration;

const RECORDS: i64 = 50;

/// Runs a pipeline loading [`RECORDS`] rows with `telemetry` (TOML lines) and
/// `envs`, until the receiver has its batch spans and its rows-loaded count.
async fn export_over_grpc(telemetry: &str, envs: &[(&str, &str)], posts: &Posts) -> String {
    let (topic, group) = (unique("grpc"), unique("g"));
    kafka::create_topic(&topic, 2).await;
    let db = TestDb::postgres().await;
    db.exec("CREATE TABLE t (id BIGINT PRIMARY KEY)").await;
    let producer = kafka::TestProducer::new(&topic);
    for i in 0..RECORDS {
        producer.send(Some(&i.to_string()), Some(&format!(r#"{{"id":{i}}}"#)));
    }
    producer.flush();
    let toml = format!(
        "[telemetry]\n{telemetry}\nmetrics_interval = \"200ms\"\n{}",
        pipeline_toml(&topic, &group, db.url(), "t", "")
    );
    let (_dir, path) = write_config(&toml);
    let mut process = Tidemill::start_with_env(Path::new(&path), "grpc", envs);
    let log = || process.log_text();
    wait_for_showing(
        "batch spans and the rows-loaded count over gRPC",
        Duration::from_secs(60),
        &log,
        || async {
            let posts = posts.lock().expect("store").clone();
            spans(&posts).iter().any(|s| s.name == "batch")
                && latest_int(&posts, "tidemill_rows_loaded_total", &[("pipeline", "p")])
                    == Some(RECORDS)
        },
    )
    .await;
    assert_eq!(db.try_scalar("SELECT count(*) FROM t").await, Some(RECORDS));
    assert!(process.terminate(), "{}", process.log_text());
    topic
}

/// Every export arrived as a gRPC call of the trace or metrics service.
fn assert_all_grpc(posts: &Posts) {
    let posts = posts.lock().expect("store");
    assert!(!posts.is_empty());
    for (path, body) in posts.iter() {
        assert!(
            path == "/v1/traces" || path == "/v1/metrics",
            "an export to {path} ({} bytes): not the trace or metrics service, or not a gRPC message",
            body.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_endpoint_receives_the_batch_spans_and_the_metrics() {
    let (port, posts) = grpc_receiver().await;
    let topic = export_over_grpc(
        &format!("otlp_endpoint = \"grpc://127.0.0.1:{port}\""),
        &[],
        &posts,
    )
    .await;
    assert_all_grpc(&posts);
    let spans = spans(&posts.lock().expect("store"));
    let batch = spans
        .iter()
        .find(|s| s.name == "batch")
        .expect("a batch span");
    assert_eq!(
        attr(batch, "messaging.destination.name").as_deref(),
        Some(topic.as_str())
    );
    let write = spans
        .iter()
        .find(|s| s.name == "db.write")
        .expect("the writer's span");
    assert_eq!(attr(write, "db.system.name").as_deref(), Some("postgresql"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_otel_protocol_variable_chooses_grpc_for_the_shared_endpoint() {
    let (port, posts) = grpc_receiver().await;
    let endpoint = format!("http://127.0.0.1:{port}");
    export_over_grpc(
        "",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ],
        &posts,
    )
    .await;
    assert_all_grpc(&posts);
}
