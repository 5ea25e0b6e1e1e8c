//! Windowed aggregates on event time: tumbling, hopping and session windows.
//!
//! A window `[start, end)` closes when the partition's watermark reaches
//! `end`. Emit `update` upserts each touched window's row after every batch;
//! emit `final` writes one row when the window closes. A record is late for a
//! window already closed: with `late = "correct"` a closed window is kept for
//! `retention` and a late record updates it and upserts the corrected row;
//! otherwise (or past retention) the record is refused as late and goes to
//! the dead-letter topic. A hopping record that still reaches an open window
//! counts there and is not refused.

use super::aggregate::{Acc, AggSpec};
use super::operator::{Context, KeyedOperator, OperatorError};
use super::running::{columns, fold_into, folded};
use super::time;
use crate::config::{EmitMode, LatePolicy, TimeFormat, WindowConfig, WindowKind};
use crate::model::Row;
use serde::{Deserialize, Serialize};

fn ms(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Win {
    pub start: i64,
    pub end: i64,
    pub accs: Box<[Acc]>,
    #[serde(default)]
    pub closed: bool,
    /// Changed in the current batch (not stored).
    #[serde(skip)]
    pub dirty: bool,
}

/// The open (and retained closed) windows of one key, by start.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Windows {
    pub wins: Vec<Win>,
}

#[derive(Debug, Clone)]
pub struct WindowedAggregate {
    specs: Vec<AggSpec>,
    kind: WindowKind,
    size: i64,
    slide: i64,
    gap: i64,
    time_field: Option<String>,
    time_format: TimeFormat,
    lateness: i64,
    idle_timeout: i64,
    emit: EmitMode,
    late: LatePolicy,
    retention: i64,
    start_column: String,
    end_column: String,
    output_format: TimeFormat,
}

impl WindowedAggregate {
    /// Builds the operator from validated config (sizes present for the kind).
    pub fn new(specs: Vec<AggSpec>, w: &WindowConfig) -> Self {
        let size = w.size.map_or(0, ms).max(1);
        Self {
            specs,
            kind: w.kind,
            size,
            slide: w.slide.map_or(size, ms).max(1),
            gap: w.gap.map_or(0, ms).max(1),
            time_field: w.time_field.clone(),
            time_format: w.time_format,
            lateness: ms(w.allowed_lateness),
            idle_timeout: ms(w.idle_timeout),
            emit: w.emit,
            late: w.late,
            retention: ms(w.retention),
            start_column: w.start_column.clone(),
            end_column: w.end_column.clone(),
            output_format: w.output_time_format,
        }
    }

    /// The `[start, end)` windows a record at `t` belongs to (not sessions).
    pub fn assign(&self, t: i64) -> Vec<(i64, i64)> {
        match self.kind {
            WindowKind::Tumbling => {
                let start = t.div_euclid(self.size) * self.size;
                vec![(start, start + self.size)]
            }
            WindowKind::Hopping => {
                let last = t.div_euclid(self.slide) * self.slide;
                let mut out = Vec::new();
                let mut start = last;
                while start > t - self.size {
                    out.push((start, start + self.size));
                    start -= self.slide;
                }
                out.reverse();
                out
            }
            WindowKind::Session => vec![(t, t + self.gap)],
        }
    }

    fn row(&self, w: &Win) -> Row {
        let mut row = Row::new();
        row.insert(
            self.start_column.clone(),
            time::format(w.start, self.output_format),
        );
        row.insert(
            self.end_column.clone(),
            time::format(w.end, self.output_format),
        );
        columns(&self.specs, &w.accs, &mut row);
        row
    }

    /// Adds the record to a window of fixed bounds; false when it is late there.
    fn add_fixed(
        &self,
        s: &mut Windows,
        (start, end): (i64, i64),
        wm: i64,
        record: &Row,
    ) -> Result<bool, OperatorError> {
        let existing = s.wins.iter().position(|w| w.start == start);
        let closed_here = end <= wm;
        match existing {
            Some(i) if !s.wins[i].closed || self.late == LatePolicy::Correct => {
                let w = &mut s.wins[i];
                fold_into(&self.specs, &mut w.accs, record)?;
                w.dirty = true;
                Ok(true)
            }
            Some(_) => Ok(false),
            None if closed_here => Ok(false),
            None => {
                let accs = folded(&self.specs, None, record)?;
                let at = s.wins.partition_point(|w| w.start < start);
                s.wins.insert(
                    at,
                    Win {
                        start,
                        end,
                        accs,
                        closed: false,
                        dirty: true,
                    },
                );
                Ok(true)
            }
        }
    }

