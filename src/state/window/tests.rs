use super::*;
use crate::config::WindowConfig;
use crate::state::KeySpec;
use serde_json::{json, Value};

fn cfg(kind: WindowKind, emit: EmitMode, late: LatePolicy) -> WindowConfig {
    let mut doc = json!({
        "kind": match kind {
            WindowKind::Tumbling => "tumbling",
            WindowKind::Hopping => "hopping",
            WindowKind::Session => "session",
        },
        "size": "10s",
        "gap": "5s",
        "emit": if emit == EmitMode::Update { "update" } else { "final" },
        "late": if late == LatePolicy::Correct { "correct" } else { "dead-letter" },
        "retention": "60s",
        "time_field": "t",
    });
    if kind == WindowKind::Hopping {
        doc["slide"] = json!("5s");
    }
    serde_json::from_value(doc).expect("valid window config")
}

fn op(kind: WindowKind, emit: EmitMode, late: LatePolicy) -> WindowedAggregate {
    let specs = vec![
        AggSpec::parse("n", "count()").expect("valid"),
        AggSpec::parse("total", "sum(x)").expect("valid"),
    ];
    WindowedAggregate::new(specs, &cfg(kind, emit, late))
}

/// Drives one key through records (event time s, x) and watermarks, like the engine.
struct Harness {
    op: WindowedAggregate,
    state: Option<Windows>,
    wm: i64,
    out: Vec<Row>,
}

impl Harness {
    fn new(op: WindowedAggregate) -> Self {
        Self {
            op,
            state: None,
            wm: i64::MIN,
            out: Vec::new(),
        }
    }

    fn record(&mut self, t_s: i64, x: i64) -> Result<(), OperatorError> {
        let row = json!({"t": t_s * 1000, "x": x});
        let row = row.as_object().expect("object").clone();
        let t = self.op.event_time(&row, None)?;
        let key = json!("k");
        let spec = KeySpec::KafkaKey;
        let mut cx = Context {
            key: &key,
            key_columns: &spec,
            event_time: t,
            watermark: self.wm,
            out: &mut self.out,
        };
        let result = self.op.process(&mut cx, &mut self.state, &row);
        self.wm = self.wm.max(t);
        result
    }

    /// End of batch: touched, then on_due if due.
    fn end_batch(&mut self) {
        let key = json!("k");
        let spec = KeySpec::KafkaKey;
        let mut cx = Context {
            key: &key,
            key_columns: &spec,
            event_time: self.wm,
            watermark: self.wm,
            out: &mut self.out,
        };
        self.op.touched(&mut cx, &mut self.state);
        if self
            .state
            .as_ref()
            .and_then(|s| self.op.due_at(s))
            .is_some_and(|d| d <= self.wm)
        {
            self.op.on_due(&mut cx, &mut self.state);
        }
    }

    fn rows(&mut self) -> Vec<(i64, i64, Value, Value)> {
        std::mem::take(&mut self.out)
            .into_iter()
            .map(|r| {
                (
                    r["window_start"].as_i64().unwrap_or(-1) / 1000,
                    r["window_end"].as_i64().unwrap_or(-1) / 1000,
                    r["n"].clone(),
                    r["total"].clone(),
                )
            })
            .collect()
    }
}

#[test]
fn hopping_assigns_every_window_containing_the_time() {
    let w = op(WindowKind::Hopping, EmitMode::Final, LatePolicy::DeadLetter);
    assert_eq!(w.assign(12_000), vec![(5_000, 15_000), (10_000, 20_000)]);
    let t = op(
        WindowKind::Tumbling,
        EmitMode::Final,
        LatePolicy::DeadLetter,
    );
    assert_eq!(t.assign(12_000), vec![(10_000, 20_000)]);
    assert_eq!(t.assign(-1), vec![(-10_000, 0)]);
}

#[test]
fn tumbling_final_emits_once_when_the_watermark_passes_the_end() {
    let mut h = Harness::new(op(
        WindowKind::Tumbling,
        EmitMode::Final,
        LatePolicy::DeadLetter,
    ));
    h.record(1, 5).expect("on time");
    h.record(9, 7).expect("on time");
    h.end_batch();
    assert!(h.rows().is_empty(), "window still open");
    h.record(10, 1).expect("next window");
    h.end_batch();
    assert_eq!(h.rows(), vec![(0, 10, json!(2), json!(12))]);
    let late = h.record(3, 100).expect_err("window closed");
    assert!(matches!(late, OperatorError::Late(_)), "{late:?}");
    assert_eq!(
        h.state.as_ref().map(|s| s.wins.len()),
        Some(1),
        "only [10, 20) left"
    );
}

#[test]
fn update_mode_upserts_touched_windows_every_batch() {
    let mut h = Harness::new(op(
        WindowKind::Tumbling,
        EmitMode::Update,
        LatePolicy::DeadLetter,
    ));
    h.record(1, 5).expect("on time");
    h.end_batch();
    h.record(2, 1).expect("on time");
    h.end_batch();
    assert_eq!(
        h.rows(),
        vec![(0, 10, json!(1), json!(5)), (0, 10, json!(2), json!(6))]
    );
    h.end_batch();
    assert!(h.rows().is_empty(), "untouched windows are not re-emitted");
}

#[test]
fn late_records_correct_a_retained_window() {
    let mut h = Harness::new(op(
        WindowKind::Tumbling,
        EmitMode::Final,
        LatePolicy::Correct,
    ));
    h.record(1, 5).expect("on time");
    h.record(15, 1).expect("on time");
    h.end_batch();
    assert_eq!(h.rows(), vec![(0, 10, json!(1), json!(5))]);
    h.record(2, 10).expect("correction accepted");
    h.end_batch();
    assert_eq!(h.rows(), vec![(0, 10, json!(2), json!(15))]);
    h.record(100, 0).expect("on time");
    h.end_batch();
    h.rows();
    assert!(h.record(3, 1).is_err(), "past retention the window is gone");
}

#[test]
fn sessions_merge_when_a_record_bridges_them() {
    let mut h = Harness::new(op(
        WindowKind::Session,
        EmitMode::Final,
        LatePolicy::DeadLetter,
    ));
    h.record(0, 1).expect("on time");
    h.record(8, 2).expect("on time");
    assert_eq!(
        h.state.as_ref().map(|s| s.wins.len()),
        Some(2),
        "gap 5s apart"
    );
    h.record(4, 4).expect("bridges");
    let wins = &h.state.as_ref().expect("state").wins;
    assert_eq!((wins.len(), wins[0].start, wins[0].end), (1, 0, 13_000));
    h.record(30, 1).expect("new session");
    h.end_batch();
    assert_eq!(h.rows(), vec![(0, 13, json!(3), json!(7))]);
}

#[test]
fn a_wrong_event_time_is_a_record_error() {
    let mut h = Harness::new(op(
        WindowKind::Tumbling,
        EmitMode::Final,
        LatePolicy::DeadLetter,
    ));
    let row = json!({"t": "soon"});
    let err =
        h.op.event_time(row.as_object().expect("object"), None)
            .expect_err("not a number");
    assert!(matches!(err, OperatorError::Record(_)));
    assert!(h.record(1, 1).is_ok());
}
