//! OTLP over gRPC: traces and metrics reach a gRPC receiver built in the test
//! from the OpenTelemetry protobuf definitions (`tests/common/otlp.rs`: the
//! trace and metrics services' `Export` over plain-text HTTP/2) — chosen once
//! by the endpoint's scheme (`grpc://`), once by the specification's variables
//! (`OTEL_EXPORTER_OTLP_ENDPOINT` with `OTEL_EXPORTER_OTLP_PROTOCOL=grpc`) —
//! and a real OpenTelemetry Collector (built from the Go module proxy by
//! `scripts/install-otelcol.sh`) accepts them and passes them on.

mod common;

use common::db::TestDb;
use common::http::free_port;
use common::otlp::{attr, grpc_receiver, latest_int, receiver, spans, Posts};
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

/// The test bed's OpenTelemetry Collector, built once (`scripts/install-otelcol.sh`).
fn collector_binary() -> String {
    let out = std::process::Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/install-otelcol.sh"
    ))
    .output()
    .expect("run scripts/install-otelcol.sh");
    assert!(
        out.status.success(),
        "scripts/install-otelcol.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A collector process, stopped when dropped.
struct Collector(std::process::Child);

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_collector_takes_the_grpc_exports_and_passes_them_on() {
    // tidemill --OTLP/gRPC--> collector --OTLP/HTTP--> the test's receiver.
    let (http_port, posts) = receiver().await;
    let grpc_port = free_port();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("collector.yaml");
    std::fs::write(
        &config,
        format!(
            "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:{grpc_port}\n\
             exporters:\n  otlphttp:\n    endpoint: http://127.0.0.1:{http_port}\n    compression: none\n\
             service:\n  telemetry:\n    metrics:\n      level: none\n  pipelines:\n\
             \x20   traces:\n      receivers: [otlp]\n      exporters: [otlphttp]\n\
             \x20   metrics:\n      receivers: [otlp]\n      exporters: [otlphttp]\n"
        ),
    )
    .expect("collector config");
    let log = std::fs::File::create(dir.path().join("collector.log")).expect("log");
    let _collector = Collector(
        std::process::Command::new(collector_binary())
            .arg(format!("--config=file:{}", config.display()))
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start the collector"),
    );
    let collector_log =
        || std::fs::read_to_string(dir.path().join("collector.log")).unwrap_or_default();
    wait_for_showing(
        "the collector listening for OTLP/gRPC",
        Duration::from_secs(30),
        &collector_log,
        || async {
            tokio::net::TcpStream::connect(("127.0.0.1", grpc_port))
                .await
                .is_ok()
        },
    )
    .await;
    let topic = export_over_grpc(
        &format!("otlp_endpoint = \"grpc://127.0.0.1:{grpc_port}\""),
        &[],
        &posts,
    )
    .await;
    let spans = spans(&posts.lock().expect("store"));
    let batch = spans
        .iter()
        .find(|s| s.name == "batch")
        .expect("a batch span");
    assert_eq!(
        attr(batch, "messaging.destination.name").as_deref(),
        Some(topic.as_str())
    );
}
