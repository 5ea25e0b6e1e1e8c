//! Health and metrics over HTTP for Kubernetes, Prometheus and people:
//! `/livez` (the poll loops are going round), `/readyz` (every pipeline has
//! joined its group and its database is not failing), `/metrics` (Prometheus
//! text format, rendered by [`crate::observe::metrics`]), and the status page
//! `/` with the JSON it polls, `/status` ([`crate::observe::status`]), fed by
//! the [`History`] this server samples every [`history::EVERY`]. A
//! deliberately small HTTP/1.1 server: GET only, one response per connection.

use crate::observe::history::{self, History};
use crate::observe::metrics::metrics;
use crate::observe::stats::{now_ms, Stats};
use crate::observe::status::{status, PAGE};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// The pipelines the server reports on.
pub use crate::observe::metrics::Registry;

/// A poll loop silent for longer than this is not alive.
const STALL: Duration = Duration::from_secs(30);

/// Binds `addr` and serves until `shutdown`.
pub async fn serve(
    addr: SocketAddr,
    registry: Arc<Registry>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    info!(%addr, "health and metrics listening");
    let history = Arc::new(History::default());
    let mut sampling = tokio::time::interval(history::EVERY);
    loop {
        let (mut socket, _) = tokio::select! {
            // Shutdown first: stop accepting as soon as the process is asked to stop.
            biased;
            _ = shutdown.cancelled() => return Ok(()),
            _ = sampling.tick() => {
                history.sample(&registry, now_ms());
                continue;
            }
            accepted = listener.accept() => accepted?,
        };
        let (registry, history) = (Arc::clone(&registry), Arc::clone(&history));
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            let n = match socket.read(&mut buf).await {
                Ok(n) => n,
                Err(_) => return,
            };
            let request = String::from_utf8_lossy(&buf[..n]);
            let target = request.split_whitespace().nth(1).unwrap_or("/");
            let path = target.split('?').next().unwrap_or("/");
            let (status, content_type, body) = respond(path, &registry, &history);
            let head = format!(
                "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\
                 cache-control: no-store\r\nconnection: close\r\n\r\n",
                body.len()
            );
            if let Err(e) = socket.write_all(format!("{head}{body}").as_bytes()).await {
                warn!(error = %e, "health response failed");
            }
        });
    }
}

fn respond(
    path: &str,
    registry: &Registry,
    history: &History,
) -> (&'static str, &'static str, String) {
    const TEXT: &str = "text/plain; charset=utf-8";
    match path {
        "/metrics" => ("200 OK", "text/plain; version=0.0.4", metrics(registry)),
        "/livez" => verdict(registry.iter().map(|(name, s)| (name, alive(s)))),
        "/readyz" => verdict(registry.iter().map(|(name, s)| (name, ready(s)))),
        "/" => ("200 OK", "text/html; charset=utf-8", PAGE.to_string()),
        "/status" => (
            "200 OK",
            "application/json",
            status(registry, history, now_ms(), ready),
        ),
        _ => ("404 Not Found", TEXT, "not found\n".into()),
    }
}

fn alive(s: &Stats) -> Result<(), &'static str> {
    let beat = Stats::get(&s.heartbeat_ms);
    if beat == 0 || now_ms().saturating_sub(beat) <= STALL.as_millis() as u64 {
        Ok(())
    } else {
        Err("poll loop stalled")
    }
}

fn ready(s: &Stats) -> Result<(), &'static str> {
    alive(s)?;
    if !s.joined.load(std::sync::atomic::Ordering::Relaxed) {
        return Err("not yet in its consumer group");
    }
    if s.sink_failing.load(std::sync::atomic::Ordering::Relaxed) {
        return Err("database unreachable; retrying");
    }
    Ok(())
}

fn verdict<'a>(
    checks: impl Iterator<Item = (&'a String, Result<(), &'static str>)>,
) -> (&'static str, &'static str, String) {
    let mut body = String::new();
    let mut ok = true;
    for (name, check) in checks {
        match check {
            Ok(()) => {
                let _ = writeln!(body, "{name}: ok");
            }
            Err(why) => {
                ok = false;
                let _ = writeln!(body, "{name}: {why}");
            }
        }
    }
    let status = if ok {
        "200 OK"
    } else {
        "503 Service Unavailable"
    };
    (status, "text/plain; charset=utf-8", body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_needs_a_group_and_a_healthy_database() {
        let s = Stats::default();
        assert!(ready(&s).is_err());
        s.joined.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(ready(&s).is_ok());
        s.sink_failing
            .store(true, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(ready(&s), Err("database unreachable; retrying"));
    }
}
