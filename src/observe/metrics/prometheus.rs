//! Prometheus text format (version 0.0.4) for `/metrics`: one `# HELP`/`# TYPE`
//! block per family, histograms as cumulative `_bucket{le}` series plus
//! `_sum` and `_count`.

use super::{collect, Family, Kind, Point, Registry, Value};
use std::fmt::Write as _;

/// Renders every pipeline's figures in the Prometheus text format.
pub fn metrics(registry: &Registry) -> String {
    render(&collect(registry))
}

pub fn render(families: &[Family]) -> String {
    let mut out = String::new();
    for f in families {
        let kind = match f.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        let _ = writeln!(
            out,
            "# HELP {} {}\n# TYPE {} {kind}",
            f.name, f.help, f.name
        );
        for p in &f.points {
            point(&mut out, f.name, p);
        }
    }
    out
}

fn labels(labels: &[(&str, String)], extra: Option<(&str, &str)>) -> String {
    let mut all: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    if let Some((k, v)) = extra {
        all.push(format!("{k}=\"{v}\""));
    }
    all.join(",")
}

fn point(out: &mut String, name: &str, p: &Point) {
    match &p.value {
        Value::Int(v) => {
            let _ = writeln!(out, "{name}{{{}}} {v}", labels(&p.labels, None));
        }
        Value::Histogram((bounds, buckets, count, sum)) => {
            for (bound, n) in bounds.iter().zip(buckets) {
                let le = bound.to_string();
                let _ = writeln!(
                    out,
                    "{name}_bucket{{{}}} {n}",
                    labels(&p.labels, Some(("le", &le)))
                );
            }
            let _ = writeln!(
                out,
                "{name}_bucket{{{}}} {count}",
                labels(&p.labels, Some(("le", "+Inf")))
            );
            let plain = labels(&p.labels, None);
            let _ = writeln!(out, "{name}_sum{{{plain}}} {sum}");
            let _ = writeln!(out, "{name}_count{{{plain}}} {count}");
        }
    }
}
