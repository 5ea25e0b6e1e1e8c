//! Every pipeline of a config, run together until shutdown: the health and
//! metrics endpoints and the OTLP metrics export are started once for all of
//! them, before any pipeline is prepared, so a pod whose database is not up
//! yet is alive and says why it is not ready instead of exiting; each
//! pipeline is prepared in its own task, waiting out a transiently absent
//! database with backoff (a fatal error — a refused password, a missing
//! table — still stops the process); a fenced pipeline is prepared afresh
//! and rejoins its group (its counters carry on); the first pipeline to fail
//! stops the others, and its error is returned once all have stopped.

use super::{Pipeline, PipelineError};
use crate::config::{PipelineConfig, Settings};
use crate::observe::stats::Stats;
use crate::sink::backoff::Backoff;
use crate::sink::RetryClass;
use crate::state::Registry;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Prepares the pipeline (waiting for its database), runs it, and when it is
/// fenced prepares it afresh and rejoins the group. Its counters are `stats`
/// throughout: health and metrics read them before the first preparation.
async fn run_rejoining(
    (name, cfg): (String, PipelineConfig),
    registry: Arc<Registry>,
    stats: Arc<Stats>,
    statistics: Option<Duration>,
    shutdown: CancellationToken,
    grace: Duration,
) -> Result<(), PipelineError> {
    loop {
        let Some(prepared) = prepare_waiting(&name, &cfg, &registry, &stats, &shutdown).await?
        else {
            return Ok(()); // shut down while waiting for the database
        };
        let mut pipeline = prepared.with_statistics(statistics);
        pipeline.stats = Arc::clone(&stats);
        // A rejoin starts with no partitions (at start-up there are none yet).
        stats.assigned_partitions.store(0, Ordering::Relaxed);
        match pipeline.run(shutdown.clone(), grace).await {
            Err(e) if e.is_fenced() && !shutdown.is_cancelled() => {
                stats.fenced.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(pipeline = %name, error = %e, "fenced by a newer owner; rejoining the group");
            }
            other => return other,
        }
    }
}

/// Prepares a pipeline, at start-up or after it was fenced. A transient
/// database error (not up yet, a restart, a dropped connection) is retried
/// with the sink's backoff rather than stopping the process — readiness and
/// the status page show it meanwhile; `None` when shutdown came first.
async fn prepare_waiting(
    name: &str,
    cfg: &PipelineConfig,
    registry: &Arc<Registry>,
    stats: &Stats,
    shutdown: &CancellationToken,
) -> Result<Option<Pipeline>, PipelineError> {
    let mut backoff = Backoff::new(cfg.sink.retry_initial, cfg.sink.retry_max);
    let Some(backend) = crate::db::backend_for(cfg.sink.url.expose()) else {
        // No database to classify its errors: opening reports the URL.
        return Pipeline::prepare_with(name, cfg, Arc::clone(registry))
            .await
            .map(Some);
    };
    let dialect = backend.dialect;
    loop {
        match Pipeline::prepare_with(name, cfg, Arc::clone(registry)).await {
            Err(PipelineError::Sink { source, .. })
                if source.class(dialect) == RetryClass::Transient =>
            {
                let wait = backoff.next_delay();
                // Counted and shown as the writer's retries are.
                crate::sink::observe::db_retry(stats, &source, dialect);
                tracing::warn!(pipeline = %name, error = %source, retry_in_ms = wait.as_millis() as u64, "database unavailable while preparing the pipeline; retrying");
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => return Ok(None),
                    _ = tokio::time::sleep(wait) => {}
                }
            }
            other => {
                stats.sink_failing.store(false, Ordering::Relaxed);
                return other.map(Some);
            }
        }
    }
}

/// Runs every pipeline of `settings` until `shutdown`; the first error is returned
/// after all pipelines stopped.
pub async fn run_all(
    settings: &Settings,
    shutdown: CancellationToken,
) -> Result<(), PipelineError> {
    run_all_with(settings, shutdown, Arc::new(Registry::default())).await
}

/// [`run_all`] with custom keyed operators (see `examples/custom_operator.rs`).
pub async fn run_all_with(
    settings: &Settings,
    shutdown: CancellationToken,
    registry: Arc<Registry>,
) -> Result<(), PipelineError> {
    let otlp_metrics = crate::observe::telemetry::metrics_export(&settings.telemetry, |var| {
        std::env::var(var).ok()
    })
    .map_err(|e| PipelineError::MetricsExport(e.to_string()))?;
    // High watermarks (for the lag gauge) come from librdkafka's statistics:
    // only worth their cost when someone reads the metrics.
    let statistics = (settings.health.listen.is_some() || otlp_metrics.is_some())
        .then_some(settings.health.statistics_interval);
    // The counters exist before the pipelines, so health and metrics answer
    // while a database is waited for.
    let metrics_registry: crate::observe::metrics::Registry = settings
        .pipelines
        .keys()
        .map(|name| (name.clone(), Arc::new(Stats::default())))
        .collect();
    // Dropped when this function returns: one last export, then the thread ends.
    let _exporter = match otlp_metrics {
        Some(export) => {
            tracing::info!(endpoint = %export.endpoint.url, protocol = ?export.endpoint.protocol, interval_ms = export.interval.as_millis() as u64, "exporting metrics over OTLP");
            Some(
                crate::observe::metrics::otlp::spawn(export, metrics_registry.clone())
                    .map_err(|e| PipelineError::MetricsExport(e.to_string()))?,
            )
        }
        None => None,
    };
    if let Some(addr) = settings.health.listen {
        let registry = metrics_registry.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            if let Err(e) = crate::observe::health::serve(addr, Arc::new(registry), shutdown).await
            {
                tracing::error!(%addr, error = %e, "health and metrics server stopped");
            }
        });
    }
    let grace = settings.shutdown.grace;
    let mut tasks = tokio::task::JoinSet::new();
    for (name, stats) in metrics_registry {
        let cfg = settings.pipelines[&name].clone();
        tasks.spawn(run_rejoining(
            (name, cfg),
            Arc::clone(&registry),
            stats,
            statistics,
            shutdown.clone(),
            grace,
        ));
    }
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        let result = joined.unwrap_or_else(|e| {
            Err(PipelineError::Panicked {
                pipeline: "?".into(),
                message: e.to_string(),
            })
        });
        if let Err(e) = result {
            tracing::error!(error = %e, "pipeline failed; stopping the others");
            shutdown.cancel();
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}
