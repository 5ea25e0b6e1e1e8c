//! Stall time over a measured span, from Linux's pressure stall information
//! (`/proc/pressure/cpu` and `/proc/pressure/io`, their `some` lines: the time
//! in which at least one runnable task waited for a core, or for IO). A
//! thread reads both every 100 ms, so the report gives the worst slice next
//! to the total: a p99 decided by a few stalls shows where they came from.
//!
//! Kernels without PSI (or containers that hide it) have no such files; the
//! sampler then returns nothing and the report leaves the line out.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often the sampler reads the pressure files.
const SLICE: Duration = Duration::from_millis(100);

/// Stall time over a span: totals and the worst slice, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Stalls {
    pub secs: f64,
    pub cpu_us: u64,
    pub io_us: u64,
    pub worst_cpu_us: u64,
    pub worst_io_us: u64,
    /// Slices (of [`SLICE`]) in which some task waited ≥ 10 ms for IO.
    pub io_slices_over_10ms: u64,
    pub slices: u64,
}

impl Stalls {
    pub fn slice_ms() -> u128 {
        SLICE.as_millis()
    }

    /// Share of the span in which some task waited for a core.
    pub fn cpu_share(&self) -> f64 {
        self.cpu_us as f64 / (self.secs * 1e6).max(1.0)
    }

    /// Share of the span in which some task waited for IO.
    pub fn io_share(&self) -> f64 {
        self.io_us as f64 / (self.secs * 1e6).max(1.0)
    }

    /// Adds one slice's stall times.
    fn add(&mut self, cpu_us: u64, io_us: u64) {
        self.cpu_us += cpu_us;
        self.io_us += io_us;
        self.worst_cpu_us = self.worst_cpu_us.max(cpu_us);
        self.worst_io_us = self.worst_io_us.max(io_us);
        self.io_slices_over_10ms += u64::from(io_us >= 10_000);
        self.slices += 1;
    }
}

/// The `total=` of a pressure file's `some` line: µs stalled since boot.
pub fn some_total(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("some "))?;
    line.split_whitespace()
        .find_map(|f| f.strip_prefix("total="))?
        .parse()
        .ok()
}

fn read_totals() -> Option<(u64, u64)> {
    let read = |path| {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|t| some_total(&t))
    };
    Some((read("/proc/pressure/cpu")?, read("/proc/pressure/io")?))
}

/// Samples pressure until [`Sampler::finish`].
pub struct Sampler {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Option<Stalls>>,
}

impl Sampler {
    pub fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let started = Instant::now();
            let (mut cpu, mut io) = read_totals()?;
            let mut stalls = Stalls::default();
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(SLICE); // sampling interval, not synchronisation
                let (c, i) = read_totals()?;
                stalls.add(c.saturating_sub(cpu), i.saturating_sub(io));
                (cpu, io) = (c, i);
            }
            stalls.secs = started.elapsed().as_secs_f64();
            Some(stalls)
        });
        Self { stop, handle }
    }

    /// Stops sampling; None where the kernel has no pressure files.
    pub fn finish(self) -> Option<Stalls> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().ok().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_some_line_total_is_read_and_the_full_line_ignored() {
        let text = "some avg10=1.50 avg60=0.80 avg300=0.20 total=123456\n\
                    full avg10=0.00 avg60=0.00 avg300=0.00 total=999\n";
        assert_eq!(some_total(text), Some(123_456));
        assert_eq!(some_total("full avg10=0.00 total=5\n"), None);
        assert_eq!(some_total("some avg10=0.00\n"), None);
    }

    #[test]
    fn slices_add_to_totals_worst_and_long_io_stalls() {
        let mut s = Stalls::default();
        s.add(2_000, 500);
        s.add(30_000, 12_000);
        s.add(1_000, 9_999);
        s.secs = 0.3;
        assert_eq!((s.cpu_us, s.io_us), (33_000, 22_499));
        assert_eq!((s.worst_cpu_us, s.worst_io_us), (30_000, 12_000));
        assert_eq!((s.io_slices_over_10ms, s.slices), (1, 3));
        assert!((s.cpu_share() - 0.11).abs() < 1e-9);
    }

    #[test]
    fn a_sampler_on_this_machine_measures_its_span_or_reports_no_psi() {
        let sampler = Sampler::start();
        let deadline = Instant::now() + Duration::from_millis(350);
        while Instant::now() < deadline {
            std::hint::spin_loop();
        }
        match (sampler.finish(), read_totals()) {
            (Some(s), Some(_)) => {
                assert!(s.slices >= 2, "{s:?}");
                assert!(s.secs >= 0.3, "{s:?}");
            }
            (None, None) => {}
            (s, t) => panic!("sampler {s:?} but totals {t:?}"),
        }
    }
}
