//! The end of a chaos run, checked exactly against the topic itself: every
//! record is read back from Kafka, the good ones give the expected append
//! table, running totals and windows (computed here, independently of
//! tidemill), and every poison record must be in each pipeline's dead-letter
//! topic (by its source partition and offset; repeats allowed, none missing).

use crate::db::Db;
use crate::faults::PIPELINES;
use crate::world::World;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::{Headers as _, Message as _};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// One record read back: where it is, its payload, its poison kind if any.
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub payload: Option<Vec<u8>>,
    pub poison: Option<String>,
    pub dead_letter: Option<(i32, i64, String)>,
}

#[derive(Debug, Default, Clone)]
pub struct Outcome {
    pub good: i64,
    pub poison: i64,
    pub lost: i64,
    /// Extra copies of good records in the append table.
    pub duplicated: i64,
    /// Rows of the append table that are no good record (e.g. poison loaded).
    pub unexpected: i64,
    /// The first few ids behind `lost`, `duplicated` and `unexpected`.
    pub examples: Vec<String>,
    pub totals_wrong: i64,
    pub windows_wrong: i64,
    /// Per pipeline: poison records missing from its dead-letter topic (or
    /// there without their reason).
    pub undead_lettered: BTreeMap<String, i64>,
    /// Per pipeline: good records found in its dead-letter topic.
    pub good_dead_lettered: BTreeMap<String, i64>,
}

impl Outcome {
    pub fn exact(&self) -> bool {
        self.lost == 0
            && self.duplicated == 0
            && self.unexpected == 0
            && self.totals_wrong == 0
            && self.windows_wrong == 0
            && self.undead_lettered.values().all(|n| *n == 0)
            && self.good_dead_lettered.values().all(|n| *n == 0)
    }
}

pub fn high_watermarks(brokers: &str, topic: &str, partitions: i32) -> anyhow::Result<Vec<i64>> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    (0..partitions)
        .map(|p| Ok(c.fetch_watermarks(topic, p, Duration::from_secs(30))?.1))
        .collect()
}

/// Every pipeline's checkpoint at or past `high` (false while the database is away).
pub async fn caught_up(world: &World, high: &[i64]) -> bool {
    let Ok(mut db) = Db::connect(&world.db_url()).await else {
        return false;
    };
    for pipeline in PIPELINES {
        let sql = format!(
            "SELECT {}, next_offset FROM tidemill_offsets WHERE pipeline = '{pipeline}'",
            db.bigint("partition_id")
        );
        let Ok(rows) = db.rows(&sql).await else {
            return false;
        };
        let at: BTreeMap<i64, i64> = rows.into_iter().map(|r| (r[0], r[1])).collect();
        let behind = high
            .iter()
            .enumerate()
            .any(|(p, h)| *h > 0 && at.get(&(p as i64)).copied().unwrap_or(0) < *h);
        if behind {
            return false;
        }
    }
    true
}

/// Reads `topic` from the start to its end (every partition).
pub fn read_back(brokers: &str, topic: &str, partitions: i32) -> anyhow::Result<Vec<Record>> {
    let high = high_watermarks(brokers, topic, partitions)?;
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("chaos_reader_{}", fastrand::u32(..)))
        .set("enable.auto.commit", "false")
        .set("fetch.max.bytes", "8000000")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    c.assign(&tpl)?;
    let want: i64 = high.iter().sum();
    let mut out = Vec::with_capacity(want as usize);
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    while (out.len() as i64) < want {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "read {} of {want} records of {topic}",
            out.len()
        );
        let Some(m) = c.poll(Duration::from_millis(500)) else {
            continue;
        };
        let m = m?;
        let header = |name: &str| {
            m.headers().and_then(|h| {
                h.iter()
                    .find(|x| x.key == name)
                    .and_then(|x| x.value)
                    .map(|v| String::from_utf8_lossy(v).to_string())
            })
        };
        let source = header("tidemill.source.partition")
            .zip(header("tidemill.source.offset"))
            .and_then(|(p, o)| Some((p.parse().ok()?, o.parse().ok()?)));
        out.push(Record {
            partition: m.partition(),
            offset: m.offset(),
            payload: m.payload().map(<[u8]>::to_vec),
            poison: header("chaos.poison"),
            dead_letter: source
                .map(|(p, o)| (p, o, header("tidemill.error.class").unwrap_or_default())),
        });
    }
    Ok(out)
}

/// A good record's (id, k, v, ts).
fn good(r: &Record) -> Option<(i64, i64, i64, i64)> {
    let v: Value = serde_json::from_slice(r.payload.as_deref()?).ok()?;
    let f = |name: &str| v.get(name).and_then(Value::as_i64);
    Some((f("id")?, f("k")?, f("v")?, f("ts")?))
}

