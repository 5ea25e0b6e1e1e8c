//! Validation of the sink's `delete`, `auto_create`, `schema` and `auto_evolve` keys.

use super::*;

const BASE: &str = r#"
[pipelines.orders]
topics = ["orders"]
[pipelines.orders.kafka]
brokers = "127.0.0.1:9092"
[pipelines.orders.sink]
url = "postgres://app:pw@127.0.0.1/db"
table = "orders"
"#;

fn with_sink(extra: &str) -> Result<Settings, String> {
    super::validated_toml(&format!("{BASE}{extra}")).map_err(|e| e.to_string())
}

#[test]
fn the_new_keys_default_to_off() {
    let s = with_sink("").expect("valid");
    let sink = &s.pipelines["orders"].sink;
    assert!(!sink.delete && !sink.auto_create && !sink.auto_evolve);
    assert_eq!(sink.schema, None);
}

#[test]
fn delete_with_upsert_and_a_key_is_accepted() {
    let s =
        with_sink("mode = \"upsert\"\nkey_columns = [\"id\"]\ndelete = true\nauto_evolve = true\n")
            .expect("valid");
    assert!(s.pipelines["orders"].sink.delete);
    assert!(s.pipelines["orders"].sink.auto_evolve);
}

#[test]
fn delete_needs_upsert_mode_and_names_the_key() {
    let err = with_sink("delete = true\n").expect_err("insert mode");
    assert!(
        err.contains("pipelines.orders.sink.delete: needs mode = \"upsert\""),
        "{err}"
    );
    let err = with_sink("mode = \"upsert\"\ndelete = true\n").expect_err("no key");
    assert!(err.contains("pipelines.orders.sink.key_columns"), "{err}");
}

#[test]
fn delete_is_refused_with_stateful_transforms_saying_why() {
    let text = format!(
        "{BASE}mode = \"upsert\"\nkey_columns = [\"id\"]\ndelete = true\n\
         [[pipelines.orders.transforms]]\ntype = \"dedup\"\nttl = \"1h\"\n"
    );
    let err = super::validated_toml(&text)
        .expect_err("stateful")
        .to_string();
    assert!(
        err.contains("pipelines.orders.sink.delete: cannot be used with stateful transforms"),
        "{err}"
    );
    assert!(err.contains("bypass the transforms"), "{err}");
}

#[test]
fn auto_create_reads_the_declared_schema() {
    let s = with_sink(
        "auto_create = true\nmode = \"upsert\"\nkey_columns = [\"id\"]\n\
         [pipelines.orders.sink.schema]\n\
         columns = [{ name = \"id\", type = \"bigint\", nullable = false }, { name = \"amount\", type = \"numeric(12,2)\" }]\n\
         primary_key = [\"id\"]\n",
    )
    .expect("valid");
    let schema = s.pipelines["orders"].sink.schema.clone().expect("schema");
    assert_eq!(schema.columns[1].data_type, "numeric(12,2)");
    assert!(schema.columns[1].nullable, "nullable by default");
    assert_eq!(schema.primary_key, vec!["id".to_string()]);
}

#[test]
fn auto_create_problems_name_their_keys() {
    let err = with_sink("auto_create = true\n").expect_err("no schema");
    assert!(
        err.contains("pipelines.orders.sink.schema: auto_create needs"),
        "{err}"
    );
    let err = with_sink(
        "auto_create = true\nmode = \"upsert\"\nkey_columns = [\"k\"]\n\
         [pipelines.orders.sink.schema]\n\
         columns = [{ name = \"id\", type = \"bigint\" }, { name = \"x\", type = \"text; drop table t\" }, { name = \"\", type = \"int\" }]\n\
         primary_key = [\"id\", \"nope\"]\n",
    )
    .expect_err("bad schema");
    for expected in [
        "sink.schema.columns[1].type: `text; drop table t` is not a portable type",
        "sink.schema.columns[2].name: identifier is empty",
        "sink.schema.primary_key: `id` must be declared with nullable = false",
        "sink.schema.primary_key: `nope` is not a declared column",
        "sink.key_columns: `k` is not a column declared in schema.columns",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in {err}");
    }
}

#[test]
fn a_schema_without_auto_create_is_refused() {
    let err = with_sink(
        "[pipelines.orders.sink.schema]\ncolumns = [{ name = \"id\", type = \"int\" }]\n",
    )
    .expect_err("unused schema");
    assert!(
        err.contains("pipelines.orders.sink.schema: is only used by auto_create"),
        "{err}"
    );
}

