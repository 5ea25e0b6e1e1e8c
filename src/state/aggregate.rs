//! Aggregate functions: folding values (the `sum(amount)` specs are parsed
//! with the config, [`crate::config::aggregate`]). Pure.
//!
//! SQL semantics: `count()` counts records, `count(f)` counts non-null values;
//! `sum`, `min`, `max` and `avg` ignore nulls and missing fields; `first` and
//! `last` keep the first and latest value seen (nulls included). Integer sums
//! stay exact integers while they fit in an i64 and become floats beyond it.
//! A non-numeric value for a numeric function is an error for that record.

pub use crate::config::aggregate::{parse_all, AggSpec, Func};
use crate::model::Row;
use serde::{Deserialize, Serialize};
use serde_json::{Number, Value};
use std::cmp::Ordering;

/// The running value of one aggregate column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Acc {
    Count(u64),
    SumInt(i64),
    SumFloat(f64),
    /// min, max, first, last: the value kept so far (absent until one is seen).
    /// Boxed: it keeps `Acc` at 24 bytes, and the cache holds many.
    Value(Option<Box<Value>>),
    Avg {
        sum: f64,
        n: u64,
    },
}

const _: () = assert!(std::mem::size_of::<Acc>() == 24);

impl Acc {
    pub fn new(func: Func) -> Self {
        match func {
            Func::Count => Acc::Count(0),
            Func::Sum => Acc::SumInt(0),
            Func::Avg => Acc::Avg { sum: 0.0, n: 0 },
            Func::Min | Func::Max | Func::First | Func::Last => Acc::Value(None),
        }
    }

    /// Folds one record's value into the accumulator.
    pub fn fold(&mut self, spec: &AggSpec, row: &Row) -> Result<(), String> {
        let value = spec
            .field
            .as_ref()
            .map(|f| row.get(f).unwrap_or(&Value::Null));
        let number = |v: &Value| -> Result<Option<f64>, String> {
            match v {
                Value::Null => Ok(None),
                Value::Number(n) => Ok(n.as_f64()),
                other => Err(format!(
                    "`{}` is not a number: {other}",
                    spec.field.as_deref().unwrap_or_default()
                )),
            }
        };
        match (self, value) {
            (Acc::Count(n), None) => *n += 1,
            (Acc::Count(n), Some(v)) => *n += u64::from(!v.is_null()),
            (acc @ Acc::SumInt(_), Some(Value::Number(x))) if x.as_i64().is_some() => {
                let (Acc::SumInt(s), Some(x)) = (&*acc, x.as_i64()) else {
                    unreachable!("matched above")
                };
                *acc = match s.checked_add(x) {
                    Some(total) => Acc::SumInt(total),
                    None => Acc::SumFloat(*s as f64 + x as f64),
                };
            }
            (acc @ (Acc::SumInt(_) | Acc::SumFloat(_)), Some(v)) => {
                if let Some(x) = number(v)? {
                    let s = match acc {
                        Acc::SumInt(s) => *s as f64,
                        Acc::SumFloat(s) => *s,
                        _ => unreachable!("matched above"),
                    };
                    *acc = Acc::SumFloat(s + x);
                }
            }
            (Acc::Avg { sum, n }, Some(v)) => {
                if let Some(x) = number(v)? {
                    *sum += x;
                    *n += 1;
                }
            }
            (Acc::Value(kept), Some(v)) => fold_value(spec.func, kept, v)?,
            (_, None) => return Err("this function needs a field".into()),
        }
        Ok(())
    }

    /// Combines an accumulator of a later window into this one (sessions merging).
    pub fn merge(&mut self, later: &Acc, func: Func) {
        match (&mut *self, later) {
            (Acc::Count(a), Acc::Count(b)) => *a += b,
            (Acc::Avg { sum, n }, Acc::Avg { sum: s2, n: n2 }) => {
                *sum += s2;
                *n += n2;
            }
            (Acc::SumInt(a), Acc::SumInt(b)) => {
                *self = match a.checked_add(*b) {
                    Some(total) => Acc::SumInt(total),
                    None => Acc::SumFloat(*a as f64 + *b as f64),
                }
            }
            (a @ (Acc::SumInt(_) | Acc::SumFloat(_)), b) => {
                let f = |acc: &Acc| match acc {
                    Acc::SumInt(x) => *x as f64,
                    Acc::SumFloat(x) => *x,
                    _ => 0.0,
                };
                *a = Acc::SumFloat(f(a) + f(b));
            }
            // `first` keeps the earlier window's value; the others fold the later one in.
            (Acc::Value(kept), Acc::Value(Some(v))) if func != Func::First || kept.is_none() => {
                // Both values were accepted by `fold`, so they compare; nothing to report.
                let _ = fold_value(func, kept, v);
            }
            _ => {}
        }
    }

    /// The column's value now.
    pub fn value(&self) -> Value {
        match self {
            Acc::Count(n) => Value::from(*n),
            Acc::SumInt(s) => Value::from(*s),
            Acc::SumFloat(s) => Number::from_f64(*s).map_or(Value::Null, Value::Number),
            Acc::Avg { n: 0, .. } => Value::Null,
            Acc::Avg { sum, n } => {
                Number::from_f64(*sum / *n as f64).map_or(Value::Null, Value::Number)
            }
            Acc::Value(v) => v.as_deref().cloned().unwrap_or(Value::Null),
        }
    }
}

