//! One pipeline, wired: source thread → (decode, transform, batch) → writer
//! task → acks → commits. See [`crate::source`] for the delivery contract.
//!
//! Shutdown: `shutdown` stops the source, which flushes and waits for the
//! writer; `grace` later the writer is aborted (its unacknowledged batches are
//! never committed, so they are read again after a restart).

use crate::batch::Batcher;
use crate::config::{Delivery, PipelineConfig, Settings};
use crate::dead_letter::DeadLetters;
use crate::decode::{Decoder, Projection};
use crate::sink::writer::{self, WriterContext, WriterError};
use crate::sink::{AnySink, SinkError};
use crate::source::{self, kafka, Consumer, Driver, SourceContext, SourceError};
use crate::state::{Engine, Registry, StateError};
use crate::stats::Stats;
use crate::transform::{Chain, TransformError};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{info, Instrument};

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("pipeline {pipeline}: {source}")]
    Sink { pipeline: String, source: SinkError },
    #[error("pipeline {pipeline}: {source}")]
    Transform {
        pipeline: String,
        source: TransformError,
    },
    #[error("pipeline {pipeline}: creating a Kafka client: {source}")]
    Consumer {
        pipeline: String,
        source: rdkafka::error::KafkaError,
    },
    #[error("pipeline {pipeline}: {source}")]
    Source {
        pipeline: String,
        source: SourceError,
    },
    #[error("pipeline {pipeline}: {source}")]
    Writer {
        pipeline: String,
        source: WriterError,
    },
    #[error("pipeline {pipeline}: {source}")]
    State {
        pipeline: String,
        source: StateError,
    },
    #[error("pipeline {pipeline}: a stage panicked: {message}")]
    Panicked { pipeline: String, message: String },
    #[error("metrics export: {0}")]
    MetricsExport(String),
}

/// A pipeline ready to run: sink connected and checked, transforms compiled.
pub struct Pipeline {
    name: String,
    cfg: PipelineConfig,
    sink: AnySink,
    chain: Chain,
    /// The stateful tail of the transforms (run by the writer), if any.
    engine: Option<Engine>,
    registry: Arc<Registry>,
    dead_letters: Option<Arc<DeadLetters>>,
    pub stats: Arc<Stats>,
    /// librdkafka statistics interval for the lag gauge (`health.listen` set).
    statistics: Option<Duration>,
}

impl Pipeline {
    /// Connects to the database, checks the target table, compiles transforms.
    pub async fn prepare(name: &str, cfg: &PipelineConfig) -> Result<Self, PipelineError> {
        Self::prepare_with(name, cfg, Arc::new(Registry::default())).await
    }

    /// Like [`Pipeline::prepare`], with custom keyed operators available to
    /// config as `{ type = "operator", name = "…" }`.
    pub async fn prepare_with(
        name: &str,
        cfg: &PipelineConfig,
        registry: Arc<Registry>,
    ) -> Result<Self, PipelineError> {
        let split = stateless_prefix(cfg);
        let chain = Chain::compile(&cfg.transforms[..split]).map_err(|source| {
            PipelineError::Transform {
                pipeline: name.to_string(),
                source,
            }
        })?;
        let sink_err = |source| PipelineError::Sink {
            pipeline: name.to_string(),
            source,
        };
        let sink = AnySink::open(&cfg.sink).await.map_err(sink_err)?;
        if cfg.delivery == Delivery::ExactlyOnce {
            sink.offset_store().ensure_table().await.map_err(sink_err)?;
        }
        let engine = if split < cfg.transforms.len() {
            let store = sink.state_store();
            store.ensure_table().await.map_err(sink_err)?;
            let engine = Engine::new(
                name,
                &cfg.transforms[split..],
                split,
                cfg.state.cache_entries,
                &registry,
                store,
            )
            .map_err(|source| PipelineError::State {
                pipeline: name.to_string(),
                source,
            })?;
            Some(engine)
        } else {
            None
        };
        let dead_letters = match &cfg.dead_letter {
            None => None,
            Some(dl) => {
                let kafka_err = |source| PipelineError::Consumer {
                    pipeline: name.to_string(),
                    source,
                };
                if dl.create {
                    kafka::ensure_topic(cfg, &dl.topic)
                        .await
                        .map_err(kafka_err)?;
                }
                let producer = DeadLetters::new(&kafka::client_config(cfg), &dl.topic, name)
                    .map_err(kafka_err)?;
                Some(Arc::new(producer))
            }
        };
        Ok(Self {
            name: name.to_string(),
            cfg: cfg.clone(),
            sink,
            chain,
            engine,
            registry,
            dead_letters,
            stats: Arc::new(Stats::default()),
            statistics: None,
        })
    }

    /// Has librdkafka report statistics every `interval`, so `/metrics` can
    /// show consumer lag (high watermarks come from the statistics).
    pub fn with_statistics(mut self, interval: Option<Duration>) -> Self {
        self.statistics = interval;
        self
    }