#[test]
fn unknown_keys_in_a_column_are_refused() {
    let err = with_sink(
        "auto_create = true\n[pipelines.orders.sink.schema]\ncolumns = [{ name = \"id\", type = \"int\", nulable = true }]\n",
    )
    .expect_err("typo");
    assert!(err.contains("nulable"), "{err}");
}

#[test]
fn a_change_stream_needs_upsert_and_key_columns_and_no_stateful_steps() {
    let text = BASE.replace(
        "topics = [\"orders\"]\n",
        "topics = [\"orders\"]\nformat = \"debezium\"\n",
    );
    let err = super::validated_toml(&text)
        .expect_err("insert mode")
        .to_string();
    assert!(
        err.contains("pipelines.orders.sink.mode: format = \"debezium\" needs mode = \"upsert\""),
        "{err}"
    );
    assert!(
        err.contains("pipelines.orders.sink.key_columns: format = \"debezium\" needs the key columns a change event's Kafka key names"),
        "{err}"
    );
    let stateful = format!(
        "{text}mode = \"upsert\"\nkey_columns = [\"id\"]\n[[pipelines.orders.transforms]]\ntype = \"dedup\"\nttl = \"1h\"\n"
    );
    let err = super::validated_toml(&stateful)
        .expect_err("stateful")
        .to_string();
    assert!(
        err.contains("pipelines.orders.sink.mode: format = \"debezium\" cannot be used with stateful transforms"),
        "{err}"
    );
    let fine = format!("{text}mode = \"upsert\"\nkey_columns = [\"id\"]\n");
    let settings = super::validated_toml(&fine).expect("a change stream into an upserted table");
    assert!(settings.pipelines["orders"].applies_deletes());
}

#[test]
fn lineage_columns_are_distinct_identifiers_and_the_sources_need_a_change_stream() {
    let text = format!(
        "{BASE}[pipelines.orders.lineage]\ntopic = \"src\"\noffset = \"src\"\nsource_table = \"t\"\n"
    );
    let err = super::validated_toml(&text)
        .expect_err("refused")
        .to_string();
    assert!(
        err.contains("pipelines.orders.lineage.offset: `src` names another lineage column too"),
        "{err}"
    );
    assert!(
        err.contains("pipelines.orders.lineage.source_table: only a change stream"),
        "{err}"
    );
}

#[test]
fn applying_truncates_needs_a_change_stream() {
    let err = with_sink("apply_truncate = true\n").expect_err("plain JSON has no truncates");
    assert!(
        err.contains("pipelines.orders.sink.apply_truncate: only a change stream"),
        "{err}"
    );
    let cdc = BASE.replace(
        "topics = [\"orders\"]",
        "topics = [\"orders\"]\nformat = \"debezium\"",
    );
    let fine = format!("{cdc}mode = \"upsert\"\nkey_columns = [\"id\"]\napply_truncate = true\n");
    let settings = super::validated_toml(&fine).expect("a change stream may apply truncates");
    assert!(settings.pipelines["orders"].sink.apply_truncate);
}

#[test]
fn the_ordering_guard_needs_a_change_stream_upserting_into_a_column_of_its_own() {
    let err = with_sink("order_column = \"pos\"\n").expect_err("plain JSON has no positions");
    assert!(
        err.contains("pipelines.orders.sink.order_column: only a change stream"),
        "{err}"
    );
    let cdc = BASE.replace(
        "topics = [\"orders\"]",
        "topics = [\"orders\"]\nformat = \"debezium\"",
    );
    let insert = format!("{cdc}order_column = \"pos\"\n");
    let err = super::validated_toml(&insert)
        .expect_err("insert mode")
        .to_string();
    assert!(
        err.contains("pipelines.orders.sink.order_column: the ordering guard needs upsert mode"),
        "{err}"
    );
    let on_key = format!("{cdc}mode = \"upsert\"\nkey_columns = [\"id\"]\norder_column = \"id\"\n");
    let err = super::validated_toml(&on_key)
        .expect_err("a key column")
        .to_string();
    assert!(err.contains("`id` is a key column"), "{err}");
    let fine = format!(
        "{cdc}mode = \"upsert\"\nkey_columns = [\"id\"]\norder_column = \"pos\"\nmarker_retention = \"1h\"\n"
    );
    let settings = super::validated_toml(&fine).expect("a guarded change stream");
    let sink = &settings.pipelines["orders"].sink;
    assert_eq!(sink.order_column.as_deref(), Some("pos"));
    assert_eq!(sink.marker_retention, std::time::Duration::from_secs(3600));
}
