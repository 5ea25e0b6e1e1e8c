//! Bounded string repetition for jaq programs.
//!
//! jaq evaluates `"ab" * n` as `str::repeat(n)` with no bound. A record carrying a
//! huge `n` asks the allocator for more memory than exists, and Rust answers a
//! refused allocation by aborting the process: one record would take the pipeline
//! down instead of going to the dead-letter topic.
//!
//! Contract: [`guard`] rewrites every `l * r` of a parsed program into `!mul(l; r)`
//! and every `l *= r` into `r as $!rhs | l |= !mul(.; $!rhs)` (jaq's own reading of
//! `*=`). `!mul` (see [`prelude`]) gives exactly what `*` gives — jaq's cartesian
//! order (left outer, right inner), an error on the left raised once the right
//! yields — except that repeating a string to more than [`MAX_REPEAT_CHARS`]
//! characters raises an error, so the record fails like any other runtime error.
//! Both names start with `!`, which jq source cannot spell, so a user's definitions
//! can never capture them.

use jaq_core::load::lex::StrPart;
use jaq_core::load::parse::{BinaryOp, Def, Pattern, Term};
use jaq_core::ops::Math;
use jaq_core::path::Part;

/// The longest string a jq step may build by repetition (16 Mi characters).
pub const MAX_REPEAT_CHARS: u64 = 1 << 24;

const MUL: &str = "!mul";
const RHS: &str = "$!rhs";

/// `!mul(l; r)`: `l * r`, refusing oversized string repetition. The left side's
/// outputs are wrapped in arrays so that its errors travel as values (`{error}`)
/// and are raised only when paired with a right-hand output, as jaq's `*` does.
const MUL_DEF: &str = r#"def mul(l; r):
  (try (l | [.]) catch {error: .}) as $l | r as $r
  | if $l | type == "object" then error($l.error) end
  | $l[0] as $l
  | if ($l | type) == "string" and ($r | type) == "number" then ($l | length) * $r
    elif ($l | type) == "number" and ($r | type) == "string" then ($r | length) * $l
    else 0 end
  | if . > LIMIT then
      error("repeating a string to \(.) characters exceeds the limit of LIMIT")
    end
  | $l * $r;"#;

/// The definitions [`guard`]ed programs call, to be added to the loader's prelude.
pub fn prelude() -> Vec<Def<&'static str>> {
    // Leaked once per process: the text must outlive every compiled program.
    static SOURCE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let source = SOURCE.get_or_init(|| MUL_DEF.replace("LIMIT", &MAX_REPEAT_CHARS.to_string()));
    let defs = jaq_core::load::parse(source, |p| p.defs()).expect("the `!mul` definition parses");
    defs.into_iter()
        .map(|def| Def { name: MUL, ..def })
        .collect()
}

/// Rewrites the multiplications of `term` (see the module docs); returns whether
/// there were any.
pub fn guard(term: &mut Term<&str>) -> bool {
    let mut found = false;
    rewrite(term, &mut found);
    found
}

fn rewrite(term: &mut Term<&str>, found: &mut bool) {
    children(term, &mut |t| rewrite(t, found));
    *term = match std::mem::take(term) {
        Term::BinOp(l, BinaryOp::Math(Math::Mul), r) => {
            *found = true;
            Term::Call(MUL, vec![*l, *r])
        }
        Term::BinOp(l, BinaryOp::UpdateMath(Math::Mul), r) => {
            *found = true;
            let each = Term::Call(MUL, vec![Term::Id, Term::Var(RHS)]);
            let update = Term::BinOp(l, BinaryOp::Update, Box::new(each));
            Term::BinOp(r, BinaryOp::Pipe(Some(Pattern::Var(RHS))), Box::new(update))
        }
        other => other,
    };
}

/// Calls `f` on every direct sub-term of `term`.
fn children<'s>(term: &mut Term<&'s str>, f: &mut impl FnMut(&mut Term<&'s str>)) {
    match term {
        Term::Id | Term::Recurse | Term::Num(_) | Term::Var(_) | Term::Break(_) => {}
        Term::Str(_, parts) => parts.iter_mut().for_each(|part| {
            if let StrPart::Term(t) = part {
                f(t)
            }
        }),
        Term::Arr(t) => t.iter_mut().for_each(|t| f(t)),
        Term::Obj(entries) => entries.iter_mut().for_each(|(k, v)| {
            f(k);
            v.iter_mut().for_each(&mut *f);
        }),
        Term::Neg(t) | Term::Label(_, t) => f(t),
        Term::BinOp(l, op, r) => {
            f(l);
            if let BinaryOp::Pipe(Some(pattern)) = op {
                pattern_terms(pattern, f);
            }
            f(r);
        }
        Term::Fold(_, xs, pattern, args) => {
            f(xs);
            pattern_terms(pattern, f);
            args.iter_mut().for_each(&mut *f);
        }
        Term::TryCatch(t, catch) => {
            f(t);
            catch.iter_mut().for_each(|t| f(t));
        }
        Term::IfThenElse(branches, otherwise) => {
            branches.iter_mut().for_each(|(c, t)| {
                f(c);
                f(t);
            });
            otherwise.iter_mut().for_each(|t| f(t));
        }
        Term::Def(defs, t) => {
            defs.iter_mut().for_each(|def| f(&mut def.body));
            f(t);
        }
        Term::Call(_, args) => args.iter_mut().for_each(&mut *f),
        Term::Path(t, path) => {
            f(t);
            path.0.iter_mut().for_each(|(part, _)| match part {
                Part::Index(i) => f(i),
                Part::Range(from, to) => from.iter_mut().chain(to).for_each(&mut *f),
            });
        }
    }
}

