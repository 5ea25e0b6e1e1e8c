//! Running totals: per key, aggregates over every record so far, upserted
//! once per batch for each key the batch touched.

use super::aggregate::{Acc, AggSpec};
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
    for (spec, acc) in specs.iter().zip(next.iter_mut()) {
        acc.fold(spec, record).map_err(OperatorError::Record)?;
    }
    Ok(next)
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
        *state = Some(folded(&self.specs, state.as_deref(), record)?);
        Ok(())
    }

    fn touched(&self, cx: &mut Context<'_>, state: &mut Option<Box<[Acc]>>) {
        if let Some(accs) = state {
            let mut row = Row::new();
            columns(&self.specs, accs, &mut row);
            cx.emit(row);
        }
    }
}
