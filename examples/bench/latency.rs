//! Rate mode: one tidemill process on an empty topic, fed open loop at
//! increasing rates to find the highest rate where lag stays flat, then at
//! 50% of that rate with a latency probe.
//!
//! Latency of a record = the moment its partition's stored next offset in
//! `tidemill_offsets` is first seen past it (polled every ~1 ms on a dedicated
//! connection) − its scheduled send time. So it includes producer, broker,
//! tidemill and the database commit, and a stalled sender cannot hide it.

use crate::db;
use crate::gen::{Expected, Generator};
use crate::kafka::{self, Deliveries, RateRun};
use crate::machine::{Snapshot, Split};
use crate::pressure::{self, Stalls};
use crate::runner::{Proc, Spec};
use anyhow::{bail, Context as _};
use hdrhistogram::Histogram;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Step {
    pub rate: f64,
    pub achieved: f64,
    /// Lag growth over the second half of the step, records/s (≈0 when flat).
    pub lag_slope: f64,
    pub drained_secs: f64,
    pub flat: bool,
}

#[derive(Debug, Clone)]
pub struct Latency {
    pub rate: f64,
    /// Records actually sent per second (below `rate` if the sender stalled).
    pub achieved: f64,
    pub records: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    /// The two legs of it: scheduled send → broker acknowledged (generator,
    /// producer, broker) and broker acknowledged → commit visible (tidemill).
    pub to_broker_ms: (f64, f64),
    pub in_tidemill_ms: (f64, f64),
    /// Medians of the first and the last fifth of the records sent.
    pub early_p50_ms: f64,
    pub late_p50_ms: f64,
    pub poll_ms: f64,
    /// tidemill's own `/metrics` over the window (None if unreadable).
    pub batches: Option<BatchTotals>,
    pub window_secs: f64,
    /// The whole machine's CPU over the window, by whom (the generator and
    /// the probe are in the harness, counted as other).
    pub machine: Split,
    /// Time tasks waited for a core or for IO over the window (None without PSI).
    pub stalls: Option<Stalls>,
}

/// Totals of tidemill's batch metrics; the difference of two scrapes is what
/// a window did.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BatchTotals {
    pub batches: f64,
    pub rows: f64,
    /// Summed batch durations: receipt by the writer → committed.
    pub write_secs: f64,
    /// Batches that took at most 10 ms and at most 25 ms (histogram buckets).
    pub within_10ms: f64,
    pub within_25ms: f64,
}

impl BatchTotals {
    fn since(self, before: Self) -> Self {
        Self {
            batches: self.batches - before.batches,
            rows: self.rows - before.rows,
            write_secs: self.write_secs - before.write_secs,
            within_10ms: self.within_10ms - before.within_10ms,
            within_25ms: self.within_25ms - before.within_25ms,
        }
    }

    /// Batches slower than 10 ms and slower than 25 ms.
    pub fn slow(&self) -> (f64, f64) {
        (
            self.batches - self.within_10ms,
            self.batches - self.within_25ms,
        )
    }

    /// From the Prometheus text: every pipeline's series summed.
    fn parse(text: &str) -> Self {
        let mut t = Self::default();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(v) = value.parse::<f64>() else {
                continue;
            };
            let (name, labels) = series.split_once('{').unwrap_or((series, ""));
            match name {
                "tidemill_batch_duration_seconds_bucket" if labels.contains("le=\"0.01\"") => {
                    t.within_10ms += v
                }
                "tidemill_batch_duration_seconds_bucket" if labels.contains("le=\"0.025\"") => {
                    t.within_25ms += v
                }
                "tidemill_batch_duration_seconds_count" => t.batches += v,
                "tidemill_batch_duration_seconds_sum" => t.write_secs += v,
                "tidemill_batch_rows_sum" => t.rows += v,
                _ => {}
            }
        }
        t
    }
}

/// Reads tidemill's `/metrics` (HTTP/1.1, one response per connection).
async fn scrape(port: u16) -> anyhow::Result<BatchTotals> {
    let text = tokio::task::spawn_blocking(move || -> anyhow::Result<String> {
        use std::io::{Read as _, Write as _};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")?;
        let mut body = String::new();
        s.read_to_string(&mut body)?;
        Ok(body)
    })
    .await??;
    Ok(BatchTotals::parse(&text))
}

