//! Calls the peer runners (benches/peers/, see the peers contract): setup
//! once, then `run.sh <peer> <W> …` per workload on the same backlog topic,
//! each in its own empty database. A failure becomes a reason in the report;
//! the bench goes on.

use crate::runner::out_dir;
use serde::Deserialize;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The JSON object a peer run prints as its last stdout line.
#[derive(Debug, Clone, Deserialize)]
pub struct PeerRun {
    pub peer: String,
    pub workload: String,
    pub records: u64,
    pub rows: i64,
    pub startup_seconds: f64,
    pub drain_seconds: f64,
    pub cpu_seconds: f64,
    pub peak_rss_bytes: u64,
    pub verified: bool,
    #[serde(default)]
    pub detail: String,
}

impl PeerRun {
    pub fn rate(&self) -> f64 {
        self.records as f64 / self.drain_seconds.max(1e-9)
    }
}

#[derive(Debug, Clone)]
pub struct PeerResult {
    pub peer: &'static str,
    pub workload: &'static str,
    pub outcome: Result<PeerRun, String>,
}

/// Runs `cmd` with a deadline; stdout and stderr go to `log`. Returns stdout.
fn run_logged(mut cmd: Command, log: &Path, limit: Duration) -> Result<String, String> {
    let out = log.with_extension("out");
    let stdout = std::fs::File::create(&out).map_err(|e| e.to_string())?;
    let stderr = std::fs::File::create(log).map_err(|e| e.to_string())?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .map_err(|e| format!("cannot start: {e}"))?;
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if started.elapsed() > limit => {
                let _ = child.kill();
                return Err(format!("timed out after {} s", limit.as_secs()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(200)), // process poll
            Err(e) => return Err(e.to_string()),
        }
    };
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    if status.success() {
        Ok(text)
    } else {
        let err = std::fs::read_to_string(log).unwrap_or_default();
        let tail: Vec<&str> = err.lines().rev().take(3).collect();
        Err(format!(
            "exit {status}: {}",
            tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
        ))
    }
}

/// `benches/peers/setup.sh`; Err(reason) when it is missing or fails.
pub fn setup() -> Result<(), String> {
    let script = Path::new("benches/peers/setup.sh");
    if !script.exists() {
        return Err("benches/peers/setup.sh is missing (peer runners not in this checkout)".into());
    }
    let dir = out_dir().join("peers-logs");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let mut cmd = Command::new("bash");
    cmd.arg(script);
    run_logged(cmd, &dir.join("setup.log"), Duration::from_secs(1800))
        .map(|_| ())
        .map_err(|e| format!("setup.sh failed: {e} (log: target/bench/peers-logs/setup.log)"))
}

/// One peer run on a filled topic, into the empty database `db`.
pub fn run(
    peer: &'static str,
    workload: &'static str,
    topic: &str,
    n: u64,
    db: &str,
) -> PeerResult {
    let dir = out_dir().join("peers-logs");
    let _ = std::fs::create_dir_all(&dir);
    let mut cmd = Command::new("bash");
    cmd.arg("benches/peers/run.sh")
        .args([peer, workload])
        .args([
            "--brokers",
            crate::kafka::BROKERS,
            "--topic",
            topic,
            "--partitions",
            &crate::gen::PARTITIONS.to_string(),
            "--records",
            &n.to_string(),
            "--pg-url",
            &crate::db::url(db),
            "--group",
            &format!("{db}_{peer}"),
        ]);
    let log = dir.join(format!("{peer}-{workload}.log"));
    let outcome = run_logged(cmd, &log, Duration::from_secs(3600)).and_then(|stdout| {
        let last = stdout
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .ok_or("no output")?;
        let r = serde_json::from_str::<PeerRun>(last)
            .map_err(|e| format!("last stdout line is not the contract's JSON ({e}): {last}"))?;
        if r.peer != peer || r.workload != workload || r.records != n {
            return Err(format!(
                "asked for {peer} {workload} on {n} records, got: {last}"
            ));
        }
        Ok(r)
    });
    PeerResult {
        peer,
        workload,
        outcome,
    }
}
