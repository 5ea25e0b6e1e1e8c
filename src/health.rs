//! Health and metrics over HTTP for Kubernetes and Prometheus:
//! `/livez` (the poll loops are going round), `/readyz` (every pipeline has
//! joined its group and its database is not failing), `/metrics` (Prometheus
//! text format). A deliberately small HTTP/1.1 server: GET only, one response
//! per connection.

use crate::stats::{now_ms, Stats, BUCKETS};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// The pipelines the server reports on.
pub type Registry = Vec<(String, Arc<Stats>)>;

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
    loop {
        let (mut socket, _) = tokio::select! {
            // Shutdown first: stop accepting as soon as the process is asked to stop.
            biased;
            _ = shutdown.cancelled() => return Ok(()),
            accepted = listener.accept() => accepted?,
        };
        let registry = Arc::clone(&registry);
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            let n = match socket.read(&mut buf).await {
                Ok(n) => n,
                Err(_) => return,
            };
            let request = String::from_utf8_lossy(&buf[..n]);
            let path = request.split_whitespace().nth(1).unwrap_or("/");
            let (status, content_type, body) = respond(path, &registry);
            let head = format!(
                "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            if let Err(e) = socket.write_all(format!("{head}{body}").as_bytes()).await {
                warn!(error = %e, "health response failed");
            }
        });
    }
}

fn respond(path: &str, registry: &Registry) -> (&'static str, &'static str, String) {
    const TEXT: &str = "text/plain; charset=utf-8";
    match path {
        "/metrics" => ("200 OK", "text/plain; version=0.0.4", metrics(registry)),
        "/livez" => verdict(registry.iter().map(|(name, s)| (name, alive(s)))),
        "/readyz" => verdict(registry.iter().map(|(name, s)| (name, ready(s)))),
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

/// A counter's name, help text and reader.
type Counter = (&'static str, &'static str, fn(&Stats) -> u64);

/// Renders every pipeline's counters in the Prometheus text format.
pub fn metrics(registry: &Registry) -> String {
    let mut out = String::new();
    let counters: [Counter; 10] = [
        (
            "tidemill_records_in_total",
            "Records consumed from Kafka.",
            |s| Stats::get(&s.records_in),
        ),
        (
            "tidemill_rows_loaded_total",
            "Rows committed to the database.",
            |s| Stats::get(&s.rows_loaded),
        ),
        (
            "tidemill_records_committed_total",
            "Records whose batch the database committed.",
            |s| Stats::get(&s.records_done),
        ),
        ("tidemill_batches_total", "Batches committed.", |s| {
            Stats::get(&s.batches)
        }),
        (
            "tidemill_dead_lettered_total",
            "Records sent to the dead-letter topic.",
            |s| Stats::get(&s.dead_lettered),
        ),
        (
            "tidemill_tombstones_skipped_total",
            "Tombstones skipped.",
            |s| Stats::get(&s.tombstones_skipped),
        ),
        (
            "tidemill_db_retries_total",
            "Database writes retried after a transient error.",
            |s| Stats::get(&s.retries),
        ),
        (
            "tidemill_records_late_total",
            "Records refused by an event-time window as late.",
            |s| Stats::get(&s.records_late),
        ),
        (
            "tidemill_state_cache_hits_total",
            "Keyed-state lookups served by the in-memory cache.",
            |s| Stats::get(&s.state_cache_hits),
        ),
        (
            "tidemill_state_loads_total",
            "Keyed-state lookups loaded from the database (cache misses).",
            |s| Stats::get(&s.state_loads),
        ),
    ];
    for (name, help, get) in counters {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (pipeline, s) in registry {
            let _ = writeln!(out, "{name}{{pipeline=\"{pipeline}\"}} {}", get(s));
        }
    }
    let name = "tidemill_assigned_partitions";
    let _ = writeln!(
        out,
        "# HELP {name} Partitions owned by this member.\n# TYPE {name} gauge"
    );
    for (pipeline, s) in registry {
        let _ = writeln!(
            out,
            "{name}{{pipeline=\"{pipeline}\"}} {}",
            Stats::get(&s.assigned_partitions)
        );
    }
    let name = "tidemill_batch_duration_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Batch write time, retries included.\n# TYPE {name} histogram"
    );
    for (pipeline, s) in registry {
        let (buckets, count, sum) = s.batch_seconds.snapshot();
        for (bound, n) in BUCKETS.iter().zip(buckets) {
            let _ = writeln!(
                out,
                "{name}_bucket{{pipeline=\"{pipeline}\",le=\"{bound}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{pipeline=\"{pipeline}\",le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(out, "{name}_sum{{pipeline=\"{pipeline}\"}} {sum}");
        let _ = writeln!(out, "{name}_count{{pipeline=\"{pipeline}\"}} {count}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render_counters_per_pipeline() {
        let s = Arc::new(Stats::default());
        Stats::add(&s.rows_loaded, 42);
        s.batch_seconds.observe(0.02);
        let text = metrics(&vec![("orders".to_string(), s)]);
        assert!(
            text.contains("tidemill_rows_loaded_total{pipeline=\"orders\"} 42"),
            "{text}"
        );
        assert!(text.contains(
            "tidemill_batch_duration_seconds_bucket{pipeline=\"orders\",le=\"0.025\"} 1"
        ));
        assert!(text.contains("# TYPE tidemill_batch_duration_seconds histogram"));
    }

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
