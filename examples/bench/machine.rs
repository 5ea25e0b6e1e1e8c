//! Where the whole machine's CPU goes during a measured span: busy time from
//! `/proc/stat` (every core, every process, the kernel's interrupts), split
//! into the measured program, PostgreSQL (every `postgres` process: backends,
//! WAL writer, checkpointer), the Kafka broker (the `java` process running
//! `kafka.Kafka`) and everything else. Read from `/proc` at the span's start
//! and end, so it costs nothing while the span runs.
//!
//! A process that exits inside the span loses its time (Linux keeps it only
//! for its parent); the processes measured here live through their spans.

use std::collections::HashMap;
use std::time::Instant;

/// Who a process's CPU time is counted for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// The program the span measures (tidemill, or the bench process for a baseline).
    Measured,
    Postgres,
    Kafka,
}

/// The machine at one instant: total busy jiffies and each classified
/// process's utime + stime jiffies.
#[derive(Debug, Clone)]
pub struct Snapshot {
    at: Instant,
    busy: u64,
    procs: HashMap<u32, (Class, u64)>,
}

/// Core-seconds spent over a span, by whom.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Split {
    pub secs: f64,
    pub cores: usize,
    pub busy: f64,
    pub measured: f64,
    pub postgres: f64,
    pub kafka: f64,
}

impl Split {
    /// Busy time not in the three classes (the harness, the kernel, the rest).
    pub fn other(&self) -> f64 {
        (self.busy - self.measured - self.postgres - self.kafka).max(0.0)
    }

    /// Share of all the cores' time that was busy.
    pub fn busy_share(&self) -> f64 {
        self.busy / (self.secs * self.cores as f64).max(1e-9)
    }

    /// Core-seconds per million records of `v`.
    pub fn per_m(v: f64, records: u64) -> f64 {
        v / records.max(1) as f64 * 1e6
    }
}

/// Busy jiffies on the aggregate `cpu` line of `/proc/stat`: everything but
/// idle and iowait (guest time is already inside user).
pub fn busy_jiffies(proc_stat: &str) -> Option<u64> {
    let line = proc_stat.lines().find(|l| l.starts_with("cpu "))?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    // user nice system idle iowait irq softirq steal [guest guest_nice]
    let at = |i: usize| f.get(i).copied().unwrap_or(0);
    Some(at(0) + at(1) + at(2) + at(5) + at(6) + at(7))
}

/// utime + stime jiffies of a `/proc/<pid>/stat` line.
pub fn process_jiffies(stat: &str) -> Option<u64> {
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// The class of a process from its `comm` and command line (NUL-separated).
pub fn classify(comm: &str, cmdline: &[u8]) -> Option<Class> {
    match comm.trim() {
        "postgres" => Some(Class::Postgres),
        "java" => cmdline
            .split(|b| *b == 0)
            .any(|arg| arg == b"kafka.Kafka")
            .then_some(Class::Kafka),
        _ => None,
    }
}

impl Snapshot {
    /// Reads `/proc` now; `measured` is the program the span is about.
    pub fn take(measured: u32) -> Self {
        let busy = std::fs::read_to_string("/proc/stat")
            .ok()
            .as_deref()
            .and_then(busy_jiffies)
            .unwrap_or(0);
        let mut procs = HashMap::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let class = if pid == measured {
                Some(Class::Measured)
            } else {
                let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
                let cmdline = if comm.trim() == "java" {
                    std::fs::read(entry.path().join("cmdline")).unwrap_or_default()
                } else {
                    Vec::new()
                };
                classify(&comm, &cmdline)
            };
            let Some(class) = class else { continue };
            if let Some(j) = std::fs::read_to_string(entry.path().join("stat"))
                .ok()
                .as_deref()
                .and_then(process_jiffies)
            {
                procs.insert(pid, (class, j));
            }
        }
        Self {
            at: Instant::now(),
            busy,
            procs,
        }
    }

    /// What happened between `self` and the later snapshot `end`.
    pub fn until(&self, end: &Snapshot) -> Split {
        let tck = crate::runner::clk_tck();
        let mut s = Split {
            secs: end.at.duration_since(self.at).as_secs_f64(),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            busy: end.busy.saturating_sub(self.busy) as f64 / tck,
            ..Split::default()
        };
        for (pid, (class, j)) in &end.procs {
            // A process born inside the span counts from zero.
            let before = self.procs.get(pid).map_or(0, |(_, b)| *b);
            let v = j.saturating_sub(before) as f64 / tck;
            match class {
                Class::Measured => s.measured += v,
                Class::Postgres => s.postgres += v,
                Class::Kafka => s.kafka += v,
            }
        }
        s
    }
}

