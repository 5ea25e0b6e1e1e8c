//! target/bench/report.png: one horizontal bar per measured drain (records/s)
//! — baselines grey, tidemill blue, peers orange — drawn with plotters'
//! bitmap backend. Text needs a TrueType font: DejaVu Sans from the system
//! (Debian: fonts-dejavu-core); without it the chart is skipped with a reason.

use crate::report::Results;
use anyhow::Context as _;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};
use std::path::Path;

const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
const GREY: RGBColor = RGBColor(150, 150, 150);
const BLUE: RGBColor = RGBColor(40, 100, 200);
const ORANGE: RGBColor = RGBColor(230, 130, 30);

fn bars(r: &Results) -> Vec<(String, f64, RGBColor)> {
    let mut v = Vec::new();
    for (name, m) in [
        ("raw consume", r.raw_consume),
        ("raw COPY", r.raw_copy),
        ("consume→COPY", r.consume_copy),
    ] {
        if let Some(m) = m {
            v.push((name.to_string(), m.rate(), GREY));
        }
    }
    for d in &r.drains {
        let mode = if d.spec.exactly_once { "EO" } else { "ALO" };
        v.push((
            format!("tidemill {} {mode}", d.spec.workload.name()),
            d.rate(),
            BLUE,
        ));
    }
    for (label, d, _, _) in r.tracing.iter().skip(1) {
        v.push((format!("tidemill W1 tracing {label}"), d.rate(), BLUE));
    }
    for p in &r.peers {
        if let Ok(run) = &p.outcome {
            v.push((format!("{} {}", p.peer, p.workload), run.rate(), ORANGE));
        }
    }
    v
}

pub fn draw(r: &Results, out: &Path) -> anyhow::Result<()> {
    let font = std::fs::read(FONT)
        .with_context(|| format!("no font at {FONT} (apt-get install fonts-dejavu-core)"))?;
    register_font(
        "sans-serif",
        FontStyle::Normal,
        Box::leak(font.into_boxed_slice()),
    )
    .map_err(|_| anyhow::anyhow!("{FONT} is not a usable font"))?;
    let bars = bars(r);
    let (w, row, top, left) = (1000i32, 30i32, 60i32, 240i32);
    let h = top + row * i32::try_from(bars.len())? + 40;
    let root = BitMapBackend::new(out, (u32::try_from(w)?, u32::try_from(h)?)).into_drawing_area();
    root.fill(&WHITE)?;
    let title = format!(
        "drain throughput, records/s ({} records, higher is better)",
        r.records
    );
    root.draw(&Text::new(title, (10, 15), ("sans-serif", 20).into_font()))?;
    let max = bars.iter().map(|b| b.1).fold(1.0, f64::max);
    let span = f64::from(w - left - 120);
    for (i, (name, v, color)) in bars.iter().enumerate() {
        let y = top + row * i32::try_from(i)?;
        let len = (v / max * span) as i32;
        root.draw(&Text::new(
            name.clone(),
            (10, y + 6),
            ("sans-serif", 15).into_font(),
        ))?;
        root.draw(&Rectangle::new(
            [(left, y + 3), (left + len.max(1), y + row - 3)],
            color.filled(),
        ))?;
        root.draw(&Text::new(
            format!("{:.0}k", v / 1e3),
            (left + len + 6, y + 6),
            ("sans-serif", 15).into_font(),
        ))?;
    }
    root.present()?;
    Ok(())
}
