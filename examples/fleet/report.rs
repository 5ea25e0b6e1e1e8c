//! The fleet run's report: a table per scenario (target/fleet/report.md) and a
//! timeline of throughput and p99 latency with the steps marked (timeline.png).

use crate::settle::Verdict;
use crate::watch::Sample;
use anyhow::Context as _;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};
use std::fmt::Write as _;
use std::path::Path;

pub struct Step {
    pub name: String,
    pub from: i64,
    pub to: i64,
    pub blip_ms: i64,
    pub revoked: usize,
    pub verdict: Verdict,
    pub steady: bool,
}

pub struct Scenario {
    pub name: String,
    pub steps: Vec<Step>,
    pub samples: Vec<Sample>,
    /// (produced ms, end-to-end ms) of every record of the run.
    pub latencies: Vec<(i64, i64)>,
    pub started: i64,
}

/// The p99 end-to-end latency of the records produced in `[from, to)`, in ms.
pub fn p99(latencies: &[(i64, i64)], from: i64, to: i64) -> Option<i64> {
    let mut v: Vec<i64> = latencies
        .iter()
        .filter(|(ts, _)| *ts >= from && *ts < to)
        .map(|(_, l)| *l)
        .collect();
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    Some(
        v[((v.len() as f64 * 0.99).ceil() as usize)
            .saturating_sub(1)
            .min(v.len() - 1)],
    )
}

/// The blip target for a rolling restart in this scenario, in ms.
fn blip_target(scenario: &str) -> i64 {
    if scenario.contains("static membership") && !scenario.contains("no static") {
        500
    } else if scenario.contains("KIP-848") {
        1_000
    } else {
        3_000
    }
}

pub fn markdown(scenarios: &[Scenario], rate: u64) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# Fleet run\n\nA producer at {rate} records/s the whole run, a 12-partition topic, two pipelines \
         (running totals → upsert, every record → append), real `tidemill` processes. After each step the \
         producer pauses and the run checks exactly. Blip: the longest time a partition with lag made no \
         progress (sampled every 100 ms). p99: end-to-end (produced → row in the database) of the records \
         produced during the step, against the latest steady-state window before it. Revoked: revocations suffered by instances the step did not restart.\n"
    );
    for s in scenarios {
        let _ = writeln!(md, "## {}\n", s.name);
        let _ = writeln!(
            md,
            "| step | blip ms | p99 ms | p99 ÷ steady | revoked | records | lost | duplicated | totals wrong | Kafka ≠ checkpoint | settled in ms |\n|---|---|---|---|---|---|---|---|---|---|---|"
        );
        for (i, st) in s.steps.iter().enumerate() {
            let steady = baseline(s, i);
            let p = p99(&s.latencies, st.from, st.to);
            let ratio = match (p, steady) {
                (Some(p), Some(b)) if b > 0 => format!("{:.2}", p as f64 / b as f64),
                _ => "—".into(),
            };
            let v = &st.verdict;
            let _ = writeln!(
                md,
                "| {} | {} | {} | {ratio} | {} | {} | {} | {} | {} | {} | {} |",
                st.name,
                st.blip_ms,
                p.map_or("—".into(), |p| p.to_string()),
                st.revoked,
                v.produced,
                v.lost,
                v.duplicated,
                v.totals_wrong,
                v.offsets_differ,
                v.settle_ms
            );
        }
        let target = blip_target(&s.name);
        for (i, st) in s
            .steps
            .iter()
            .enumerate()
            .filter(|(_, st)| st.name == "rolling restart")
        {
            let steady = baseline(s, i);
            let p = p99(&s.latencies, st.from, st.to);
            let p_ok = matches!((p, steady), (Some(p), Some(b)) if p <= 2 * b);
            let _ = writeln!(
                md,
                "\nRolling restart: blip {} ms against a target of {target} ms ({}); p99 {} against ≤ 2× steady ({}).",
                st.blip_ms,
                if st.blip_ms <= target { "met" } else { "not met" },
                p.map_or("—".into(), |p| format!("{p} ms")),
                if p_ok { "met" } else { "not met" }
            );
        }
        let _ = writeln!(md);
    }
    md
}

/// The p99 of the latest steady-state window up to step `i`: the baseline a
/// step is compared with (the same number of instances, no fault).
fn baseline(s: &Scenario, i: usize) -> Option<i64> {
    s.steps[..=i]
        .iter()
        .rev()
        .find(|st| st.steady)
        .and_then(|st| p99(&s.latencies, st.from, st.to))
}

