//! `/status`: what the status page (`/`, [`PAGE`]) shows, as JSON — per
//! pipeline its health, counters, owned partitions with lag, freshness and
//! last commit, dead letters by reason with the newest ones, retries with
//! the last database error, and the last minutes' throughput and per-stage
//! latency from [`History`].
//!
//! Contract: read-only, built from the same [`Stats`] as `/metrics`; it holds
//! no configuration (no URL, no credential) — only names, counts, positions
//! and the messages the logs already carry.

use crate::observe::history::{History, Point};
use crate::observe::metrics::Registry;
use crate::observe::recent::{ErrorNote, LetterNote};
use crate::observe::stats::{PartitionStats, RetryKind, Stage, Stats};
use serde_json::{json, Map, Value};
use std::sync::atomic::Ordering;

/// The status page: one self-contained HTML file (no external assets).
pub const PAGE: &str = include_str!("page.html");

/// The JSON document of `/status` at `now_ms`; `ready` answers each
/// pipeline's readiness as `/readyz` does.
pub fn status(
    registry: &Registry,
    history: &History,
    now_ms: u64,
    ready: impl Fn(&Stats) -> Result<(), &'static str>,
) -> String {
    let pipelines: Vec<Value> = registry
        .iter()
        .map(|(name, stats)| {
            json!({
                "name": name,
                "ready": ready(stats).err(),
                "counters": counters(stats),
                "partitions": partitions(stats, now_ms as i64),
                "dead_letters": {
                    "by_reason": stats.recent.by_reason(),
                    "latest": stats.recent.letters().iter().map(letter).collect::<Vec<_>>(),
                },
                "db_error": stats.recent.last_db_error().as_ref().map(db_error),
                "history": history.points(name).iter().map(point).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "now_ms": now_ms,
        "stages": Stage::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        "pipelines": pipelines,
    })
    .to_string()
}

fn counters(s: &Stats) -> Value {
    let retries: Map<String, Value> = RetryKind::ALL
        .iter()
        .zip(&s.retries)
        .map(|(k, n)| (k.as_str().to_string(), Stats::get(n).into()))
        .collect();
    json!({
        "records_in": Stats::get(&s.records_in),
        "rows_loaded": Stats::get(&s.rows_loaded),
        "rows_deleted": Stats::get(&s.rows_deleted),
        "records_committed": Stats::get(&s.records_done),
        "batches": Stats::get(&s.batches),
        "dead_lettered": Stats::get(&s.dead_lettered),
        "dead_letter_retries": Stats::get(&s.dead_letter_retries),
        "records_late": Stats::get(&s.records_late),
        "retries": retries,
        "state_cache_hits": Stats::get(&s.state_cache_hits),
        "state_loads": Stats::get(&s.state_loads),
        "fenced": Stats::get(&s.fenced),
        "rebalances": Stats::get(&s.rebalances),
        "assigned_partitions": Stats::get(&s.assigned_partitions),
        "batches_in_flight": Stats::get(&s.batches_in_flight),
        "source_paused": s.source_paused.load(Ordering::Relaxed),
        "sink_failing": s.sink_failing.load(Ordering::Relaxed),
    })
}

/// The partitions this member owns now, in order.
fn partitions(s: &Stats, now_ms: i64) -> Vec<Value> {
    let highs = s
        .high_watermarks
        .lock()
        .map(|h| h.clone())
        .unwrap_or_default();
    s.partitions()
        .into_iter()
        .filter(|(_, p)| p.is_owned())
        .map(|(tp, p)| {
            let high = highs.get(&tp).copied();
            partition(&tp.topic, tp.partition, &p, high, now_ms)
        })
        .collect()
}

fn partition(topic: &str, id: i32, p: &PartitionStats, high: Option<i64>, now: i64) -> Value {
    let at = p.committed_at_ms.load(Ordering::Relaxed);
    json!({
        "topic": topic,
        "partition": id,
        "records_in": p.records_in.load(Ordering::Relaxed),
        "rows_loaded": p.rows_loaded.load(Ordering::Relaxed),
        "dead_lettered": p.dead_lettered.load(Ordering::Relaxed),
        "committed_offset": p.committed(),
        "high_watermark": high,
        "lag": p.lag(high),
        "freshness_ms": p.freshness_ms(now),
        "last_commit_ms": (at > 0).then_some(at),
    })
}

fn letter(l: &LetterNote) -> Value {
    json!({
        "at_ms": l.at_ms,
        "reason": l.reason,
        "topic": l.topic,
        "partition": l.partition,
        "offset": l.offset,
        "message": l.message,
    })
}

fn db_error(e: &ErrorNote) -> Value {
    json!({ "at_ms": e.at_ms, "class": e.class, "message": e.message })
}

fn point(p: &Point) -> Value {
    let round = |ms: f64| (ms * 1000.0).round() / 1000.0;
    json!({
        "at_ms": p.at_ms,
        "records_in_per_s": round(p.records_in_per_s),
        "rows_per_s": round(p.rows_per_s),
        "dead_letters": p.dead_letters,
        "retries": p.retries,
        "stages": p.stages.iter().map(|s| json!({
            "count": s.count,
            "mean_ms": round(s.mean_ms),
            "p50_ms": round(s.p50_ms),
            "p99_ms": round(s.p99_ms),
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Origin, TopicPartition};
    use std::sync::Arc;

    #[test]
    fn the_status_shows_owned_partitions_letters_errors_and_the_last_minutes() {
        let stats = Arc::new(Stats::default());
        let registry = vec![("orders".to_string(), Arc::clone(&stats))];
        let (mine, gone) = (TopicPartition::new("t", 0), TopicPartition::new("t", 1));
        let p = stats.partition(&mine);
        p.owned.store(true, Ordering::Relaxed);
        p.committed_next.store(40, Ordering::Relaxed);
        p.newest_committed_ms.store(9_000, Ordering::Relaxed);
        p.committed_at_ms.store(9_500, Ordering::Relaxed);
        stats.partition(&gone);
        stats
            .high_watermarks
            .lock()
            .expect("watermarks")
            .insert(mine.clone(), 100);
        let origin = Origin {
            topic: "t".into(),
            partition: 0,
            offset: 7,
            timestamp_ms: None,
        };
        stats.dead_letter_sent(&origin, "decode", "expected value at line 1");
        stats.recent.db_error(9_800, "connection", "pool timed out");
        let history = History::default();
        history.sample(&registry, 8_000);
        Stats::add(&stats.records_in, 50);
        history.sample(&registry, 10_000);
        let doc: Value = serde_json::from_str(&status(&registry, &history, 10_000, |_| {
            Err("not yet in its consumer group")
        }))
        .expect("JSON");
        let p = &doc["pipelines"][0];
        assert_eq!(p["name"], "orders");
        assert_eq!(p["ready"], "not yet in its consumer group");
        let parts = p["partitions"].as_array().expect("partitions");
        assert_eq!(parts.len(), 1, "only owned partitions: {parts:?}");
        assert_eq!(
            (
                &parts[0]["lag"],
                &parts[0]["freshness_ms"],
                &parts[0]["last_commit_ms"]
            ),
            (&json!(60), &json!(1_000), &json!(9_500))
        );
        assert_eq!(p["dead_letters"]["by_reason"]["decode"], 1);
        assert_eq!(p["dead_letters"]["latest"][0]["offset"], 7);
        assert_eq!(p["counters"]["dead_lettered"], 1);
        assert_eq!(p["db_error"]["message"], "pool timed out");
        assert_eq!(p["history"][0]["records_in_per_s"], 25.0);
        assert_eq!(
            p["history"][0]["stages"].as_array().map(Vec::len),
            Some(Stage::ALL.len())
        );
        assert_eq!(doc["stages"][0], "kafka");
    }
}
