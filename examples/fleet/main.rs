//! `make fleet` / `make fleet-quick`: what a running fleet goes through when
//! Kubernetes does what it does every day — scale, roll, kill a pod, pause
//! one past its session timeout — against the real broker and database, with
//! a producer sending at a steady rate the whole time, a 12-partition topic,
//! a stateful pipeline (running totals → upsert) and a stateless one
//! (→ append). After every step the producer pauses and the run checks, exactly:
//! nothing lost, nothing duplicated, the totals equal an independent
//! computation, and Kafka's committed offsets equal the database checkpoint.
//! It measures per step the "blip" (the longest time a partition with lag made
//! no progress), the p99 end-to-end latency against the steady state, and the
//! revocations suffered by instances that were not restarted. Report:
//! target/fleet/report.md and timeline.png. A correctness failure exits
//! non-zero; timing targets are reported, met or not.

mod db;
mod fleet;
mod report;
mod settle;
mod watch;

use anyhow::Context as _;
use fleet::Fleet;
use report::{Scenario, Step};
use std::sync::Arc;
use std::time::Duration;
use watch::{now_ms, Producer, Sampler};

const PARTITIONS: i32 = 12;
const SESSION_TIMEOUT_S: u64 = 6;

struct Args {
    quick: bool,
    rate: u64,
    out: std::path::PathBuf,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        quick: false,
        rate: 1_500,
        out: "target/fleet".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--quick" => a.quick = true,
            "--rate" => a.rate = it.next().context("--rate N")?.parse()?,
            "--out" => a.out = it.next().context("--out DIR")?.into(),
            other => anyhow::bail!("unknown argument {other} (--quick, --rate N, --out DIR)"),
        }
    }
    Ok(a)
}

/// One scenario's settings.
struct Plan {
    name: &'static str,
    db: &'static str,
    static_ids: bool,
    protocol: &'static str,
    full: bool,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let a = args()?;
    std::fs::create_dir_all(&a.out)?;
    let plans: Vec<Plan> = if a.quick {
        vec![Plan {
            name: "quick: classic, static membership, PostgreSQL",
            db: "postgres",
            static_ids: true,
            protocol: "classic",
            full: false,
        }]
    } else {
        vec![
            Plan {
                name: "classic protocol, no static membership, PostgreSQL",
                db: "postgres",
                static_ids: false,
                protocol: "classic",
                full: true,
            },
            Plan {
                name: "classic protocol, static membership, PostgreSQL",
                db: "postgres",
                static_ids: true,
                protocol: "classic",
                full: true,
            },
            Plan {
                name: "KIP-848 consumer protocol, no static membership, PostgreSQL",
                db: "postgres",
                static_ids: false,
                protocol: "consumer",
                full: true,
            },
            Plan {
                name: "classic protocol, static membership, MariaDB",
                db: "mariadb",
                static_ids: true,
                protocol: "classic",
                full: false,
            },
        ]
    };
    let mut scenarios = Vec::new();
    for plan in &plans {
        println!("fleet: {}", plan.name);
        scenarios.push(run(&a, plan).await.with_context(|| plan.name.to_string())?);
    }
    let md = report::markdown(&scenarios, a.rate);
    std::fs::write(a.out.join("report.md"), &md)?;
    if let Err(e) = report::timeline(&scenarios, &a.out.join("timeline.png")) {
        println!("fleet: no timeline chart: {e:#}");
    }
    println!("{md}");
    let wrong: Vec<String> = scenarios
        .iter()
        .flat_map(|s| {
            s.steps
                .iter()
                .filter(|st| !st.verdict.exact())
                .map(move |st| format!("{}: {}", s.name, st.name))
        })
        .collect();
    anyhow::ensure!(
        wrong.is_empty(),
        "correctness failed in: {}",
        wrong.join("; ")
    );
    println!("fleet: every step exact (0 lost, 0 duplicated, totals equal, Kafka offsets = checkpoints); report in {}", a.out.display());
    Ok(())
}

