//! The stateful tail of a pipeline's transforms, applied by the writer to a
//! whole batch: jq and `key` steps per row, keyed operators per key with
//! their state loaded in one query per operator.

use super::dedup::Dedup;
use super::error::StateError;
use super::item::{Item, Rejected, RowOrigin};
use super::operator::{KeyedOperator, OperatorError};
use super::runner::Runner;
use super::running::RunningAggregate;
use super::stage::Stage;
use super::store::{StateStore, StateWrites};
use super::window::WindowedAggregate;
use super::{aggregate, KeySpec};
use crate::config::TransformConfig;
use crate::ingest::transform::jq::JqProgram;
use crate::model::{Batch, Row, TopicPartition};
use serde_json::Value;
use std::borrow::Cow;
use std::collections::HashMap;

/// The tail's result for one batch.
#[derive(Debug, Default)]
pub struct Applied {
    pub rows: Vec<Row>,
    pub origins: Vec<RowOrigin>,
    pub rejected: Vec<Rejected>,
    pub writes: StateWrites,
    /// Keys found in the caches, and keys loaded from the database.
    pub hits: u64,
    pub loads: u64,
}

enum Step {
    Jq(JqProgram),
    /// `fused`: the keyed stage right after it keys the records itself
    /// ([`Stage::key_by`]), so this step passes them on untouched.
    Key {
        spec: KeySpec,
        fused: bool,
    },
    Keyed(Box<dyn Stage>),
}

/// Builds a custom operator's stage (registered through the Rust API).
pub type Factory = Box<dyn Fn(String, KeySpec, usize) -> Box<dyn Stage> + Send + Sync>;

/// Custom operators by the name config refers to them with.
#[derive(Default)]
pub struct Registry {
    factories: HashMap<String, Factory>,
}

impl Registry {
    /// Makes `op` available to config as `{ type = "operator", name = "<name>" }`.
    pub fn register<O: KeyedOperator + Clone>(&mut self, name: &str, op: O) {
        let factory: Factory = Box::new(move |state_name, key_columns, capacity| {
            Box::new(Runner::new(
                state_name,
                op.clone(),
                key_columns,
                None,
                capacity,
            ))
        });
        self.factories.insert(name.to_string(), factory);
    }
}

pub struct Engine {
    pipeline: String,
    steps: Vec<Step>,
    store: StateStore,
}

impl Engine {
    /// Whether any step reads the records' Kafka keys: not when the first
    /// step keys records by their fields (the source then skips copying them).
    pub fn reads_kafka_key(&self) -> bool {
        !matches!(
            self.steps.first(),
            Some(Step::Key {
                spec: KeySpec::Fields(_),
                ..
            })
        )
    }

    /// Builds the tail from the transforms starting at the first keyed step
    /// (`offset` is that step's index in the pipeline's list).
    pub fn new(
        pipeline: &str,
        tail: &[TransformConfig],
        offset: usize,
        capacity: usize,
        registry: &Registry,
        store: StateStore,
    ) -> Result<Self, StateError> {
        let mut key = KeySpec::KafkaKey;
        let mut steps = Vec::with_capacity(tail.len());
        for (i, t) in tail.iter().enumerate() {
            let index = offset + i;
            let fail = |message: String| StateError::Config { index, message };
            let name = t.state_name(index).unwrap_or_default();
            steps.push(match t {
                TransformConfig::Jq { expr } => {
                    Step::Jq(JqProgram::compile(expr).map_err(|e| fail(e.to_string()))?)
                }
                TransformConfig::Key { fields } => {
                    key = KeySpec::Fields(fields.clone());
                    Step::Key {
                        spec: key.clone(),
                        fused: false,
                    }
                }
                TransformConfig::Aggregate(a) => {
                    let specs = aggregate::parse_all(&a.columns)
                        .map_err(|(c, e)| fail(format!("columns.{c}: {e}")))?;
                    let stage: Box<dyn Stage> = match &a.window {
                        None => Box::new(Runner::new(
                            name,
                            RunningAggregate::new(specs),
                            key.clone(),
                            None,
                            capacity,
                        )),
                        Some(w) => Box::new(Runner::new(
                            name,
                            WindowedAggregate::new(specs, w),
                            key.clone(),
                            None,
                            capacity,
                        )),
                    };
                    Step::Keyed(stage)
                }
                TransformConfig::Dedup(d) => {
                    let from = d.field.clone().map(|f| KeySpec::Fields(vec![f]));
                    Step::Keyed(Box::new(Runner::new(
                        name,
                        Dedup::new(d.ttl),
                        key.clone(),
                        from,
                        capacity,
                    )))
                }
                TransformConfig::Operator { name: op } => {
                    let factory = registry.factories.get(op).ok_or_else(|| {
                        fail(format!("operator `{op}` is not registered in this binary"))
                    })?;
                    Step::Keyed(factory(name, key.clone(), capacity))
                }
            });
        }
        for step in &mut steps {
            if let Step::Keyed(stage) = step {
                stage.limit_keys(store.max_key_chars());
            }
        }
        for i in 1..steps.len() {
            if let [Step::Key { spec, fused }, Step::Keyed(stage)] = &mut steps[i - 1..=i] {
                *fused = stage.key_by(spec);
            }
        }
        Ok(Self {
            pipeline: pipeline.to_string(),
            steps,
            store,
        })
    }

