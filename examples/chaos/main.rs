//! `make chaos` / `make chaos-quick`: the chaos soak. Two instances of
//! tidemill run three pipelines on one topic — an append table (stateless),
//! running totals and one-second tumbling windows (stateful) — against a
//! private Kafka broker and a private PostgreSQL or MariaDB server or an
//! SQLite file (`--db`), under a steady producer, while faults are injected
//! one after another in a seeded random order: SIGKILLs (≥ 50 in the full
//! run), SIGSTOPs past the session timeout, database restarts (≥ 5), the
//! database refusing connections (SQLite: its lock held), broker restarts
//! (≥ 3) and bursts of poison records. At the end everything is
//! checked exactly against the topic read back (see verify.rs): 0 lost,
//! 0 duplicated, aggregates and windows equal to an independent computation,
//! 0 poison records missing from any dead-letter topic. Any other figure
//! fails the run. Report: report.md in `--out` (default target/chaos).

mod db;
mod faults;
#[allow(dead_code)] // the fleet tool's instance control; chaos uses part of it
#[path = "../fleet/fleet.rs"]
mod fleet;
mod poison;
#[path = "../../tests/common/private_kafka.rs"]
mod private_kafka;
#[path = "../../tests/common/private_mariadb.rs"]
mod private_mariadb;
#[path = "../../tests/common/private_postgres.rs"]
mod private_postgres;
mod report;
mod verify;
mod world;

use anyhow::Context as _;
use faults::SESSION_TIMEOUT_S;
use fleet::Fleet;
use std::time::{Duration, Instant};
use world::{Producer, World};

const PARTITIONS: i32 = 6;
const INSTANCES: usize = 2;

/// A name for a private server's directory (as the tests' `unique`).
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        fastrand::u32(..1_000_000)
    )
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

struct Args {
    quick: bool,
    db: String,
    rate: u64,
    seed: u64,
    out: std::path::PathBuf,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        quick: false,
        db: "postgres".into(),
        rate: 400,
        seed: now_ms() as u64,
        out: "target/chaos".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--quick" => a.quick = true,
            "--db" => a.db = it.next().context("--db postgres|mariadb|sqlite")?,
            "--rate" => a.rate = it.next().context("--rate N")?.parse()?,
            "--seed" => a.seed = it.next().context("--seed N")?.parse()?,
            "--out" => a.out = it.next().context("--out DIR")?.into(),
            other => {
                anyhow::bail!("unknown argument {other} (--quick, --db postgres|mariadb|sqlite, --rate N, --seed N, --out DIR)")
            }
        }
    }
    Ok(a)
}

