//! Minimal OTLP receivers for tests: OTLP/HTTP ([`receiver`]) accepts posts
//! on any path, OTLP/gRPC ([`grpc_receiver`]) serves the trace and metrics
//! services' `Export` over HTTP/2; both keep each export's (path, protobuf
//! body) for the test to decode or search.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Everything posted so far: (path, body) per request.
pub type Posts = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// Accepts OTLP/HTTP posts and keeps (path, body) of each.
pub async fn receiver() -> (u16, Posts) {
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

/// Serves OTLP/gRPC (plain-text HTTP/2) as the OpenTelemetry protobuf
/// definitions name it: `TraceService/Export` and `MetricsService/Export`,
/// each answered with an empty response and `grpc-status: 0`. An export is
/// kept under its OTLP/HTTP path (`/v1/traces`, `/v1/metrics`), so the same
/// decoding serves both receivers; anything else is kept under its own path.
pub async fn grpc_receiver() -> (u16, Posts) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let posts = Arc::new(Mutex::new(Vec::new()));
    let store = Arc::clone(&posts);
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let Ok(mut connection) = h2::server::handshake(socket).await else {
                    return;
                };
                while let Some(Ok((request, respond))) = connection.accept().await {
                    tokio::spawn(export(request, respond, Arc::clone(&store)));
                }
            });
        }
    });
    (port, posts)
}

/// One unary call: its single length-prefixed message, kept; an empty reply.
async fn export(
    request: http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<bytes::Bytes>,
    store: Posts,
) {
    let path = request.uri().path().to_string();
    let grpc = request
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    let mut body = request.into_body();
    let mut data = Vec::new();
    while let Some(Ok(chunk)) = body.data().await {
        let _ = body.flow_control().release_capacity(chunk.len());
        data.extend_from_slice(&chunk);
    }
    // A gRPC message: compressed flag (0), 4-byte big-endian length, protobuf.
    let message = match data.get(..5) {
        Some([0, a, b, c, d]) if grpc => {
            let length = u32::from_be_bytes([*a, *b, *c, *d]) as usize;
            data.get(5..5 + length).map(<[u8]>::to_vec)
        }
        _ => None,
    };
    let kept = if path.ends_with("TraceService/Export") {
        "/v1/traces".to_string()
    } else if path.ends_with("MetricsService/Export") {
        "/v1/metrics".to_string()
    } else {
        path
    };
    let (status, message) = match message {
        Some(m) => ("0", m),
        // INVALID_ARGUMENT: not a gRPC message.
        None => ("3", Vec::new()),
    };
    store.lock().expect("store").push((kept, message));
    let response = http::Response::builder()
        .status(200)
        .header("content-type", "application/grpc")
        .body(())
        .expect("a response");
    let Ok(mut send) = respond.send_response(response, false) else {
        return;
    };
    let _ = send.send_data(bytes::Bytes::from_static(&[0, 0, 0, 0, 0]), false);
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static(status));
    let _ = send.send_trailers(trailers);
}

/// Every span of every export received.
pub fn spans(posts: &[(String, Vec<u8>)]) -> Vec<Span> {
    posts
        .iter()
        .filter(|(path, _)| path == "/v1/traces")
        .flat_map(|(_, body)| {
            ExportTraceServiceRequest::decode(body.as_slice())
                .expect("an OTLP/HTTP protobuf export")
                .resource_spans
        })
        .flat_map(|r| r.scope_spans)
        .flat_map(|s| s.spans)
        .collect()
}

/// A span attribute as text (strings as is, integers in decimal).
pub fn attr(span: &Span, key: &str) -> Option<String> {
    let value = span
        .attributes
        .iter()
        .find(|kv| kv.key == key)?
        .value
        .as_ref()?;
    match value.value.as_ref()? {
        Value::StringValue(s) => Some(s.clone()),
        Value::IntValue(i) => Some(i.to_string()),
        Value::BoolValue(b) => Some(b.to_string()),
        Value::DoubleValue(d) => Some(d.to_string()),
        _ => None,
    }
}

/// The latest value of an integer sum or gauge in the exports received, by name and labels.
pub fn latest_int(posts: &[(String, Vec<u8>)], name: &str, labels: &[(&str, &str)]) -> Option<i64> {
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::metrics::v1::{metric::Data, number_data_point};
    let mut latest = None;
    for (_, body) in posts.iter().filter(|(path, _)| path == "/v1/metrics") {
        let req = ExportMetricsServiceRequest::decode(body.as_slice()).expect("OTLP metrics");
        let metrics = req
            .resource_metrics
            .into_iter()
            .flat_map(|r| r.scope_metrics)
            .flat_map(|s| s.metrics)
            .filter(|m| m.name == name);
        for m in metrics {
            let points = match m.data {
                Some(Data::Sum(s)) => s.data_points,
                Some(Data::Gauge(g)) => g.data_points,
                _ => continue,
            };
            for p in points {
                let has = |(k, v): &(&str, &str)| {
                    p.attributes.iter().any(|kv| {
                        kv.key == *k
                            && matches!(kv.value.as_ref().and_then(|a| a.value.as_ref()),
                                Some(Value::StringValue(s)) if s == v)
                    })
                };
                if labels.iter().all(has) {
                    if let Some(number_data_point::Value::AsInt(v)) = p.value {
                        latest = Some(v);
                    }
                }
            }
        }
    }
    latest
}
