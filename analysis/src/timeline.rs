//! Per-window accumulation for the timeline. Windows live in a map keyed by index, so a gap (or a stray
//! timestamp) costs nothing; each holds counters and a small histogram, never rows.

use std::collections::BTreeMap;

use contracts::run_folder::MAX_RECORDED_US;
use hdrhistogram::Histogram;

use crate::model::{Timeline, Window};

/// Gaps are filled with empty windows (a stall shows as zero throughput) up to this many windows in all.
const MAX_FILLED_WINDOWS: u64 = 100_000;

/// 2 significant digits (1% resolution) and u32 counters keep a window's histogram at a few KB.
const WINDOW_DIGITS: u8 = 2;

#[derive(Debug, Default)]
struct WindowCounts {
    invocations: u64,
    ok: u64,
    cold_starts: u64,
    latency: Option<Histogram<u32>>,
}

/// Folds analysed invocations into windows of `window_us` from `origin_us`.
#[derive(Debug)]
pub(crate) struct TimelineAccumulator {
    origin_us: u64,
    window_us: u64,
    windows: BTreeMap<u64, WindowCounts>,
}

impl TimelineAccumulator {
    /// An empty timeline; `window_us` must be positive.
    pub fn new(origin_us: u64, window_us: u64) -> Self {
        Self { origin_us, window_us, windows: BTreeMap::new() }
    }

    /// Adds one analysed invocation at `time_us`; `latency_us` is its scheduling latency if it has one.
    pub fn add(&mut self, time_us: u64, ok: bool, cold: bool, latency_us: Option<u64>) {
        let index = time_us.saturating_sub(self.origin_us) / self.window_us;
        let window = self.windows.entry(index).or_default();
        window.invocations += 1;
        window.ok += u64::from(ok);
        window.cold_starts += u64::from(cold);
        if let Some(latency) = latency_us {
            let histogram = window.latency.get_or_insert_with(new_window_histogram);
            // Recording only fails when a u32 bucket would overflow (4 billion values in one window).
            let _ = histogram.record(latency.min(MAX_RECORDED_US));
        }
    }

    /// The finished timeline; `span` (the analysed part of the schedule, `(start, end)` in Unix µs, when known)
    /// shortens the windows it cuts, so their rates are not diluted by time outside the analysed run.
    pub fn finish(self, span: Option<(u64, u64)>) -> Timeline {
        let window_s = self.window_us as f64 / 1e6;
        let empty = WindowCounts::default();
        let width_s = |index: u64| {
            let (from, to) = (self.origin_us + index * self.window_us, self.origin_us + (index + 1) * self.window_us);
            let inside_us = span.map_or(self.window_us, |(start, end)| to.min(end).saturating_sub(from.max(start)));
            // A window wholly outside the span (stray rows) keeps its full width.
            if inside_us == 0 { window_s } else { inside_us as f64 / 1e6 }
        };
        let result = |index: u64, counts: &WindowCounts| {
            let width = width_s(index);
            Window {
                start_s: index as f64 * window_s,
                invocations_per_s: counts.invocations as f64 / width,
                ok_per_s: counts.ok as f64 / width,
                cold_starts_per_s: counts.cold_starts as f64 / width,
                p99_scheduling_latency_us: counts.latency.as_ref().map(|h| h.value_at_quantile(0.99) as f64),
            }
        };
        let windows = match (self.windows.first_key_value(), self.windows.last_key_value()) {
            (Some((&first, _)), Some((&last, _))) if last - first < MAX_FILLED_WINDOWS => {
                (first..=last).map(|index| result(index, self.windows.get(&index).unwrap_or(&empty))).collect()
            }
            _ => self.windows.iter().map(|(&index, counts)| result(index, counts)).collect(),
        };
        Timeline { window_s, windows }
    }
}

fn new_window_histogram() -> Histogram<u32> {
    let mut histogram = Histogram::new(WINDOW_DIGITS).expect("2 significant digits is valid");
    histogram.auto(true);
    histogram
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_windows_are_measured_only_over_the_analysed_span() {
        // 10 s windows from t = 1000 s; the run ends 15 s in, so the second window covers 5 s.
        let mut timeline = TimelineAccumulator::new(1_000_000_000, 10_000_000);
        for k in 0..15u64 {
            timeline.add(1_000_000_000 + k * 1_000_000, true, k == 0, Some(100));
        }
        let windows = timeline.finish(Some((1_000_000_000, 1_015_000_000))).windows;
        assert_eq!(windows.len(), 2);
        assert_eq!((windows[0].start_s, windows[0].ok_per_s, windows[0].cold_starts_per_s), (0.0, 1.0, 0.1));
        assert_eq!((windows[1].start_s, windows[1].ok_per_s), (10.0, 1.0));
        // A warm-up up to 4 s in leaves 6 s of the first window: 6 invocations in it are 1 per second.
        let mut late_start = TimelineAccumulator::new(0, 10_000_000);
        for k in 4..10u64 {
            late_start.add(k * 1_000_000, true, false, None);
        }
        assert_eq!(late_start.finish(Some((4_000_000, u64::MAX))).windows[0].ok_per_s, 1.0);
        let mut unknown_end = TimelineAccumulator::new(0, 10_000_000);
        unknown_end.add(12_000_000, true, false, None);
        let windows = unknown_end.finish(None).windows;
        assert_eq!((windows[0].start_s, windows[0].ok_per_s), (10.0, 0.1));
    }
}
