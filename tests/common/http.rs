//! The health listener, as a test reads it: a free port to give it, `GET`,
//! and the value of one `/metrics` series.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A port nothing listens on now, for a `[health] listen` address.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// The whole response to `GET path`, status line included; "" when nothing
/// answers (yet).
pub async fn get_raw(port: u16, path: &str) -> String {
    let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return String::new();
    };
    let request = format!("GET {path} HTTP/1.1\r\nhost: localhost\r\n\r\n");
    if s.write_all(request.as_bytes()).await.is_err() {
        return String::new();
    }
    let mut text = String::new();
    let _ = s.read_to_string(&mut text).await;
    text
}

/// GET `path`: (status code, body), or (0, "") when nothing answers.
pub async fn get(port: u16, path: &str) -> (u16, String) {
    let text = get_raw(port, path).await;
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// The value of one series, named with its labels as rendered.
pub fn series(body: &str, name_and_labels: &str) -> Option<i64> {
    body.lines()
        .find(|l| l.starts_with(&format!("{name_and_labels} ")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// A per-pipeline series: `name{pipeline="<pipeline>"}`.
pub fn metric(body: &str, name: &str, pipeline: &str) -> Option<i64> {
    series(body, &format!("{name}{{pipeline=\"{pipeline}\"}}"))
}

/// One of a member's per-pipeline metrics, read from its health listener
/// (0 when it does not answer or has no such series yet).
pub async fn member_metric(port: u16, name: &str, pipeline: &str) -> i64 {
    let (_, body) = get(port, "/metrics").await;
    metric(&body, name, pipeline).unwrap_or(0)
}

/// A member's database retries, every class together (`tidemill_db_retries_total`).
pub async fn db_retries(port: u16, pipeline: &str) -> i64 {
    let (_, body) = get(port, "/metrics").await;
    ["connection", "conflict", "other"]
        .iter()
        .filter_map(|class| {
            series(
                &body,
                &format!("tidemill_db_retries_total{{pipeline=\"{pipeline}\",class=\"{class}\"}}"),
            )
        })
        .sum()
}
