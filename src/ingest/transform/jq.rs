//! jq map/filter expressions over [`serde_json::Value`], backed by the jaq crates.
//!
//! Contract: an expression is compiled once by [`JqProgram::compile`] and can then be
//! run any number of times, from any thread (`JqProgram` is `Send + Sync`).
//! [`JqProgram::run`] is pure and synchronous: no I/O, no shared state, no async.
//! Each input yields 0..n outputs (`select` may drop it, `.[]` may fan it out).
//! Errors are values, never panics: bad syntax or unknown names give
//! [`JqError::Compile`], failures while running give [`JqError::Runtime`].

use super::native::Native;
use super::repeat_guard;
use jaq_core::load::{self, lex, parse, parse::Def, Arena, File, Loader};
use jaq_core::{compile, data::JustLut, Compiler, Ctx, Exn, Filter, Vars};
use jaq_json::{Num, Val};
use serde_json::{Number, Value};

type Data = JustLut<Val>;

#[derive(Debug, thiserror::Error)]
pub enum JqError {
    #[error("jq expression `{expr}` does not compile: {message}")]
    Compile { expr: String, message: String },
    #[error("jq expression `{expr}` failed: {message}")]
    Runtime { expr: String, message: String },
}

/// A compiled jq expression together with its source text.
pub struct JqProgram {
    filter: Filter<Data>,
    /// The same expression on the native fast path, when it is in its subset.
    native: Option<Native>,
    expr: String,
}

impl std::fmt::Debug for JqProgram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("JqProgram").field(&self.expr).finish()
    }
}

impl JqProgram {
    pub fn compile(expr: &str) -> Result<Self, JqError> {
        let expr = expr.to_owned();
        match compile_filter(&expr) {
            Ok(filter) => Ok(Self {
                native: Native::compile(&expr),
                filter,
                expr,
            }),
            Err(message) => Err(JqError::Compile { expr, message }),
        }
    }

    /// Runs the program on one input and collects every output (0..n values):
    /// natively when the expression and this input allow it, else on jaq.
    pub fn run(&self, input: Value) -> Result<Vec<Value>, JqError> {
        let input = match &self.native {
            None => input,
            Some(native) => match native.run(input) {
                Ok(out) => return Ok(out.into_iter().collect()),
                // A case the fast path does not model: jaq decides.
                Err((_unsupported, input)) => input,
            },
        };
        self.run_jaq(input)
    }

    /// Hands each output for `input` to `f`, in order; the first error (the
    /// program's or `f`'s) stops it. The fast path allocates nothing.
    pub fn for_each<E: From<JqError>>(
        &self,
        input: Value,
        mut f: impl FnMut(Value) -> Result<(), E>,
    ) -> Result<(), E> {
        let input = match &self.native {
            None => input,
            Some(native) => match native.run(input) {
                Ok(Some(out)) => return f(out),
                Ok(None) => return Ok(()),
                // A case the fast path does not model: jaq decides.
                Err((_unsupported, input)) => input,
            },
        };
        self.run_jaq(input)?.into_iter().try_for_each(f)
    }

    /// The top-level record fields the output depends on, when the
    /// expression is in the native subset and never hands on or tests the
    /// record as a whole (see [`super::native`]).
    pub fn reads(&self) -> Option<Vec<String>> {
        self.native.as_ref().and_then(Native::reads)
    }

    /// Whether the expression runs on the native fast path (see [`super::native`]).
    pub fn is_native(&self) -> bool {
        self.native.is_some()
    }

    /// Runs the program on jaq alone (the reference the fast path is tested against).
    #[doc(hidden)]
    pub fn run_jaq(&self, input: Value) -> Result<Vec<Value>, JqError> {
        let ctx = Ctx::<Data>::new(&self.filter.lut, Vars::new([]));
        let outputs = self.filter.id.run((ctx, to_val(input)));
        let outputs = outputs.map(|out| out.map_err(exn_msg).and_then(|v| from_val(&v)));
        let (expr, result): (_, Result<_, _>) = (self.expr.clone(), outputs.collect());
        result.map_err(|message| JqError::Runtime { expr, message })
    }

    pub fn expr(&self) -> &str {
        &self.expr
    }

    /// The program as jaq compiles it, multiplications unguarded (tests compare).
    #[cfg(test)]
    pub(super) fn unguarded(expr: &str) -> Self {
        let filter = compile_module(expr, Vec::new());
        let filter = filter.expect("test expression compiles");
        let (native, expr) = (None, expr.to_owned());
        Self {
            filter,
            native,
            expr,
        }
    }
}