fn pattern_terms<'s>(pattern: &mut Pattern<&'s str>, f: &mut impl FnMut(&mut Term<&'s str>)) {
    match pattern {
        Pattern::Var(_) => {}
        Pattern::Arr(ps) => ps.iter_mut().for_each(|p| pattern_terms(p, f)),
        Pattern::Obj(entries) => entries.iter_mut().for_each(|(k, p)| {
            f(k);
            pattern_terms(p, f);
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::super::jq::JqProgram;
    use serde_json::{json, Value};

    fn guarded(expr: &str, input: &Value) -> Result<Vec<Value>, String> {
        let program = JqProgram::compile(expr).expect("test expression compiles");
        program.run_jaq(input.clone()).map_err(|e| e.to_string())
    }

    #[test]
    fn guarded_multiplication_answers_exactly_as_jaq_does() {
        let cases = [
            ("[(1,2) * (10,20)]", json!(null)),
            (r#""ab" * 3, 3 * "ab", "ab" * 0, "ab" * -1"#, json!(null)),
            (r#""ab" * 1.5"#, json!(null)),
            (
                ".a * .b",
                json!({"a": {"x": 1, "y": {"p": 1}}, "b": {"y": {"q": 2}}}),
            ),
            (".a * .b", json!({"a": "s", "b": []})),
            (".a * .b", json!({"a": 1e308, "b": 10})),
            (r#"[(1, error("x"), 3) * 2]"#, json!(null)),
            (r#"[error("x") * empty]"#, json!(null)),
            (r#"[error({"k": 1}) * 2]"#, json!(null)),
            (
                r#"[try ((1, error("x"), 3) * (2, 4)) catch "caught"]"#,
                json!(null),
            ),
            ("[label $out | 2 * (1, break $out)]", json!(null)),
            (".a *= 2 | .s *= 2", json!({"a": 3, "s": "ab"})),
            ("[.[] *= (2, 3)]", json!([1, 2])),
            (".[0] *= .[1]", json!([2, 5])),
            ("def f: . * 2; [.[] | f]", json!([1, 2])),
            (r#""\(. * 2)", {("a" * 2): (. * .)}"#, json!(3)),
            ("reduce .[] as $x (1; . * $x)", json!([2, 3, 4])),
            ("[foreach .[] as $x (1; . * $x; . * 10)]", json!([2, 3])),
            (".[] as [$a, $b] | $a * $b", json!([[2, 3], [4, 5]])),
            (
                "if . * 2 > 5 then 2 * 2 else -(2 * 3) end, .[1 * 0:]?",
                json!(3),
            ),
            (".[1 * 1], .[0:1 * 2]", json!([5, 6, 7])),
            ("2 * 3 * 4, (.a // 2) * 3, .a * 2 // 7", json!({})),
            (". as {a: $x} | $x * $x", json!({"a": 9})),
        ];
        for (expr, input) in cases {
            let reference = JqProgram::unguarded(expr).run_jaq(input.clone());
            let reference = reference.map_err(|e| e.to_string());
            assert_eq!(guarded(expr, &input), reference, "{expr} on {input}");
        }
    }

    #[test]
    fn repeating_a_string_past_the_limit_is_a_record_error_not_an_abort() {
        let limit = super::MAX_REPEAT_CHARS;
        let at_limit = guarded(r#""é" * .n | length"#, &json!({"n": limit}));
        assert_eq!(at_limit, Ok(vec![json!(limit)]));
        for (expr, input) in [
            (r#""é" * .n"#, json!({"n": limit + 1})),
            (r#".n * "ab""#, json!({"n": i64::MAX})),
            (r#""a" * 100000000000000000000"#, json!(null)),
            (r#".s *= .n"#, json!({"s": "ab", "n": u64::MAX})),
        ] {
            let error = guarded(expr, &input).expect_err("oversized repetition is refused");
            assert!(
                error.contains("exceeds the limit of 16777216"),
                "{expr}: {error}"
            );
        }
        let caught = guarded(r#"try ("a" * .n) catch "refused""#, &json!({"n": i64::MAX}));
        assert_eq!(caught, Ok(vec![json!("refused")]));
    }

    #[test]
    fn module_directives_are_refused_at_compile_time() {
        let error = JqProgram::compile("module {}; .").expect_err("module directive refused");
        assert!(error.to_string().contains("module directives"), "{error}");
    }
}
