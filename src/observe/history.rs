//! The last minutes of every pipeline, for the status page: the counters and
//! stage histograms sampled every [`EVERY`], kept for [`KEPT`] samples, and
//! turned into per-interval points (throughput, and per stage the records
//! that passed it with their mean, p50 and p99).
//!
//! Contract: bounded (at most [`KEPT`] samples per pipeline); sampling reads
//! the same atomics `/metrics` reads and never blocks a stage. A point covers
//! the interval between two samples, so its stage figures are those of the
//! records whose batch committed in it; `kafka` through `commit` add up to
//! their end-to-end latency, as in `tidemill_stage_seconds`.

use crate::observe::metrics::Registry;
use crate::observe::stats::{Stage, Stats, STAGE_BUCKETS};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

/// How often the counters are sampled.
pub const EVERY: Duration = Duration::from_secs(2);
/// Samples kept per pipeline: five minutes.
pub const KEPT: usize = 150;

/// One stage's histogram at a sample: cumulative bucket counts, count, sum (s).
type StageSnapshot = (Vec<u64>, u64, f64);

#[derive(Debug, Clone)]
struct Sample {
    at_ms: u64,
    records_in: u64,
    rows_loaded: u64,
    dead_lettered: u64,
    retries: u64,
    stages: Vec<StageSnapshot>,
}

impl Sample {
    fn of(stats: &Stats, at_ms: u64) -> Self {
        Self {
            at_ms,
            records_in: Stats::get(&stats.records_in),
            rows_loaded: Stats::get(&stats.rows_loaded),
            dead_lettered: Stats::get(&stats.dead_lettered),
            retries: stats.retries_total(),
            stages: stats.stage_seconds.iter().map(|h| h.snapshot()).collect(),
        }
    }
}

/// One stage over one interval.
#[derive(Debug, Clone, PartialEq)]
pub struct StagePoint {
    /// Records observed in the stage.
    pub count: u64,
    /// Mean, p50 and p99 in ms (0 when no record passed).
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// The interval ending at `at_ms`.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub at_ms: u64,
    pub records_in_per_s: f64,
    pub rows_per_s: f64,
    pub dead_letters: u64,
    pub retries: u64,
    /// In [`Stage::ALL`]'s order.
    pub stages: Vec<StagePoint>,
}

/// See the module's contract.
#[derive(Debug, Default)]
pub struct History {
    samples: Mutex<BTreeMap<String, VecDeque<Sample>>>,
}

impl History {
    /// Samples every pipeline of `registry` at `at_ms`.
    pub fn sample(&self, registry: &Registry, at_ms: u64) {
        let mut all = self.lock();
        for (name, stats) in registry {
            let samples = all.entry(name.clone()).or_default();
            if samples.len() == KEPT {
                samples.pop_front();
            }
            samples.push_back(Sample::of(stats, at_ms));
        }
    }