/// One run in [`table`]: a label, its records and its split.
pub struct Row<'a> {
    pub label: &'a str,
    pub records: u64,
    pub split: Split,
}

/// The Markdown table of where the machine's CPU went, in core-µs per record
/// (= core-seconds per 1M records).
pub fn table(rows: &[Row]) -> String {
    let mut t = String::from(
        "| run | records/s | machine busy | measured program | PostgreSQL | Kafka broker | other | all |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for r in rows.iter().filter(|r| r.split.secs > 0.0) {
        let s = &r.split;
        let us = |v: f64| format!("{:.2}", Split::per_m(v, r.records));
        t += &format!(
            "| {} | {:.0} | {:.0}% of {} cores | {} | {} | {} | {} | {} |\n",
            r.label,
            r.records as f64 / s.secs,
            s.busy_share() * 100.0,
            s.cores,
            us(s.measured),
            us(s.postgres),
            us(s.kafka),
            us(s.other()),
            us(s.busy),
        );
    }
    t
}

/// What `rate` records/s would need in core-µs per record on `cores` cores
/// kept fully busy: the per-record budget of every process together.
pub fn budget_us(rate: f64, cores: usize) -> f64 {
    cores as f64 / rate.max(1e-9) * 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_counts_everything_but_idle_and_iowait() {
        let stat = "cpu  100 5 50 1000 30 2 3 1 0 0\ncpu0 50 2 25 500 15 1 1 0 0 0\n";
        assert_eq!(busy_jiffies(stat), Some(100 + 5 + 50 + 2 + 3 + 1));
        assert_eq!(busy_jiffies("intr 1 2 3\n"), None);
    }

    #[test]
    fn process_time_is_utime_plus_stime_even_with_spaces_in_the_name() {
        // pid (comm) state ppid ... field 14 utime, 15 stime.
        let stat = "42 (my (odd) name) S 1 42 42 0 -1 4194560 100 0 0 0 170 30 0 0 20 0";
        assert_eq!(process_jiffies(stat), Some(200));
        assert_eq!(process_jiffies("garbage"), None);
    }

    #[test]
    fn only_postgres_and_the_kafka_broker_are_classified() {
        assert_eq!(classify("postgres\n", b""), Some(Class::Postgres));
        let kafka = b"java\0-Xmx1g\0-cp\0libs/*\0kafka.Kafka\0server.properties\0";
        assert_eq!(classify("java\n", kafka), Some(Class::Kafka));
        let flink = b"java\0-cp\0flink.jar\0org.apache.flink.Main\0";
        assert_eq!(classify("java\n", flink), None);
        assert_eq!(classify("tidemill\n", b""), None);
    }

    #[test]
    fn other_is_what_the_classes_leave_of_the_busy_time() {
        let s = Split {
            secs: 2.0,
            cores: 2,
            busy: 3.0,
            measured: 1.5,
            postgres: 0.5,
            kafka: 0.25,
        };
        assert!((s.other() - 0.75).abs() < 1e-9);
        assert!((s.busy_share() - 0.75).abs() < 1e-9);
        assert!((Split::per_m(1.5, 500_000) - 3.0).abs() < 1e-9);
    }

    #[test]
    fn the_table_gives_core_microseconds_per_record_and_skips_unmeasured_runs() {
        let split = Split {
            secs: 2.0,
            cores: 2,
            busy: 3.0,
            measured: 1.5,
            postgres: 1.0,
            kafka: 0.25,
        };
        let t = table(&[
            Row {
                label: "W1",
                records: 1_000_000,
                split,
            },
            Row {
                label: "never ran",
                records: 0,
                split: Split::default(),
            },
        ]);
        assert!(
            t.contains("| W1 | 500000 | 75% of 2 cores | 1.50 | 1.00 | 0.25 | 0.25 | 3.00 |"),
            "{t}"
        );
        assert!(!t.contains("never ran"), "{t}");
        // 1M records/s on 2 cores leaves 2 core-µs per record.
        assert!((budget_us(1e6, 2) - 2.0).abs() < 1e-9);
    }

    #[test]
    fn a_snapshot_of_this_machine_sees_this_process_work() {
        let me = std::process::id();
        let a = Snapshot::take(me);
        let t = Instant::now();
        let mut x = 0u64;
        while t.elapsed().as_millis() < 200 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let s = a.until(&Snapshot::take(me));
        assert!(s.measured > 0.0, "{s:?}");
        assert!(s.busy >= s.measured * 0.5, "{s:?}");
    }
}
