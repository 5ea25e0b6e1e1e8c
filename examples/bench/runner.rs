//! Runs the tidemill release binary as its own process on a generated config
//! and measures it from outside: startup (process start → first commit),
//! drain (first commit → last commit), CPU (utime + stime) and peak RSS
//! (VmHWM) from /proc/<pid>, then verifies the output.

use crate::db::{self, Verdict};
use crate::gen::Expected;
use crate::kafka::BROKERS;
use crate::machine::{Snapshot, Split};
use anyhow::{bail, Context as _};
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    W1,
    W2,
    /// W2 keyed by event_id: one key per record, for RSS with 1M keys of state.
    W2M,
    W3,
}

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Workload::W1 => "W1",
            Workload::W2 => "W2",
            Workload::W2M => "W2 (key per record)",
            Workload::W3 => "W3",
        }
    }

    /// The sink section and transform steps of the workload.
    fn pipeline_toml(self, p: &str, url: &str) -> String {
        let w1 = r#"select(.type != "view") | {event_id, key, ts, type, amount, qty, value: (.amount * .qty)}"#;
        let agg = r#"columns = { cnt = "count()", total = "sum(amount)" }"#;
        match self {
            Workload::W1 => format!(
                "[pipelines.{p}.sink]\nurl = \"{url}\"\ntable = \"w1_events\"\n\n[[pipelines.{p}.transforms]]\ntype = \"jq\"\nexpr = '{w1}'\n"
            ),
            Workload::W2 => format!(
                "[pipelines.{p}.sink]\nurl = \"{url}\"\ntable = \"w2_totals\"\nmode = \"upsert\"\nkey_columns = [\"key\"]\n\n\
                 [[pipelines.{p}.transforms]]\ntype = \"key\"\nfields = [\"key\"]\n\n\
                 [[pipelines.{p}.transforms]]\ntype = \"aggregate\"\nname = \"w2\"\n{agg}\n"
            ),
            Workload::W2M => format!(
                "[pipelines.{p}.sink]\nurl = \"{url}\"\ntable = \"w2_event_totals\"\nmode = \"upsert\"\nkey_columns = [\"event_id\"]\n\n\
                 [[pipelines.{p}.transforms]]\ntype = \"key\"\nfields = [\"event_id\"]\n\n\
                 [[pipelines.{p}.transforms]]\ntype = \"aggregate\"\nname = \"w2m\"\n{agg}\n"
            ),
            Workload::W3 => format!(
                "[pipelines.{p}.sink]\nurl = \"{url}\"\ntable = \"w3_windows\"\n\n\
                 [[pipelines.{p}.transforms]]\ntype = \"key\"\nfields = [\"key\"]\n\n\
                 [[pipelines.{p}.transforms]]\ntype = \"aggregate\"\nname = \"w3\"\n{agg}\n\
                 window = {{ kind = \"tumbling\", size = \"1s\", time_field = \"ts\", idle_timeout = \"2s\", emit = \"final\" }}\n"
            ),
        }
    }

    /// Stateful steps need exactly-once today (config validation).
    pub fn stateful(self) -> bool {
        !matches!(self, Workload::W1)
    }
}

/// One tidemill run: what to run and where.
#[derive(Debug, Clone)]
pub struct Spec {
    pub name: String,
    pub workload: Workload,
    pub exactly_once: bool,
    /// Trace sampling ratio exported to the in-harness OTLP receiver; None = off.
    pub tracing: Option<(f64, u16)>,
    pub topic: String,
    pub db: String,
    /// Port for tidemill's `/metrics` (`[health] listen`); None = off.
    pub metrics_port: Option<u16>,
}

impl Spec {
    pub fn config(&self) -> String {
        let p = &self.name;
        let mut t = String::new();
        if let Some((ratio, port)) = self.tracing {
            t += &format!(
                "[telemetry]\notlp_endpoint = \"http://127.0.0.1:{port}/v1/traces\"\nsampling_ratio = {ratio}\n\n"
            );
        }
        if let Some(port) = self.metrics_port {
            t += &format!("[health]\nlisten = \"127.0.0.1:{port}\"\n\n");
        }
        let delivery = if self.exactly_once {
            "exactly-once"
        } else {
            "at-least-once"
        };
        t += &format!(
            "[pipelines.{p}]\ntopics = [\"{}\"]\ngroup_id = \"{p}\"\ndelivery = \"{delivery}\"\n\n\
             [pipelines.{p}.kafka]\nbrokers = \"{BROKERS}\"\n\n[pipelines.{p}.batch]\nmax_rows = {}\n\n",
            self.topic,
            crate::baselines::BATCH_ROWS
        );
        t += &kafka_options(
            p,
            std::env::var("BENCH_TIDEMILL_KAFKA_OPTIONS")
                .ok()
                .as_deref(),
        );
        t += &self.workload.pipeline_toml(p, &db::url(&self.db));
        t
    }
}

