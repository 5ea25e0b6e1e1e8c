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
//!
//! Ownership: [`Native::run`] owns the record. `select` hands the record itself
//! on, and an object built from it (with distinct keys) is the record turned
//! into the output in place: fields it copies under their own name (`{a}`,
//! `{a: .a}`) stay where they are, the other fields are dropped, and computed
//! values are added; everything else borrows. The record is only changed once
//! no step can fail any more, so an [`Unsupported`] always hands the caller the
//! record exactly as it came in.

mod eval;
mod ops;
#[cfg(test)]
mod tests;

use jaq_core::load::lex::StrPart;
use jaq_core::load::parse::{BinaryOp, Term};
use jaq_core::ops::{Cmp, Math};
use jaq_core::path::{Opt, Part};
use serde_json::Value;

/// The record needs jaq: the expression reached a case this evaluator does not model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsupported;

#[derive(Debug, Clone)]
enum Expr {
    Id,
    Lit(Value),
    /// `.a.b` applied to the output of the inner expression.
    Path(Box<Expr>, Vec<String>),
    Obj(Obj),
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

/// Object construction: `(key, value)` entries, and how an owned record
/// becomes this object in place (see [`InPlace`]).
#[derive(Debug, Clone)]
struct Obj {
    entries: Vec<(String, Expr)>,
    in_place: Option<InPlace>,
}

/// The output keys sorted, each marked when its entry copies the record's
/// field of the same name (`{a}`); the other entries are computed. `None`
/// when a key repeats (the later entry wins, which in-place editing would
/// have to replay).
#[derive(Debug, Clone)]
struct InPlace {
    keys: Vec<(String, bool)>,
    /// Entries that are copies: the record keeps those fields as they are.
    copies: Vec<bool>,
}

impl InPlace {
    fn new(entries: &[(String, Expr)]) -> Option<Self> {
        let copies: Vec<bool> = entries
            .iter()
            .map(|(k, e)| matches!(e, Expr::Path(base, keys) if matches!(**base, Expr::Id) && keys.len() == 1 && keys[0] == *k))
            .collect();
        let mut keys: Vec<(String, bool)> = entries
            .iter()
            .zip(&copies)
            .map(|((k, _), copy)| (k.clone(), *copy))
            .collect();
        keys.sort();
        let distinct = keys.windows(2).all(|w| w[0].0 != w[1].0);
        distinct.then_some(Self { keys, copies })
    }
}

/// A compiled expression of the subset.
#[derive(Debug, Clone)]
pub struct Native(Expr);

impl Native {
    /// The native form of `code`, or `None` when it is outside the subset.
    pub fn compile(code: &str) -> Option<Self> {
        let term = jaq_core::load::parse(code, |p| p.term())?;
        compile(term).map(Self)
    }

    /// The top-level fields of the record the output depends on, sorted;
    /// `None` when it may depend on the whole record (`.`, a bare `select`
    /// or `not` hands the record itself on or tests it).
    pub fn reads(&self) -> Option<Vec<String>> {
        let mut reads = Reads::default();
        reads.add(&self.0);
        if reads.whole {
            return None;
        }
        let mut fields: Vec<String> = reads.fields.into_iter().map(str::to_owned).collect();
        fields.sort();
        fields.dedup();
        Some(fields)
    }

    /// Zero or one output for `input`, exactly as jaq would give it; on
    /// [`Unsupported`], `input` comes back untouched.
    pub fn run(&self, input: Value) -> Result<Option<Value>, (Unsupported, Value)> {
        eval::owned(&self.0, input)
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
            let entries: Vec<(String, Expr)> =
                entries.into_iter().map(entry).collect::<Option<_>>()?;
            let in_place = InPlace::new(&entries);
            Expr::Obj(Obj { entries, in_place })
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

/// What an expression's output is computed from: top-level fields of its
/// input, or all of it.
#[derive(Default)]
struct Reads<'e> {
    fields: Vec<&'e str>,
    whole: bool,
}

impl<'e> Reads<'e> {
    fn add(&mut self, e: &'e Expr) {
        match e {
            Expr::Lit(_) | Expr::Infinite => {}
            Expr::Path(base, keys) => match (&**base, keys.first()) {
                (Expr::Id, Some(k)) => self.fields.push(k),
                _ => self.add(base),
            },
            Expr::Obj(o) => o.entries.iter().for_each(|(_, e)| self.add(e)),
            Expr::Logic(l, _, r) | Expr::Alt(l, r) | Expr::Cmp(l, _, r) | Expr::Math(l, _, r) => {
                self.add(l);
                self.add(r);
            }
            Expr::Neg(x) => self.add(x),
            // The right side reads the record itself after `.` or `select`;
            // otherwise it reads the left side's output, which the left
            // side's own reads determine.
            Expr::Pipe(l, r) => match &**l {
                Expr::Id => self.add(r),
                Expr::Select(f) => {
                    self.add(f);
                    self.add(r);
                }
                _ => self.add(l),
            },
            Expr::Id | Expr::Not | Expr::Select(_) => self.whole = true,
        }
    }
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
    ops::float(f).map(Expr::Lit)
}