fn config(brokers: &str, topic: &str, run: &str, url: &str, protocol: &str) -> String {
    let group = if protocol == "consumer" {
        "group_protocol = \"consumer\"".to_string()
    } else {
        format!("session_timeout = \"{SESSION_TIMEOUT_S}s\"")
    };
    let pipeline = |name: &str, table: &str, sink: &str, steps: &str| {
        format!(
            "[pipelines.{name}]\ntopics = [\"{topic}\"]\ngroup_id = \"{run}_{name}\"\n\
             [pipelines.{name}.kafka]\nbrokers = \"{brokers}\"\n{group}\n\
             [pipelines.{name}.sink]\nurl = \"{url}\"\ntable = \"{table}\"\nretry_max = \"1s\"\n{sink}\n\
             [pipelines.{name}.batch]\nmax_linger = \"20ms\"\n{steps}\n"
        )
    };
    format!(
        "[shutdown]\ngrace = \"10s\"\n[telemetry]\nlog_format = \"json\"\n{}{}",
        pipeline("log", "events_log", "", ""),
        pipeline(
            "totals",
            "totals",
            "mode = \"upsert\"\nkey_columns = [\"k\"]",
            "[[pipelines.totals.transforms]]\ntype = \"key\"\nfields = [\"k\"]\n\
             [[pipelines.totals.transforms]]\ntype = \"aggregate\"\ncolumns = { n = \"count()\", total = \"sum(v)\" }\n"
        ),
    )
}

async fn run(a: &Args, plan: &Plan) -> anyhow::Result<Scenario> {
    let brokers = std::env::var("TIDEMILL_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let run = format!(
        "fleet_{}_{}",
        std::process::id(),
        fastrand::u32(..1_000_000)
    );
    let topic = run.clone();
    create_topic(&brokers, &topic).await?;
    let db = Arc::new(db::Db::create(plan.db, &run).await?);
    let dir = a.out.join(&run);
    std::fs::create_dir_all(&dir)?;
    let config_path = dir.join("tidemill.toml");
    std::fs::write(
        &config_path,
        config(&brokers, &topic, &run, db.url(), plan.protocol),
    )?;
    let mut fleet = Fleet::new(fleet::tidemill_binary()?, config_path, dir, plan.static_ids);
    let groups = [
        ("log".to_string(), format!("{run}_log")),
        ("totals".to_string(), format!("{run}_totals")),
    ];
    let target = settle::Target {
        db: &db,
        brokers: &brokers,
        topic: &topic,
        partitions: PARTITIONS,
        groups: &groups,
    };
    let producer = Producer::start(&brokers, &topic, a.rate)?;
    let mut sampler = Sampler::start(
        &brokers,
        &topic,
        PARTITIONS,
        Arc::clone(&db),
        tokio::runtime::Handle::current(),
    )?;
    let started = now_ms();
    let mut steps: Vec<Step> = Vec::new();
    let mut ctx = Ctx {
        fleet: &mut fleet,
        producer: &producer,
        sampler: &sampler,
        target: &target,
        steps: &mut steps,
    };

    let first: &[&str] = if plan.full {
        &["tm-0"]
    } else {
        &["tm-0", "tm-1", "tm-2"]
    };
    ctx.step("start", &[], |f| start_all(f, first)).await?;
    ctx.steady(Duration::from_secs(if plan.full { 8 } else { 5 }))
        .await?;
    if plan.full {
        ctx.step("scale 1 → 3", &["tm-0"], |f| {
            start_all(f, &["tm-1", "tm-2"])
        })
        .await?;
        // The baseline of the steps that follow: three instances, no fault.
        ctx.steady(Duration::from_secs(8)).await?;
    }
    ctx.step("rolling restart", &[], rolling_restart).await?;
    if plan.full {
        ctx.step("scale 3 → 1", &["tm-0"], |f| {
            f.stop("tm-2")?;
            f.stop("tm-1")?;
            Ok(())
        })
        .await?;
        ctx.step("scale 1 → 3", &["tm-0"], |f| {
            start_all(f, &["tm-1", "tm-2"])
        })
        .await?;
    }
    ctx.step("SIGKILL tm-1, back after 1 s", &["tm-0", "tm-2"], |f| {
        f.kill("tm-1")?;
        std::thread::sleep(Duration::from_secs(1)); // the pod's restart delay being modelled
        start_all(f, &["tm-1"])
    })
    .await?;
    if plan.full {
        ctx.step(
            "SIGSTOP tm-2 past its session timeout, then SIGCONT",
            &["tm-0", "tm-1"],
            |f| {
                f.signal("tm-2", "-STOP")?;
                std::thread::sleep(Duration::from_secs(SESSION_TIMEOUT_S + 3)); // the zombie's pause being modelled
                f.signal("tm-2", "-CONT")?;
                Ok(())
            },
        )
        .await?;
        ctx.step("rolling restart", &[], rolling_restart).await?;
    }
    let ended = now_ms();
    fleet.stop_all();
    sampler.stop();
    producer.stop();
    let latencies = db.latencies(started, ended).await?;
    let samples = sampler.samples.lock().expect("samples").clone();
    Ok(Scenario {
        name: plan.name.to_string(),
        steps,
        samples,
        latencies,
        started,
    })
}

