use super::*;

fn raw() -> RawRecord {
    RawRecord {
        origin: crate::model::Origin {
            topic: "t".into(),
            partition: 0,
            offset: 0,
            timestamp_ms: None,
        },
        key: None,
        value: Some(b"{}".to_vec()),
        headers: vec![],
    }
}

fn no_meta() -> (Option<i64>, serde_json::Value) {
    (None, serde_json::Value::Null)
}

fn cfg(max_rows: usize) -> BatchConfig {
    BatchConfig {
        max_rows,
        max_bytes: 1000,
        max_linger: Duration::from_secs(60),
        ..BatchConfig::default()
    }
}

#[test]
fn batch_is_full_at_max_rows_and_ids_increase() {
    let mut b = Batcher::new(&cfg(2), true, false);
    let tp = TopicPartition::new("t", 0);
    b.push(&tp, 0, None, 10, vec![Row::new()], raw, no_meta);
    assert!(!b.is_full());
    b.push(&tp, 1, None, 10, vec![], raw, no_meta);
    assert!(b.is_full());
    let first = b.take().expect("two records pushed");
    assert_eq!((first.id, first.records, first.rows.len()), (1, 2, 1));
    assert_eq!((first.raw.len(), first.row_source.clone()), (1, vec![0]));
    assert!(b.take().is_none());
    b.push(&tp, 2, None, 10, vec![], raw, no_meta);
    assert_eq!(b.take().expect("one record").id, 2);
}

#[test]
fn original_bytes_are_kept_only_when_asked() {
    let mut b = Batcher::new(&cfg(10), false, false);
    b.push(
        &TopicPartition::new("t", 0),
        0,
        None,
        10,
        vec![Row::new()],
        raw,
        no_meta,
    );
    let batch = b.take().expect("one record");
    assert_eq!(
        (batch.rows.len(), batch.raw.len(), batch.row_source.len()),
        (1, 0, 0)
    );
}

#[test]
fn meta_follows_each_row_when_kept() {
    let mut b = Batcher::new(&cfg(10), true, true);
    let (t0, t1) = (TopicPartition::new("t", 0), TopicPartition::new("t", 1));
    b.push(&t1, 7, None, 1, vec![Row::new(), Row::new()], raw, || {
        (Some(5), "k".into())
    });
    b.push(&t0, 3, None, 1, vec![Row::new()], raw, no_meta);
    let batch = b.take().expect("records");
    assert_eq!(batch.partitions, vec![t1, t0]);
    let parts: Vec<(u32, i64, Option<u32>)> = batch
        .meta
        .iter()
        .map(|m| (m.part, m.offset, m.raw))
        .collect();
    assert_eq!(
        parts,
        vec![(0, 7, Some(0)), (0, 7, Some(0)), (1, 3, Some(1))]
    );
    assert_eq!(batch.meta[0].key, serde_json::json!("k"));
}

#[test]
fn batch_is_full_at_max_bytes() {
    let mut b = Batcher::new(&cfg(100), true, false);
    b.push(
        &TopicPartition::new("t", 0),
        0,
        None,
        1000,
        vec![],
        raw,
        no_meta,
    );
    assert!(b.is_full());
}

#[test]
fn rows_and_newest_timestamp_are_tallied_per_partition() {
    let mut b = Batcher::new(&cfg(100), false, false);
    let (t0, t1) = (TopicPartition::new("t", 0), TopicPartition::new("t", 1));
    b.push(
        &t0,
        0,
        Some(7),
        1,
        vec![Row::new(), Row::new()],
        raw,
        no_meta,
    );
    b.push(&t0, 1, Some(5), 1, vec![], raw, no_meta);
    b.push(&t1, 0, None, 1, vec![Row::new()], raw, no_meta);
    let batch = b.take().expect("records");
    assert_eq!(batch.timestamps, vec![7, 5]);
    assert_eq!(
        (batch.tally[&t0].rows, batch.tally[&t0].newest_ms),
        (2, Some(7))
    );
    assert_eq!(
        (batch.tally[&t1].rows, batch.tally[&t1].newest_ms),
        (1, None)
    );
}

#[test]
fn linger_deadline_starts_with_first_record() {
    let mut b = Batcher::new(&cfg(100), true, false);
    assert!(b.deadline().is_none());
    b.push(
        &TopicPartition::new("t", 0),
        0,
        None,
        1,
        vec![],
        raw,
        no_meta,
    );
    let deadline = b.deadline().expect("open batch has a deadline");
    assert!(!b.is_due(deadline - Duration::from_millis(1)));
    assert!(b.is_due(deadline));
}