    /// Runs until `shutdown` fires (then drains within `grace`) or an error stops it.
    pub async fn run(
        self,
        shutdown: CancellationToken,
        grace: Duration,
    ) -> Result<(), PipelineError> {
        let Pipeline {
            name,
            cfg,
            sink,
            chain,
            engine,
            registry: _,
            dead_letters,
            stats,
            statistics,
        } = self;
        // This run's own stop signal: a failing stage stops this run only.
        let shutdown = shutdown.child_token();
        let span = tracing::info_span!("pipeline", pipeline = %name);
        let eos =
            (cfg.delivery == Delivery::ExactlyOnce).then(|| (name.clone(), sink.offset_store()));
        let (batch_tx, batch_rx) = tokio::sync::mpsc::channel(cfg.batch.max_in_flight);
        let (ack_tx, ack_rx) = std::sync::mpsc::channel();
        let projection = Projection::for_transforms(&cfg.transforms);
        if let Some(p) = &projection {
            let fields = p.fields().collect::<Vec<_>>().join(",");
            info!(pipeline = %name, fields, "the transforms read only these fields: decoding just them");
        }
        let driver = Driver::new(
            Decoder::new(cfg.format, projection),
            chain,
            Batcher::new(&cfg.batch, cfg.dead_letter.is_some(), engine.is_some()),
            batch_tx,
            ack_rx,
            &cfg.batch,
            Arc::clone(&stats),
            eos.clone(),
            dead_letters.clone(),
            shutdown.clone(),
        )
        .with_idle_timeout(idle_timeout(&cfg))
        .with_group(cfg.group_id(&name))
        .with_kafka_keys(engine.as_ref().is_some_and(|e| e.reads_kafka_key()))
        .with_deletes(cfg.sink.delete.then(|| cfg.sink.key_columns.clone()));
        let context = SourceContext {
            pipeline: name.clone(),
            high_watermarks: Arc::clone(&driver.high_watermarks),
            driver: Arc::new(Mutex::new(driver)),
        };
        let mut client = kafka::consumer_config(&name, &cfg);
        // Idle detection and the lag gauge read high watermarks from the statistics.
        let idle = idle_timeout(&cfg)
            .map(|t| (t / 2).clamp(Duration::from_millis(100), Duration::from_secs(1)));
        if let Some(interval) = idle.into_iter().chain(statistics).min() {
            client.set(
                "statistics.interval.ms",
                interval.as_millis().max(1).to_string(),
            );
        }
        let consumer: Consumer =
            client
                .create_with_context(context)
                .map_err(|source| PipelineError::Consumer {
                    pipeline: name.clone(),
                    source,
                })?;
        // Cancelled when the grace period after shutdown is over, or when a stage fails.
        let abort = CancellationToken::new();
        let writer = {
            let ctx = WriterContext {
                cfg: cfg.sink.clone(),
                pipeline: eos.as_ref().map(|(pipeline, _)| pipeline.clone()),
                dead_letters: dead_letters.clone(),
                abort: abort.clone(),
                stats: Arc::clone(&stats),
                engine,
                names: crate::trace::SpanNames {
                    pipeline: name.clone(),
                    group: cfg.group_id(&name),
                },
            };
            let task = async move {
                match sink {
                    AnySink::Postgres(s) => writer::run(s, ctx, batch_rx, ack_tx).await,
                    AnySink::Sqlite(s) => writer::run(s, ctx, batch_rx, ack_tx).await,
                    AnySink::MySql(s) => writer::run(s, ctx, batch_rx, ack_tx).await,
                }
            };
            tokio::spawn(task.instrument(span.clone()))
        };
        let source = {
            let (shutdown, topics, span) = (shutdown.clone(), cfg.topics.clone(), span.clone());
            tokio::task::spawn_blocking(move || {
                let _entered = span.enter();
                source::run(consumer, &topics, shutdown, grace)
            })
        };
        let grace_timer = {
            let (shutdown, abort) = (shutdown.clone(), abort.clone());
            tokio::spawn(async move {
                shutdown.cancelled().await;
                tokio::time::sleep(grace).await;
                abort.cancel();
            })
        };
        info!(parent: &span, topics = ?cfg.topics, table = %cfg.sink.table, "pipeline started");
        let (source_result, writer_result) = supervise(source, writer, &shutdown, &abort).await;
        grace_timer.abort();
        let pipeline = name.clone();
        writer_result.map_err(|source| PipelineError::Writer {
            pipeline: pipeline.clone(),
            source,
        })?;
        source_result.map_err(|source| PipelineError::Source { pipeline, source })?;
        info!(parent: &span, "pipeline stopped");
        Ok(())
    }
}

/// How many leading transforms are stateless (they run on the source thread;
/// the rest, from the first keyed step on, run in the writer).
pub fn stateless_prefix(cfg: &PipelineConfig) -> usize {
    cfg.transforms
        .iter()
        .position(|t| t.is_keyed())
        .unwrap_or(cfg.transforms.len())
}

/// The shortest idle timeout of the pipeline's windows, if it has any.
fn idle_timeout(cfg: &PipelineConfig) -> Option<Duration> {
    cfg.transforms
        .iter()
        .filter_map(|t| match t {
            crate::config::TransformConfig::Aggregate(a) => {
                a.window.as_ref().map(|w| w.idle_timeout)
            }
            _ => None,
        })
        .min()
}

