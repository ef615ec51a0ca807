//! The plots, as data for [`crate::plot`]: the same builders serve one run (a report) and many (a comparison).

use std::path::{Path, PathBuf};

use hdrhistogram::Histogram;

use crate::RunAnalysis;
use crate::model::{TimelineEvent, Window};
use crate::output::ReportError;
use crate::plot::{Axis, Figure, Marker, Panel, Scale, Series, save};

const MS: f64 = 1e-3;

/// One run as it appears in plots: its legend label (flagged when untrustworthy) and its analysis.
pub(crate) struct Labelled<'a> {
    label: String,
    analysis: &'a RunAnalysis,
}

impl<'a> Labelled<'a> {
    /// Pairs `label` with `analysis`; an untrustworthy run's label says so.
    pub fn new(label: &str, analysis: &'a RunAnalysis) -> Self {
        let flag = if analysis.is_untrustworthy() { " [UNTRUSTWORTHY]" } else { "" };
        Self { label: format!("{label}{flag}"), analysis }
    }
}

/// Draws the per-run plots (three CDFs and the timeline), one curve per run, into `dir`; returns the files.
pub(crate) fn write_run_plots(runs: &[Labelled<'_>], dir: &Path) -> Result<Vec<PathBuf>, ReportError> {
    let figures = [
        ("scheduling-latency-cdf", scheduling_latency_cdf(runs)),
        ("function-scheduling-latency-cdf", function_latency_cdf(runs)),
        ("function-slowdown-cdf", function_slowdown_cdf(runs)),
        ("timeline", timeline(runs)),
    ];
    let mut files = Vec::new();
    for (stem, figure) in &figures {
        files.extend(save(figure, dir, stem)?);
    }
    Ok(files)
}

/// One curve per run, from `points`.
fn series_per_run(runs: &[Labelled<'_>], points: impl Fn(&RunAnalysis) -> Vec<(f64, f64)>) -> Vec<Series> {
    runs.iter()
        .enumerate()
        .map(|(color, run)| Series { label: run.label.clone(), points: points(run.analysis), color, markers: false })
        .collect()
}

fn cdf_figure(title: &str, x: Axis, y_label: &str, series: Vec<Series>) -> Figure {
    let panel = Panel { title: String::new(), x, y: Axis::fraction(y_label), series, markers: Vec::new() };
    Figure { title: title.into(), panels: vec![panel] }
}

fn scheduling_latency_cdf(runs: &[Labelled<'_>]) -> Figure {
    let series = series_per_run(runs, |run| histogram_cdf(&run.samples.scheduling_latency, MS));
    let x = Axis::new("scheduling latency (ms)", Scale::Log);
    cdf_figure("Scheduling latency per invocation (CDF)", x, "fraction of invocations", series)
}

fn function_latency_cdf(runs: &[Labelled<'_>]) -> Figure {
    let series = series_per_run(runs, |run| values_cdf(&run.function_latencies(), MS));
    let x = Axis::new("mean scheduling latency of a function (ms)", Scale::Log);
    cdf_figure("Per-function average scheduling latency (CDF)", x, "fraction of functions", series)
}

fn function_slowdown_cdf(runs: &[Labelled<'_>]) -> Figure {
    let series = series_per_run(runs, |run| values_cdf(&run.function_slowdowns(), 1.0));
    let x = Axis::new("slowdown: response time / requested duration (geometric mean)", Scale::Log);
    cdf_figure("Per-function slowdown (CDF)", x, "fraction of functions", series)
}

/// The timeline: throughput, cold starts and p99 scheduling latency per window, with each run's timed events
/// (e.g. injected failures) marked in every panel in the run's colour.
fn timeline(runs: &[Labelled<'_>]) -> Figure {
    let window_s = runs.first().map_or(10.0, |run| run.analysis.timeline.window_s);
    // The axis ends with the last window, so a run shorter than one window still gets a sensible axis.
    let end_of = |run: &Labelled<'_>| {
        let timeline = &run.analysis.timeline;
        timeline.windows.last().map_or(0.0, |window| window.start_s + timeline.window_s)
    };
    let end_s = runs.iter().map(end_of).fold(window_s, f64::max);
    let markers = event_markers(runs);
    let panel = |title: &str, y: Axis, value: fn(&Window) -> Option<f64>| Panel {
        title: title.into(),
        x: Axis { range: Some((0.0, end_s)), ..Axis::new("time since run start (s)", Scale::Linear) },
        y,
        series: series_per_run(runs, |run| {
            let windows = &run.timeline.windows;
            windows.iter().filter_map(|window| Some((window.start_s, value(window)?))).collect()
        }),
        markers: markers.clone(),
    };
    let cold_known = |run: &RunAnalysis| run.counts.cold_starts.is_some();
    let all_cold_known = runs.iter().all(|run| cold_known(run.analysis));
    Figure {
        title: format!("Timeline per {} s window", crate::plot::tick(window_s)),
        panels: vec![
            panel("Throughput", Axis::new("successful invocations/s", Scale::Linear), |w| Some(w.ok_per_s)),
            panel(
                if all_cold_known { "Cold starts" } else { "Cold starts (not recorded for every run)" },
                Axis::new("cold starts/s", Scale::Linear),
                |w| Some(w.cold_starts_per_s),
            ),
            panel("p99 scheduling latency", Axis::new("p99 scheduling latency (ms)", Scale::Log), |w| {
                w.p99_scheduling_latency_us.map(|us| us * MS)
            }),
        ],
    }
}

/// Every run's timed events as markers in the run's colour, by time (untimed events are left out).
fn event_markers(runs: &[Labelled<'_>]) -> Vec<Marker> {
    let mut markers: Vec<Marker> = (0..)
        .zip(runs)
        .flat_map(|(color, run)| {
            let timed = run.analysis.events.iter().filter_map(|event| Some((event.at_s?, event)));
            timed.map(move |(x, event)| Marker { x, label: event_label(event), color })
        })
        .collect();
    markers.sort_by(|a, b| a.x.total_cmp(&b.x));
    markers
}

/// A marker's text: the event's kind and component, e.g. `kill worker-1`.
fn event_label(event: &TimelineEvent) -> String {
    let kind = event.kind.as_deref().unwrap_or("event");
    event.component.as_ref().map_or_else(|| kind.to_owned(), |component| format!("{kind} {component}"))
}

/// One point of a sweep figure.
pub(crate) struct SweepPoint {
    /// Achieved cold starts per second.
    pub cold_starts_per_s: f64,
    /// Median end-to-end latency, µs.
    pub p50_us: f64,
    /// 99th percentile end-to-end latency, µs.
    pub p99_us: f64,
}

/// The Dirigent paper's cold-start sweep figure: end-to-end latency p50 and p99 against achieved cold starts/s.
pub(crate) fn sweep_figure(points: &[SweepPoint], untrustworthy: usize) -> Figure {
    let curve = |label: &str, color, value: fn(&SweepPoint) -> f64| Series {
        label: label.into(),
        points: points.iter().map(|point| (point.cold_starts_per_s, value(point) * MS)).collect(),
        color,
        markers: true,
    };
    let flag =
        if untrustworthy > 0 { format!(" ({untrustworthy} untrustworthy runs, see sweep.md)") } else { String::new() };
    let panel = Panel {
        title: String::new(),
        x: Axis::new("achieved cold starts per second", Scale::Linear),
        y: Axis::new("end-to-end latency (ms)", Scale::Log),
        series: vec![curve("p50", 0, |point| point.p50_us), curve("p99", 1, |point| point.p99_us)],
        markers: Vec::new(),
    };
    Figure { title: format!("Cold-start sweep: latency vs cold starts per second{flag}"), panels: vec![panel] }
}

/// CDF points of a histogram: each recorded value (scaled) against the share of values at or below it.
fn histogram_cdf(histogram: &Histogram<u64>, scale: f64) -> Vec<(f64, f64)> {
    let total = histogram.len().max(1) as f64;
    let mut seen = 0u64;
    histogram
        .iter_recorded()
        .map(|value| {
            seen += value.count_at_value();
            (histogram.highest_equivalent(value.value_iterated_to()) as f64 * scale, seen as f64 / total)
        })
        .collect()
}

/// CDF points of a list of values (scaled).
fn values_cdf(values: &[f64], scale: f64) -> Vec<(f64, f64)> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let total = sorted.len() as f64;
    sorted.iter().enumerate().map(|(index, value)| (value * scale, (index + 1) as f64 / total)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cdfs_end_at_one() {
        let mut histogram = Histogram::<u64>::new(3).unwrap();
        for value in [1000, 1000, 2000, 4000] {
            histogram.record(value).unwrap();
        }
        let points = histogram_cdf(&histogram, MS);
        assert_eq!(points.iter().map(|p| p.1).collect::<Vec<_>>(), [0.5, 0.75, 1.0]);
        assert!((points[0].0 - 1.0).abs() < 0.01);
        assert_eq!(values_cdf(&[3.0, 1.0], 1.0), [(1.0, 0.5), (3.0, 1.0)]);
    }
}