    pub fn store(&self) -> &StateStore {
        &self.store
    }

    /// Runs the batch through the tail. Reads state; writes nothing (the
    /// returned [`StateWrites`] go into the batch's transaction). Call
    /// [`Engine::commit`] after that transaction committed, else [`Engine::rollback`].
    pub async fn apply(&mut self, batch: &Batch) -> Result<Applied, StateError> {
        let parts = &batch.partitions;
        let idle: Vec<(u32, i64)> = batch
            .idle
            .iter()
            .filter_map(|(tp, ms)| parts.iter().position(|p| p == tp).map(|i| (i as u32, *ms)))
            .collect();
        let mut items: Vec<Item> = batch
            .rows
            .iter()
            .zip(&batch.meta)
            .map(|(row, m)| Item {
                row: Cow::Borrowed(row),
                part: m.part,
                offset: m.offset,
                kafka_ts: m.timestamp_ms,
                key: m.key.clone(),
                raw: m.raw,
            })
            .collect();
        let mut rejected = Vec::new();
        let mut writes = StateWrites {
            pipeline: self.pipeline.clone(),
            ops: Vec::new(),
        };
        let (mut hits, mut loads) = (0, 0);
        for step in &mut self.steps {
            items = match step {
                Step::Jq(program) => run_jq(program, items, &mut rejected),
                Step::Key { fused: true, .. } => items,
                Step::Key { spec, .. } => set_keys(spec, items, &mut rejected),
                Step::Keyed(stage) => {
                    stage.begin(parts, &batch.generations);
                    let misses = stage.prepare(&items, parts);
                    hits += stage.hits();
                    loads += misses.len() as u64;
                    let loaded = self
                        .store
                        .load(&self.pipeline, stage.name(), &misses)
                        .await?;
                    stage.install(&misses, loaded, parts)?;
                    let mut out = stage.process(items, &idle, &mut rejected);
                    for (part, wm) in stage.due() {
                        let due = self
                            .store
                            .load_due(&self.pipeline, stage.name(), &parts[part as usize], wm)
                            .await?;
                        out.extend(stage.fire_due(part, wm, due, parts)?);
                    }
                    writes.ops.push(stage.writes(parts)?);
                    out
                }
            };
        }
        let origins = items
            .iter()
            .map(|i| RowOrigin {
                part: i.part,
                offset: i.offset,
                raw: i.raw,
            })
            .collect();
        let rows = items.into_iter().map(|i| i.row.into_owned()).collect();
        Ok(Applied {
            rows,
            origins,
            rejected,
            writes,
            hits,
            loads,
        })
    }

    /// The batch's transaction committed: its states enter the caches.
    pub fn commit(&mut self, parts: &[TopicPartition]) {
        for step in &mut self.steps {
            if let Step::Keyed(stage) = step {
                stage.commit(parts);
            }
        }
    }

    /// The batch was not written: forget its working states.
    pub fn rollback(&mut self) {
        for step in &mut self.steps {
            if let Step::Keyed(stage) = step {
                stage.rollback();
            }
        }
    }
}

fn run_jq<'a>(
    program: &JqProgram,
    items: Vec<Item<'a>>,
    rejected: &mut Vec<Rejected>,
) -> Vec<Item<'a>> {
    let mut out = Vec::with_capacity(items.len());
    for mut item in items {
        // An owned row moves into the program; a borrowed one is copied.
        let row = std::mem::take(&mut item.row).into_owned();
        match program.run(Value::Object(row)) {
            Ok(values) => {
                for v in values {
                    match v {
                        Value::Object(row) => out.push(Item {
                            row: Cow::Owned(row),
                            part: item.part,
                            offset: item.offset,
                            kafka_ts: item.kafka_ts,
                            key: item.key.clone(),
                            raw: item.raw,
                        }),
                        other => rejected.push(Rejected::of(
                            &item,
                            OperatorError::Record(format!(
                                "a row must be a JSON object, got {other}"
                            )),
                        )),
                    }
                }
            }
            Err(e) => rejected.push(Rejected::of(&item, OperatorError::Record(e.to_string()))),
        }
    }
    out
}

fn set_keys<'a>(
    spec: &KeySpec,
    items: Vec<Item<'a>>,
    rejected: &mut Vec<Rejected>,
) -> Vec<Item<'a>> {
    items
        .into_iter()
        .filter_map(|mut item| match spec.of(&item.row, &item.key) {
            Ok(key) => {
                item.key = key;
                Some(item)
            }
            Err(message) => {
                rejected.push(Rejected::of(&item, OperatorError::Record(message)));
                None
            }
        })
        .collect()
}
