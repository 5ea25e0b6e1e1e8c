//! Traces leave the process: with `telemetry.otlp_endpoint` set, batch spans
//! (with their offsets) reach an OTLP/HTTP receiver — here a minimal one in the test.

mod common;

use common::db::TestDb;
use common::process::Tidemill;
use common::{kafka, pipeline_toml, unique, wait_for};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Accepts OTLP/HTTP posts and keeps (path, body) of each.
async fn receiver() -> (u16, Arc<Mutex<Vec<(String, Vec<u8>)>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let posts = Arc::new(Mutex::new(Vec::new()));
    let store = Arc::clone(&posts);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                while let Some((path, body)) = read_request(&mut socket).await {
                    store.lock().expect("store").push((path, body));
                    let reply = "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
                    if socket.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, posts)
}

async fn read_request(socket: &mut tokio::net::TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let header_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).to_string();
    let path = head.split_whitespace().nth(1)?.to_string();
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().to_string())
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[header_end..].to_vec();
    while body.len() < length {
        let mut chunk = vec![0u8; length - body.len()];
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some((path, body))
}

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
    assert!(posts.iter().all(|(path, _)| path == "/v1/traces"));
    let all: Vec<u8> = posts.into_iter().flat_map(|(_, body)| body).collect();
    let contains = |needle: &str| all.windows(needle.len()).any(|w| w == needle.as_bytes());
    for needle in ["batch", "offsets", "rows", "pipeline", topic.as_str()] {
        assert!(contains(needle), "exported spans lack `{needle}`");
    }
}
