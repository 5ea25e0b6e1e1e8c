//! One pipeline, wired: source thread (ingest: decode, transform, batch) →
//! writer task (state, then the database [`crate::db::open`] opened) → acks →
//! commits. See [`crate::source`] for the delivery contract.
//!
//! Shutdown: `shutdown` stops the source, which flushes and waits for the
//! writer; `grace` later the writer is aborted (its unacknowledged batches are
//! never committed, so they are read again after a restart).

use crate::config::{Delivery, PipelineConfig};
use crate::dead_letter::DeadLetters;
use crate::ingest::batch::Batcher;
use crate::ingest::decode::{Decoder, Projection};
use crate::ingest::transform::{Chain, TransformError};
use crate::ingest::Ingest;
use crate::observe::stats::Stats;
use crate::sink::writer::{self, WriterContext, WriterError};
use crate::sink::{Sink, SinkError};
use crate::source::{self, kafka, Consumer, Driver, SourceContext, SourceError};
use crate::state::{Engine, Registry, StateError};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{info, Instrument};

mod all;
mod supervise;

pub use all::{run_all, run_all_with};
use supervise::supervise;

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
    #[error("pipeline {pipeline}: creating the dead-letter topic: {source}")]
    DeadLetterTopic {
        pipeline: String,
        source: kafka::AdminError,
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
    sink: Box<dyn Sink>,
    chain: Chain,
    /// The stateful tail of the transforms (run by the writer), if any.
    engine: Option<Engine>,
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
        let sink = crate::db::open(&cfg.sink).await.map_err(sink_err)?;
        if cfg.delivery == Delivery::ExactlyOnce {
            sink.offset_store().ensure_table().await.map_err(sink_err)?;
        }
        let engine = if split < cfg.transforms.len() {
            let store = sink.state_store();
            store.ensure_table().await.map_err(|e| sink_err(e.into()))?;
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
                    kafka::ensure_topic(cfg, &dl.topic, name)
                        .await
                        .map_err(|source| PipelineError::DeadLetterTopic {
                            pipeline: name.to_string(),
                            source,
                        })?;
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
        let ingest = Ingest::new(
            Decoder::new(cfg.format, projection(&name, &cfg)),
            chain,
            Batcher::new(&cfg.batch, cfg.dead_letter.is_some(), engine.is_some()),
        )
        .with_kafka_keys(engine.as_ref().is_some_and(|e| e.reads_kafka_key()))
        .with_deletes(cfg.applies_deletes().then(|| cfg.sink.key_columns.clone()))
        .with_truncates(cfg.sink.apply_truncate)
        .with_order(cfg.sink.order_column.clone())
        .with_lineage(crate::ingest::lineage::Stamp::new(cfg.lineage.clone()));
        let driver = Driver::new(
            ingest,
            batch_tx,
            ack_rx,
            &cfg.batch,
            Arc::clone(&stats),
            dead_letters.clone(),
            shutdown.clone(),
        )
        .with_exactly_once(eos.clone())
        .with_idle_timeout(idle_timeout(&cfg))
        .with_group(cfg.group_id(&name));
        let consumer = consumer(&name, &cfg, driver, statistics)?;
        // Cancelled when the grace period after shutdown is over, or when a stage fails.
        let abort = CancellationToken::new();
        let ctx = WriterContext {
            cfg: cfg.sink.clone(),
            pipeline: eos.as_ref().map(|(pipeline, _)| pipeline.clone()),
            offsets: eos.as_ref().map(|(_, offsets)| Arc::clone(offsets)),
            dead_letters: dead_letters.clone(),
            abort: abort.clone(),
            stats: Arc::clone(&stats),
            engine,
            names: crate::observe::trace::SpanNames {
                pipeline: name.clone(),
                group: cfg.group_id(&name),
            },
        };
        let writer =
            tokio::spawn(writer::run(sink, ctx, batch_rx, ack_tx).instrument(span.clone()));
        let source = {
            let (shutdown, topics, span) = (shutdown.clone(), cfg.topics.clone(), span.clone());
            tokio::task::spawn_blocking(move || {
                let _entered = span.enter();
                source::run(consumer, &topics, shutdown, grace)
            })
        };
        let grace_timer = tokio::spawn(abort_after_grace(shutdown.clone(), abort.clone(), grace));
        info!(parent: &span, topics = ?cfg.topics, table = %cfg.sink.table, "pipeline started");
        let (source_result, writer_result) = supervise(source, writer, &shutdown, &abort).await;
        grace_timer.abort();
        supervise::cause(name.clone(), source_result, writer_result)?;
        info!(parent: &span, "pipeline stopped");
        Ok(())
    }
}

/// The fields to decode when the transforms read only some (logged), or None.
fn projection(name: &str, cfg: &PipelineConfig) -> Option<Projection> {
    let projection = Projection::for_transforms(&cfg.transforms);
    if let Some(p) = &projection {
        let fields = p.fields().collect::<Vec<_>>().join(",");
        info!(pipeline = %name, fields, "the transforms read only these fields: decoding just them");
    }
    projection
}

/// The Kafka consumer whose context drives `driver`. Idle detection and the
/// lag gauge read high watermarks from librdkafka's statistics, so they are
/// requested at the shorter of the two intervals.
fn consumer(
    name: &str,
    cfg: &PipelineConfig,
    driver: Driver,
    statistics: Option<Duration>,
) -> Result<Consumer, PipelineError> {
    let context = SourceContext {
        pipeline: name.to_string(),
        high_watermarks: Arc::clone(&driver.high_watermarks),
        unfetched: Arc::clone(&driver.unfetched),
        driver: Arc::new(Mutex::new(driver)),
    };
    let mut client = kafka::consumer_config(name, cfg);
    let idle = idle_timeout(cfg)
        .map(|t| (t / 2).clamp(Duration::from_millis(100), Duration::from_secs(1)));
    if let Some(interval) = idle.into_iter().chain(statistics).min() {
        client.set(
            "statistics.interval.ms",
            interval.as_millis().max(1).to_string(),
        );
    }
    client
        .create_with_context(context)
        .map_err(|source| PipelineError::Consumer {
            pipeline: name.to_string(),
            source,
        })
}

/// Cancels `abort` once the grace period after `shutdown` is over.
async fn abort_after_grace(shutdown: CancellationToken, abort: CancellationToken, grace: Duration) {
    shutdown.cancelled().await;
    tokio::time::sleep(grace).await;
    abort.cancel();
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
