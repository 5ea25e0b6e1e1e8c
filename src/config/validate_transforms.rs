//! Validation of the transform chain: expressions compile, stateful steps are
//! consistent with each other, the delivery mode and the sink.

use super::{
    Delivery, EmitMode, LatePolicy, PipelineConfig, SinkMode, TransformConfig, WindowConfig,
    WindowKind,
};
use std::collections::BTreeSet;

pub(super) fn transforms(name: &str, p: &PipelineConfig, push: &mut impl FnMut(String, String)) {
    let key = |i: usize, k: &str| format!("pipelines.{name}.transforms[{i}]{k}");
    let mut names = BTreeSet::new();
    let mut stateful = false;
    for (i, t) in p.transforms.iter().enumerate() {
        if let Some(state) = t.state_name(i) {
            stateful = true;
            if !names.insert(state.clone()) {
                push(
                    key(i, ".name"),
                    format!("`{state}` names another stateful step too; names must be unique"),
                );
            }
            if state.is_empty() || state.chars().count() > 64 {
                push(
                    key(i, ".name"),
                    "must be 1 to 64 characters (the state table's operator column)".into(),
                );
            }
        }
        match t {
            // Compiled by `check::offline`, which knows jq.
            TransformConfig::Jq { .. } => {}
            TransformConfig::Key { fields } => {
                if fields.is_empty() || fields.iter().any(|f| f.is_empty()) {
                    push(
                        key(i, ".fields"),
                        "must list one or more field names".into(),
                    );
                }
            }
            TransformConfig::Aggregate(a) => {
                if a.columns.is_empty() {
                    push(
                        key(i, ".columns"),
                        "must declare at least one output column".into(),
                    );
                }
                for (column, text) in &a.columns {
                    if let Err(e) = super::aggregate::AggSpec::parse(column, text) {
                        push(key(i, &format!(".columns.{column}")), e);
                    }
                }
                match &a.window {
                    None => {
                        needs_upsert(p, &key(i, ""), "running totals are upserted per key", push)
                    }
                    Some(w) => window(p, w, &|k| key(i, &format!(".window.{k}")), push),
                }
            }
            TransformConfig::Dedup(d) => {
                if d.ttl.is_zero() {
                    push(key(i, ".ttl"), "must be above zero".into());
                }
                if d.field.as_ref().is_some_and(String::is_empty) {
                    push(key(i, ".field"), "must name a field".into());
                }
            }
            TransformConfig::Operator { name: op } => {
                if op.is_empty() {
                    push(key(i, ".name"), "must name a registered operator".into());
                }
            }
        }
    }
    if stateful && p.delivery != Delivery::ExactlyOnce {
        push(
            format!("pipelines.{name}.delivery"),
            "stateful transforms need `exactly-once`: their state commits with the offsets, and at-least-once replays would count records twice".into(),
        );
    }
}

fn window(
    p: &PipelineConfig,
    w: &WindowConfig,
    key: &dyn Fn(&str) -> String,
    push: &mut impl FnMut(String, String),
) {
    let positive = |d: Option<std::time::Duration>| d.is_some_and(|d| !d.is_zero());
    match w.kind {
        WindowKind::Tumbling | WindowKind::Hopping if !positive(w.size) => push(
            key("size"),
            "tumbling and hopping windows need a size above zero".into(),
        ),
        WindowKind::Session if !positive(w.gap) => {
            push(key("gap"), "session windows need a gap above zero".into())
        }
        _ => {}
    }
    if w.kind == WindowKind::Hopping {
        match (w.size, w.slide) {
            (Some(size), Some(slide)) if !slide.is_zero() && slide <= size => {}
            _ => push(
                key("slide"),
                "hopping windows need a slide above zero and at most the size".into(),
            ),
        }
    } else if w.slide.is_some() {
        push(key("slide"), "only hopping windows take a slide".into());
    }
    if w.kind == WindowKind::Session && w.emit == EmitMode::Update {
        push(key("emit"), "session windows emit `final` only: a merged session would leave its earlier rows behind".into());
    }
    if w.idle_timeout.is_zero() {
        push(key("idle_timeout"), "must be above zero".into());
    }
    if w.emit == EmitMode::Update || w.late == LatePolicy::Correct {
        needs_upsert(
            p,
            &key("emit"),
            "windows are upserted (emit = \"update\" or late = \"correct\")",
            push,
        );
    }
}

fn needs_upsert(p: &PipelineConfig, key: &str, why: &str, push: &mut impl FnMut(String, String)) {
    if p.sink.mode != SinkMode::Upsert {
        push(
            key.to_string(),
            format!(
                "{why}: set sink.mode = \"upsert\" with the key (and window start) as key_columns"
            ),
        );
    }
}