/// `[pipelines.P.kafka.options]` from `k=v,k=v` (librdkafka properties for
/// tuning experiments, `BENCH_TIDEMILL_KAFKA_OPTIONS`); empty when unset.
fn kafka_options(p: &str, spec: Option<&str>) -> String {
    let entries: Vec<String> = spec
        .unwrap_or("")
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| format!("{:?} = {:?}\n", k.trim(), v.trim()))
        .collect();
    if entries.is_empty() {
        return String::new();
    }
    format!("[pipelines.{p}.kafka.options]\n{}\n", entries.concat())
}

/// A running tidemill process.
pub struct Proc {
    child: Child,
    pub started: Instant,
}

/// The release binary next to this one (`<target>/release/examples/bench` →
/// `<target>/release/tidemill`), so a `CARGO_TARGET_DIR` elsewhere works;
/// `target/release/tidemill` when that is not where this one runs from.
fn tidemill_bin() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("tidemill")))
        .filter(|bin| bin.is_file())
        .unwrap_or_else(|| PathBuf::from("target/release/tidemill"))
}

pub fn out_dir() -> PathBuf {
    PathBuf::from("target/bench")
}

impl Proc {
    pub fn spawn(spec: &Spec) -> anyhow::Result<Self> {
        let dir = out_dir().join("runs");
        std::fs::create_dir_all(&dir)?;
        let config = dir.join(format!("{}.toml", spec.name));
        std::fs::write(&config, spec.config())?;
        let log = std::fs::File::create(dir.join(format!("{}.log", spec.name)))?;
        let bin = tidemill_bin();
        let mut cmd = Command::new(&bin);
        cmd.arg("run").arg("--config").arg(&config);
        for (k, _) in std::env::vars() {
            if k.starts_with("OTEL_") || k.starts_with("TIDEMILL__") {
                cmd.env_remove(k);
            }
        }
        let child = cmd
            .env(
                "RUST_LOG",
                std::env::var("BENCH_TIDEMILL_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(log.try_clone()?)
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {} (make bench builds it)", bin.display()))?;
        Ok(Self {
            child,
            started: Instant::now(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// (utime + stime seconds, VmHWM bytes) so far.
    pub fn usage(&self) -> anyhow::Result<(f64, u64)> {
        Self::cpu_of(&self.child.id().to_string())
    }

    /// (utime + stime seconds, VmHWM bytes) of `/proc/<pid>` (`self`: this process).
    pub fn cpu_of(pid: &str) -> anyhow::Result<(f64, u64)> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        let rest = stat.rsplit_once(')').context("malformed stat")?.1;
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 = f[11].parse::<u64>()? + f[12].parse::<u64>()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let hwm_kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0);
        Ok((ticks as f64 / clk_tck(), hwm_kb * 1024))
    }

    /// SIGTERM, then wait (bounded) for a clean exit.
    pub fn stop(mut self) -> anyhow::Result<()> {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status()?;
        let deadline = Instant::now() + Duration::from_secs(40);
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child.kill()?;
        bail!("tidemill did not stop within 40 s of SIGTERM (killed)")
    }
}

pub fn clk_tck() -> f64 {
    static TCK: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TCK.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// Records committed so far: from tidemill_offsets (exactly-once) or from the
/// group's Kafka commits (at-least-once).
pub struct Progress {
    conn: sqlx::PgConnection,
    kafka: Option<Arc<BaseConsumer>>,
    spec: Spec,
}

impl Progress {
    pub async fn new(spec: &Spec) -> anyhow::Result<Self> {
        let kafka = if spec.exactly_once {
            None
        } else {
            let c: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", BROKERS)
                .set("group.id", &spec.name)
                .create()?;
            Some(Arc::new(c))
        };
        Ok(Self {
            conn: db::connect(&spec.db).await?,
            kafka,
            spec: spec.clone(),
        })
    }

    pub async fn committed(&mut self) -> i64 {
        let Some(c) = self.kafka.clone() else {
            return db::committed(&mut self.conn, &self.spec.name).await;
        };
        let topic = self.spec.topic.clone();
        tokio::task::spawn_blocking(move || {
            let mut tpl = TopicPartitionList::new();
            for p in 0..crate::gen::PARTITIONS {
                tpl.add_partition(&topic, p);
            }
            let got = c.committed_offsets(tpl, Duration::from_secs(2)).ok()?;
            Some(
                got.elements()
                    .iter()
                    .map(|e| match e.offset() {
                        Offset::Offset(o) => o,
                        _ => 0,
                    })
                    .sum::<i64>(),
            )
        })
        .await
        .ok()
        .flatten()
        .unwrap_or(0)
    }
}

/// A finished backlog run.
#[derive(Debug, Clone)]
pub struct Drain {
    pub spec: Spec,
    pub records: u64,
    pub startup_secs: f64,
    pub drain_secs: f64,
    pub cpu_secs: f64,
    pub rss_bytes: u64,
    /// The whole machine's CPU from the first commit to the last, by whom.
    pub machine: Split,
    pub verdict: Verdict,
}

impl Drain {
    pub fn rate(&self) -> f64 {
        self.records as f64 / self.drain_secs.max(1e-9)
    }
}

/// Runs tidemill on a filled topic until all `n` records are committed, then
/// verifies the output (W3: after the windows stop closing).
pub async fn drain(spec: Spec, n: u64, exp: &Expected) -> anyhow::Result<Drain> {
    let mut progress = Progress::new(&spec).await?;
    let mut proc = Proc::spawn(&spec)?;
    let deadline = Instant::now() + Duration::from_secs(900);
    let pid = proc.pid();
    let mut first = None;
    loop {
        let done = progress.committed().await;
        if done > 0 && first.is_none() {
            first = Some((Instant::now(), Snapshot::take(pid)));
        }
        if u64::try_from(done).unwrap_or(0) >= n {
            break;
        }
        if !proc.alive() || Instant::now() > deadline {
            bail!("{}: {done} of {n} committed, then tidemill exited or timed out (see target/bench/runs/{}.log)", spec.name, spec.name);
        }
        crate::progress(&format!("{}: {done}/{n}", spec.name));
        tokio::time::sleep(Duration::from_millis(20)).await; // polling interval
    }
    let end = Instant::now();
    let (cpu_secs, _) = proc.usage()?;
    let last = Snapshot::take(pid);
    let (first, machine) = match &first {
        Some((at, snap)) => (*at, snap.until(&last)),
        None => (end, Split::default()),
    };
    let mut conn = db::connect(&spec.db).await?;
    let verdict = match spec.workload {
        Workload::W1 => db::verify_w1(&mut conn, exp).await?,
        Workload::W2 => db::verify_w2(&mut conn, "w2_totals", exp, exp.distinct_keys()).await?,
        Workload::W2M => db::verify_w2(&mut conn, "w2_event_totals", exp, n).await?,
        Workload::W3 => {
            settle_windows(&mut conn, exp).await;
            db::verify_w3(&mut conn, exp).await?
        }
    };
    let (_, rss_bytes) = proc.usage()?;
    let started = proc.started;
    proc.stop()?;
    Ok(Drain {
        records: n,
        startup_secs: (first - started).as_secs_f64(),
        drain_secs: (end - first).as_secs_f64(),
        cpu_secs,
        rss_bytes,
        machine,
        verdict,
        spec,
    })
}

/// Waits until the W3 table holds every expected window, or stops growing
/// for 5 s (the last windows close by idleness, `idle_timeout = "2s"`).
async fn settle_windows(conn: &mut sqlx::PgConnection, exp: &Expected) {
    let want = exp.windows.as_ref().map_or(0, |w| w.len() as i64);
    let deadline = Instant::now() + Duration::from_secs(120);
    let (mut last, mut since) = (-1i64, Instant::now());
    while Instant::now() < deadline && since.elapsed() < Duration::from_secs(5) {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM w3_windows")
            .fetch_one(&mut *conn)
            .await
            .unwrap_or(0);
        if n >= want {
            return;
        }
        if n != last {
            (last, since) = (n, Instant::now());
        }
        crate::progress(&format!("W3: {n}/{want} windows closed"));
        tokio::time::sleep(Duration::from_millis(500)).await; // polling interval
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_options_become_a_quoted_options_table_and_nothing_when_unset() {
        assert_eq!(kafka_options("w1", None), "");
        assert_eq!(kafka_options("w1", Some("")), "");
        assert_eq!(
            kafka_options("w1", Some("fetch.wait.max.ms=2, fetch.min.bytes = 65536")),
            "[pipelines.w1.kafka.options]\n\"fetch.wait.max.ms\" = \"2\"\n\"fetch.min.bytes\" = \"65536\"\n\n"
        );
    }
}
