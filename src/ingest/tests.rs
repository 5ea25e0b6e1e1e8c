//! The ingest stage's promises, with plain values (no Kafka).

use super::*;
use crate::config::{BatchConfig, DecodeFormat, TransformConfig};
use crate::model::Origin;

fn ingest(jq: &str, deletes: Option<&[&str]>) -> Ingest {
    let chain = Chain::compile(&[TransformConfig::Jq { expr: jq.into() }]).expect("jq compiles");
    let batcher = Batcher::new(&BatchConfig::default(), true, false);
    Ingest::new(Decoder::new(DecodeFormat::Json, None), chain, batcher)
        .with_deletes(deletes.map(|k| k.iter().map(|c| c.to_string()).collect()))
}

fn raw(offset: i64) -> RawRecord {
    RawRecord {
        origin: Origin {
            topic: "t".into(),
            partition: 0,
            offset,
            timestamp_ms: None,
        },
        key: None,
        value: None,
        headers: Vec::new(),
    }
}

fn push(
    i: &mut Ingest,
    offset: i64,
    key: Option<&str>,
    payload: Option<&str>,
) -> Result<Pushed, Refusal> {
    let tp = TopicPartition::new("t", 0);
    let rec = Incoming {
        tp: &tp,
        offset,
        timestamp_ms: Some(1_000),
        key: key.map(str::as_bytes),
        payload: payload.map(str::as_bytes),
        new_key: None,
    };
    i.push(&rec, || raw(offset))
}

/// A Debezium delete that is a primary-key change to `new_key`.
fn push_key_change(
    i: &mut Ingest,
    offset: i64,
    key: &str,
    new_key: &str,
    payload: &str,
) -> Result<Pushed, Refusal> {
    let tp = TopicPartition::new("t", 0);
    let rec = Incoming {
        tp: &tp,
        offset,
        timestamp_ms: Some(1_000),
        key: Some(key.as_bytes()),
        payload: Some(payload.as_bytes()),
        new_key: Some(new_key.as_bytes()),
    };
    i.push(&rec, || raw(offset))
}

