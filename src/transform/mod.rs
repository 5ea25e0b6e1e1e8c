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
        let mut values = vec![value];
        for step in &self.steps {
            let mut next = Vec::with_capacity(values.len());
            for v in values {
                next.extend(step.run(v)?);
            }
            values = next;
        }
        values
            .into_iter()
            .map(|v| match v {
                Value::Object(row) => Ok(row),
                other => Err(TransformError::NotAnObject(kind(&other))),
            })
            .collect()
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
}