    /// The intervals between `pipeline`'s samples, oldest first.
    pub fn points(&self, pipeline: &str) -> Vec<Point> {
        let all = self.lock();
        let Some(samples) = all.get(pipeline) else {
            return Vec::new();
        };
        samples
            .iter()
            .zip(samples.iter().skip(1))
            .map(|(a, b)| point(a, b))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, VecDeque<Sample>>> {
        // Only samples live here: a poisoned lock still holds usable ones.
        self.samples
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn point(a: &Sample, b: &Sample) -> Point {
    let seconds = (b.at_ms.saturating_sub(a.at_ms) as f64 / 1000.0).max(1e-3);
    let rate = |x: u64, y: u64| y.saturating_sub(x) as f64 / seconds;
    Point {
        at_ms: b.at_ms,
        records_in_per_s: rate(a.records_in, b.records_in),
        rows_per_s: rate(a.rows_loaded, b.rows_loaded),
        dead_letters: b.dead_lettered.saturating_sub(a.dead_lettered),
        retries: b.retries.saturating_sub(a.retries),
        stages: Stage::ALL
            .iter()
            .map(|s| stage_point(&a.stages[s.index()], &b.stages[s.index()]))
            .collect(),
    }
}

fn stage_point(a: &StageSnapshot, b: &StageSnapshot) -> StagePoint {
    let count = b.1.saturating_sub(a.1);
    if count == 0 {
        return StagePoint {
            count,
            mean_ms: 0.0,
            p50_ms: 0.0,
            p99_ms: 0.0,
        };
    }
    let buckets: Vec<u64> =
        b.0.iter()
            .zip(&a.0)
            .map(|(y, x)| y.saturating_sub(*x))
            .collect();
    StagePoint {
        count,
        mean_ms: (b.2 - a.2).max(0.0) / count as f64 * 1000.0,
        p50_ms: quantile(0.5, &buckets, count) * 1000.0,
        p99_ms: quantile(0.99, &buckets, count) * 1000.0,
    }
}

/// The `q` quantile, in seconds, of `count` values counted in cumulative
/// `buckets` with [`STAGE_BUCKETS`]' bounds, interpolated within its bucket
/// (as Prometheus' `histogram_quantile`); beyond the last bound, that bound.
pub fn quantile(q: f64, buckets: &[u64], count: u64) -> f64 {
    let rank = q * count as f64;
    let mut below = (0.0, 0u64);
    for (bound, &cum) in STAGE_BUCKETS.iter().zip(buckets) {
        if cum as f64 >= rank {
            let (lower, before) = below;
            let within = (cum - before).max(1) as f64;
            return lower + (bound - lower) * ((rank - before as f64) / within).clamp(0.0, 1.0);
        }
        below = (*bound, cum);
    }
    below.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn registry() -> (Registry, Arc<Stats>) {
        let stats = Arc::new(Stats::default());
        (vec![("p".to_string(), Arc::clone(&stats))], stats)
    }

    #[test]
    fn a_point_is_what_happened_between_two_samples() {
        let (registry, stats) = registry();
        let history = History::default();
        Stats::add(&stats.records_in, 100);
        history.sample(&registry, 10_000);
        Stats::add(&stats.records_in, 400);
        Stats::add(&stats.rows_loaded, 200);
        stats.observe_stage(Stage::Write, 0.004, 90);
        stats.observe_stage(Stage::Write, 0.2, 10);
        history.sample(&registry, 12_000);
        let points = history.points("p");
        assert_eq!(points.len(), 1);
        let p = &points[0];
        assert_eq!(p.at_ms, 12_000);
        assert_eq!((p.records_in_per_s, p.rows_per_s), (200.0, 100.0));
        let write = &p.stages[Stage::Write.index()];
        assert_eq!(write.count, 100);
        assert!((write.mean_ms - 23.6).abs() < 1e-6, "{write:?}");
        assert!(write.p50_ms > 2.5 && write.p50_ms <= 5.0, "{write:?}");
        assert!(write.p99_ms > 100.0 && write.p99_ms <= 250.0, "{write:?}");
        assert_eq!(p.stages[Stage::Kafka.index()].count, 0);
    }

    #[test]
    fn only_the_last_five_minutes_are_kept() {
        let (registry, _) = registry();
        let history = History::default();
        for i in 0..KEPT as u64 + 20 {
            history.sample(&registry, i * 2_000);
        }
        let points = history.points("p");
        assert_eq!(points.len(), KEPT - 1);
        assert_eq!(points[0].at_ms, 21 * 2_000);
        assert!(history.points("unknown").is_empty());
    }

    #[test]
    fn a_quantile_beyond_the_last_bound_is_that_bound() {
        let mut buckets = vec![0; STAGE_BUCKETS.len()];
        assert_eq!(quantile(0.99, &buckets, 3), 300.0);
        buckets.iter_mut().for_each(|b| *b = 4);
        assert!(quantile(0.5, &buckets, 4) <= 0.0005);
    }
}