fn fold_value(func: Func, kept: &mut Option<Box<Value>>, v: &Value) -> Result<(), String> {
    match func {
        Func::First => {
            if kept.is_none() {
                *kept = Some(Box::new(v.clone()));
            }
        }
        Func::Last => *kept = Some(Box::new(v.clone())),
        Func::Min | Func::Max if v.is_null() => {}
        Func::Min | Func::Max => {
            let replace = match kept {
                None => true,
                Some(old) => {
                    let ord = compare(v, old)?;
                    (func == Func::Min && ord == Ordering::Less)
                        || (func == Func::Max && ord == Ordering::Greater)
                }
            };
            if replace {
                *kept = Some(Box::new(v.clone()));
            }
        }
        _ => unreachable!("only value functions keep a value"),
    }
    Ok(())
}

/// Orders two numbers or two strings; anything else cannot be compared.
fn compare(a: &Value, b: &Value) -> Result<Ordering, String> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => Ok(x.cmp(&y)),
            _ => {
                let (x, y) = (
                    x.as_f64().unwrap_or(f64::NAN),
                    y.as_f64().unwrap_or(f64::NAN),
                );
                x.partial_cmp(&y)
                    .ok_or_else(|| "cannot compare NaN".to_string())
            }
        },
        (Value::String(x), Value::String(y)) => Ok(x.cmp(y)),
        _ => Err(format!(
            "cannot compare {a} with {b}: min/max need numbers or strings"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(v: Value) -> Row {
        match v {
            Value::Object(m) => m,
            _ => unreachable!("test rows are objects"),
        }
    }

    fn fold_all(text: &str, values: &[Value]) -> Result<Value, String> {
        let spec = AggSpec::parse("c", text)?;
        let mut acc = Acc::new(spec.func);
        for v in values {
            acc.fold(&spec, &row(json!({ "x": v })))?;
        }
        Ok(acc.value())
    }

    #[test]
    fn parses_functions_and_rejects_the_unknown() {
        let s = AggSpec::parse("total", " sum( amount ) ").expect("valid");
        assert_eq!((s.func, s.field.as_deref()), (Func::Sum, Some("amount")));
        assert_eq!(AggSpec::parse("n", "count()").expect("valid").field, None);
        assert!(AggSpec::parse("x", "median(a)").is_err());
        assert!(AggSpec::parse("x", "sum()").is_err());
        assert!(AggSpec::parse("x", "sum(a").is_err());
    }

    #[test]
    fn folds_with_sql_null_semantics() {
        let vals = [json!(3), json!(null), json!(1), json!(5)];
        assert_eq!(fold_all("count()", &vals), Ok(json!(4)));
        assert_eq!(fold_all("count(x)", &vals), Ok(json!(3)));
        assert_eq!(fold_all("sum(x)", &vals), Ok(json!(9)));
        assert_eq!(fold_all("min(x)", &vals), Ok(json!(1)));
        assert_eq!(fold_all("max(x)", &vals), Ok(json!(5)));
        assert_eq!(fold_all("avg(x)", &vals), Ok(json!(3.0)));
        assert_eq!(fold_all("first(x)", &vals), Ok(json!(3)));
        assert_eq!(fold_all("last(x)", &vals), Ok(json!(5)));
        assert_eq!(fold_all("avg(x)", &[]), Ok(Value::Null));
    }

    #[test]
    fn integer_sums_stay_exact_and_overflow_to_float() {
        let big = [json!(i64::MAX - 1), json!(1)];
        assert_eq!(fold_all("sum(x)", &big), Ok(json!(i64::MAX)));
        let over = [json!(i64::MAX), json!(1)];
        assert!(fold_all("sum(x)", &over).expect("sums").is_f64());
        assert_eq!(fold_all("sum(x)", &[json!(1), json!(0.5)]), Ok(json!(1.5)));
    }

    #[test]
    fn merging_equals_folding_everything_in_one() {
        for text in [
            "count()", "sum(x)", "min(x)", "max(x)", "avg(x)", "first(x)", "last(x)",
        ] {
            let spec = AggSpec::parse("c", text).expect("valid");
            let (mut a, mut b, mut all) = (
                Acc::new(spec.func),
                Acc::new(spec.func),
                Acc::new(spec.func),
            );
            for (i, x) in [4, 1, 9, 2].into_iter().enumerate() {
                let r = row(json!({ "x": x }));
                if i < 2 {
                    a.fold(&spec, &r)
                } else {
                    b.fold(&spec, &r)
                }
                .expect("number");
                all.fold(&spec, &r).expect("number");
            }
            a.merge(&b, spec.func);
            assert_eq!(a.value(), all.value(), "{text}");
        }
    }

    #[test]
    fn wrong_types_are_errors_naming_the_field() {
        let err = fold_all("sum(x)", &[json!("7")]).expect_err("string");
        assert!(err.contains("`x`"), "{err}");
        assert!(fold_all("min(x)", &[json!(1), json!("a")]).is_err());
        assert_eq!(
            fold_all("max(x)", &[json!("a"), json!("b")]),
            Ok(json!("b"))
        );
    }
}
