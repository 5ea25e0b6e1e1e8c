//! `make bench` / `make bench-quick`: tidemill against its physical limits
//! (raw consume, raw COPY, consume→COPY) and its peers (Flink, Quix Streams)
//! on the same generated records in the same run, every output verified
//! against the generator's expected results. See docs/benchmarks.md.
//!
//!   cargo run --release --example bench -- [--quick] [--records N] [--dist uniform|zipf] [--no-peers] [--keep]
//!                                          [--rate-only R]   (rate mode alone, steps sized from R records/s)
//!
//! `BENCH_TIDEMILL_LOG` sets the tidemill runs' RUST_LOG (default `warn`); logs land in target/bench/runs/.
//!
//! Needs Kafka and PostgreSQL on 127.0.0.1 and the release tidemill next to this binary
//! (`<target dir>/release/tidemill`, so `CARGO_TARGET_DIR` is honoured).
//! Exits non-zero when any verification fails or a tidemill run fails.
// Unit tests (`cargo test --example bench`) build the modules without main.
#![cfg_attr(test, allow(dead_code))]

mod baselines;
mod chart;
mod db;
mod gen;
mod kafka;
mod latency;
mod machine;
mod otlp;
mod peers;
mod pressure;
mod report;
mod report_cpu;
mod runner;

use anyhow::Context as _;
use gen::{Dist, Expected, Generator};
use report::Results;
use runner::{Spec, Workload};
use std::sync::Mutex;
use std::time::Instant;

static PROGRESS: Mutex<Option<(Instant, Instant)>> = Mutex::new(None);

/// One status line on stderr, at most once per second.
pub fn progress(msg: &str) {
    let Ok(mut p) = PROGRESS.lock() else { return };
    let (start, last) = p.get_or_insert((
        Instant::now(),
        Instant::now() - std::time::Duration::from_secs(2),
    ));
    if last.elapsed().as_secs_f64() >= 1.0 {
        eprintln!("[bench {:>4}s] {msg}", start.elapsed().as_secs());
        *last = Instant::now();
    }
}

/// Starts a measured phase: announces it, then [`db::settle`]s the machine
/// (every database of the run so far).
async fn measured(run: &Run, msg: &str) -> anyhow::Result<()> {
    phase(msg);
    let secs = db::settle(&run.dbs).await?;
    eprintln!("[bench] settled in {secs:.1} s (VACUUM, CHECKPOINT, sync)");
    Ok(())
}

fn phase(msg: &str) {
    if let Ok(mut p) = PROGRESS.lock() {
        let (start, _) = p.get_or_insert((Instant::now(), Instant::now()));
        eprintln!("[bench {:>4}s] == {msg}", start.elapsed().as_secs());
    }
}

