//! Evaluation: [`owned`] on the record the caller hands over, [`eval`] on a
//! borrowed value (the record, or an intermediate result).

use super::ops::{compare, float, math, num, Num};
use super::{Expr, InPlace, Obj, Unsupported};
use serde_json::{Map, Value};
use std::borrow::Cow;

type Out<'v> = Result<Option<Cow<'v, Value>>, Unsupported>;

/// Evaluates `e` on an owned record: `select` passes it on and objects turn
/// it into their output in place (see `InPlace`). On [`Unsupported`] the
/// record comes back as it was, because nothing is changed until no step can
/// fail.
pub(super) fn owned(e: &Expr, input: Value) -> Result<Option<Value>, (Unsupported, Value)> {
    match e {
        Expr::Id => Ok(Some(input)),
        Expr::Select(f) => match eval(f, &input) {
            Err(u) => Err((u, input)),
            Ok(Some(v)) if truthy(&v) => Ok(Some(input)),
            Ok(_) => Ok(None),
        },
        Expr::Pipe(l, r) if matches!(**l, Expr::Id | Expr::Select(_)) => match owned(l, input)? {
            None => Ok(None),
            Some(v) => owned(r, v),
        },
        Expr::Obj(Obj {
            entries,
            in_place: Some(edit),
        }) if input.is_object() => object(entries, edit, input),
        _ => {
            let out = match eval(e, &input) {
                Ok(out) => out,
                Err(u) => return Err((u, input)),
            };
            Ok(match out {
                None => None,
                Some(Cow::Borrowed(v)) if std::ptr::eq(v, &input) => Some(input),
                Some(v) => Some(v.into_owned()),
            })
        }
    }
}

/// An object built from an owned record, in place: the computed entries
/// first (they may fail or be empty, and borrow the record), then the record
/// drops the fields the object does not keep and takes the computed values.
fn object(
    entries: &[(String, Expr)],
    edit: &InPlace,
    input: Value,
) -> Result<Option<Value>, (Unsupported, Value)> {
    let mut computed = Vec::with_capacity(entries.len());
    for ((k, f), copy) in entries.iter().zip(&edit.copies) {
        if *copy {
            continue;
        }
        match eval(f, &input) {
            Ok(Some(v)) => computed.push((k, v.into_owned())),
            Ok(None) => return Ok(None),
            Err(u) => return Err((u, input)),
        }
    }
    let mut record = match input {
        Value::Object(record) => record,
        other => return Err((Unsupported, other)),
    };
    let mut copies_present = 0;
    record.retain(|name, _| {
        // A linear scan that compares lengths first beats a binary search's
        // string comparisons on the handful of short keys objects have.
        let found = edit
            .keys
            .iter()
            .find(|(k, _)| k.len() == name.len() && k.as_bytes() == name.as_bytes());
        if let Some((_, copy)) = found {
            copies_present += usize::from(*copy);
        }
        found.is_some()
    });
    // A copied field the record lacks is null, as `.k` reads it.
    if copies_present < edit.copies.iter().filter(|c| **c).count() {
        for (k, _) in edit.keys.iter().filter(|(_, copy)| *copy) {
            if !record.contains_key(k) {
                record.insert(k.clone(), Value::Null);
            }
        }
    }
    for (k, v) in computed {
        match record.get_mut(k) {
            Some(slot) => *slot = v,
            None => {
                record.insert(k.clone(), v);
            }
        }
    }
    Ok(Some(Value::Object(record)))
}

fn eval<'v>(e: &'v Expr, input: &'v Value) -> Out<'v> {
    Ok(Some(match e {
        Expr::Id => Cow::Borrowed(input),
        Expr::Lit(v) => Cow::Borrowed(v),
        Expr::Infinite => return Err(Unsupported),
        Expr::Path(base, keys) => match eval(base, input)? {
            None => return Ok(None),
            Some(Cow::Borrowed(v)) => Cow::Borrowed(index(v, keys)?),
            Some(Cow::Owned(v)) => Cow::Owned(index(&v, keys)?.clone()),
        },
        Expr::Obj(o) => {
            let mut pairs = Vec::with_capacity(o.entries.len());
            for (k, f) in &o.entries {
                let Some(v) = eval(f, input)? else {
                    return Ok(None);
                };
                pairs.push((k.clone(), v.into_owned()));
            }
            Cow::Owned(Value::Object(pairs.into_iter().collect::<Map<_, _>>()))
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
