//! A native evaluator for the common subset of jq: the fast path of [`super::jq`].
//!
//! Contract: for an expression it accepts, [`Native::run`] returns exactly what
//! jaq returns (same values, same number types, same key order), or
//! [`Unsupported`] — never a different answer. The caller then runs the record
//! through jaq, so errors and anything outside the subset keep jaq's behaviour
//! and messages. `tests/fuzz_rows.rs` checks the equivalence on random
//! records and random expressions of the subset.
//!
//! The subset (parsed with jaq's own parser, so it reads the same text the
//! same way): `.`, `.a.b`, `."a"`, string/number/`true`/`false`/`null`
//! literals, object construction with constant keys (`{a, b: f}`), `|`,
//! `select(f)`, `not`, `and`, `or`, `//`, `==` `!=` `<` `<=` `>` `>=`, `+` `-`
//! `*` `/` on numbers (and `+` on strings and null), unary `-`. Every such
//! expression yields zero or one value, so no output order question arises.
//! Runtime cases it does not model (a type error, an integer overflow, a
//! division by zero, comparing arrays or objects, an unsigned 64-bit number
//! above `i64::MAX`, arithmetic that leaves the finite doubles) are
//! [`Unsupported`], not errors, and so is evaluating a number literal beyond
//! the finite doubles (`1e400`): jaq computes with the infinity and clamps
//! only its output.
//!
//! Why: jaq converts every record into its own value type and back, which was
//! more than half of the CPU of a map/filter pipeline.

use jaq_core::load::lex::StrPart;
use jaq_core::load::parse::{BinaryOp, Term};
use jaq_core::ops::{Cmp, Math};
use jaq_core::path::{Opt, Part};
use serde_json::{Map, Number, Value};
use std::borrow::Cow;
use std::cmp::Ordering;

/// The record needs jaq: the expression reached a case this evaluator does not model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsupported;

#[derive(Debug, Clone)]
enum Expr {
    Id,
    Lit(Value),
    /// `.a.b` applied to the output of the inner expression.
    Path(Box<Expr>, Vec<String>),
    Obj(Vec<(String, Expr)>),
    Pipe(Box<Expr>, Box<Expr>),
    Select(Box<Expr>),
    Not,
    /// `l and r` (`stop` = false) or `l or r` (`stop` = true).
    Logic(Box<Expr>, bool, Box<Expr>),
    Alt(Box<Expr>, Box<Expr>),
    Cmp(Box<Expr>, Cmp, Box<Expr>),
    Math(Box<Expr>, Math, Box<Expr>),
    Neg(Box<Expr>),
    /// A number literal beyond the finite doubles (`1e400`): jaq computes with
    /// the infinity and clamps only its output, so each record goes to jaq.
    Infinite,
}

/// A compiled expression of the subset.
#[derive(Debug, Clone)]
pub struct Native(Expr);

type Out<'v> = Result<Option<Cow<'v, Value>>, Unsupported>;

impl Native {
    /// The native form of `code`, or `None` when it is outside the subset.
    pub fn compile(code: &str) -> Option<Self> {
        let term = jaq_core::load::parse(code, |p| p.term())?;
        compile(term).map(Self)
    }

    /// Zero or one output for `input`, exactly as jaq would give it.
    pub fn run(&self, input: Value) -> Result<Option<Value>, (Unsupported, Value)> {
        let out = match eval(&self.0, &input) {
            Ok(out) => out,
            Err(u) => return Err((u, input)),
        };
        Ok(match out {
            None => None,
            // `select` passes its input through: hand back the record itself.
            Some(Cow::Borrowed(v)) if std::ptr::eq(v, &input) => Some(input),
            Some(v) => Some(v.into_owned()),
        })
    }
}

