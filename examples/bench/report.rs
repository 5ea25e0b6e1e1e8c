//! The report: every figure with its ratio to the baselines and the peers,
//! and the targets marked met / not met from the measured numbers
//! (never assumed). Written to target/bench/report.md; the summary (targets
//! and the drain table) is also printed at the end of the run.

use crate::baselines::Measure;
use crate::gen::Dist;
use crate::latency::RateReport;
use crate::peers::PeerResult;
use crate::pressure::Stalls;
use crate::runner::{Drain, Workload};
use std::fmt::Write as _;

#[derive(Default)]
pub struct Results {
    pub command: String,
    pub records: u64,
    pub dist: Option<Dist>,
    pub produce_secs: f64,
    pub raw_consume: Option<Measure>,
    pub raw_copy: Option<Measure>,
    pub consume_copy: Option<Measure>,
    pub drains: Vec<Drain>,
    /// (workload, delivery, reason) combinations not run.
    pub not_applicable: Vec<(String, String, String)>,
    /// (label, run, OTLP requests, OTLP bytes); the "off" row is the W1 run.
    pub tracing: Vec<(String, Drain, u64, u64)>,
    pub rate: Option<RateReport>,
    pub peers: Vec<PeerResult>,
    pub peers_note: Option<String>,
    pub failures: Vec<String>,
}

pub fn k(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else {
        format!("{:.1}k", v / 1e3)
    }
}

fn ratio(a: f64, b: Option<f64>) -> String {
    b.filter(|b| *b > 0.0)
        .map_or("–".into(), |b| format!("{:.2}×", a / b))
}

fn mark(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "**met**",
        Some(false) => "**not met**",
        None => "n/a",
    }
}

impl Results {
    pub fn drain(&self, w: Workload, eo: bool) -> Option<&Drain> {
        self.drains
            .iter()
            .find(|d| d.spec.workload == w && d.spec.exactly_once == eo)
    }

    fn peer_ok(&self, peer: &str, w: &str) -> Option<&crate::peers::PeerRun> {
        self.peers
            .iter()
            .find(|p| p.peer == peer && p.workload == w)
            .and_then(|p| p.outcome.as_ref().ok())
    }

    pub fn verified(&self) -> bool {
        self.failures.is_empty()
            && self.drains.iter().all(|d| d.verdict.ok)
            && self.tracing.iter().all(|t| t.1.verdict.ok)
            && self.rate.as_ref().is_none_or(|r| r.verdict.ok)
    }

    pub fn drain_table(&self) -> String {
        let copy = self.raw_copy.map(|m| m.rate());
        let consume = self.raw_consume.map(|m| m.rate());
        let cc = self.consume_copy.map(|m| m.rate());
        let mut t = String::from(
            "| workload | delivery | records/s | × raw COPY | × raw consume | × consume→COPY | startup s | CPU s / 1M (= µs / record) | records / CPU-s | peak RSS MiB | verified |\n\
             |---|---|---|---|---|---|---|---|---|---|---|\n",
        );
        for d in &self.drains {
            let r = d.rate();
            let per = d.cpu_secs / d.records as f64;
            let _ = writeln!(
                t,
                "| {} | {} | {} | {} | {} | {} | {:.1} | {:.2} | {} | {:.0} | {} ({}) |",
                d.spec.workload.name(),
                if d.spec.exactly_once {
                    "exactly-once"
                } else {
                    "at-least-once"
                },
                k(r),
                ratio(r, copy),
                ratio(r, consume),
                ratio(r, cc),
                d.startup_secs,
                per * 1e6,
                k(1.0 / per.max(1e-12)),
                d.rss_bytes as f64 / 1048576.0,
                if d.verdict.ok { "yes" } else { "**NO**" },
                d.verdict.detail
            );
        }
        for (w, m, why) in &self.not_applicable {
            let _ = writeln!(t, "| {w} | {m} | n/a | | | | | | | | {why} |");
        }
        t
    }