/// How many windows the good records make (for waiting until the last
/// ones closed by idleness).
pub fn window_count(records: &[Record]) -> i64 {
    let keys: BTreeSet<(i64, i64)> = records
        .iter()
        .filter(|r| r.poison.is_none())
        .filter_map(good)
        .map(|(_, k, _, ts)| (k, ts.div_euclid(1000)))
        .collect();
    keys.len() as i64
}

pub async fn check(world: &World, records: &[Record]) -> anyhow::Result<Outcome> {
    let mut o = Outcome::default();
    let mut ids = BTreeSet::new();
    let mut totals: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    let mut windows: BTreeMap<(i64, i64), (i64, i64)> = BTreeMap::new();
    let (mut poison, mut good_at) = (BTreeSet::new(), BTreeSet::new());
    for r in records {
        match (good(r), &r.poison) {
            (Some((id, k, v, ts)), None) => {
                o.good += 1;
                good_at.insert((r.partition, r.offset));
                ids.insert(id);
                let t = totals.entry(k).or_default();
                *t = (t.0 + 1, t.1 + v);
                let w = windows.entry((k, ts.div_euclid(1000) * 1000)).or_default();
                *w = (w.0 + 1, w.1 + v);
            }
            (_, Some(kind)) if kind == "tombstone" => {}
            (_, Some(_)) => {
                o.poison += 1;
                poison.insert((r.partition, r.offset));
            }
            (None, None) => anyhow::bail!(
                "record {}@{} is neither good nor poison",
                r.partition,
                r.offset
            ),
        }
    }
    let mut db = Db::connect(&world.db_url()).await?;
    let sql = format!(
        "SELECT id, {} FROM events_log GROUP BY id",
        db.bigint("count(*)")
    );
    let loaded: BTreeMap<i64, i64> = db
        .rows(&sql)
        .await?
        .into_iter()
        .map(|r| (r[0], r[1]))
        .collect();
    let lost: Vec<i64> = ids
        .iter()
        .filter(|id| !loaded.contains_key(id))
        .copied()
        .collect();
    o.lost = lost.len() as i64;
    o.examples
        .extend(lost.iter().take(5).map(|id| format!("id {id} lost")));
    for (id, n) in &loaded {
        let (what, extra) = if ids.contains(id) {
            (&mut o.duplicated, n - 1)
        } else {
            (&mut o.unexpected, *n)
        };
        *what += extra;
        if extra > 0 && o.examples.len() < 10 {
            o.examples.push(format!("id {id} loaded {n} times"));
        }
    }
    let got = db.rows("SELECT k, n, total FROM totals ORDER BY k").await?;
    let want: Vec<Vec<i64>> = totals
        .into_iter()
        .map(|(k, (n, t))| vec![k, n, t])
        .collect();
    o.totals_wrong = differ(&want, &got);
    let got = db
        .rows("SELECT k, window_start, n, total FROM windows ORDER BY k, window_start")
        .await?;
    let want: Vec<Vec<i64>> = windows
        .into_iter()
        .map(|((k, s), (n, t))| vec![k, s, n, t])
        .collect();
    o.windows_wrong = differ(&want, &got);
    for pipeline in PIPELINES {
        let letters = read_back(&world.brokers(), &World::dead_letter_topic(pipeline), 1)?;
        // A letter counts only with its reason (the error class header).
        let lettered: BTreeSet<(i32, i64)> = letters
            .iter()
            .filter_map(|l| l.dead_letter.as_ref())
            .filter(|(_, _, class)| !class.is_empty())
            .map(|(p, off, _)| (*p, *off))
            .collect();
        o.undead_lettered
            .insert(pipeline.into(), poison.difference(&lettered).count() as i64);
        o.good_dead_lettered.insert(
            pipeline.into(),
            good_at.intersection(&lettered).count() as i64,
        );
    }
    Ok(o)
}

/// Rows that differ between two sorted lists, plus rows only one side has.
fn differ<T: Ord>(want: &[T], got: &[T]) -> i64 {
    let (w, g): (BTreeSet<&T>, BTreeSet<&T>) = (want.iter().collect(), got.iter().collect());
    w.symmetric_difference(&g).count() as i64 + (got.len() - g.len()) as i64
}

/// How many windows the table holds (None while the database is away).
pub async fn windows_loaded(world: &World) -> Option<i64> {
    let mut db = Db::connect(&world.db_url()).await.ok()?;
    let sql = format!("SELECT {}", db.bigint("count(*)"));
    let sql = format!("{sql} FROM windows");
    db.rows(&sql).await.ok()?.first().map(|r| r[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differ_counts_missing_extra_and_repeated_rows() {
        assert_eq!(differ(&[1, 2, 3], &[1, 2, 3]), 0);
        assert_eq!(differ(&[1, 2, 3], &[1, 3]), 1);
        assert_eq!(differ(&[1, 2], &[1, 2, 2]), 1);
        assert_eq!(differ(&[1, 2], &[1, 4]), 2);
    }
}