type Joined<T, E> = Result<Result<T, E>, tokio::task::JoinError>;

/// Waits for both stages; when one fails, the other is told to stop.
async fn supervise(
    mut source: tokio::task::JoinHandle<Result<(), SourceError>>,
    mut writer: tokio::task::JoinHandle<Result<(), WriterError>>,
    shutdown: &CancellationToken,
    abort: &CancellationToken,
) -> (Result<(), SourceError>, Result<(), WriterError>) {
    let flatten_source =
        |r: Joined<(), SourceError>| r.unwrap_or_else(|e| Err(panicked_source(&e)));
    let flatten_writer =
        |r: Joined<(), WriterError>| r.unwrap_or_else(|e| Err(panicked_writer(&e)));
    tokio::select! {
        s = &mut source => {
            let s = flatten_source(s);
            if s.is_err() {
                abort.cancel();
            }
            let w = flatten_writer(writer.await);
            (s, w)
        }
        w = &mut writer => {
            let w = flatten_writer(w);
            // The source notices the writer is gone on its next tick; stop it anyway.
            shutdown.cancel();
            let s = flatten_source(source.await);
            (s, w)
        }
    }
}

fn panicked_source(e: &tokio::task::JoinError) -> SourceError {
    tracing::error!(error = %e, "source thread panicked");
    SourceError::Panicked
}

fn panicked_writer(e: &tokio::task::JoinError) -> WriterError {
    tracing::error!(error = %e, "writer task panicked");
    WriterError::Aborted
}

impl PipelineError {
    /// A batch was refused because another member claimed its partitions:
    /// this member lost its assignment (e.g. it was paused past its session
    /// timeout) and must rejoin the group from the database's checkpoints.
    pub fn is_fenced(&self) -> bool {
        matches!(
            self,
            PipelineError::Writer {
                source: WriterError::Sink(SinkError::Fenced { .. }),
                ..
            }
        )
    }
}

/// Runs a pipeline; when it is fenced, prepares it afresh and rejoins the group.
async fn run_rejoining(
    first: Pipeline,
    shutdown: CancellationToken,
    grace: Duration,
) -> Result<(), PipelineError> {
    let (name, cfg, stats, registry, statistics) = (
        first.name.clone(),
        first.cfg.clone(),
        Arc::clone(&first.stats),
        Arc::clone(&first.registry),
        first.statistics,
    );
    let mut pipeline = first;
    loop {
        match pipeline.run(shutdown.clone(), grace).await {
            Err(e) if e.is_fenced() && !shutdown.is_cancelled() => {
                tracing::warn!(pipeline = %name, error = %e, "fenced by a newer owner; rejoining the group");
                pipeline = Pipeline::prepare_with(&name, &cfg, Arc::clone(&registry))
                    .await?
                    .with_statistics(statistics);
                // The counters go on across rejoins (health and metrics read them).
                pipeline.stats = Arc::clone(&stats);
                stats
                    .assigned_partitions
                    .store(0, std::sync::atomic::Ordering::Relaxed);
            }
            other => return other,
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
    let mut prepared = Vec::new();
    let otlp_metrics =
        crate::telemetry::metrics_export(&settings.telemetry, |var| std::env::var(var).ok())
            .map_err(|e| PipelineError::MetricsExport(e.to_string()))?;
    // High watermarks (for the lag gauge) come from librdkafka's statistics:
    // only worth their cost when someone reads the metrics.
    let statistics = (settings.health.listen.is_some() || otlp_metrics.is_some())
        .then_some(settings.health.statistics_interval);
    for (name, cfg) in &settings.pipelines {
        let p = Pipeline::prepare_with(name, cfg, Arc::clone(&registry)).await?;
        prepared.push(p.with_statistics(statistics));
    }
    let grace = settings.shutdown.grace;
    let metrics_registry: crate::metrics::Registry = prepared
        .iter()
        .map(|p| (p.name.clone(), Arc::clone(&p.stats)))
        .collect();
    // Dropped when this function returns: one last export, then the thread ends.
    let _exporter = match otlp_metrics {
        Some(export) => {
            tracing::info!(endpoint = %export.endpoint, interval_ms = export.interval.as_millis() as u64, "exporting metrics over OTLP");
            Some(
                crate::metrics::otlp::spawn(export, metrics_registry.clone())
                    .map_err(|e| PipelineError::MetricsExport(e.to_string()))?,
            )
        }
        None => None,
    };
    if let Some(addr) = settings.health.listen {
        let registry = metrics_registry;
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            if let Err(e) = crate::health::serve(addr, Arc::new(registry), shutdown).await {
                tracing::error!(%addr, error = %e, "health and metrics server stopped");
            }
        });
    }
    let mut tasks = tokio::task::JoinSet::new();
    for p in prepared {
        let shutdown = shutdown.clone();
        tasks.spawn(run_rejoining(p, shutdown, grace));
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