    pub fn targets(&self) -> String {
        let mut t = String::from("| target | measured | status |\n|---|---|---|\n");
        let w1 = self.drain(Workload::W1, true);
        let copy = self.raw_copy.map(|m| m.rate());
        let row = |t: &mut String, name: &str, got: String, ok: Option<bool>| {
            let _ = writeln!(t, "| {name} | {got} | {} |", mark(ok));
        };
        match (w1, copy) {
            (Some(d), Some(c)) => {
                let x = d.rate() / c;
                row(
                    &mut t,
                    "W1 ≥ 0.8× raw COPY",
                    format!("{x:.2}× ({} vs {} records/s)", k(d.rate()), k(c)),
                    Some(x >= 0.8),
                );
            }
            _ => row(&mut t, "W1 ≥ 0.8× raw COPY", "not measured".into(), None),
        }
        for (w, limit) in [(Workload::W1, 1.0), (Workload::W2, 2.0)] {
            let name = format!("≤ {limit} µs tidemill CPU / record, {}", w.name());
            match self.drain(w, true) {
                Some(d) => {
                    let us = d.cpu_secs / d.records as f64 * 1e6;
                    let mut got = format!("{us:.2} µs");
                    if let Some(floor) = self.consume_copy.filter(|_| w == Workload::W1) {
                        // What the minimal loop alone spends: the floor below tidemill.
                        got += &format!(
                            " (the minimal consume → decode → COPY loop: {:.2} µs)",
                            floor.cpu_us()
                        );
                    }
                    row(&mut t, &name, got, Some(us <= limit));
                }
                None => row(&mut t, &name, "not measured".into(), None),
            }
        }
        match self.rate.as_ref().and_then(|r| r.latency.as_ref()) {
            Some(l) if self.rate.as_ref().is_some_and(|r| r.max_sustainable == 0.0) => row(
                &mut t,
                "p99 ≤ 25 ms at 50% load",
                format!(
                    "{:.1} ms at {}/s (`--latency-at`: not a 50% load)",
                    l.p99_ms,
                    k(l.rate)
                ),
                None,
            ),
            Some(l) => row(
                &mut t,
                "p99 ≤ 25 ms at 50% load",
                format!("{:.1} ms at {}/s", l.p99_ms, k(l.rate)),
                Some(l.p99_ms <= 25.0),
            ),
            None => row(
                &mut t,
                "p99 ≤ 25 ms at 50% load",
                "not measured (no sustainable rate found)".into(),
                None,
            ),
        }
        for (peer, want) in [("flink", 10.0), ("quix", 20.0)] {
            let mut got = Vec::new();
            for (w, wl) in [
                (Workload::W1, "W1"),
                (Workload::W2, "W2"),
                (Workload::W3, "W3"),
            ] {
                if let (Some(d), Some(p)) = (self.drain(w, true), self.peer_ok(peer, wl)) {
                    let x = (d.records as f64 / d.cpu_secs)
                        / (p.records as f64 / p.cpu_seconds.max(1e-9));
                    got.push((wl, x));
                }
            }
            let name = format!("≥ {want}× {peer}'s records per CPU-second");
            if got.is_empty() {
                row(&mut t, &name, "no peer result".into(), None);
            } else {
                let s: Vec<String> = got.iter().map(|(w, x)| format!("{w} {x:.1}×")).collect();
                row(
                    &mut t,
                    &name,
                    s.join(", "),
                    Some(got.iter().all(|(_, x)| *x >= want)),
                );
            }
        }
        match self.drain(Workload::W2M, true) {
            Some(d) if d.records >= 1_000_000 => {
                let mib = d.rss_bytes as f64 / 1048576.0;
                row(
                    &mut t,
                    "RSS ≤ 100 MB with 1M keys of state",
                    format!(
                        "{mib:.0} MiB ({:.1} MB) with {} keys",
                        d.rss_bytes as f64 / 1e6,
                        d.records
                    ),
                    Some(d.rss_bytes <= 100_000_000),
                );
            }
            Some(d) => row(
                &mut t,
                "RSS ≤ 100 MB with 1M keys of state",
                format!(
                    "{:.0} MiB with only {} keys",
                    d.rss_bytes as f64 / 1048576.0,
                    d.records
                ),
                None,
            ),
            None => row(
                &mut t,
                "RSS ≤ 100 MB with 1M keys of state",
                "not measured (make bench runs it)".into(),
                None,
            ),
        }
        t
    }

    pub fn summary(&self) -> String {
        format!(
            "## Targets\n\n{}\n## Drain (backlog of {} records)\n\n{}",
            self.targets(),
            self.records,
            self.drain_table()
        )
    }