struct Args {
    quick: bool,
    records: u64,
    dist: Dist,
    peers: bool,
    keep: bool,
    /// `--rate-only R`: skip the backlog phases; rate mode with steps sized
    /// from R records/s (for studying latency without the long phases).
    rate_only: Option<f64>,
    /// `--latency-at R`: rate mode without the steps, only the latency window
    /// at R records/s (A/B comparisons at one rate; not a 50%-load figure).
    latency_at: Option<f64>,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        quick: false,
        records: 0,
        dist: Dist::Uniform,
        peers: true,
        keep: false,
        rate_only: None,
        latency_at: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(x) = it.next() {
        match x.as_str() {
            "--quick" => a.quick = true,
            "--records" => a.records = it.next().context("--records N")?.parse()?,
            "--dist" => {
                a.dist = if it.next().as_deref() == Some("zipf") {
                    Dist::Zipf
                } else {
                    Dist::Uniform
                }
            }
            "--no-peers" => a.peers = false,
            "--keep" => a.keep = true,
            "--rate-only" => a.rate_only = Some(it.next().context("--rate-only R")?.parse()?),
            "--latency-at" => {
                let r: f64 = it.next().context("--latency-at R")?.parse()?;
                (a.rate_only, a.latency_at) = (Some(r * 2.0), Some(r));
            }
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    if a.records == 0 {
        a.records = if a.quick { 100_000 } else { 2_000_000 };
    }
    a.peers &= !a.quick;
    Ok(a)
}

struct Run {
    id: String,
    dbs: Vec<String>,
}

impl Run {
    async fn db(&mut self, name: &str, tables: bool) -> anyhow::Result<String> {
        let db = format!("{}_{name}", self.id);
        db::create_database(&db).await?;
        if tables {
            db::create_tables(&db).await?;
        }
        self.dbs.push(db.clone());
        Ok(db)
    }

    fn spec(&self, name: &str, w: Workload, eo: bool, db: String, topic: &str) -> Spec {
        Spec {
            name: format!("{}_{name}", self.id),
            workload: w,
            exactly_once: eo,
            tracing: None,
            topic: topic.into(),
            db,
            metrics_port: None,
        }
    }
}

async fn baselines(
    run: &mut Run,
    r: &mut Results,
    topic: &str,
    base: i64,
    a: &Args,
) -> anyhow::Result<()> {
    measured(run, "baseline: raw consume").await?;
    let (t, n) = (topic.to_string(), a.records);
    r.raw_consume =
        Some(tokio::task::spawn_blocking(move || baselines::raw_consume(&t, n)).await??);
    let db = run.db("rawcopy", true).await?;
    measured(run, "baseline: raw COPY").await?;
    r.raw_copy = Some(baselines::raw_copy(&db, a.dist, a.records, base).await?);
    let (db, t) = (run.db("cc", true).await?, topic.to_string());
    measured(run, "baseline: consume→COPY").await?;
    r.consume_copy =
        Some(tokio::task::spawn_blocking(move || baselines::consume_copy(&t, &db, n)).await??);
    Ok(())
}

async fn tidemill_runs(
    run: &mut Run,
    r: &mut Results,
    topic: &str,
    exp: &Expected,
    a: &Args,
) -> anyhow::Result<()> {
    let mut plan = vec![
        (Workload::W1, true),
        (Workload::W1, false),
        (Workload::W2, true),
        (Workload::W3, true),
    ];
    if !a.quick {
        plan.push((Workload::W2M, true));
    }
    for (w, eo) in plan {
        let name = format!(
            "{}_{}",
            w.name().chars().take(2).collect::<String>().to_lowercase(),
            if eo { "eo" } else { "alo" }
        );
        let name = if w == Workload::W2M {
            "w2m_eo".to_string()
        } else {
            name
        };
        let db = run.db(&name, true).await?;
        measured(
            run,
            &format!(
                "tidemill {} {}",
                w.name(),
                if eo { "exactly-once" } else { "at-least-once" }
            ),
        )
        .await?;
        match runner::drain(run.spec(&name, w, eo, db, topic), a.records, exp).await {
            Ok(d) => r.drains.push(d),
            Err(e) => r
                .failures
                .push(format!("tidemill {} {name}: {e:#}", w.name())),
        }
    }
    for w in [Workload::W2, Workload::W3]
        .into_iter()
        .filter(|w| w.stateful())
    {
        r.not_applicable.push((
            w.name().into(),
            "at-least-once".into(),
            "stateful steps require delivery = \"exactly-once\" (config validation)".into(),
        ));
    }
    let (port, counts) = otlp::start().await?;
    if let Some(off) = r.drain(Workload::W1, true).cloned() {
        r.tracing.push(("off".into(), off, 0, 0));
    }
    for (label, ratio) in [("on, 1%", 0.01), ("on, 100%", 1.0)] {
        let name = format!("w1_trace{}", (ratio * 100.0) as u32);
        let db = run.db(&name, true).await?;
        measured(run, &format!("tidemill W1 tracing {label}")).await?;
        let mut spec = run.spec(&name, Workload::W1, true, db, topic);
        spec.tracing = Some((ratio, port));
        let before = counts.get();
        match runner::drain(spec, a.records, exp).await {
            Ok(d) => {
                let after = counts.get();
                r.tracing
                    .push((label.into(), d, after.0 - before.0, after.1 - before.1));
            }
            Err(e) => r
                .failures
                .push(format!("tidemill W1 tracing {label}: {e:#}")),
        }
    }
    Ok(())
}

async fn rate(run: &mut Run, r: &mut Results, a: &Args) -> anyhow::Result<()> {
    let top = match (a.rate_only, r.drain(Workload::W1, true)) {
        (Some(top), _) => top,
        (None, Some(d)) => d.rate(),
        (None, None) => {
            r.failures
                .push("rate mode skipped: no W1 drain rate to size the steps".into());
            return Ok(());
        }
    };
    let (fractions, step_secs, latency_secs): (&[f64], f64, f64) = if a.quick {
        (&[0.3, 0.6, 0.9], 4.0, 5.0)
    } else {
        (&[0.3, 0.5, 0.7, 0.8, 0.9, 1.0, 1.1], 10.0, 20.0)
    };
    let plan = latency::Plan {
        rates: match a.latency_at {
            Some(_) => Vec::new(),
            None => fractions
                .iter()
                .map(|f| (top * f / 1000.0).round() * 1000.0)
                .collect(),
        },
        step_secs,
        latency_secs,
        latency_at: a.latency_at,
    };
    let topic = format!("{}_rate", run.id);
    kafka::create_topic(&topic).await?;
    let db = run.db("rate", true).await?;
    let mut spec = run.spec("rate", Workload::W1, true, db, &topic);
    // tidemill's own batch metrics are read before and after the latency window.
    spec.metrics_port = Some(
        std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port(),
    );
    measured(
        run,
        &format!(
            "rate mode: steps {:?} records/s, {step_secs} s each",
            plan.rates
        ),
    )
    .await?;
    let state = (Generator::new(a.dist), Expected::new(false));
    match latency::session(spec, &plan, state).await {
        Ok(rr) => r.rate = Some(rr),
        Err(e) => r.failures.push(format!("rate mode: {e:#}")),
    }
    Ok(())
}

async fn peers_runs(run: &mut Run, r: &mut Results, topic: &str, n: u64) -> anyhow::Result<()> {
    phase("peers: setup");
    if let Err(e) = tokio::task::spawn_blocking(peers::setup).await? {
        r.peers_note = Some(format!("Peers not run: {e}"));
        return Ok(());
    }
    for w in ["W1", "W2", "W3"] {
        for p in ["flink", "quix"] {
            let db = run.db(&format!("{p}_{}", w.to_lowercase()), false).await?;
            measured(run, &format!("peer {p} {w}")).await?;
            let t = topic.to_string();
            r.peers
                .push(tokio::task::spawn_blocking(move || peers::run(p, w, &t, n, &db)).await?);
        }
    }
    Ok(())
}

async fn bench(a: &Args, run: &mut Run, r: &mut Results) -> anyhow::Result<()> {
    if a.rate_only.is_some() {
        return rate(run, r, a).await;
    }
    let topic = format!("{}_backlog", run.id);
    phase(&format!(
        "producing {} records ({}) to {topic}",
        a.records,
        a.dist.name()
    ));
    kafka::create_topic(&topic).await?;
    let (t, n, dist) = (topic.clone(), a.records, a.dist);
    let (secs, base, exp) = tokio::task::spawn_blocking(move || {
        let (mut g, mut e) = (Generator::new(dist), Expected::new(true));
        kafka::produce_backlog(&t, &mut g, n, &mut e).map(|(s, b)| (s, b, e))
    })
    .await??;
    r.produce_secs = secs;
    baselines(run, r, &topic, base, a).await?;
    tidemill_runs(run, r, &topic, &exp, a).await?;
    drop(exp);
    rate(run, r, a).await?;
    if a.peers {
        peers_runs(run, r, &topic, a.records).await?;
    } else {
        r.peers_note = Some("Peers not run (`make bench-quick` / --no-peers).".into());
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = args()?;
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let mut run = Run {
        id: format!("bench_{secs}"),
        dbs: Vec::new(),
    };
    let mut r = Results {
        command: format!(
            "cargo run --release --example bench -- {}",
            std::env::args().skip(1).collect::<Vec<_>>().join(" ")
        ),
        records: a.records,
        dist: Some(a.dist),
        ..Results::default()
    };
    if let Err(e) = bench(&a, &mut run, &mut r).await {
        r.failures.push(format!("{e:#}"));
    }
    let dir = runner::out_dir();
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("report.md"), r.markdown())?;
    if let Err(e) = chart::draw(&r, &dir.join("report.png")) {
        eprintln!("[bench] chart skipped: {e:#}");
    }
    if !a.keep {
        for db in &run.dbs {
            let _ = db::drop_database(db).await;
        }
        let _ = kafka::delete_topics(&[format!("{}_backlog", run.id), format!("{}_rate", run.id)])
            .await;
    }
    println!(
        "\n{}\nFull report: target/bench/report.md, chart: target/bench/report.png",
        r.summary()
    );
    for f in &r.failures {
        println!("FAILED: {f}");
    }
    if !r.verified() {
        anyhow::bail!("benchmark verification failed (see target/bench/report.md)");
    }
    Ok(())
}