fn config(world: &World) -> String {
    let pipeline = |name: &str, table: &str, sink: &str, steps: &str| {
        format!(
            "[pipelines.{name}]\ntopics = [\"{topic}\"]\ngroup_id = \"chaos_{name}\"\n\
             [pipelines.{name}.kafka]\nbrokers = \"{brokers}\"\nsession_timeout = \"{SESSION_TIMEOUT_S}s\"\n\
             [pipelines.{name}.sink]\nurl = \"{url}\"\ntable = \"{table}\"\nretry_max = \"1s\"\n{sink}\n\
             [pipelines.{name}.batch]\nmax_linger = \"20ms\"\n\
             [pipelines.{name}.dead_letter]\ntopic = \"{dlq}\"\n{steps}\n",
            topic = world.topic,
            brokers = world.brokers(),
            url = world.db_url(),
            dlq = World::dead_letter_topic(name),
        )
    };
    let aggregate = |name: &str, window: &str| {
        format!(
            "[[pipelines.{name}.transforms]]\ntype = \"key\"\nfields = [\"k\"]\n\
             [[pipelines.{name}.transforms]]\ntype = \"aggregate\"\n\
             columns = {{ n = \"count()\", total = \"sum(v)\" }}\n{window}"
        )
    };
    format!(
        "[shutdown]\ngrace = \"10s\"\n[telemetry]\nlog_format = \"json\"\n{}{}{}",
        pipeline("log", "events_log", "", ""),
        pipeline(
            "totals",
            "totals",
            "mode = \"upsert\"\nkey_columns = [\"k\"]",
            &aggregate("totals", "")
        ),
        pipeline(
            "windows",
            "windows",
            "",
            &aggregate(
                "windows",
                "window = { kind = \"tumbling\", size = \"1s\", time_field = \"ts\", idle_timeout = \"20s\" }\n"
            )
        ),
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let a = args()?;
    std::fs::create_dir_all(&a.out)?;
    let started = Instant::now();
    println!(
        "chaos: seed {} ({} run); starting a private broker and database",
        a.seed,
        if a.quick { "quick" } else { "full" }
    );
    let mut world = World::start(&a.db, PARTITIONS).await?;
    let dir = a.out.join(unique("run"));
    std::fs::create_dir_all(&dir)?;
    let config_path = dir.join("tidemill.toml");
    std::fs::write(&config_path, config(&world))?;
    let mut fleet = Fleet::new(fleet::tidemill_binary()?, config_path, dir.clone(), false);
    let names: Vec<String> = (0..INSTANCES).map(|i| format!("tm-{i}")).collect();
    for n in &names {
        fleet.start(n)?;
    }
    for n in &names {
        tokio::task::block_in_place(|| fleet.wait_ready(n, Duration::from_secs(120)))?;
    }
    let producer = Producer::start(&world.brokers(), &world.topic, a.rate)?;
    faults::recovery(&world, &mut fleet, Duration::from_secs(120))
        .await?
        .context("the fleet never caught up before the first fault")?;
    let (mut injected, mut poison_id) = (Vec::new(), 1_000_000_000i64);
    for fault in faults::plan(a.quick, INSTANCES, world.server.restartable(), a.seed) {
        let at = started.elapsed();
        let t = Instant::now();
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(faults::inject(
                fault,
                &mut fleet,
                &mut world,
                &mut poison_id,
            ))
        })
        .with_context(|| fault.describe())?;
        let took = t.elapsed();
        let recovery = faults::recovery(&world, &mut fleet, Duration::from_secs(180)).await?;
        fleet.check_alive()?;
        println!(
            "chaos: {:>6.1} s  {} — recovered after {}",
            at.as_secs_f64(),
            fault.describe(),
            recovery.map_or("(not within 180 s)".into(), |d| format!(
                "{:.1} s",
                d.as_secs_f64()
            ))
        );
        injected.push(report::Injected {
            at,
            what: fault.describe(),
            took,
            recovery,
        });
    }
    let produced = tokio::task::block_in_place(|| producer.stop())?;
    println!("chaos: {produced} good records produced; waiting for the fleet to finish");
    faults::recovery(&world, &mut fleet, Duration::from_secs(180))
        .await?
        .context("the fleet did not catch up after the last fault")?;
    let records = tokio::task::block_in_place(|| {
        verify::read_back(&world.brokers(), &world.topic, PARTITIONS)
    })?;
    let windows = verify::window_count(&records);
    // The last windows close when their partitions have been idle for the idle timeout.
    let deadline = Instant::now() + Duration::from_secs(120);
    while verify::windows_loaded(&world).await != Some(windows) {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the last windows did not close within 120 s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await; // polling interval
    }
    let outcome = verify::check(&world, &records).await?;
    tokio::task::block_in_place(|| fleet.stop_all());
    let md = report::markdown(
        world.server.name(),
        a.seed,
        a.rate,
        &injected,
        &outcome,
        started.elapsed(),
    );
    std::fs::write(a.out.join("report.md"), &md)?;
    println!("{md}");
    anyhow::ensure!(
        outcome.exact() && injected.iter().all(|f| f.recovery.is_some()),
        "chaos soak failed (seed {}): see {}",
        a.seed,
        a.out.join("report.md").display()
    );
    println!(
        "chaos: 0 lost, 0 duplicated, 0 undead-lettered; report in {}",
        a.out.display()
    );
    Ok(())
}
