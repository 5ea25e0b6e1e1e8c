//! Dead letters and fencing, against real Kafka and real databases: a batch
//! that can no longer commit (a newer owner claimed its partitions while this
//! member was paused) sends none of its dead letters — the owner that commits
//! those records sends its own — while the same batch under the current
//! generation sends each one.

mod common;

use common::db::{Kind, TestDb};
use common::kafka;
use common::{pipeline_toml, unique};
use std::collections::BTreeMap;
use std::sync::Arc;
use tidemill::config::SinkConfig;
use tidemill::db;
use tidemill::dead_letter::DeadLetters;
use tidemill::model::{Batch, OffsetRange, Origin, PartitionTally, RawRecord, TopicPartition};
use tidemill::observe::stats::Stats;
use tidemill::observe::trace::SpanNames;
use tidemill::sink::checkpoint::OffsetStore;
use tidemill::sink::writer::{self, WriterContext, WriterError};
use tidemill::sink::SinkError;
use tokio_util::sync::CancellationToken;

per_backend!(a_fenced_batch_sends_no_dead_letters_and_a_standing_one_does);

async fn a_fenced_batch_sends_no_dead_letters_and_a_standing_one_does(kind: Kind) {
    let db = TestDb::new(kind).await;
    db.exec("CREATE TABLE t (id BIGINT NOT NULL, n SMALLINT)")
        .await;
    let dlq = unique("dlq");
    kafka::create_topic(&dlq, 1).await;
    let cfg = sink_config(db.url());
    let tp = TopicPartition::new("topic", 0);
    let store = db::open(&cfg).await.expect("open sink").offset_store();
    store.ensure_table().await.expect("checkpoint table");
    let claim = |store: OffsetStore| {
        let tp = tp.clone();
        async move {
            store
                .claim("p", std::slice::from_ref(&tp))
                .await
                .expect("claim")[0]
                .generation
        }
    };
    let old = claim(store.clone()).await;
    let new = claim(store.clone()).await;
    assert!(new > old);

    // Row 2's n does not fit SMALLINT: the writer dead-letters it before the
    // batch's transaction.
    let fenced = write(&cfg, &dlq, store.clone(), batch(&tp, old)).await;
    assert!(
        matches!(fenced, Err(WriterError::Sink(SinkError::Fenced { .. }))),
        "{fenced:?}"
    );
    assert_eq!(kafka::high_watermarks(&dlq, 1), vec![0], "no letter sent");
    assert_eq!(db.scalar("SELECT count(*) FROM t").await, 0);

    write(&cfg, &dlq, store, batch(&tp, new))
        .await
        .expect("the current generation writes");
    assert_eq!(kafka::high_watermarks(&dlq, 1), vec![1], "its letter sent");
    assert_eq!(db.scalar("SELECT count(*) FROM t").await, 1);
    let letters = kafka::read_all(&dlq, 1);
    assert_eq!(letters[0].header("tidemill.error.class"), Some("data"));
}

fn sink_config(url: &str) -> SinkConfig {
    let text = pipeline_toml("t", "g", url, "t", "");
    tidemill::check::from_toml(&text).expect("config").pipelines["p"]
        .sink
        .clone()
}

/// Two records of partition `tp` built under `generation`: one that fits
/// the table, one whose `n` does not.
fn batch(tp: &TopicPartition, generation: i64) -> Batch {
    let values = [r#"{"id":1,"n":1}"#, r#"{"id":2,"n":99999}"#];
    let raw: Vec<RawRecord> = values
        .iter()
        .zip(0..)
        .map(|(v, offset)| RawRecord {
            origin: Origin {
                topic: tp.topic.clone(),
                partition: tp.partition,
                offset,
                timestamp_ms: None,
            },
            key: None,
            value: Some(v.as_bytes().to_vec()),
            headers: Vec::new(),
        })
        .collect();
    let rows = values
        .iter()
        .map(|v| serde_json::from_str(v).expect("object"))
        .collect();
    Batch {
        id: 1,
        rows,
        row_source: vec![0, 1],
        raw,
        offsets: BTreeMap::from([(tp.clone(), OffsetRange { first: 0, last: 1 })]),
        generations: BTreeMap::from([(tp.clone(), generation)]),
        records: 2,
        partitions: vec![tp.clone()],
        tally: BTreeMap::from([(
            tp.clone(),
            PartitionTally {
                rows: 2,
                newest_ms: None,
            },
        )]),
        ..Batch::default()
    }
}

/// Runs a writer over one batch, exactly-once with a dead-letter topic.
async fn write(
    cfg: &SinkConfig,
    dlq: &str,
    offsets: OffsetStore,
    batch: Batch,
) -> Result<(), WriterError> {
    let sink = db::open(cfg).await.expect("open sink");
    let mut client = rdkafka::ClientConfig::new();
    client.set("bootstrap.servers", kafka::brokers());
    let letters = DeadLetters::new(&client, dlq, "p").expect("dead-letter producer");
    let ctx = WriterContext {
        cfg: cfg.clone(),
        pipeline: Some("p".into()),
        offsets: Some(offsets),
        dead_letters: Some(Arc::new(letters)),
        abort: CancellationToken::new(),
        stats: Arc::new(Stats::default()),
        engine: None,
        names: SpanNames {
            pipeline: "p".into(),
            group: "g".into(),
        },
    };
    let (batches, rx) = tokio::sync::mpsc::channel(1);
    let (acks, _acked) = std::sync::mpsc::channel();
    batches.send(batch).await.expect("writer listening");
    drop(batches);
    writer::run(sink, ctx, rx, acks).await
}