fn compile(t: Term<&str>) -> Option<Expr> {
    let b = |t: Term<&str>| compile(t).map(Box::new);
    Some(match t {
        Term::Id => Expr::Id,
        Term::Num(n) => number_literal(n)?,
        Term::Str(None, parts) => Expr::Lit(Value::String(literal(&parts)?)),
        Term::Call("true", a) if a.is_empty() => Expr::Lit(Value::Bool(true)),
        Term::Call("false", a) if a.is_empty() => Expr::Lit(Value::Bool(false)),
        Term::Call("null", a) if a.is_empty() => Expr::Lit(Value::Null),
        Term::Call("not", a) if a.is_empty() => Expr::Not,
        Term::Call("select", mut a) if a.len() == 1 => Expr::Select(b(a.pop()?)?),
        Term::Neg(x) => Expr::Neg(b(*x)?),
        Term::Path(base, path) => {
            let keys = path.0.into_iter().map(|(part, opt)| match (part, opt) {
                (Part::Index(Term::Str(None, parts)), Opt::Essential) => literal(&parts),
                _ => None,
            });
            Expr::Path(b(*base)?, keys.collect::<Option<_>>()?)
        }
        Term::Obj(entries) => {
            let entry = |(k, v): (Term<&str>, Option<Term<&str>>)| {
                let Term::Str(None, parts) = k else {
                    return None;
                };
                let key = literal(&parts)?;
                let value = match v {
                    Some(v) => compile(v)?,
                    None => Expr::Path(Box::new(Expr::Id), vec![key.clone()]),
                };
                Some((key, value))
            };
            Expr::Obj(entries.into_iter().map(entry).collect::<Option<_>>()?)
        }
        Term::BinOp(l, op, r) => {
            let (l, r) = (b(*l)?, b(*r)?);
            match op {
                BinaryOp::Pipe(None) => Expr::Pipe(l, r),
                BinaryOp::And => Expr::Logic(l, false, r),
                BinaryOp::Or => Expr::Logic(l, true, r),
                BinaryOp::Alt => Expr::Alt(l, r),
                BinaryOp::Cmp(c) => Expr::Cmp(l, c, r),
                BinaryOp::Math(m @ (Math::Add | Math::Sub | Math::Mul | Math::Div)) => {
                    Expr::Math(l, m, r)
                }
                _ => return None,
            }
        }
        _ => return None,
    })
}

/// A string literal without interpolation or format.
fn literal<T>(parts: &[StrPart<&str, T>]) -> Option<String> {
    let mut s = String::new();
    for p in parts {
        match p {
            StrPart::Str(text) => s.push_str(text),
            StrPart::Char(c) => s.push(*c),
            StrPart::Term(_) => return None,
        }
    }
    Some(s)
}

/// jaq reads an integer literal as a machine integer and anything else as a
/// decimal it parses to f64 when used; literals it would keep as big integers
/// stay with jaq.
fn number_literal(n: &str) -> Option<Expr> {
    if let Ok(i) = n.parse::<i64>() {
        return Some(Expr::Lit(Value::from(i)));
    }
    if n.bytes().all(|b| b.is_ascii_digit()) {
        return None; // a big integer
    }
    let f: f64 = n.parse().ok()?;
    // jaq keeps `1e400` as infinity until output; clamping it here would change
    // what `-1 / 1e400` gives.
    if !f.is_finite() {
        return Some(Expr::Infinite);
    }
    float(f).map(Expr::Lit)
}

fn eval<'v>(e: &Expr, input: &'v Value) -> Out<'v> {
    Ok(Some(match e {
        Expr::Id => Cow::Borrowed(input),
        Expr::Lit(v) => Cow::Owned(v.clone()),
        Expr::Infinite => return Err(Unsupported),
        Expr::Path(base, keys) => match eval(base, input)? {
            None => return Ok(None),
            Some(Cow::Borrowed(v)) => Cow::Borrowed(index(v, keys)?),
            Some(Cow::Owned(v)) => Cow::Owned(index(&v, keys)?.clone()),
        },
        Expr::Obj(entries) => {
            let mut map = Map::new();
            for (k, f) in entries {
                let Some(v) = eval(f, input)? else {
                    return Ok(None);
                };
                map.insert(k.clone(), v.into_owned());
            }
            Cow::Owned(Value::Object(map))
        }
        Expr::Pipe(l, r) => match eval(l, input)? {
            None => return Ok(None),
            Some(Cow::Borrowed(v)) => return eval(r, v),
            Some(Cow::Owned(v)) => return Ok(eval(r, &v)?.map(|o| Cow::Owned(o.into_owned()))),
        },
        Expr::Select(f) => match eval(f, input)? {
            Some(v) if truthy(&v) => Cow::Borrowed(input),
            _ => return Ok(None),
        },
        Expr::Not => Cow::Owned(Value::Bool(!truthy(input))),
        Expr::Logic(l, stop, r) => {
            let Some(l) = eval(l, input)? else {
                return Ok(None);
            };
            if truthy(&l) == *stop {
                Cow::Owned(Value::Bool(*stop))
            } else {
                match eval(r, input)? {
                    None => return Ok(None),
                    Some(r) => Cow::Owned(Value::Bool(truthy(&r))),
                }
            }
        }
        Expr::Alt(l, r) => match eval(l, input)? {
            Some(v) if truthy(&v) => v,
            _ => return eval(r, input),
        },
        Expr::Cmp(l, op, r) => {
            let (Some(l), Some(r)) = (eval(l, input)?, eval(r, input)?) else {
                return Ok(None);
            };
            Cow::Owned(Value::Bool(compare(&l, *op, &r)?))
        }
        Expr::Math(l, op, r) => {
            let (Some(l), Some(r)) = (eval(l, input)?, eval(r, input)?) else {
                return Ok(None);
            };
            Cow::Owned(math(l.into_owned(), *op, r.into_owned())?)
        }
        Expr::Neg(x) => match eval(x, input)? {
            None => return Ok(None),
            Some(v) => match num(&v)? {
                Num::Int(i) => Cow::Owned(Value::from(i.checked_neg().ok_or(Unsupported)?)),
                Num::Float(f) => Cow::Owned(float(-f).ok_or(Unsupported)?),
            },
        },
    }))
}

