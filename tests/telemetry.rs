//! Traces leave the process: with `telemetry.otlp_endpoint` set, batch spans
//! (with their offsets) reach an OTLP/HTTP receiver — here a minimal one in the
//! test, whose exports are decoded as OTLP protobuf — and a record produced
//! with a W3C `traceparent` continues the producer's trace.

mod common;

use common::db::TestDb;
use common::otlp::{attr, latest_int, receiver, spans};
use common::process::Tidemill;
use common::{kafka, pipeline_toml, unique, wait_for};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_spans_with_offsets_reach_the_otlp_endpoint() {
    let (port, posts) = receiver().await;
    let (topic, group) = (unique("otel"), unique("g"));
    kafka::create_topic(&topic, 2).await;
    let db = TestDb::postgres().await;
    db.exec("CREATE TABLE t (id BIGINT PRIMARY KEY)").await;
    let producer = kafka::TestProducer::new(&topic);
    for i in 0..50 {
        producer.send(Some(&i.to_string()), Some(&format!(r#"{{"id":{i}}}"#)));
    }
    producer.flush();
    let toml = format!(
        "[telemetry]\notlp_endpoint = \"http://127.0.0.1:{port}/v1/traces\"\n{}",
        pipeline_toml(&topic, &group, db.url(), "t", "")
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("tidemill.toml");
    std::fs::write(&config, toml).expect("config");
    let mut process = Tidemill::start(&config, "otel");
    wait_for("rows loaded", Duration::from_secs(60), || async {
        db.try_scalar("SELECT count(*) FROM t").await == Some(50)
    })
    .await;
    assert!(process.terminate(), "{}", process.log_text());

    let posts = posts.lock().expect("store").clone();
    assert!(!posts.is_empty(), "no OTLP export received");
    // Metrics go next to the traces (…/v1/metrics) unless told otherwise.
    assert!(posts
        .iter()
        .all(|(path, _)| path == "/v1/traces" || path == "/v1/metrics"));
    let all: Vec<u8> = posts
        .into_iter()
        .filter(|(path, _)| path == "/v1/traces")
        .flat_map(|(_, body)| body)
        .collect();
    let contains = |needle: &str| all.windows(needle.len()).any(|w| w == needle.as_bytes());
    for needle in ["batch", "offsets", "rows", "pipeline", topic.as_str()] {
        assert!(contains(needle), "exported spans lack `{needle}`");
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_with_traceparent_continues_the_producers_trace() {
    let (port, posts) = receiver().await;
    let (topic, group) = (unique("traceparent"), unique("g"));
    kafka::create_topic(&topic, 1).await;
    let db = TestDb::postgres().await;
    db.exec("CREATE TABLE traced (id BIGINT PRIMARY KEY)").await;
    let (trace_id, producer_span) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let traceparent = format!("00-{trace_id}-{producer_span}-01");
    let producer = kafka::TestProducer::new(&topic);
    for i in 0..20 {
        producer.send_to(0, &i.to_string(), &format!(r#"{{"id":{i}}}"#));
    }
    let headers = [
        ("traceparent", traceparent.as_str()),
        ("tracestate", "shop=1"),
    ];
    producer.send_with_headers(0, "20", r#"{"id":20}"#, &headers);
    producer.flush();
    let toml = format!(
        "[telemetry]\notlp_endpoint = \"http://127.0.0.1:{port}/v1/traces\"\n{}",
        pipeline_toml(&topic, &group, db.url(), "traced", "")
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("tidemill.toml");
    std::fs::write(&config, toml).expect("config");
    let mut process = Tidemill::start(&config, "traceparent");
    wait_for("rows loaded", Duration::from_secs(60), || async {
        db.try_scalar("SELECT count(*) FROM traced").await == Some(21)
    })
    .await;
    assert!(process.terminate(), "{}", process.log_text());

    let spans = spans(&posts.lock().expect("store"));
    let named = |name: &'static str| spans.iter().filter(move |s| s.name == name);
    let process_span = named("process")
        .find(|s| hex(&s.trace_id) == trace_id)
        .unwrap_or_else(|| panic!("no process span in the producer's trace: {spans:#?}"));
    assert_eq!(hex(&process_span.parent_span_id), producer_span);
    for (key, want) in [
        ("messaging.system", "kafka"),
        ("messaging.destination.name", topic.as_str()),
        ("messaging.consumer.group.name", group.as_str()),
        ("messaging.destination.partition.id", "0"),
        ("messaging.kafka.offset", "20"),
    ] {
        assert_eq!(
            attr(process_span, key).as_deref(),
            Some(want),
            "process span {key}"
        );
    }

    let batch = named("batch")
        .find(|s| {
            s.links
                .iter()
                .any(|l| hex(&l.trace_id) == trace_id && hex(&l.span_id) == producer_span)
        })
        .expect("a batch span linking to the producer's span");
    assert!(
        process_span
            .links
            .iter()
            .any(|l| l.span_id == batch.span_id),
        "the process span links back to its batch"
    );
    for (key, want) in [
        ("messaging.system", "kafka"),
        ("messaging.destination.name", topic.as_str()),
        ("messaging.consumer.group.name", group.as_str()),
        ("messaging.destination.partition.id", "0"),
        ("tidemill.links", "1"),
        ("tidemill.links.cap", "64"),
    ] {
        assert_eq!(attr(batch, key).as_deref(), Some(want), "batch span {key}");
    }
    let count: usize = attr(batch, "messaging.batch.message_count")
        .and_then(|c| c.parse().ok())
        .expect("message count");
    assert!((1..=21).contains(&count), "{count}");
    assert_eq!(
        attr(batch, "messaging.kafka.offset.last").as_deref(),
        Some("20")
    );
    // The stages before the writer, as the stage histograms count them.
    for key in [
        "tidemill.stage.kafka_ms",
        "tidemill.stage.batching_ms",
        "tidemill.stage.queue_ms",
    ] {
        let ms: Option<i64> = attr(batch, key).and_then(|v| v.parse().ok());
        assert!(
            ms.is_some_and(|ms| (0..60_000).contains(&ms)),
            "{key}: {ms:?}"
        );
    }

    for name in ["db.write", "db.commit"] {
        let db_span = named(name)
            .find(|s| s.parent_span_id == batch.span_id)
            .unwrap_or_else(|| panic!("no {name} span under the batch"));
        assert_eq!(attr(db_span, "db.system").as_deref(), Some("postgresql"));
        assert!(
            attr(db_span, "db.collection.name").is_some_and(|t| t.contains("traced")),
            "{name} names the table"
        );
    }
    let write = named("db.write")
        .find(|s| s.parent_span_id == batch.span_id)
        .expect("db.write");
    assert_eq!(attr(write, "db.operation.name").as_deref(), Some("INSERT"));
    assert_eq!(attr(write, "rows"), Some(count.to_string()));
    assert!(
        named("kafka.commit")
            .any(|s| s.trace_id == batch.trace_id
                || s.links.iter().any(|l| l.span_id == batch.span_id)),
        "a kafka.commit span continues the batch's trace"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_log_lines_carry_the_trace_and_span_ids_of_their_batch() {
    let (port, posts) = receiver().await;
    let (topic, group, dlq) = (unique("logids"), unique("g"), unique("logids-dlq"));
    kafka::create_topic(&topic, 1).await;
    kafka::create_topic(&dlq, 1).await;
    let db = TestDb::postgres().await;
    db.exec("CREATE TABLE logged (id BIGINT PRIMARY KEY)").await;
    let producer = kafka::TestProducer::new(&topic);
    producer.send_to(0, "1", r#"{"id":1}"#);
    // Refused by the type mapping: the writer logs a warning inside the batch span.
    producer.send_to(0, "2", r#"{"id":"not a number"}"#);
    producer.send_to(0, "3", r#"{"id":3}"#);
    producer.flush();
    let toml = format!(
        "[telemetry]\nlog_format = \"json\"\notlp_endpoint = \"http://127.0.0.1:{port}/v1/traces\"\n{}\n[pipelines.p.dead_letter]\ntopic = \"{dlq}\"\n",
        pipeline_toml(&topic, &group, db.url(), "logged", "")
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("tidemill.toml");
    std::fs::write(&config, toml).expect("config");
    let mut process = Tidemill::start(&config, "logids");
    wait_for("good rows loaded", Duration::from_secs(60), || async {
        db.try_scalar("SELECT count(*) FROM logged").await == Some(2)
    })
    .await;
    assert!(process.terminate(), "{}", process.log_text());

    let log = process.log_text();
    let warning: serde_json::Value = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| {
            l["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("do not fit") || m.contains("refused rows"))
        })
        .unwrap_or_else(|| panic!("no JSON warning about the refused row in:\n{log}"));
    let trace_id = warning["trace_id"].as_str().expect("trace_id on the line");
    let span_id = warning["span_id"].as_str().expect("span_id on the line");
    let spans = spans(&posts.lock().expect("store"));
    let span = spans
        .iter()
        .find(|s| hex(&s.span_id) == span_id)
        .unwrap_or_else(|| panic!("no exported span {span_id}: {spans:#?}"));
    assert_eq!(hex(&span.trace_id), trace_id);
    let batch = spans
        .iter()
        .find(|s| s.name == "batch" && hex(&s.trace_id) == trace_id)
        .expect("the line's trace is a batch's trace");
    assert_eq!(
        attr(batch, "messaging.destination.name").as_deref(),
        Some(topic.as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pushed_over_otlp_match_what_was_loaded() {
    let (port, posts) = receiver().await;
    let (topic, group) = (unique("otlpmetrics"), unique("g"));
    kafka::create_topic(&topic, 2).await;
    let db = TestDb::postgres().await;
    db.exec("CREATE TABLE pushed (id BIGINT PRIMARY KEY)").await;
    let producer = kafka::TestProducer::new(&topic);
    for i in 0..120 {
        producer.send(Some(&i.to_string()), Some(&format!(r#"{{"id":{i}}}"#)));
    }
    producer.flush();
    let toml = format!(
        "[telemetry]\notlp_metrics_endpoint = \"http://127.0.0.1:{port}/v1/metrics\"\nmetrics_interval = \"200ms\"\n[health]\nstatistics_interval = \"200ms\"\n{}",
        pipeline_toml(&topic, &group, db.url(), "pushed", "")
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("tidemill.toml");
    std::fs::write(&config, toml).expect("config");
    let mut process = Tidemill::start(&config, "otlpmetrics");
    let pipeline = [("pipeline", "p")];
    wait_for("rows_loaded pushed", Duration::from_secs(60), || async {
        let posts = posts.lock().expect("store").clone();
        latest_int(&posts, "tidemill_rows_loaded_total", &pipeline) == Some(120)
    })
    .await;
    assert_eq!(
        db.try_scalar("SELECT count(*) FROM pushed").await,
        Some(120)
    );
    wait_for(
        "lag drained to zero on both partitions",
        Duration::from_secs(30),
        || async {
            let posts = posts.lock().expect("store").clone();
            ["0", "1"].iter().all(|part| {
                let labels = [
                    ("pipeline", "p"),
                    ("topic", topic.as_str()),
                    ("partition", part),
                ];
                latest_int(&posts, "tidemill_consumer_lag", &labels) == Some(0)
            })
        },
    )
    .await;
    assert!(process.terminate(), "{}", process.log_text());
    let posts = posts.lock().expect("store").clone();
    assert!(
        posts.iter().all(|(path, _)| path == "/v1/metrics"),
        "no traces configured"
    );
    assert_eq!(
        latest_int(&posts, "tidemill_records_in_total", &pipeline),
        Some(120)
    );
    let per_partition: i64 = ["0", "1"]
        .iter()
        .filter_map(|part| {
            let labels = [("topic", topic.as_str()), ("partition", *part)];
            latest_int(&posts, "tidemill_partition_rows_loaded_total", &labels)
        })
        .sum();
    assert_eq!(per_partition, 120);
}
