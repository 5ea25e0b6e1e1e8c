//! After each step, with the producer paused: the run waits for the fleet to
//! catch up, then checks exactly — every produced record in the append table
//! once, the running totals equal to an independent computation, and each
//! group's Kafka-committed offsets equal to the database checkpoint.

use crate::db::Db;
use crate::watch::KEYS;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Default)]
pub struct Verdict {
    pub produced: i64,
    pub lost: i64,
    pub duplicated: i64,
    pub totals_wrong: i64,
    /// Partitions whose Kafka-committed offset differs from the checkpoint.
    pub offsets_differ: i64,
    pub settle_ms: i64,
}

impl Verdict {
    pub fn exact(&self) -> bool {
        self.lost == 0 && self.duplicated == 0 && self.totals_wrong == 0 && self.offsets_differ == 0
    }
}

pub struct Target<'a> {
    pub db: &'a Db,
    pub brokers: &'a str,
    pub topic: &'a str,
    pub partitions: i32,
    /// (pipeline, group) pairs.
    pub groups: &'a [(String, String)],
}

/// Waits (up to `timeout`) for both pipelines' checkpoints to reach the high
/// watermarks and Kafka's offsets to equal them, then counts what is wrong.
pub async fn settle(t: &Target<'_>, produced: i64, timeout: Duration) -> anyhow::Result<Verdict> {
    let started = Instant::now();
    let deadline = started + timeout;
    let high = high_watermarks(t.brokers, t.topic, t.partitions)?;
    loop {
        let mut done = true;
        for (pipeline, group) in t.groups {
            let checkpoint = padded(t.db.checkpoints(pipeline).await?, t.partitions);
            done &=
                checkpoint == high && committed(t.brokers, group, t.topic, t.partitions)? == high;
        }
        if done || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await; // polling interval
    }
    let mut v = Verdict {
        produced,
        settle_ms: started.elapsed().as_millis() as i64,
        ..Verdict::default()
    };
    let distinct =
        t.db.scalar(&format!(
            "SELECT count(DISTINCT id) FROM events_log WHERE id < {produced}"
        ))
        .await?;
    let rows = t.db.scalar("SELECT count(*) FROM events_log").await?;
    v.lost = produced - distinct;
    v.duplicated = rows - distinct;
    let totals =
        t.db.pairs("SELECT k, n * 1000000 + total FROM totals ORDER BY k")
            .await?;
    let expected = expected_totals(produced);
    // Rows that differ, plus rows one side has and the other lacks.
    v.totals_wrong = expected
        .iter()
        .zip(&totals)
        .filter(|(want, got)| want != got)
        .count() as i64
        + (expected.len() as i64 - totals.len() as i64).abs();
    for (pipeline, group) in t.groups {
        let checkpoint = padded(t.db.checkpoints(pipeline).await?, t.partitions);
        let kafka = committed(t.brokers, group, t.topic, t.partitions)?;
        v.offsets_differ += checkpoint
            .iter()
            .zip(&kafka)
            .filter(|(a, b)| a != b)
            .count() as i64;
    }
    Ok(v)
}

/// (k, n * 1e6 + sum) for records `0..produced`, computed independently.
fn expected_totals(produced: i64) -> Vec<(i64, i64)> {
    let mut n = vec![0i64; KEYS as usize];
    let mut sum = vec![0i64; KEYS as usize];
    for i in 0..produced {
        n[(i % KEYS) as usize] += 1;
        sum[(i % KEYS) as usize] += i % 97;
    }
    (0..KEYS)
        .filter(|k| n[*k as usize] > 0)
        .map(|k| (k, n[k as usize] * 1_000_000 + sum[k as usize]))
        .collect()
}

fn padded(rows: Vec<(i64, i64)>, partitions: i32) -> Vec<i64> {
    // No checkpoint row yet counts as offset 0, as no commit does in Kafka.
    let mut out = vec![0; partitions as usize];
    for (p, next) in rows {
        if let Some(slot) = out.get_mut(p as usize) {
            *slot = next;
        }
    }
    out
}

pub fn high_watermarks(brokers: &str, topic: &str, partitions: i32) -> anyhow::Result<Vec<i64>> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    (0..partitions)
        .map(|p| Ok(c.fetch_watermarks(topic, p, Duration::from_secs(10))?.1))
        .collect()
}

fn committed(brokers: &str, group: &str, topic: &str, partitions: i32) -> anyhow::Result<Vec<i64>> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let offsets = c.committed_offsets(tpl, Duration::from_secs(10))?;
    Ok((0..partitions)
        .map(
            |p| match offsets.find_partition(topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => o,
                _ => 0,
            },
        )
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_totals_count_and_sum_each_key() {
        let t = expected_totals(KEYS + 1);
        assert_eq!(t.len(), KEYS as usize);
        assert_eq!(t[0], (0, 2 * 1_000_000 + (KEYS % 97)));
        assert_eq!(t[1], (1, 1_000_000 + 1));
    }
}