/// Compiles `code` as written (so errors speak of what the user wrote), then,
/// if it multiplies, once more with its multiplications guarded (see
/// [`repeat_guard`]).
fn compile_filter(code: &str) -> Result<Filter<Data>, String> {
    let filter = compile_module(code, Vec::new())?;
    let Some(mut term) = load::parse(code, |p| p.term()) else {
        return Err("module directives (`module`, `import`, `include`) are not supported".into());
    };
    if !repeat_guard::guard(&mut term) {
        return Ok(filter);
    }
    let main = Def {
        name: GUARDED_MAIN,
        args: Vec::new(),
        body: term,
    };
    let prelude = repeat_guard::prelude().into_iter().chain([main]).collect();
    compile_module(GUARDED_MAIN, prelude)
        .map_err(|message| format!("internal: the guarded program does not compile: {message}"))
}

/// The prelude definition holding a guarded program; its main module only calls it.
const GUARDED_MAIN: &str = "tidemill_guarded_main";

fn compile_module<'s>(code: &'s str, extra: Vec<Def<&'s str>>) -> Result<Filter<Data>, String> {
    let defs = jaq_core::defs()
        .chain(jaq_std::defs())
        .chain(jaq_json::defs());
    let mut defs: Vec<Def<&'s str>> = defs.collect::<Vec<_>>();
    defs.extend(extra);
    let funs = jaq_core::funs().chain(jaq_std::funs());
    // `env` and `now` would make runs impure (and leak the process environment).
    let funs = funs.chain(jaq_json::funs());
    let funs = funs.filter(|f| !["env", "now"].contains(&f.0));
    let arena = Arena::default();
    let modules = Loader::new(defs).load(&arena, File { code, path: () });
    let modules = modules.map_err(|errs| join(errs.into_iter().map(load_msg)))?;
    let filter = Compiler::default().with_funs(funs).compile(modules);
    filter.map_err(|errs| join(errs.into_iter().flat_map(|(_, e)| e).map(undef_msg)))
}

fn join(msgs: impl Iterator<Item = String>) -> String {
    msgs.collect::<Vec<_>>().join("; ")
}

fn load_msg((file, err): (File<&str, ()>, load::Error<&str>)) -> String {
    // Error strings are slices of the code; turn them into byte offsets.
    let at = |part: &str| (part.as_ptr() as usize).saturating_sub(file.code.as_ptr() as usize);
    let lex =
        |(exp, got): lex::Error<&str>| format!("expected {} at byte {}", exp.as_str(), at(got));
    let parse = |(exp, got): parse::Error<&str>| match (exp.as_str(), got) {
        (exp, "") => format!("expected {exp}, found end of input"),
        (exp, got) => format!("expected {exp}, found `{got}` at byte {}", at(got)),
    };
    match err {
        load::Error::Io(errs) => join(errs.into_iter().map(|(path, e)| format!("{path}: {e}"))),
        load::Error::Lex(errs) => join(errs.into_iter().map(lex)),
        load::Error::Parse(errs) => join(errs.into_iter().map(parse)),
    }
}

fn undef_msg((name, undef): compile::Error<&str>) -> String {
    match undef {
        compile::Undefined::Filter(arity) => format!("undefined filter `{name}/{arity}`"),
        other => format!("undefined {} `{name}`", other.as_str()),
    }
}

fn exn_msg(exn: Exn<'_, Val>) -> String {
    match exn.get_err().map(jaq_core::Error::into_val) {
        // `error("x")` carries the string itself; show it raw, like jq does.
        Ok(Val::TStr(s) | Val::BStr(s)) => text(&s),
        Ok(other) => other.to_string(),
        // Other exceptions (`break`, tail calls) never escape a main filter.
        Err(exn) => format!("halted with exit code {}", exn.get_halt().unwrap_or(-1)),
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn to_val(v: Value) -> Val {
    match v {
        Value::Null => Val::Null,
        Value::Bool(b) => Val::Bool(b),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), ..) => Val::Num(Num::from_integral(i)),
            (_, Some(u), _) => Val::Num(Num::from_integral(u)),
            (.., f) => Val::from(f.unwrap_or(f64::NAN)),
        },
        Value::String(s) => Val::from(s),
        Value::Array(a) => a.into_iter().map(to_val).collect(),
        Value::Object(o) => Val::obj(o.into_iter().map(|(k, v)| (k.into(), to_val(v))).collect()),
    }
}

fn from_val(v: &Val) -> Result<Value, String> {
    let entry = |(k, v): (&Val, &Val)| match k {
        Val::TStr(key) | Val::BStr(key) => Ok((text(key), from_val(v)?)),
        _ => Err(format!("object key {k} is not a string")),
    };
    Ok(match v {
        Val::Null => Value::Null,
        Val::Bool(b) => Value::Bool(*b),
        Val::Num(n) => num_to_json(n),
        Val::TStr(s) | Val::BStr(s) => Value::String(text(s)),
        Val::Arr(a) => a.iter().map(from_val).collect::<Result<_, _>>()?,
        Val::Obj(o) => Value::Object(o.iter().map(entry).collect::<Result<_, _>>()?),
    })
}

