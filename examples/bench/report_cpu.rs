//! The report's section on where the machine's CPU went: each baseline's
//! and each drain's split (see [`crate::machine`]), and what W1 at 0.8× raw
//! COPY would leave per record on these cores.

use crate::machine;
use crate::report::{k, Results};
use crate::runner::Workload;
use std::fmt::Write as _;

impl Results {
    /// Where the machine's CPU went in each baseline and drain, and what
    /// W1 at 0.8× raw COPY would leave per record on these cores.
    pub fn machine_section(&self) -> String {
        let mut rows = Vec::new();
        for (label, b) in [
            ("raw consume", self.raw_consume),
            ("raw COPY", self.raw_copy),
            ("consume→COPY", self.consume_copy),
        ] {
            if let Some(b) = b {
                rows.push((label.to_string(), b.records, b.machine));
            }
        }
        for d in &self.drains {
            let eo = if d.spec.exactly_once { "EO" } else { "ALO" };
            rows.push((
                format!("tidemill {} {eo}", d.spec.workload.name()),
                d.records,
                d.machine,
            ));
        }
        let table: Vec<machine::Row> = rows
            .iter()
            .map(|(label, records, split)| machine::Row {
                label,
                records: *records,
                split: *split,
            })
            .collect();
        let mut m = format!(
            "\n## Where the machine's CPU went\n\nCore-µs per record (= core-seconds per 1M records) over each span, from /proc: \
             the measured program (tidemill, or the bench process for a baseline), every `postgres` process, the Kafka broker, \
             and the rest (the harness's polling, the kernel, other processes).\n\n{}",
            machine::table(&table)
        );
        if let (Some(d), Some(c)) = (self.drain(Workload::W1, true), self.raw_copy) {
            let s = d.machine;
            let need = machine::budget_us(0.8 * c.rate(), s.cores);
            let per = |v: f64| machine::Split::per_m(v, d.records);
            let _ = writeln!(
                m,
                "\nW1 exactly-once kept {:.0}% of the {} cores busy and took {:.2} core-µs per record in all \
                 (tidemill {:.2}, PostgreSQL {:.2}, Kafka {:.2}). 0.8× raw COPY ({}/s) would leave {:.2} core-µs per record \
                 for everything on these cores; PostgreSQL's own share of the raw COPY was {:.2}.",
                s.busy_share() * 100.0,
                s.cores,
                per(s.busy),
                per(s.measured),
                per(s.postgres),
                per(s.kafka),
                k(0.8 * c.rate()),
                need,
                machine::Split::per_m(c.machine.postgres, c.records),
            );
        }
        m
    }
}