const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// Records loaded per second (from the `log` checkpoints) and the p99 latency
/// per second, per scenario, with each step's start marked.
pub fn timeline(scenarios: &[Scenario], out: &Path) -> anyhow::Result<()> {
    let font = std::fs::read(FONT).with_context(|| format!("no font at {FONT}"))?;
    register_font(
        "sans-serif",
        FontStyle::Normal,
        Box::leak(font.into_boxed_slice()),
    )
    .map_err(|_| anyhow::anyhow!("{FONT} is not a usable font"))?;
    let rows = u32::try_from(scenarios.len())?;
    let root = BitMapBackend::new(out, (1200, 320 * rows.max(1))).into_drawing_area();
    root.fill(&WHITE)?;
    for (s, area) in scenarios
        .iter()
        .zip(root.split_evenly((scenarios.len(), 1)))
    {
        let (tput, lat) = series(s);
        let x_max = tput.last().map_or(1.0, |p| p.0).max(1.0);
        let y_max = tput.iter().map(|p| p.1).fold(1.0, f64::max) * 1.2;
        let l_max = lat.iter().map(|p| p.1).fold(1.0, f64::max) * 1.2;
        let mut chart = ChartBuilder::on(&area)
            .caption(&s.name, ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .right_y_label_area_size(60)
            .build_cartesian_2d(0.0..x_max, 0.0..y_max)?
            .set_secondary_coord(0.0..x_max, 0.0..l_max);
        chart
            .configure_mesh()
            .x_desc("seconds")
            .y_desc("records/s loaded")
            .draw()?;
        chart.configure_secondary_axes().y_desc("p99 ms").draw()?;
        chart.draw_series(LineSeries::new(tput, &BLUE))?;
        chart.draw_secondary_series(LineSeries::new(lat, &RED))?;
        for st in &s.steps {
            let x = (st.from - s.started) as f64 / 1000.0;
            chart.draw_series(std::iter::once(PathElement::new(
                vec![(x, 0.0), (x, y_max)],
                BLACK.mix(0.3),
            )))?;
            chart.draw_series(std::iter::once(Text::new(
                st.name.clone(),
                (x, y_max * 0.95),
                ("sans-serif", 11),
            )))?;
        }
    }
    root.present()?;
    Ok(())
}

/// (x, y) points of a line.
type Line = Vec<(f64, f64)>;

/// (second, records/s) and (second, p99 ms) points of a scenario.
fn series(s: &Scenario) -> (Line, Line) {
    let mut tput = Vec::new();
    let mut last: Option<(i64, i64)> = None;
    for sample in &s.samples {
        let total: i64 = sample.checkpoint.iter().sum();
        let sec = (sample.t_ms - s.started) / 1000;
        match last {
            Some((at, was)) if sample.t_ms - at >= 1000 => {
                let rate = (total - was) as f64 * 1000.0 / (sample.t_ms - at) as f64;
                tput.push((sec as f64, rate.max(0.0)));
                last = Some((sample.t_ms, total));
            }
            None => last = Some((sample.t_ms, total)),
            _ => {}
        }
    }
    let end = s.latencies.iter().map(|l| l.0).max().unwrap_or(s.started);
    let lat = (0..=(end - s.started) / 1000)
        .filter_map(|sec| {
            let from = s.started + sec * 1000;
            p99(&s.latencies, from, from + 1000).map(|p| (sec as f64, p as f64))
        })
        .collect();
    (tput, lat)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p99_is_the_value_below_which_99_percent_fall() {
        let lat: Vec<(i64, i64)> = (0..100).map(|i| (i, i + 1)).collect();
        assert_eq!(p99(&lat, 0, 100), Some(99));
        assert_eq!(p99(&lat, 200, 300), None);
    }

    #[test]
    fn blip_targets_follow_the_scenario() {
        assert_eq!(
            blip_target("classic protocol, static membership, PostgreSQL"),
            500
        );
        assert_eq!(
            blip_target("KIP-848 consumer protocol, no static membership, PostgreSQL"),
            1_000
        );
        assert_eq!(
            blip_target("classic protocol, no static membership, PostgreSQL"),
            3_000
        );
    }
}