fn num_to_json(n: &Num) -> Value {
    // jq prints NaN as null and clamps infinities to the largest finite doubles.
    let float =
        |f: f64| Number::from_f64(f.clamp(f64::MIN, f64::MAX)).map_or(Value::Null, Value::Number);
    match n {
        Num::Int(i) => Value::from(*i),
        Num::Float(f) => float(*f),
        // Big integers and decimal literals: exact if they fit i64/u64, else f64 like jq.
        Num::BigInt(_) | Num::Dec(_) => {
            let s = n.to_string();
            serde_json::from_str(&s).unwrap_or_else(|_| float(s.parse().unwrap_or(f64::NAN)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(expr: &str, input: Value) -> Vec<Value> {
        JqProgram::compile(expr)
            .expect("test expression compiles")
            .run(input)
            .expect("test expression runs")
    }

    /// The error message for `expr` run on `{"a": "s"}`, compile-time or runtime.
    fn error(expr: &str) -> String {
        let result = JqProgram::compile(expr).and_then(|p| p.run(json!({"a": "s"})));
        result.unwrap_err().to_string()
    }

    #[test]
    fn map_builds_new_object() {
        let out = run("{id, total: (.a * .q)}", json!({"id": 7, "a": 2.5, "q": 4}));
        assert_eq!(out, [json!({"id": 7, "total": 10.0})]);
    }

    #[test]
    fn select_drops_non_matching() {
        assert_eq!(run("select(.n > 1)", json!({"n": 1})), [] as [Value; 0]);
        assert_eq!(run("select(.n > 1)", json!({"n": 2})), [json!({"n": 2})]);
    }

    #[test]
    fn array_iteration_yields_many_outputs() {
        let out = run(".[] | .name", json!([{"name": "a"}, {"name": "b"}]));
        assert_eq!(out, [json!("a"), json!("b")]);
    }

    #[test]
    fn std_math_and_regex_are_available() {
        let expr = r#"add, pow(2; 10), ("a1b22" | [scan("\\d+")])"#;
        let out = run(expr, json!([1, 2]));
        assert_eq!(out, [json!(3), json!(1024.0), json!(["1", "22"])]);
    }

    #[test]
    fn syntax_error_names_expression() {
        assert!(error("{b:").ends_with("`{b:` does not compile: expected closing brace at byte 3"));
        assert!(error("1 +").ends_with("does not compile: expected term, found end of input"));
    }

    #[test]
    fn undefined_function_is_compile_error() {
        assert!(error("nosuchfn(1)").ends_with("does not compile: undefined filter `nosuchfn/1`"));
        assert!(error("$nope").ends_with("does not compile: undefined variable `$nope`"));
        // `env`/`now` are left out on purpose: they would make runs impure.
        assert!(error("env, now").contains("undefined filter `env/0`"));
    }

    #[test]
    fn runtime_error_is_reported() {
        assert!(error(".a + 1").starts_with("jq expression `.a + 1` failed: cannot calculate"));
        assert!(error(r#"error("boom")"#).ends_with("failed: boom"));
        assert!(error("halt").ends_with("failed: halted with exit code 0"));
        assert!(error("{(1): 2}").ends_with("failed: object key 1 is not a string"));
    }

    #[test]
    fn integers_round_trip_exactly() {
        for n in [json!(-1), json!(i64::MIN), json!(i64::MAX), json!(u64::MAX)] {
            assert_eq!(run("[.]", n.clone()), [json!([n])]);
        }
        assert_eq!(run(". + 1", json!(41)), [json!(42)]);
        let big = "[9223372036854775807, 18446744073709551615, 18446744073709551616]";
        let expected = json!([i64::MAX, u64::MAX, 1.8446744073709552e19]);
        assert_eq!(run(big, json!(null)), [expected]);
    }

    #[test]
    fn other_values_round_trip() {
        let v = json!({"s": "é\"\n😀", "f": 0.1, "e": -1e300, "a": [true, null], "o": {}});
        assert_eq!(run(".", v.clone()), [v]);
        let out = run("1.5, 1e1000, nan", json!(null));
        assert_eq!(out, [json!(1.5), json!(f64::MAX), json!(null)]);
        // Keys come back in serde_json's own order (insertion order with `preserve_order`).
        let out = run(". + {b: 1}", json!({"z": 0, "a": 2}));
        let expected = json!({"z": 0, "a": 2, "b": 1});
        assert_eq!(out[0].to_string(), expected.to_string());
    }

    #[test]
    fn program_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<JqProgram>();
        let prog = JqProgram::compile(".x").expect("compiles");
        let out = std::thread::scope(|s| s.spawn(|| prog.run(json!({"x": 1}))).join());
        assert_eq!(out.expect("thread finished").expect("runs"), [json!(1)]);
        assert_eq!(format!("{prog:?}"), r#"JqProgram(".x")"#);
        assert_eq!(prog.expr(), ".x");
    }
}
