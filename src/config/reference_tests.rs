//! The configuration reference cannot drift from the code: every key the
//! config types accept is in docs/configuration.md's tables and every key
//! there is accepted, and docs/tidemill.schema.json is the JSON Schema the
//! same types generate (`TIDEMILL_UPDATE_SCHEMA=1 cargo test --lib
//! config::reference_tests` rewrites it after a change).

use super::Settings;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn schema() -> Value {
    let mut schema = serde_json::to_value(schemars::schema_for!(Settings)).expect("schema as JSON");
    let object = schema.as_object_mut().expect("the schema is an object");
    object.insert("title".into(), "tidemill configuration".into());
    object.insert(
        "description".into(),
        "A tidemill config file (TOML, or the same keys in TIDEMILL__SECTION__KEY variables). \
         Reference: docs/configuration.md."
            .into(),
    );
    schema
}

/// The schema a `$ref` names, or the schema itself.
fn resolve<'a>(schema: &'a Value, node: &'a Value) -> &'a Value {
    match node.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let name = reference
                .rsplit('/')
                .next()
                .expect("a $ref names a definition");
            &schema["$defs"][name]
        }
        None => node,
    }
}

/// Every key path: a struct's fields are walked into, a map of structs under
/// the placeholder its docs use (`NAME`, `COLUMN`); anything else is a key.
fn keys(schema: &Value, node: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    let node = resolve(schema, node);
    // `Option<Struct>` is `anyOf [struct, null]`.
    if let Some(options) = node.get("anyOf").and_then(Value::as_array) {
        if let Some(inner) = options.iter().find(|o| o.get("$ref").is_some()) {
            return keys(schema, inner, prefix, out);
        }
    }
    if let Some(properties) = node.get("properties").and_then(Value::as_object) {
        for (name, field) in properties {
            keys(schema, field, &format!("{prefix}{name}."), out);
        }
        return;
    }
    if let Some(values) = node.get("additionalProperties").filter(|v| v.is_object()) {
        if resolve(schema, values).get("properties").is_some() {
            let placeholder = if prefix == "pipelines." {
                "NAME"
            } else {
                "COLUMN"
            };
            return keys(schema, values, &format!("{prefix}{placeholder}."), out);
        }
    }
    out.insert(prefix.trim_end_matches('.').to_string());
}

/// The keys docs/configuration.md's tables name: every backticked word in a
/// row's first cell; the pipeline table's keys are under `pipelines.NAME`.
fn documented() -> BTreeSet<String> {
    let text = std::fs::read_to_string(root().join("docs/configuration.md"))
        .expect("docs/configuration.md");
    let mut prefix = "";
    let mut out = BTreeSet::new();
    for line in text.lines() {
        if line.starts_with("| key (under `pipelines.NAME`)") {
            prefix = "pipelines.NAME.";
        } else if line.starts_with("| top-level key") {
            prefix = "";
        }
        let Some(cell) = line
            .strip_prefix("| `")
            .map(|l| l.split(" | ").next().unwrap_or_default())
        else {
            continue;
        };
        for key in format!("`{cell}").split('`').skip(1).step_by(2) {
            out.insert(format!("{prefix}{key}"));
        }
    }
    out
}

#[test]
fn every_key_the_code_accepts_is_documented_and_every_documented_key_is_accepted() {
    let schema = schema();
    let mut accepted = BTreeSet::new();
    keys(&schema, &schema, "", &mut accepted);
    let documented = documented();
    let undocumented: Vec<_> = accepted.difference(&documented).collect();
    let unknown: Vec<_> = documented.difference(&accepted).collect();
    assert!(
        undocumented.is_empty() && unknown.is_empty(),
        "docs/configuration.md drifted from the config types:\n  missing from the docs: {undocumented:?}\n  \
         documented but not accepted: {unknown:?}"
    );
    assert!(accepted.contains("pipelines.NAME.sink.url"), "{accepted:?}");
}

#[test]
fn the_published_json_schema_is_the_one_the_config_types_generate() {
    let path = root().join("docs/tidemill.schema.json");
    let generated = serde_json::to_string_pretty(&schema()).expect("pretty JSON") + "\n";
    if std::env::var_os("TIDEMILL_UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &generated).expect("write the schema");
    }
    let published = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        published == generated,
        "docs/tidemill.schema.json is stale: rerun with TIDEMILL_UPDATE_SCHEMA=1"
    );
}