    pub fn markdown(&self) -> String {
        let mut m = String::from("# tidemill benchmark\n\n");
        let _ = writeln!(
            m,
            "Command: `{}`. {} records, keys {}, 8 partitions; produced in {:.1} s. \
             Machine: {} cores, load average at the end {}.\n",
            self.command,
            self.records,
            self.dist.map_or("?", Dist::name),
            self.produce_secs,
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            std::fs::read_to_string("/proc/loadavg")
                .unwrap_or_default()
                .split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        );
        m += &self.summary();
        m += "\nDrain = records / (last commit − first commit seen), polled every 20 ms; startup = process start → first commit. \
              CPU = utime + stime of the tidemill process at the last commit; RSS = VmHWM.\n\n## Baselines\n\n\
              | baseline | records | seconds | records/s | CPU µs / record (bench process) |\n|---|---|---|---|---|\n";
        for (name, b) in [
            ("raw consume (rdkafka, discard)", self.raw_consume),
            (
                "raw load (binary COPY of the W1 rows, 5,000/COPY)",
                self.raw_copy,
            ),
            ("consume → decode → COPY, no transform", self.consume_copy),
        ] {
            if let Some(b) = b {
                let _ = writeln!(
                    m,
                    "| {name} | {} | {:.2} | {} | {:.2} |",
                    b.records,
                    b.secs,
                    k(b.rate()),
                    b.cpu_us()
                );
            }
        }
        m += &self.machine_section();
        m += &self.rate_section();
        m += &self.tracing_section();
        m += &self.peers_section();
        if !self.failures.is_empty() {
            m += "\n## Failures\n\n";
            for f in &self.failures {
                let _ = writeln!(m, "- {f}");
            }
        }
        m
    }

    fn rate_section(&self) -> String {
        let Some(r) = &self.rate else {
            return "\n## Rate mode\n\nnot run\n".into();
        };
        let mut m = format!(
            "\n## Rate mode ({} {}, open loop)\n\n| offered records/s | achieved | lag growth (records/s) | drained after | flat |\n|---|---|---|---|---|\n",
            r.spec.workload.name(), if r.spec.exactly_once { "exactly-once" } else { "at-least-once" }
        );
        for s in &r.steps {
            let _ = writeln!(
                m,
                "| {} | {} | {:.0} | {:.2} s | {} |",
                k(s.rate),
                k(s.achieved),
                s.lag_slope,
                s.drained_secs,
                if s.flat { "yes" } else { "no" }
            );
        }
        if r.steps.is_empty() {
            let _ = writeln!(
                m,
                "\nNo steps (`--latency-at`): the latency window only. Verified: {} ({}).\n",
                if r.verdict.ok { "yes" } else { "**NO**" },
                r.verdict.detail
            );
        } else {
            let _ = writeln!(m, "\nMaximum sustainable rate: **{}/s** (highest step sent at ≥ 95% of the offered rate whose lag grew by ≤ 10% of the rate over the step's second half or, for short quick-mode steps, drained within 1 s of the last send). Verified: {} ({}).\n", k(r.max_sustainable), if r.verdict.ok { "yes" } else { "**NO**" }, r.verdict.detail);
        }
        if let Some(l) = &r.latency {
            let _ = writeln!(m, "End-to-end latency at {}/s (sent at {}/s; {} records, scheduled send → commit visible in `tidemill_offsets`, probe polled every {:.2} ms on average): p50 **{:.1} ms**, p99 **{:.1} ms**, p99.9 **{:.1} ms**, max {:.1} ms; median of the first fifth sent {:.1} ms, of the last fifth {:.1} ms. The two legs: scheduled send → broker acknowledged (generator, producer, broker) p50 {:.1} ms, p99 {:.1} ms; broker acknowledged → commit visible (tidemill) p50 {:.1} ms, p99 {:.1} ms.", k(l.rate), k(l.achieved), l.records, l.poll_ms, l.p50_ms, l.p99_ms, l.p999_ms, l.max_ms, l.early_p50_ms, l.late_p50_ms, l.to_broker_ms.0, l.to_broker_ms.1, l.in_tidemill_ms.0, l.in_tidemill_ms.1);
            if let Some(b) = l.batches.filter(|b| b.batches > 0.0) {
                let _ = writeln!(
                    m,
                    "\nIn the same window tidemill's own `/metrics` counted {:.0} batches of {:.0} rows on average, each received, written and committed in {:.2} ms on average: the writer was busy {:.0}% of the {:.1} s. Batches go to the writer whenever it is idle, so under load a record waits for the write in progress and then for its own.",
                    b.batches,
                    b.rows / b.batches,
                    b.write_secs / b.batches * 1000.0,
                    b.write_secs / l.window_secs * 100.0,
                    l.window_secs
                );
                let (over_10, over_25) = b.slow();
                let _ = writeln!(
                    m,
                    "{over_10:.0} of those batches took longer than 10 ms and {over_25:.0} longer than 25 ms (the `/metrics` histogram's buckets)."
                );
            }
            if let Some(st) = &l.stalls {
                let _ = writeln!(
                    m,
                    "\nStalls over the window (Linux pressure stall information, `some`: at least one runnable task waiting): for a core {:.1}% of the time (worst {} ms slice: {:.1} ms), for IO {:.1}% (worst slice: {:.1} ms; {} of {} slices with ≥ 10 ms of IO wait).",
                    st.cpu_share() * 100.0,
                    Stalls::slice_ms(),
                    st.worst_cpu_us as f64 / 1000.0,
                    st.io_share() * 100.0,
                    st.worst_io_us as f64 / 1000.0,
                    st.io_slices_over_10ms,
                    st.slices
                );
            }
            let c = &l.machine;
            if c.secs > 0.0 {
                let _ = writeln!(
                    m,
                    "\nThe machine over the window: {:.0}% of {} cores busy; cores in use by tidemill {:.2}, PostgreSQL {:.2}, the Kafka broker {:.2}, the rest (the generator, the probe, the kernel) {:.2}.",
                    c.busy_share() * 100.0,
                    c.cores,
                    c.measured / c.secs,
                    c.postgres / c.secs,
                    c.kafka / c.secs,
                    c.other() / c.secs
                );
            }
        }
        m
    }

