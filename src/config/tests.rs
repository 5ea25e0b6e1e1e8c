use super::*;

const MINIMAL: &str = r#"
[pipelines.orders]
topics = ["orders"]
[pipelines.orders.kafka]
brokers = "127.0.0.1:9092"
[pipelines.orders.sink]
url = "postgres://app:s3cret@127.0.0.1/db"
table = "public.orders"
"#;

#[test]
fn minimal_pipeline_gets_defaults() {
    let s = super::validated_toml(MINIMAL).expect("valid config");
    let p = &s.pipelines["orders"];
    assert_eq!(p.group_id("orders"), "tidemill-orders");
    assert_eq!(p.batch.max_rows, 5000);
    assert_eq!(p.batch.max_linger, Duration::from_millis(100));
    assert_eq!(p.sink.mode, SinkMode::Insert);
    assert_eq!(s.shutdown.grace, Duration::from_secs(30));
}

#[test]
fn copy_threshold_defaults_per_mode_and_an_explicit_value_wins() {
    let insert = super::validated_toml(MINIMAL).expect("valid config");
    assert_eq!(insert.pipelines["orders"].sink.copy_threshold(), 100);
    let upsert = format!("{MINIMAL}mode = \"upsert\"\nkey_columns = [\"id\"]\n");
    let upsert = super::validated_toml(&upsert).expect("valid config");
    assert_eq!(upsert.pipelines["orders"].sink.copy_threshold(), 1000);
    let set = format!("{MINIMAL}mode = \"upsert\"\nkey_columns = [\"id\"]\ncopy_threshold = 0\n");
    let set = super::validated_toml(&set).expect("valid config");
    assert_eq!(set.pipelines["orders"].sink.copy_threshold(), 0);
}

#[test]
fn debug_output_does_not_leak_the_database_password() {
    let s = super::validated_toml(MINIMAL).expect("valid config");
    let printed = format!("{s:?}");
    assert!(!printed.contains("s3cret"), "{printed}");
}

#[test]
fn unknown_key_is_rejected_with_its_name() {
    let text = MINIMAL.replace("table =", "tabel = \"x\"\ntable =");
    let err = super::validated_toml(&text).expect_err("unknown field");
    assert!(err.to_string().contains("tabel"), "{err}");
}

#[test]
fn human_durations_parse_and_bad_ones_name_the_problem() {
    let ok = format!("{MINIMAL}[pipelines.orders.batch]\nmax_linger = \"250ms\"\n");
    let s = super::validated_toml(&ok).expect("valid duration");
    assert_eq!(
        s.pipelines["orders"].batch.max_linger,
        Duration::from_millis(250)
    );
    let bad = format!("{MINIMAL}[pipelines.orders.batch]\nmax_linger = \"soon\"\n");
    let err = super::validated_toml(&bad).expect_err("bad duration");
    assert!(err.to_string().contains("soon"), "{err}");
}

#[test]
fn every_problem_is_reported_at_once_naming_its_key() {
    let text = r#"
[pipelines.orders]
topics = []
[pipelines.orders.kafka]
brokers = ""
[pipelines.orders.sink]
url = "postgres://x"
table = "t"
mode = "upsert"
[pipelines.orders.batch]
max_rows = 0
"#;
    let Err(ConfigError::Invalid(problems)) = super::validated_toml(text) else {
        panic!("expected validation problems");
    };
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    for key in [
        "pipelines.orders.kafka.brokers",
        "pipelines.orders.topics",
        "pipelines.orders.sink.key_columns",
        "pipelines.orders.batch.max_rows",
    ] {
        assert!(keys.contains(&key), "{key} missing from {keys:?}");
    }
}

#[test]
fn reserved_kafka_options_cannot_be_overridden() {
    let text =
        format!("{MINIMAL}[pipelines.orders.kafka.options]\n\"enable.auto.commit\" = \"true\"\n");
    let Err(ConfigError::Invalid(problems)) = super::validated_toml(&text) else {
        panic!("expected a problem");
    };
    assert_eq!(
        problems[0].key,
        "pipelines.orders.kafka.options.enable.auto.commit"
    );
}

#[test]
fn layered_file_and_environment_override_defaults() {
    let dir = tempfile::tempdir().expect("temp dir");
    let defaults = dir.path().join("default.toml");
    std::fs::write(&defaults, "[shutdown]\ngrace = \"5s\"\n").expect("write defaults");
    let file = dir.path().join("app.toml");
    std::fs::write(&file, MINIMAL).expect("write config");
    let s = Settings::load_unvalidated(&file, Some(&defaults))
        .and_then(super::validated)
        .expect("valid layered config");
    assert_eq!(s.shutdown.grace, Duration::from_secs(5));
}

/// The problems validation reports for a config that parses.
fn problems(text: &str) -> Vec<Problem> {
    match super::validated_toml(text) {
        Ok(_) => Vec::new(),
        Err(ConfigError::Invalid(problems)) => problems,
        Err(e) => panic!("does not parse: {e}"),
    }
}

/// A pipeline with `sink_extra` in its sink table, `top` in its own, then `steps`.
fn stateful(top: &str, sink_extra: &str, steps: &str) -> String {
    format!(
        r#"
[pipelines.orders]
topics = ["orders"]
{top}
[pipelines.orders.kafka]
brokers = "127.0.0.1:9092"
[pipelines.orders.sink]
url = "postgres://app:s3cret@127.0.0.1/db"
table = "public.orders"
{sink_extra}
{steps}"#
    )
}

const TOTALS: &str = r#"
[[pipelines.orders.transforms]]
type = "key"
fields = ["customer"]
[[pipelines.orders.transforms]]
type = "aggregate"
name = "spend"
columns = { n = "count()", total = "sum(amount)" }
"#;