/// `.a.b`: null for a missing key or a null input; anything else is jaq's error.
fn index<'v>(mut v: &'v Value, keys: &[String]) -> Result<&'v Value, Unsupported> {
    static NULL: Value = Value::Null;
    for k in keys {
        v = match v {
            Value::Object(o) => o.get(k).unwrap_or(&NULL),
            Value::Null => &NULL,
            _ => return Err(Unsupported),
        };
    }
    Ok(v)
}

fn truthy(v: &Value) -> bool {
    !matches!(v, Value::Null | Value::Bool(false))
}

#[derive(Debug, Clone, Copy)]
enum Num {
    Int(i64),
    Float(f64),
}

/// A JSON number as jaq reads it (see `to_val` in jq.rs).
fn num(v: &Value) -> Result<Num, Unsupported> {
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
fn float(f: f64) -> Option<Value> {
    Some(Number::from_f64(f.clamp(f64::MIN, f64::MAX)).map_or(Value::Null, Value::Number))
}

fn math(l: Value, op: Math, r: Value) -> Result<Value, Unsupported> {
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
fn compare(l: &Value, op: Cmp, r: &Value) -> Result<bool, Unsupported> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(code: &str, input: Value) -> Result<Option<Value>, Unsupported> {
        let n = Native::compile(code).expect("in the subset");
        n.run(input).map_err(|(u, _)| u)
    }

    #[test]
    fn the_benchmark_map_filter_is_native() {
        let code = r#"select(.type != "view") | {event_id, key, value: (.amount * .qty)}"#;
        let input = json!({"event_id": "e1", "key": 7, "type": "buy", "amount": 2.5, "qty": 4});
        assert_eq!(
            run(code, input),
            Ok(Some(json!({"event_id": "e1", "key": 7, "value": 10.0})))
        );
        assert_eq!(run(code, json!({"type": "view"})), Ok(None));
    }

    #[test]
    fn expressions_outside_the_subset_are_not_compiled() {
        for code in [
            ".[]",
            ".a, .b",
            "def f: 1; f",
            "length",
            ".a?",
            "\"\\(.a)\"",
            "{(.k): 1}",
        ] {
            assert!(Native::compile(code).is_none(), "{code}");
        }
    }

    #[test]
    fn cases_jaq_would_fail_or_widen_are_left_to_jaq() {
        assert_eq!(run(".a + 1", json!({"a": "s"})), Err(Unsupported));
        assert_eq!(run(".a * 2", json!({"a": i64::MAX})), Err(Unsupported));
        assert_eq!(run(".a / 0", json!({"a": 1})), Err(Unsupported));
        assert_eq!(run(".a.b", json!({"a": 1})), Err(Unsupported));
        assert_eq!(
            run(".a == .b", json!({"a": [1], "b": [1]})),
            Err(Unsupported)
        );
        assert_eq!(run(".a", json!({"a": u64::MAX})).map(|_| ()), Ok(()));
        assert_eq!(run(".a + 0", json!({"a": u64::MAX})), Err(Unsupported));
        // jaq: -1 / inf is -0, and inf / 1e308 stays inf (clamped on output);
        // a clamp in between would differ.
        assert_eq!(run("-(1) / 1e400", json!(null)), Err(Unsupported));
        assert_eq!(run(".a * 10 / .a", json!({"a": 1e308})), Err(Unsupported));
    }

    #[test]
    fn numbers_keep_jaq_types() {
        assert_eq!(run(".a + 1", json!({"a": 1})), Ok(Some(json!(2))));
        assert_eq!(run(".a / 2", json!({"a": 4})), Ok(Some(json!(2.0))));
        assert_eq!(run("1.5", json!(null)), Ok(Some(json!(1.5))));
        assert_eq!(run("-.a", json!({"a": -0.0})), Ok(Some(json!(0.0))));
        assert_eq!(run("1 == 1.0", json!(null)), Ok(Some(json!(true))));
        assert_eq!(run("null < false", json!(null)), Ok(Some(json!(true))));
    }
}
