//! Transform: decoded JSON → zero or more rows. Pure and synchronous; no I/O.
//!
//! Steps run in the order the pipeline declares them; each output of one step
//! feeds the next. Expressions are compiled once at start-up. A record whose
//! final outputs are not JSON objects, or whose expression fails at run time,
//! is an error for that record alone (the caller routes it; nothing is dropped
//! silently).

pub mod jq;
mod native;
mod repeat_guard;

use crate::config::TransformConfig;
use crate::model::Row;
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum TransformError {
    #[error(transparent)]
    Jq(#[from] jq::JqError),
    #[error("keyed step {0} cannot run on the source thread")]
    Keyed(String),
    #[error("a row must be a JSON object, got {0}")]
    NotAnObject(&'static str),
}

/// The compiled transforms of one pipeline.
#[derive(Debug, Default)]
pub struct Chain {
    steps: Vec<jq::JqProgram>,
}

impl Chain {
    /// Compiles every step; the first error names the expression. Keyed
    /// steps do not belong here (they run in the writer: [`crate::state`]).
    pub fn compile(configs: &[TransformConfig]) -> Result<Self, TransformError> {
        let steps = configs
            .iter()
            .map(|c| match c {
                TransformConfig::Jq { expr } => {
                    jq::JqProgram::compile(expr).map_err(TransformError::from)
                }
                keyed => Err(TransformError::Keyed(format!("{keyed:?}"))),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { steps })
    }

    /// Applies every step to one value and returns the resulting rows.
    pub fn apply(&self, value: Value) -> Result<Vec<Row>, TransformError> {
        let mut rows = Vec::new();
        self.apply_into(value, &mut rows)?;
        Ok(rows)
    }

    /// Applies every step to one value and appends the resulting rows to
    /// `rows` — all of them, or none when the record fails. The source calls
    /// this per record with one buffer, so a record costs no allocation here.
    pub fn apply_into(&self, value: Value, rows: &mut Vec<Row>) -> Result<(), TransformError> {
        let start = rows.len();
        let result = self.feed(0, value, rows);
        if result.is_err() {
            rows.truncate(start);
        }
        result
    }

    /// Runs step `i` on `value` and each of its outputs through the rest,
    /// depth first: the rows come out in the order a step-by-step run gives.
    fn feed(&self, i: usize, value: Value, rows: &mut Vec<Row>) -> Result<(), TransformError> {
        match self.steps.get(i) {
            None => match value {
                Value::Object(row) => {
                    rows.push(row);
                    Ok(())
                }
                other => Err(TransformError::NotAnObject(kind(&other))),
            },
            Some(step) => step.for_each(value, |out| self.feed(i + 1, out, rows)),
        }
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn chain(exprs: &[&str]) -> Chain {
        let configs: Vec<_> = exprs
            .iter()
            .map(|e| TransformConfig::Jq {
                expr: (*e).to_string(),
            })
            .collect();
        Chain::compile(&configs).expect("valid expressions")
    }

    #[test]
    fn no_steps_passes_objects_through() {
        let rows = Chain::default().apply(json!({"a": 1})).expect("object");
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0]["a"], 1);
    }

    #[test]
    fn steps_apply_in_order_and_can_filter() {
        let c = chain(&["{id: .id, v: (.v * 2)}", "select(.v > 2)"]);
        assert_eq!(c.apply(json!({"id": 1, "v": 1})).expect("runs").len(), 0);
        let rows = c.apply(json!({"id": 2, "v": 2})).expect("runs");
        assert_eq!(rows[0]["v"], 4);
    }

    #[test]
    fn non_object_output_is_an_error() {
        let err = chain(&[".v"]).apply(json!({"v": 3})).expect_err("number");
        assert!(err.to_string().contains("a number"), "{err}");
        assert!(Chain::default().apply(json!([1])).is_err());
    }

    #[test]
    fn every_output_of_a_step_feeds_the_next_in_order() {
        let c = chain(&["{v: .a}, {v: .b}", "{v: (.v + 1)}, {v: (.v + 10)}"]);
        let rows = c.apply(json!({"a": 1, "b": 2})).expect("runs");
        let vs: Vec<_> = rows.iter().map(|r| r["v"].clone()).collect();
        assert_eq!(vs, [json!(2), json!(11), json!(3), json!(12)]);
    }

    #[test]
    fn a_failing_record_leaves_no_row_behind() {
        // The first output passes both steps, the second is not an object.
        let c = chain(&["{v: .a}, .b", "."]);
        let mut rows = vec![Row::new()];
        let err = c.apply_into(json!({"a": 1, "b": 2}), &mut rows);
        assert!(err.is_err());
        assert_eq!(rows, vec![Row::new()], "only the row from before remains");
        c.apply_into(json!({"a": 1, "b": {"c": 3}}), &mut rows)
            .expect("both outputs are objects");
        assert_eq!(rows.len(), 3);
    }
}