#[test]
fn a_record_becomes_its_rows_and_its_offset_in_the_batch() {
    let mut i = ingest(".", None);
    assert_eq!(push(&mut i, 5, None, Some(r#"{"id":1}"#)), Ok(Pushed::Rows));
    assert_eq!(push(&mut i, 6, None, Some(r#"{"id":2}"#)), Ok(Pushed::Rows));
    let batch = i.batcher.take().expect("a batch");
    assert_eq!(batch.rows.len(), 2);
    assert_eq!(batch.rows[1]["id"], 2);
    let range = batch.offsets[&TopicPartition::new("t", 0)];
    assert_eq!((range.first, range.last), (5, 6));
}

#[test]
fn a_filtered_record_adds_its_offset_but_no_row() {
    let mut i = ingest("select(.keep)", None);
    assert_eq!(
        push(&mut i, 0, None, Some(r#"{"keep":false}"#)),
        Ok(Pushed::Rows)
    );
    let batch = i.batcher.take().expect("the offset alone makes a batch");
    assert!(batch.rows.is_empty());
    assert_eq!(batch.records, 1);
}

#[test]
fn a_refused_record_adds_nothing_until_its_letter_is_durable() {
    let mut i = ingest(".", None);
    let refusal = push(&mut i, 3, None, Some("{not json")).expect_err("invalid JSON");
    assert_eq!(refusal.reason, Reason::Decode);
    assert!(
        i.batcher.is_empty(),
        "nothing of a refused record is in the batch"
    );
    let tp = TopicPartition::new("t", 0);
    let rec = Incoming {
        tp: &tp,
        offset: 3,
        timestamp_ms: None,
        key: None,
        payload: Some(b"{not json"),
        new_key: None,
    };
    i.push_refused(&rec, || raw(3));
    let batch = i.batcher.take().expect("its offset");
    assert!(batch.rows.is_empty());
    assert_eq!(batch.offsets[&tp].last, 3);
}

#[test]
fn a_transform_error_refuses_the_record_and_leaves_no_row_behind() {
    let mut i = ingest(".a, error(\"boom\")", None);
    let refusal = push(&mut i, 0, None, Some(r#"{"a":{"x":1}}"#)).expect_err("error()");
    assert_eq!(refusal.reason, Reason::Transform);
    assert!(
        i.batcher.is_empty(),
        "the first output of a failing record is not kept"
    );
    assert_eq!(
        push(&mut i, 1, None, Some(r#"{"b":1}"#)),
        Err(Refusal {
            reason: Reason::Transform,
            ..refusal
        })
    );
}

#[test]
fn a_tombstone_is_skipped_or_deletes_the_row_its_key_names() {
    let mut skip = ingest(".", None);
    assert_eq!(
        push(&mut skip, 0, Some("7"), None),
        Ok(Pushed::SkippedTombstone)
    );
    let batch = skip.batcher.take().expect("its offset");
    assert!(batch.rows.is_empty() && batch.deletes.is_empty());

    let mut delete = ingest(".", Some(&["id"]));
    assert_eq!(push(&mut delete, 0, Some("7"), None), Ok(Pushed::Delete));
    let batch = delete.batcher.take().expect("a delete");
    assert_eq!(batch.deletes.len(), 1);
    let refusal = push(&mut delete, 1, None, None).expect_err("no key names no row");
    assert_eq!(refusal.reason, Reason::Key);
}

#[test]
fn binary_kafka_keys_become_hex() {
    use serde_json::json;
    assert_eq!(kafka_key(Some(b"ab")), json!("ab"));
    assert_eq!(kafka_key(Some(&[0xff, 0x01])), json!("0xff01"));
    assert_eq!(kafka_key(None), serde_json::Value::Null);
}

#[test]
fn lineage_columns_say_where_each_row_came_from() {
    let cfg = crate::config::LineageConfig {
        topic: Some("src_topic".into()),
        partition: Some("src_partition".into()),
        offset: Some("src_offset".into()),
        timestamp: Some("src_ts".into()),
        ingested_at: Some("read_at".into()),
        ..Default::default()
    };
    let stamp = lineage::Stamp::new(cfg)
        .expect("columns set")
        .with_clock(|| 1_500);
    let mut i = ingest(".[]", None).with_lineage(Some(stamp));
    assert_eq!(
        push(&mut i, 9, None, Some(r#"[{"id":1},{"id":2}]"#)),
        Ok(Pushed::Rows)
    );
    let batch = i.batcher.take().expect("a batch");
    let expected = |id: i64| {
        serde_json::json!({"id": id, "src_topic": "t", "src_partition": 0, "src_offset": 9,
                           "src_ts": "1970-01-01T00:00:01Z", "read_at": "1970-01-01T00:00:01.5Z"})
    };
    let rows: Vec<serde_json::Value> = batch
        .rows
        .iter()
        .cloned()
        .map(serde_json::Value::Object)
        .collect();
    assert_eq!(rows, [expected(1), expected(2)], "every row of the record");
}

#[test]
fn a_change_streams_rows_carry_their_source_position_and_commit_time() {
    let cfg = crate::config::LineageConfig {
        source_database: Some("src_db".into()),
        source_table: Some("src_table".into()),
        source_position: Some("src_lsn".into()),
        source_committed_at: Some("src_committed".into()),
        ..Default::default()
    };
    let chain = Chain::compile(&[]).expect("no steps");
    let batcher = Batcher::new(&BatchConfig::default(), false, false);
    let mut i = Ingest::new(Decoder::new(DecodeFormat::Debezium, None), chain, batcher)
        .with_lineage(lineage::Stamp::new(cfg));
    let event = r#"{"before":null,"after":{"id":1},"op":"c","source":{"db":"shop","schema":"public","table":"orders","lsn":28581784,"ts_ms":1700000000123}}"#;
    assert_eq!(
        push(&mut i, 0, Some(r#"{"id":1}"#), Some(event)),
        Ok(Pushed::Rows)
    );
    let row = serde_json::Value::Object(i.batcher.take().expect("a batch").rows[0].clone());
    assert_eq!(
        row,
        serde_json::json!({"id": 1, "src_db": "shop", "src_table": "public.orders",
                           "src_lsn": "28581784", "src_committed": "2023-11-14T22:13:20.123Z"})
    );
}

fn change_stream(truncates: bool) -> Ingest {
    let chain = Chain::compile(&[]).expect("no steps");
    let batcher = Batcher::new(&BatchConfig::default(), false, false);
    Ingest::new(Decoder::new(DecodeFormat::Debezium, None), chain, batcher)
        .with_deletes(Some(vec!["id".into()]))
        .with_truncates(truncates)
}

const TRUNCATE: &str = r#"{"op":"t","source":{"table":"orders"},"ts_ms":1}"#;

#[test]
fn a_truncate_is_refused_unless_applying_truncates_is_on() {
    let mut off = change_stream(false);
    let refusal = push(&mut off, 0, None, Some(TRUNCATE)).expect_err("refused");
    assert_eq!(refusal.reason, Reason::Decode);
    assert!(
        refusal.message.contains("sink.apply_truncate"),
        "{refusal:?}"
    );
    assert!(off.batcher.is_empty(), "nothing of it in the batch");
}

#[test]
fn a_truncate_marks_where_the_table_is_emptied_and_counts_its_offset() {
    let mut on = change_stream(true);
    let create = |id: i64| format!(r#"{{"before":null,"after":{{"id":{id}}},"op":"c"}}"#);
    assert_eq!(push(&mut on, 0, None, Some(&create(1))), Ok(Pushed::Rows));
    assert_eq!(push(&mut on, 1, None, Some(TRUNCATE)), Ok(Pushed::Truncate));
    assert_eq!(push(&mut on, 2, None, Some(&create(2))), Ok(Pushed::Rows));
    let batch = on.batcher.take().expect("a batch");
    assert_eq!(batch.truncate_at, Some(1), "after the first row");
    assert_eq!(batch.records, 3);
    let range = batch.offsets.values().next().expect("one partition");
    assert_eq!((range.first, range.last), (0, 2));
}

#[test]
fn the_ordering_guard_stamps_each_change_and_skips_tombstones() {
    let mut guarded = change_stream(false).with_order(Some("pos".into()));
    let seq = r#""sequence":"[\"100\",\"120\"]""#;
    let update = format!(r#"{{"before":null,"after":{{"id":1}},"op":"u","source":{{{seq}}}}}"#);
    let delete = format!(r#"{{"before":{{"id":2}},"after":null,"op":"d","source":{{{seq}}}}}"#);
    let read = r#"{"before":null,"after":{"id":3},"op":"r","source":{"snapshot":"true","sequence":"[null,\"90\"]"}}"#;
    let order = "0000000000000000010000000000000000000120";
    assert_eq!(push(&mut guarded, 0, None, Some(&update)), Ok(Pushed::Rows));
    assert_eq!(
        push(&mut guarded, 1, Some(r#"{"id":2}"#), Some(&delete)),
        Ok(Pushed::Delete)
    );
    assert_eq!(
        push(&mut guarded, 2, Some(r#"{"id":2}"#), None),
        Ok(Pushed::SkippedTombstone),
        "the delete before it carried the order"
    );
    assert_eq!(push(&mut guarded, 3, None, Some(read)), Ok(Pushed::Rows));
    let batch = guarded.batcher.take().expect("a batch");
    let rows: Vec<serde_json::Value> = batch
        .rows
        .into_iter()
        .map(serde_json::Value::Object)
        .collect();
    assert_eq!(
        rows,
        [
            serde_json::json!({"id": 1, "pos": order}),
            serde_json::json!({"id": 3, "pos": null}),
        ],
        "a snapshot read has no order"
    );
    assert_eq!(batch.deletes.len(), 1);
    assert_eq!(
        serde_json::Value::Object(batch.deletes[0].key.clone()),
        serde_json::json!({"id": 2, "pos": order})
    );
    assert_eq!(batch.records, 4);
}

#[test]
fn a_key_change_starts_a_batch_and_copies_the_row_to_its_new_key() {
    let mut cdc = change_stream(false);
    let create = |id: i64| format!(r#"{{"before":null,"after":{{"id":{id}}},"op":"c"}}"#);
    assert_eq!(push(&mut cdc, 0, None, Some(&create(1))), Ok(Pushed::Rows));
    let delete = r#"{"before":{"id":8},"after":null,"op":"d"}"#;
    assert_eq!(
        push_key_change(&mut cdc, 1, r#"{"id":8}"#, r#"{"id":1000}"#, delete),
        Ok(Pushed::Delete)
    );
    assert_eq!(
        push(&mut cdc, 2, None, Some(&create(1000))),
        Ok(Pushed::Rows)
    );
    assert!(
        cdc.batcher.is_full(),
        "the batch before the key change waits"
    );
    let before = cdc.batcher.take().expect("the batch before");
    assert_eq!((before.records, before.moves.len()), (1, 0));
    let with = cdc.batcher.take().expect("the key change's batch");
    assert_eq!(with.records, 2);
    assert_eq!(
        with.moves,
        [tidemill_move(
            serde_json::json!({"id": 8}),
            serde_json::json!({"id": 1000})
        )]
    );
    assert_eq!(
        with.deletes.len(),
        1,
        "the old key is deleted after the copy"
    );
    assert_eq!(with.rows.len(), 1, "the create of the new key");
}

fn tidemill_move(from: serde_json::Value, to: serde_json::Value) -> crate::model::Move {
    let row = |v: serde_json::Value| v.as_object().expect("an object").clone();
    crate::model::Move {
        from: row(from),
        to: row(to),
    }
}
