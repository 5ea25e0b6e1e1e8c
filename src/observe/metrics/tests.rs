use super::*;
use crate::model::TopicPartition;

#[test]
fn metrics_render_counters_per_pipeline() {
    let s = Arc::new(Stats::default());
    Stats::add(&s.rows_loaded, 42);
    s.batch_seconds.observe(0.02);
    let text = metrics(&vec![("orders".to_string(), Arc::clone(&s))]);
    assert!(
        text.contains("tidemill_rows_loaded_total{pipeline=\"orders\"} 42"),
        "{text}"
    );
    assert!(
        text.contains("tidemill_batch_duration_seconds_bucket{pipeline=\"orders\",le=\"0.025\"} 1")
    );
    assert!(text.contains("# TYPE tidemill_batch_duration_seconds histogram"));
    assert!(text.contains("# TYPE tidemill_assigned_partitions gauge"));
    s.observe_stage(Stage::Commit, 0.002, 3);
    let text = metrics(&vec![("orders".to_string(), Arc::clone(&s))]);
    assert!(
        text.contains(
            "tidemill_stage_seconds_bucket{pipeline=\"orders\",stage=\"commit\",le=\"0.0025\"} 3"
        ),
        "{text}"
    );
    assert!(text.contains("tidemill_stage_seconds_count{pipeline=\"orders\",stage=\"kafka\"} 0"));
    assert!(text.contains("tidemill_db_retries_total{pipeline=\"orders\",class=\"conflict\"} 0"));
}

#[test]
fn lag_is_the_high_watermark_minus_the_committed_offset_of_owned_partitions() {
    let s = Arc::new(Stats::default());
    let (t0, t1) = (TopicPartition::new("t", 0), TopicPartition::new("t", 1));
    for (tp, next, owned) in [(&t0, 90, true), (&t1, 5, false)] {
        let p = s.partition(tp);
        p.committed_next.store(next, Ordering::Relaxed);
        p.owned.store(owned, Ordering::Relaxed);
        s.high_watermarks
            .lock()
            .expect("not poisoned")
            .insert(tp.clone(), 100);
    }
    let text = metrics(&vec![("p".to_string(), s)]);
    assert!(
        text.contains("tidemill_consumer_lag{pipeline=\"p\",topic=\"t\",partition=\"0\"} 10"),
        "{text}"
    );
    assert!(
        !text.contains("tidemill_consumer_lag{pipeline=\"p\",topic=\"t\",partition=\"1\"}"),
        "not owned: no lag reported"
    );
    assert!(text.contains(
        "tidemill_partition_committed_offset{pipeline=\"p\",topic=\"t\",partition=\"1\"} 5"
    ));
}
