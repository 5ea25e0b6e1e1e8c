//! jq's arithmetic, number reading and ordering, as jaq computes them.

use super::Unsupported;
use jaq_core::ops::{Cmp, Math};
use serde_json::{Number, Value};
use std::cmp::Ordering;

#[derive(Debug, Clone, Copy)]
pub(super) enum Num {
    Int(i64),
    Float(f64),
}

/// A JSON number as jaq reads it (see `to_val` in jq.rs).
pub(super) fn num(v: &Value) -> Result<Num, Unsupported> {
    let Value::Number(n) = v else {
        return Err(Unsupported);
    };
    if let Some(i) = n.as_i64() {
        Ok(Num::Int(i))
    } else if n.is_f64() {
        n.as_f64().map(Num::Float).ok_or(Unsupported)
    } else {
        Err(Unsupported) // u64 above i64::MAX: a big integer in jaq
    }
}

/// jaq's float output: NaN becomes null, infinities the largest finite doubles.
pub(super) fn float(f: f64) -> Option<Value> {
    Some(Number::from_f64(f.clamp(f64::MIN, f64::MAX)).map_or(Value::Null, Value::Number))
}

pub(super) fn math(l: Value, op: Math, r: Value) -> Result<Value, Unsupported> {
    match (&l, op, &r) {
        (Value::Null, Math::Add, _) => return Ok(r),
        (_, Math::Add, Value::Null) => return Ok(l),
        (Value::String(a), Math::Add, Value::String(b)) => return Ok(Value::String(a.clone() + b)),
        _ => {}
    }
    let (x, y) = (num(&l)?, num(&r)?);
    let out = match (x, y) {
        (Num::Int(a), Num::Int(b)) if op != Math::Div => {
            let v = match op {
                Math::Add => a.checked_add(b),
                Math::Sub => a.checked_sub(b),
                _ => a.checked_mul(b),
            };
            return v.map(Value::from).ok_or(Unsupported);
        }
        _ if op == Math::Div && as_f64(y) == 0.0 => return Err(Unsupported),
        _ => {
            let (a, b) = (as_f64(x), as_f64(y));
            match op {
                Math::Add => a + b,
                Math::Sub => a - b,
                Math::Mul => a * b,
                _ => a / b,
            }
        }
    };
    // jaq carries an infinity on to the next operation; this evaluator would
    // clamp it at once, so it leaves such a record to jaq.
    if !out.is_finite() {
        return Err(Unsupported);
    }
    float(out).ok_or(Unsupported)
}

fn as_f64(n: Num) -> f64 {
    match n {
        Num::Int(i) => i as f64,
        Num::Float(f) => f,
    }
}

/// jaq's order: null < false < true < numbers < strings < arrays < objects;
/// arrays and objects of the same kind are left to jaq.
pub(super) fn compare(l: &Value, op: Cmp, r: &Value) -> Result<bool, Unsupported> {
    let rank = |v: &Value| match v {
        Value::Null => 0,
        Value::Bool(false) => 1,
        Value::Bool(true) => 2,
        Value::Number(_) => 3,
        Value::String(_) => 4,
        Value::Array(_) => 5,
        Value::Object(_) => 6,
    };
    let (ord, eq) = match (l, r) {
        (Value::Number(_), Value::Number(_)) => {
            let (x, y) = (num(l)?, num(r)?);
            let ord = match (x, y) {
                (Num::Int(a), Num::Int(b)) => a.cmp(&b),
                _ => float_cmp(as_f64(x), as_f64(y)),
            };
            let eq = match (x, y) {
                (Num::Int(a), Num::Int(b)) => a == b,
                (Num::Int(i), Num::Float(f)) | (Num::Float(f), Num::Int(i)) => {
                    f.is_finite() && float_cmp(i as f64, f) == Ordering::Equal
                }
                (Num::Float(a), Num::Float(b)) => float_cmp(a, b) == Ordering::Equal,
            };
            (ord, eq)
        }
        (Value::String(a), Value::String(b)) => (a.as_bytes().cmp(b.as_bytes()), a == b),
        (Value::Array(_), Value::Array(_)) | (Value::Object(_), Value::Object(_)) => {
            return Err(Unsupported)
        }
        _ => {
            let ord = rank(l).cmp(&rank(r));
            (ord, ord == Ordering::Equal)
        }
    };
    Ok(match op {
        Cmp::Eq => eq,
        Cmp::Ne => !eq,
        Cmp::Lt => ord == Ordering::Less,
        Cmp::Le => ord != Ordering::Greater,
        Cmp::Gt => ord == Ordering::Greater,
        Cmp::Ge => ord != Ordering::Less,
    })
}

/// jaq's float order: ±0 equal, NaN below everything, else the total order.
fn float_cmp(l: f64, r: f64) -> Ordering {
    if l == 0.0 && r == 0.0 {
        Ordering::Equal
    } else if l.is_nan() {
        Ordering::Less
    } else if r.is_nan() {
        Ordering::Greater
    } else {
        l.total_cmp(&r)
    }
}