#[test]
fn stateful_steps_parse_and_running_totals_need_upsert() {
    let found = problems(&stateful("", "", TOTALS));
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].key, "pipelines.orders.transforms[1]");
    assert!(found[0].message.contains("upsert"), "{}", found[0]);
    let upsert = "mode = \"upsert\"\nkey_columns = [\"customer\"]";
    assert!(problems(&stateful("", upsert, TOTALS)).is_empty());
}

#[test]
fn bad_aggregates_and_windows_name_their_keys() {
    let steps = r#"
[[pipelines.orders.transforms]]
type = "aggregate"
columns = { x = "median(amount)" }
window = { kind = "hopping", size = "10s", slide = "20s" }
[[pipelines.orders.transforms]]
type = "aggregate"
columns = { n = "count()" }
window = { kind = "session", emit = "update" }
"#;
    let found = problems(&stateful("delivery = \"at-least-once\"", "", steps));
    let keys: Vec<&str> = found.iter().map(|p| p.key.as_str()).collect();
    for expected in [
        "pipelines.orders.transforms[0].columns.x",
        "pipelines.orders.transforms[0].window.slide",
        "pipelines.orders.transforms[1].window.gap",
        "pipelines.orders.transforms[1].window.emit",
        "pipelines.orders.delivery",
    ] {
        assert!(keys.contains(&expected), "{expected} not in {found:?}");
    }
}

#[test]
fn unknown_keys_inside_a_stateful_step_are_rejected() {
    let text = stateful(
        "",
        "",
        &TOTALS.replace("name = \"spend\"", "nmae = \"spend\""),
    );
    let err = super::validated_toml(&text).expect_err("unknown field");
    assert!(err.to_string().contains("nmae"), "{err}");
}

#[test]
fn timestamp_formats_parse_with_per_column_overrides() {
    let s = super::validated_toml(MINIMAL).expect("valid config");
    assert_eq!(
        s.pipelines["orders"].sink.timestamp_format,
        TimestampFormat::Rfc3339
    );
    let text = format!(
        "{MINIMAL}timestamp_format = \"epoch_s\"\n[pipelines.orders.sink.columns.created_at]\ntimestamp_format = \"epoch_ms\"\n"
    );
    let s = super::validated_toml(&text).expect("valid config");
    let sink = &s.pipelines["orders"].sink;
    assert_eq!(sink.timestamp_format, TimestampFormat::EpochS);
    assert_eq!(
        sink.columns["created_at"].timestamp_format,
        Some(TimestampFormat::EpochMs)
    );
}

#[test]
fn bad_timestamp_formats_and_unknown_column_keys_are_named() {
    let bad = format!("{MINIMAL}timestamp_format = \"epoch_ns\"\n");
    let err = super::validated_toml(&bad).expect_err("unknown format");
    assert!(err.to_string().contains("epoch_ns"), "{err}");
    let unknown = format!("{MINIMAL}[pipelines.orders.sink.columns.at]\nformat = \"epoch_ms\"\n");
    let err = super::validated_toml(&unknown).expect_err("unknown key");
    assert!(err.to_string().contains("format"), "{err}");
}

#[test]
fn the_instance_id_is_every_pipelines_group_instance_id_unless_it_names_its_own() {
    let text = format!(
        "instance_id = \"tidemill-2\"\n{MINIMAL}{}",
        MINIMAL.replace("orders", "audit").replace(
            "brokers = \"127.0.0.1:9092\"",
            "brokers = \"127.0.0.1:9092\"\ngroup_instance_id = \"own\""
        )
    );
    let s = super::validated_toml(&text).expect("valid config");
    assert_eq!(
        s.pipelines["orders"].kafka.group_instance_id.as_deref(),
        Some("tidemill-2")
    );
    assert_eq!(
        s.pipelines["audit"].kafka.group_instance_id.as_deref(),
        Some("own")
    );
    let bad = problems(&format!("instance_id = \"pod/0\"\n{MINIMAL}"));
    let keys: Vec<&str> = bad.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, ["instance_id"], "named once, at its own key");
}

#[test]
fn an_unknown_name_fails_with_its_key_the_valid_names_and_the_nearest() {
    let text = format!("{MINIMAL}mode = \"upsrt\"\n");
    let err = super::validated_toml(&text)
        .expect_err("unknown mode")
        .to_string();
    assert!(
        err.contains(r#"unknown value "upsrt" (did you mean "upsert"? valid: "insert", "upsert")"#)
            && err.contains("pipelines.orders.sink.mode"),
        "{err}"
    );
}

#[test]
fn every_listed_name_parses_to_a_value_of_its_own() {
    fn each<T: serde::de::DeserializeOwned + std::fmt::Debug>(names: &[&str]) {
        let distinct: std::collections::BTreeSet<String> = names
            .iter()
            .map(|n| {
                let v: T = serde_json::from_value(serde_json::json!(n)).expect("valid name");
                format!("{v:?}")
            })
            .collect();
        assert_eq!(distinct.len(), names.len(), "each name is its own value");
    }
    each::<LogFormat>(LogFormat::NAMES);
    each::<GroupProtocol>(GroupProtocol::NAMES);
    each::<Delivery>(Delivery::NAMES);
    each::<DecodeFormat>(DecodeFormat::NAMES);
    each::<SinkMode>(SinkMode::NAMES);
    each::<TimestampFormat>(TimestampFormat::NAMES);
    each::<transform::WindowKind>(transform::WindowKind::NAMES);
    each::<transform::TimeFormat>(transform::TimeFormat::NAMES);
    each::<transform::EmitMode>(transform::EmitMode::NAMES);
    each::<transform::LatePolicy>(transform::LatePolicy::NAMES);
}