async fn scrape_if(port: Option<u16>) -> Option<BatchTotals> {
    match scrape(port?).await {
        Ok(t) => Some(t),
        Err(e) => {
            eprintln!("[bench] tidemill /metrics not read: {e:#}");
            None
        }
    }
}

#[derive(Debug, Clone)]
pub struct RateReport {
    pub spec: Spec,
    pub steps: Vec<Step>,
    pub max_sustainable: f64,
    pub latency: Option<Latency>,
    pub verdict: db::Verdict,
}

pub struct Plan {
    pub rates: Vec<f64>,
    pub step_secs: f64,
    pub latency_secs: f64,
    /// `--latency-at R`: no steps, the latency window at R records/s.
    pub latency_at: Option<f64>,
}

/// Sends one open-loop step on a blocking thread while `watch` runs; returns
/// the generator and expectations back with the run.
async fn send_step<F, Fut>(
    topic: &str,
    state: (Generator, Expected),
    rate: f64,
    secs: f64,
    watch: F,
) -> anyhow::Result<((Generator, Expected), RateRun, Fut::Output)>
where
    F: FnOnce(Arc<Deliveries>, tokio::task::JoinHandle<()>) -> Fut,
    Fut: std::future::Future,
{
    let deliveries = Arc::new(Deliveries::default());
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (topic, d) = (topic.to_string(), deliveries.clone());
    let sender = tokio::task::spawn_blocking(move || {
        let (mut gen, mut exp) = state;
        let r = kafka::produce_rate(&topic, &mut gen, rate, secs, &mut exp, d);
        let _ = tx.send(((gen, exp), r));
    });
    let watched = watch(deliveries, sender).await;
    let (state, run) = rx.await.context("sender thread panicked")?;
    Ok((state, run?, watched))
}

fn slope(samples: &[(f64, f64)]) -> f64 {
    let n = samples.len() as f64;
    if n < 3.0 {
        return 0.0;
    }
    let (mx, my) = samples
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x / n, b + y / n));
    let (num, den) = samples.iter().fold((0.0, 0.0), |(a, b), (x, y)| {
        (a + (x - mx) * (y - my), b + (x - mx) * (x - mx))
    });
    if den == 0.0 {
        0.0
    } else {
        num / den
    }
}

async fn wait_committed(conn: &mut sqlx::PgConnection, spec: &Spec, want: i64) -> Option<f64> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        if db::committed(conn, &spec.name).await >= want {
            return Some(start.elapsed().as_secs_f64());
        }
        tokio::time::sleep(Duration::from_millis(20)).await; // polling interval
    }
    None
}

async fn step(
    conn: &mut sqlx::PgConnection,
    spec: &Spec,
    state: (Generator, Expected),
    rate: f64,
    secs: f64,
) -> anyhow::Result<((Generator, Expected), Step)> {
    let before = db::committed(conn, &spec.name).await;
    let url = db::url(&spec.db);
    let pipeline = spec.name.clone();
    let (state, run, samples) = send_step(&spec.topic, state, rate, secs, |d, sender| async move {
        let mut c = sqlx::Connection::connect(&url).await.ok();
        let (t0, mut samples) = (Instant::now(), Vec::new());
        while !sender.is_finished() {
            if let Some(c) = c.as_mut() {
                let done = db::committed(c, &pipeline).await - before;
                let sent = d.count.load(Ordering::Relaxed) as f64;
                samples.push((t0.elapsed().as_secs_f64(), sent - done as f64));
            }
            crate::progress(&format!("rate step {rate:.0}/s"));
            tokio::time::sleep(Duration::from_millis(100)).await; // sampling interval
        }
        samples
    })
    .await?;
    let half: Vec<(f64, f64)> = samples
        .iter()
        .copied()
        .filter(|(t, _)| *t >= secs / 2.0)
        .collect();
    let lag_slope = slope(&half);
    let drained = wait_committed(conn, spec, before + i64::try_from(run.sent)?).await;
    // Kept up: sent on schedule, and either the lag did not grow by more than
    // 10% of the rate over the second half, or — for short steps only, whose
    // slope is noisy — what was left drained within 1 s of the last send.
    let quick_drain = secs < 8.0 && drained.is_some_and(|d| d <= 1.0);
    let flat = run.achieved >= 0.95 * rate
        && drained.is_some()
        && (lag_slope <= 0.1 * rate || quick_drain);
    let s = Step {
        rate,
        achieved: run.achieved,
        lag_slope,
        drained_secs: drained.unwrap_or(f64::INFINITY),
        flat,
    };
    Ok((state, s))
}