fn start_all(f: &mut Fleet, names: &[&str]) -> anyhow::Result<()> {
    for n in names {
        f.start(n)?;
    }
    for n in names {
        f.wait_ready(n, Duration::from_secs(60))?;
    }
    Ok(())
}

/// As a StatefulSet rolls: one pod at a time, highest ordinal first; SIGTERM,
/// wait for the exit, start the new pod, wait for /readyz, next.
fn rolling_restart(f: &mut Fleet) -> anyhow::Result<()> {
    let mut names = f.names();
    names.reverse();
    for n in names {
        anyhow::ensure!(f.stop(&n)?, "{n} did not exit 0 on SIGTERM");
        start_all(f, &[&n])?;
    }
    Ok(())
}

struct Ctx<'a, 'b> {
    fleet: &'a mut Fleet,
    producer: &'a Producer,
    sampler: &'a Sampler,
    target: &'a settle::Target<'b>,
    steps: &'a mut Vec<Step>,
}

impl Ctx<'_, '_> {
    /// Runs `action` as a step; `untouched` are instances the step does not
    /// restart (their revocations are counted). Then settles and checks.
    async fn step(
        &mut self,
        name: &str,
        untouched: &[&str],
        action: impl FnOnce(&mut Fleet) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let before: Vec<usize> = untouched
            .iter()
            .map(|n| self.fleet.revocations(n))
            .collect();
        let from = now_ms();
        tokio::task::block_in_place(|| action(self.fleet))?;
        // Let the fleet run on for a moment with records flowing, then settle.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let to = now_ms();
        let revoked: usize = untouched
            .iter()
            .zip(before)
            .map(|(n, b)| self.fleet.revocations(n).saturating_sub(b))
            .sum();
        self.fleet.check_alive()?;
        let paused = std::time::Instant::now();
        let produced = tokio::task::block_in_place(|| self.producer.pause());
        let flush_ms = paused.elapsed().as_millis();
        let verdict = settle::settle(self.target, produced, Duration::from_secs(90)).await?;
        self.producer.resume();
        println!("fleet:   {name}: {verdict:?} (producer flushed in {flush_ms} ms)");
        self.steps.push(Step {
            name: name.to_string(),
            from,
            to,
            blip_ms: self.sampler.blip(from, to),
            revoked,
            verdict,
            steady: false,
        });
        Ok(())
    }

    /// A steady-state window for reference (no fault).
    async fn steady(&mut self, d: Duration) -> anyhow::Result<()> {
        let from = now_ms();
        tokio::time::sleep(d).await;
        let to = now_ms();
        let produced = tokio::task::block_in_place(|| self.producer.pause());
        let verdict = settle::settle(self.target, produced, Duration::from_secs(90)).await?;
        self.producer.resume();
        self.steps.push(Step {
            name: "steady state".into(),
            from,
            to,
            blip_ms: self.sampler.blip(from, to),
            revoked: 0,
            verdict,
            steady: true,
        });
        Ok(())
    }
}

async fn create_topic(brokers: &str, topic: &str) -> anyhow::Result<()> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    let results = admin
        .create_topics(
            &[NewTopic::new(topic, PARTITIONS, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await?;
    for r in results {
        r.map_err(|(t, e)| anyhow::anyhow!("creating topic {t}: {e}"))?;
    }
    Ok(())
}
