//! The chaos run's report (target/chaos/report.md): each fault with its
//! start time, how long it took and how long the fleet took to recover, and
//! the exact totals at the end.

use crate::verify::Outcome;
use std::fmt::Write as _;
use std::time::Duration;

pub struct Injected {
    pub at: Duration,
    pub what: String,
    pub took: Duration,
    pub recovery: Option<Duration>,
}

pub fn markdown(
    db: &str,
    seed: u64,
    rate: u64,
    faults: &[Injected],
    o: &Outcome,
    elapsed: Duration,
) -> String {
    let mut md = String::new();
    let verdict = if o.exact() { "PASS" } else { "FAIL" };
    let _ = writeln!(
        md,
        "# Chaos soak: {verdict}\n\n{db}, 2 instances × 3 pipelines (append, running totals, 1 s windows), \
         {rate} records/s, seed {seed}, {:.0} s in all.\n",
        elapsed.as_secs_f64()
    );
    let _ = writeln!(
        md,
        "| at (s) | fault | took (s) | recovered after (s) |\n|---:|---|---:|---:|"
    );
    for f in faults {
        let recovery = f.recovery.map_or("not within the limit".to_string(), |d| {
            format!("{:.1}", d.as_secs_f64())
        });
        let _ = writeln!(
            md,
            "| {:.1} | {} | {:.1} | {recovery} |",
            f.at.as_secs_f64(),
            f.what,
            f.took.as_secs_f64()
        );
    }
    let counted = |what: &str, m: &std::collections::BTreeMap<String, i64>| {
        m.iter()
            .map(|(p, n)| format!("{what} {p}: {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let recoveries: Vec<f64> = faults
        .iter()
        .filter_map(|f| f.recovery.map(|d| d.as_secs_f64()))
        .collect();
    let worst = recoveries.iter().copied().fold(0.0, f64::max);
    let _ = writeln!(
        md,
        "\n| total | figure |\n|---|---:|\n| good records | {} |\n| poison records | {} |\n\
         | lost | {} |\n| duplicated | {} |\n| loaded but no good record | {} |\n| running totals wrong | {} |\n| windows wrong | {} |\n\
         | faults | {} |\n| slowest recovery (s) | {worst:.1} |\n\n{}\n\n{}\n\n{}\n",
        o.good,
        o.poison,
        o.lost,
        o.duplicated,
        o.unexpected,
        o.totals_wrong,
        o.windows_wrong,
        faults.len(),
        counted("poison not dead-lettered by", &o.undead_lettered),
        counted("good records dead-lettered by", &o.good_dead_lettered),
        o.examples.join("; "),
    );
    md
}