/// (partition, next offset, when seen) per change, and the mean poll period in ms.
type Probed = anyhow::Result<(Vec<(i32, i64, Instant)>, f64)>;

/// Commit events (partition, next offset, when seen), polled every ~1 ms
/// until the stored offsets add up to `target` (set once sending is done).
fn probe(url: String, pipeline: String, target: Arc<AtomicI64>) -> tokio::task::JoinHandle<Probed> {
    tokio::spawn(async move {
        let mut c: sqlx::PgConnection = sqlx::Connection::connect(&url).await?;
        let (mut last, mut events, mut polls) = (HashMap::new(), Vec::new(), 0u64);
        let started = Instant::now();
        while last.values().map(|&v: &i64| v.max(0)).sum::<i64>() < target.load(Ordering::Relaxed) {
            if started.elapsed() > Duration::from_secs(600) {
                bail!("latency probe: commits stopped short of the records sent");
            }
            let rows = db::next_offsets(&mut c, &pipeline).await;
            let now = Instant::now();
            for (p, next) in rows {
                if last.insert(p, next) != Some(next) {
                    events.push((p, next, now));
                }
            }
            polls += 1;
            tokio::time::sleep(Duration::from_millis(1)).await; // probe resolution
        }
        let poll_ms = started.elapsed().as_secs_f64() * 1000.0 / polls.max(1) as f64;
        Ok((events, poll_ms))
    })
}

/// Latency histograms (µs).
struct Hists {
    /// Scheduled send → commit visible.
    total: Histogram<u64>,
    /// Scheduled send → broker acknowledged.
    to_broker: Histogram<u64>,
    /// Broker acknowledged → commit visible.
    in_tidemill: Histogram<u64>,
}

/// The latency histograms, and the median of the first and of the last
/// fifth of the records in send order (a trend shows up there).
fn latencies(run: &RateRun, events: &[(i32, i64, Instant)]) -> anyhow::Result<(Hists, f64, f64)> {
    let mut by_p: HashMap<i32, Vec<(i64, Instant)>> = HashMap::new();
    for &(p, next, at) in events {
        by_p.entry(p).or_default().push((next, at));
    }
    let new = || Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3);
    let mut hs = Hists {
        total: new()?,
        to_broker: new()?,
        in_tidemill: new()?,
    };
    let acked = run
        .deliveries
        .acked
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?;
    let mut by_idx = vec![0u64; acked.len()];
    for &(idx, p, off, acked_at) in acked.iter() {
        let commits = by_p.get(&p).context("a partition never committed")?;
        let i = commits.partition_point(|(next, _)| *next <= off);
        let (_, at) = commits.get(i).context("a record never committed")?;
        let sched = run.t0 + run.scheduled(idx);
        let us = at.saturating_duration_since(sched).as_micros() as u64;
        hs.total.saturating_record(us);
        let leg = |a: Instant, b: Instant| a.saturating_duration_since(b).as_micros() as u64;
        hs.to_broker.saturating_record(leg(acked_at, sched));
        hs.in_tidemill.saturating_record(leg(*at, acked_at));
        if let Some(slot) = by_idx.get_mut(idx) {
            *slot = us;
        }
    }
    let fifth = (by_idx.len() / 5).max(1);
    let median_ms = |s: &[u64]| {
        let mut v = s.to_vec();
        v.sort_unstable();
        v.get(v.len() / 2).map_or(0.0, |&x| x as f64 / 1000.0)
    };
    let early = median_ms(&by_idx[..fifth.min(by_idx.len())]);
    let late = median_ms(&by_idx[by_idx.len().saturating_sub(fifth)..]);
    Ok((hs, early, late))
}