    /// Adds the record to its session, merging the sessions it bridges.
    fn add_session(
        &self,
        s: &mut Windows,
        t: i64,
        wm: i64,
        record: &Row,
    ) -> Result<bool, OperatorError> {
        let (start, end) = (t, t + self.gap);
        let touching: Vec<usize> = (0..s.wins.len())
            .filter(|&i| !s.wins[i].closed && s.wins[i].start <= end && start <= s.wins[i].end)
            .collect();
        if touching.is_empty() && end <= wm {
            return Ok(false);
        }
        let mut merged = Win {
            start,
            end,
            accs: folded(&self.specs, None, record)?,
            closed: false,
            dirty: true,
        };
        for &i in touching.iter().rev() {
            let w = s.wins.remove(i);
            let (earlier, later) = if w.start <= merged.start {
                (w, merged)
            } else {
                (merged, w)
            };
            let mut accs = earlier.accs;
            for ((acc, other), spec) in accs.iter_mut().zip(&later.accs).zip(&self.specs) {
                acc.merge(other, spec.func);
            }
            merged = Win {
                start: earlier.start.min(later.start),
                end: earlier.end.max(later.end),
                accs,
                closed: false,
                dirty: true,
            };
        }
        let at = s.wins.partition_point(|w| w.start < merged.start);
        s.wins.insert(at, merged);
        Ok(true)
    }
}

impl KeyedOperator for WindowedAggregate {
    type State = Windows;

    fn process(
        &self,
        cx: &mut Context<'_>,
        state: &mut Option<Windows>,
        record: &Row,
    ) -> Result<(), OperatorError> {
        let (t, wm) = (cx.event_time(), cx.watermark());
        let mut s = state.clone().unwrap_or_default();
        let accepted = match self.kind {
            WindowKind::Session => self.add_session(&mut s, t, wm, record)?,
            _ => {
                let mut any = false;
                for bounds in self.assign(t) {
                    any |= self.add_fixed(&mut s, bounds, wm, record)?;
                }
                any
            }
        };
        if !accepted {
            return Err(OperatorError::Late(format!(
                "event time {t} is behind the watermark {wm} and its window is closed"
            )));
        }
        *state = Some(s);
        Ok(())
    }

    fn touched(&self, cx: &mut Context<'_>, state: &mut Option<Windows>) {
        let Some(s) = state else { return };
        for w in &mut s.wins {
            if w.dirty && (self.emit == EmitMode::Update || w.closed) {
                cx.emit(self.row(w));
            }
            w.dirty = false;
        }
    }

    fn due_at(&self, s: &Windows) -> Option<i64> {
        s.wins
            .iter()
            .map(|w| {
                if w.closed {
                    w.end.saturating_add(self.retention)
                } else {
                    w.end
                }
            })
            .min()
    }

    fn on_due(&self, cx: &mut Context<'_>, state: &mut Option<Windows>) {
        let Some(s) = state else { return };
        let wm = cx.watermark();
        let mut kept = Vec::with_capacity(s.wins.len());
        for mut w in std::mem::take(&mut s.wins) {
            if !w.closed && w.end <= wm {
                if self.emit == EmitMode::Final {
                    cx.emit(self.row(&w));
                }
                if self.late == LatePolicy::Correct {
                    w.closed = true;
                } else {
                    continue;
                }
            }
            if w.closed && w.end.saturating_add(self.retention) <= wm {
                continue;
            }
            kept.push(w);
        }
        if kept.is_empty() {
            *state = None;
        } else {
            s.wins = kept;
        }
    }

    fn event_time(&self, record: &Row, kafka_ms: Option<i64>) -> Result<i64, OperatorError> {
        match &self.time_field {
            None => kafka_ms
                .ok_or_else(|| OperatorError::Record("the record has no Kafka timestamp".into())),
            Some(f) => {
                let v = record.get(f).ok_or_else(|| {
                    OperatorError::Record(format!("event time field `{f}` is missing"))
                })?;
                time::parse(v, self.time_format).map_err(OperatorError::Record)
            }
        }
    }

    fn uses_time(&self) -> bool {
        true
    }

    fn allowed_lateness_ms(&self) -> i64 {
        self.lateness
    }

    fn idle_timeout_ms(&self) -> Option<i64> {
        Some(self.idle_timeout)
    }
}

#[cfg(test)]
mod tests;