    fn tracing_section(&self) -> String {
        let mut m = String::from("\n## Tracing cost (W1 exactly-once, OTLP/HTTP to an in-harness receiver)\n\n| tracing | records/s | vs off | CPU s / 1M | OTLP requests | OTLP bytes |\n|---|---|---|---|---|---|\n");
        let off = self.drain(Workload::W1, true).map(Drain::rate);
        for (label, d, req, bytes) in &self.tracing {
            let _ = writeln!(
                m,
                "| {label} | {} | {} | {:.2} | {req} | {bytes} |",
                k(d.rate()),
                ratio(d.rate(), off),
                d.cpu_secs / d.records as f64 * 1e6
            );
        }
        m
    }

    fn peers_section(&self) -> String {
        let mut m = String::from("\n## Peers\n\n");
        if let Some(n) = &self.peers_note {
            let _ = writeln!(m, "{n}\n");
        }
        if self.peers.is_empty() {
            return m;
        }
        m += "| peer | workload | records/s | tidemill × | startup s | CPU s / 1M | records / CPU-s | tidemill × (per CPU-s) | peak RSS MiB | verified |\n|---|---|---|---|---|---|---|---|---|---|\n";
        for p in &self.peers {
            match &p.outcome {
                Ok(r) => {
                    let w = match p.workload {
                        "W1" => Workload::W1,
                        "W2" => Workload::W2,
                        _ => Workload::W3,
                    };
                    let td = self.drain(w, true);
                    let per_cpu = r.records as f64 / r.cpu_seconds.max(1e-9);
                    let _ = writeln!(m, "| {} | {} | {} | {} | {:.1} | {:.2} | {} | {} | {:.0} | {} ({} rows; {}) |", p.peer, p.workload, k(r.rate()),
                        td.map_or("–".into(), |d| ratio(d.rate(), Some(r.rate()))), r.startup_seconds, r.cpu_seconds / r.records as f64 * 1e6, k(per_cpu),
                        td.map_or("–".into(), |d| ratio(d.records as f64 / d.cpu_secs, Some(per_cpu))), r.peak_rss_bytes as f64 / 1048576.0,
                        if r.verified { "yes" } else { "**NO**" }, r.rows, r.detail);
                }
                Err(e) => {
                    let _ = writeln!(
                        m,
                        "| {} | {} | failed | | | | | | | {e} |",
                        p.peer, p.workload
                    );
                }
            }
        }
        m
    }
}