/// [`db::settle`] before a step or the latency window, so neither pays for
/// the writeback or vacuuming left by the one before.
async fn settle(spec: &Spec) -> anyhow::Result<()> {
    let secs = db::settle(std::slice::from_ref(&spec.db)).await?;
    crate::progress(&format!(
        "settled in {secs:.1} s (VACUUM, CHECKPOINT, sync)"
    ));
    Ok(())
}

/// The whole rate session: steps, then latency at 50% of the best flat rate.
pub async fn session(
    spec: Spec,
    plan: &Plan,
    state: (Generator, Expected),
) -> anyhow::Result<RateReport> {
    let mut conn = db::connect(&spec.db).await?;
    let proc = Proc::spawn(&spec)?;
    let claimed = Instant::now();
    while db::next_offsets(&mut conn, &spec.name).await.len() < crate::gen::PARTITIONS as usize {
        if claimed.elapsed() > Duration::from_secs(60) {
            bail!("{}: partitions not claimed within 60 s", spec.name);
        }
        tokio::time::sleep(Duration::from_millis(50)).await; // polling interval
    }
    let (mut state, mut steps, mut best) = (state, Vec::new(), 0.0f64);
    for &rate in &plan.rates {
        settle(&spec).await?;
        let (s, st) = step(&mut conn, &spec, state, rate, plan.step_secs).await?;
        state = s;
        let flat = st.flat;
        steps.push(st);
        if !flat {
            break;
        }
        best = rate;
    }
    let mut latency = None;
    if let Some(rate) = plan.latency_at.or((best > 0.0).then_some(best / 2.0)) {
        settle(&spec).await?;
        let target = Arc::new(AtomicI64::new(i64::MAX));
        let before = db::committed(&mut conn, &spec.name).await;
        let probe = probe(db::url(&spec.db), spec.name.clone(), target.clone());
        let machine = Snapshot::take(proc.pid());
        let stalls = pressure::Sampler::start();
        let (metrics_before, window) = (scrape_if(spec.metrics_port).await, Instant::now());
        let (s, run, ()) = send_step(
            &spec.topic,
            state,
            rate,
            plan.latency_secs,
            |_, sender| async move {
                let _ = sender.await;
            },
        )
        .await?;
        state = s;
        target.store(before + i64::try_from(run.sent)?, Ordering::Relaxed);
        let (events, poll_ms) = probe.await??;
        let window_secs = window.elapsed().as_secs_f64();
        let machine = machine.until(&Snapshot::take(proc.pid()));
        let stalls = stalls.finish();
        let batches = match (metrics_before, scrape_if(spec.metrics_port).await) {
            (Some(before), Some(after)) => Some(after.since(before)),
            _ => None,
        };
        let (hs, early_p50_ms, late_p50_ms) = latencies(&run, &events)?;
        let h = &hs.total;
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        let p50_p99 = |h: &Histogram<u64>| {
            let q = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
            (q(0.5), q(0.99))
        };
        latency = Some(Latency {
            rate,
            achieved: run.achieved,
            records: h.len(),
            p50_ms: ms(0.5),
            p99_ms: ms(0.99),
            p999_ms: ms(0.999),
            max_ms: h.max() as f64 / 1000.0,
            to_broker_ms: p50_p99(&hs.to_broker),
            in_tidemill_ms: p50_p99(&hs.in_tidemill),
            early_p50_ms,
            late_p50_ms,
            poll_ms,
            batches,
            window_secs,
            machine,
            stalls,
        });
    }
    proc.stop()?;
    let verdict = db::verify_w1(&mut conn, &state.1).await?;
    Ok(RateReport {
        spec,
        steps,
        max_sustainable: best,
        latency,
        verdict,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_totals_sum_every_pipeline_and_ignore_other_series() {
        let text = "# HELP tidemill_batch_rows rows\n\
            tidemill_batch_rows_sum{pipeline=\"a\"} 600\n\
            tidemill_batch_rows_sum{pipeline=\"b\"} 400\n\
            tidemill_batch_rows_count{pipeline=\"a\"} 2\n\
            tidemill_batch_duration_seconds_bucket{pipeline=\"a\",le=\"0.005\"} 1\n\
            tidemill_batch_duration_seconds_bucket{pipeline=\"a\",le=\"0.01\"} 2\n\
            tidemill_batch_duration_seconds_bucket{pipeline=\"a\",le=\"0.025\"} 2\n\
            tidemill_batch_duration_seconds_bucket{pipeline=\"a\",le=\"0.05\"} 3\n\
            tidemill_batch_duration_seconds_sum{pipeline=\"a\"} 0.0625\n\
            tidemill_batch_duration_seconds_count{pipeline=\"a\"} 3\n";
        let t = BatchTotals::parse(text);
        assert_eq!(
            t,
            BatchTotals {
                batches: 3.0,
                rows: 1000.0,
                write_secs: 0.0625,
                within_10ms: 2.0,
                within_25ms: 2.0,
            }
        );
        assert_eq!(t.slow(), (1.0, 1.0));
        let before = BatchTotals {
            batches: 1.0,
            rows: 100.0,
            write_secs: 0.0025,
            within_10ms: 1.0,
            within_25ms: 1.0,
        };
        assert_eq!(t.since(before).batches, 2.0);
        assert_eq!(t.since(before).rows, 900.0);
        assert_eq!(t.since(before).slow(), (1.0, 1.0));
    }

    #[test]
    fn latency_percentiles_come_from_the_first_commit_past_each_record() {
        // 1,000 records at 1,000/s on one partition, committed ten at a time
        // 5 ms after the last of the ten was scheduled: record i waits
        // (9 - i % 10) + 5 ms, so 100 records each at 5..=14 ms.
        let run = RateRun {
            t0: Instant::now(),
            rate: 1000.0,
            sent: 1000,
            achieved: 1000.0,
            deliveries: Arc::new(Deliveries::default()),
        };
        let mut events = Vec::new();
        for i in 0..1000usize {
            let mut acked = run.deliveries.acked.lock().expect("not poisoned");
            let sched = run.t0 + run.scheduled(i);
            acked.push((i, 0, i64::try_from(i).expect("small"), sched));
            if i % 10 == 9 {
                let at = run.t0 + run.scheduled(i) + Duration::from_millis(5);
                events.push((0, i64::try_from(i + 1).expect("small"), at));
            }
        }
        let (hs, early, late) = latencies(&run, &events).expect("every record committed");
        let h = &hs.total;
        // Acknowledged at its scheduled time: all of it is tidemill's leg.
        assert_eq!(hs.to_broker.max(), 0);
        assert_eq!(hs.in_tidemill.max(), h.max());
        assert!(
            // upper median of 5..=14 ms, twenty each
            (early - 10.0).abs() < 0.02 && (late - 10.0).abs() < 0.02,
            "{early} {late}"
        );
        assert_eq!(h.len(), 1000);
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        assert!((ms(0.0) - 5.0).abs() < 0.02, "min {}", ms(0.0));
        assert!((ms(0.5) - 9.0).abs() < 0.02, "p50 {}", ms(0.5));
        assert!((ms(0.99) - 14.0).abs() < 0.02, "p99 {}", ms(0.99));
        assert!((ms(1.0) - 14.0).abs() < 0.02, "max {}", ms(1.0));
    }

    #[test]
    fn lag_slope_is_zero_when_flat_and_the_growth_rate_when_growing() {
        let flat: Vec<(f64, f64)> = (0..20).map(|i| (f64::from(i) * 0.1, 500.0)).collect();
        assert!(slope(&flat).abs() < 1e-9);
        let growing: Vec<(f64, f64)> = (0..20)
            .map(|i| (f64::from(i) * 0.1, 200.0 * f64::from(i)))
            .collect();
        assert!((slope(&growing) - 2000.0).abs() < 1e-6);
    }
}
