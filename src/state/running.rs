//! Running totals: per key, aggregates over every record so far, upserted
//! once per batch for each key the batch touched.

use super::aggregate::{Acc, AggSpec, Func};
use super::operator::{Context, KeyedOperator, OperatorError};
use crate::model::Row;

/// `type = "aggregate"` without a window.
#[derive(Debug, Clone)]
pub struct RunningAggregate {
    specs: Vec<AggSpec>,
}

impl RunningAggregate {
    pub fn new(specs: Vec<AggSpec>) -> Self {
        Self { specs }
    }
}

/// The accumulators with one more record folded in (fresh ones when `None`);
/// the originals stay untouched when the record is refused.
pub fn folded(
    specs: &[AggSpec],
    accs: Option<&[Acc]>,
    record: &Row,
) -> Result<Box<[Acc]>, OperatorError> {
    let mut next: Box<[Acc]> = accs.map_or_else(|| fresh(specs), Box::from);
    fold_into(specs, &mut next, record)?;
    Ok(next)
}

/// Folds one more record into `accs` in place; a refused record leaves them
/// untouched. Each accumulator's fold either fails before changing anything
/// or succeeds, so with at most one function that can refuse a record
/// (sum, avg, min, max) folding that one first makes the whole fold atomic
/// without a copy: a running total then costs no allocation per record.
/// With more, the fold goes through a copy.
pub fn fold_into(specs: &[AggSpec], accs: &mut [Acc], record: &Row) -> Result<(), OperatorError> {
    match specs.iter().filter(|s| can_refuse(s)).count() {
        0 | 1 => {
            // The one that may refuse first, then those that cannot.
            for first in [true, false] {
                for (spec, acc) in specs.iter().zip(accs.iter_mut()) {
                    if can_refuse(spec) == first {
                        acc.fold(spec, record).map_err(OperatorError::Record)?;
                    }
                }
            }
            Ok(())
        }
        _ => {
            let mut next: Box<[Acc]> = Box::from(&*accs);
            for (spec, acc) in specs.iter().zip(next.iter_mut()) {
                acc.fold(spec, record).map_err(OperatorError::Record)?;
            }
            accs.clone_from_slice(&next);
            Ok(())
        }
    }
}

/// Whether folding a record into this function's accumulator can fail (a
/// value that is not a number, values that do not compare).
fn can_refuse(spec: &AggSpec) -> bool {
    match spec.func {
        Func::Count => false,
        Func::First | Func::Last => spec.field.is_none(),
        Func::Sum | Func::Avg | Func::Min | Func::Max => true,
    }
}

/// The aggregate columns of a row.
pub fn columns(specs: &[AggSpec], accs: &[Acc], row: &mut Row) {
    for (spec, acc) in specs.iter().zip(accs) {
        row.insert(spec.column.clone(), acc.value());
    }
}

pub fn fresh(specs: &[AggSpec]) -> Box<[Acc]> {
    specs.iter().map(|s| Acc::new(s.func)).collect()
}

impl KeyedOperator for RunningAggregate {
    type State = Box<[Acc]>;

    fn process(
        &self,
        _cx: &mut Context<'_>,
        state: &mut Option<Box<[Acc]>>,
        record: &Row,
    ) -> Result<(), OperatorError> {
        match state {
            Some(accs) => fold_into(&self.specs, accs, record),
            None => {
                *state = Some(folded(&self.specs, None, record)?);
                Ok(())
            }
        }
    }

    fn touched(&self, cx: &mut Context<'_>, state: &mut Option<Box<[Acc]>>) {
        if let Some(accs) = state {
            let mut row = Row::new();
            columns(&self.specs, accs, &mut row);
            cx.emit(row);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn specs(texts: &[&str]) -> Vec<AggSpec> {
        texts
            .iter()
            .enumerate()
            .map(|(i, t)| AggSpec::parse(&format!("c{i}"), t).expect("valid spec"))
            .collect()
    }

    fn row(v: Value) -> Row {
        match v {
            Value::Object(m) => m,
            _ => unreachable!("test rows are objects"),
        }
    }

    fn values(accs: &[Acc]) -> Vec<Value> {
        accs.iter().map(Acc::value).collect()
    }

    #[test]
    fn a_refused_record_leaves_every_accumulator_untouched() {
        // In place (one function that can refuse, listed last) and through a
        // copy (two that can), the same answer as folding into a copy.
        for texts in [
            &["count()", "first(a)", "sum(a)"][..],
            &["sum(a)", "min(b)", "count()"][..],
        ] {
            let specs = specs(texts);
            let mut accs = fresh(&specs);
            fold_into(&specs, &mut accs, &row(json!({"a": 2, "b": 5}))).expect("numbers");
            let before = values(&accs);
            let bad = row(json!({"a": "x", "b": {"not": "comparable"}}));
            assert!(fold_into(&specs, &mut accs, &bad).is_err(), "{texts:?}");
            assert_eq!(values(&accs), before, "{texts:?}");
            let bad_b = row(json!({"a": 1, "b": {"not": "comparable"}}));
            let refused = fold_into(&specs, &mut accs, &bad_b).is_err();
            assert_eq!(refused, texts.contains(&"min(b)"), "{texts:?}");
            if refused {
                assert_eq!(values(&accs), before, "{texts:?}");
            }
        }
    }

    #[test]
    fn folding_in_place_equals_folding_each_accumulator() {
        // One function that can refuse (folded in place), then two (a copy).
        for texts in [
            &["count()", "last(a)", "sum(a)", "count(a)"][..],
            &["count()", "sum(a)", "max(a)", "first(a)"][..],
        ] {
            let specs = specs(texts);
            let (mut folded_all, mut each) = (fresh(&specs), fresh(&specs));
            for a in [json!(3), json!(null), json!(-7), json!(2.5), json!(11)] {
                let r = row(json!({ "a": a }));
                fold_into(&specs, &mut folded_all, &r).expect("numbers");
                for (spec, acc) in specs.iter().zip(each.iter_mut()) {
                    acc.fold(spec, &r).expect("numbers");
                }
            }
            assert_eq!(values(&folded_all), values(&each), "{texts:?}");
            assert_eq!(values(&folded_all)[0], json!(5), "{texts:?}");
        }
    }
}
