//! The result of analysing one run: what reports, comparisons, sweeps and the gate read.

use std::path::PathBuf;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::Options;
use contracts::run_folder::{Manifest, RunSummary};

/// Count, mean and percentiles of a distribution (µs for latencies, a plain ratio for slowdown).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Percentiles {
    /// Number of values.
    pub count: u64,
    /// Arithmetic mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest value.
    pub max: f64,
}

/// The quantiles every table shows, with their labels.
pub(crate) const QUANTILES: [(&str, f64); 4] = [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999)];

impl Percentiles {
    /// Of a histogram, with the exactly tracked `mean`; `None` when it is empty.
    pub fn of_histogram(histogram: &Histogram<u64>, mean: f64) -> Option<Self> {
        let at = |quantile| histogram.value_at_quantile(quantile) as f64;
        (!histogram.is_empty()).then(|| Self {
            count: histogram.len(),
            mean,
            p50: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            p999: at(0.999),
            max: histogram.max() as f64,
        })
    }

    /// Of a list of values (nearest-rank percentiles); `None` when it is empty.
    pub fn of_values(values: &[f64]) -> Option<Self> {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let at = |quantile| nearest_rank(&sorted, quantile);
        Some(Self {
            count: sorted.len() as u64,
            mean: sorted.iter().sum::<f64>() / sorted.len() as f64,
            p50: at(0.5)?,
            p90: at(0.9)?,
            p99: at(0.99)?,
            p999: at(0.999)?,
            max: *sorted.last()?,
        })
    }

    /// The percentiles in [`QUANTILES`] order, then the max.
    pub(crate) fn values(&self) -> [f64; 5] {
        [self.p50, self.p90, self.p99, self.p999, self.max]
    }
}

/// The nearest-rank `quantile` of `sorted` values (the smallest value with at least that share at or below it).
pub(crate) fn nearest_rank(sorted: &[f64], quantile: f64) -> Option<f64> {
    let rank = (quantile * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len().max(1)) - 1).copied()
}

/// Row and invocation counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    /// Rows read.
    pub rows: u64,
    /// Warm-up rows (phase 1) left out.
    pub excluded_warmup: u64,
    /// Rows left out because they fall in the excluded leading window.
    pub excluded_leading: u64,
    /// Rows analysed.
    pub analysed: u64,
    /// Analysed invocations that succeeded.
    pub ok: u64,
    /// Failed: no connection or a broken one (vHive's `connectionTimeout`).
    pub connection_failures: u64,
    /// Failed: the request timed out (vHive's `functionTimeout`).
    pub function_timeouts: u64,
    /// Failed otherwise, e.g. an HTTP error status.
    pub other_failures: u64,
    /// Analysed invocations that met a cold start; `None` when the CSV does not say.
    pub cold_starts: Option<u64>,
    /// Successful invocations with slowdown < 1 (response faster than requested), excluded from slowdown.
    pub slowdown_below_one: u64,
    /// Successful invocations without a reported execution time (no scheduling latency).
    pub missing_execution_time: u64,
}

impl Counts {
    /// Failed invocations of any kind.
    pub fn failures(&self) -> u64 {
        self.connection_failures + self.function_timeouts + self.other_failures
    }
}

/// Shares of the analysed invocations, 0..1.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Shares {
    /// Cold starts; `None` when unknown.
    pub cold_start: Option<f64>,
    /// Failures of any kind.
    pub failure: f64,
    /// Connection failures.
    pub connection_failure: f64,
    /// Function timeouts.
    pub function_timeout: f64,
    /// Other failures.
    pub other_failure: f64,
}

/// Rates over the analysed interval.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rates {
    /// Length of the analysed interval, s: the span of intended send times plus one mean gap, so that
    /// `count / duration` is exact for equidistant arrivals.
    pub duration_s: f64,
    /// Requested invocations per second: the loader summary's (whole measured phase), else the config's rate.
    pub requested_per_s: Option<f64>,
    /// Analysed invocations per second.
    pub achieved_per_s: f64,
    /// Successful invocations per second.
    pub ok_per_s: f64,
    /// Cold starts per second; `None` when unknown.
    pub cold_starts_per_s: Option<f64>,
}

/// One function's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionResult {
    /// The function (`instance`).
    pub name: String,
    /// Analysed invocations.
    pub invocations: u64,
    /// Successful ones.
    pub ok: u64,
    /// Failed ones.
    pub failures: u64,
    /// Cold starts.
    pub cold_starts: u64,
    /// Mean scheduling latency of its successful invocations, µs.
    pub mean_scheduling_latency_us: Option<f64>,
    /// Geometric mean of response time / requested duration over its successful invocations with slowdown ≥ 1.
    pub slowdown: Option<f64>,
    /// Its successful invocations with slowdown < 1 (excluded from `slowdown`).
    pub slowdown_below_one: u64,
}

/// One timeline window.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Window {
    /// Start of the window, s since the run's start.
    pub start_s: f64,
    /// Analysed invocations per second (by intended send time).
    pub invocations_per_s: f64,
    /// Successful invocations per second.
    pub ok_per_s: f64,
    /// Cold starts per second.
    pub cold_starts_per_s: f64,
    /// p99 scheduling latency of the window's successful invocations, µs.
    pub p99_scheduling_latency_us: Option<f64>,
}

/// The run over time, one entry per window from the first analysed one to the last.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Timeline {
    /// Window width, s.
    pub window_s: f64,
    /// The windows.
    pub windows: Vec<Window>,
}

/// One event of the run from `manifest.json` (e.g. an injected failure), placed on the timeline's axis.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TimelineEvent {
    /// What happened, e.g. `kill` or `restart`.
    pub kind: Option<String>,
    /// The component it happened to, e.g. `worker-1`.
    pub component: Option<String>,
    /// The host the component runs on.
    pub host: Option<String>,
    /// Further detail, e.g. the signal.
    pub detail: Option<String>,
    /// When, s since the run's start (the timeline windows' `start_s` axis; negative before it); `None` when the
    /// event has no `unixUs` or the run has no start.
    pub at_s: Option<f64>,
}

/// How the run recovered from one timed `kill` event, over the analysed invocations intended from the kill on.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Recovery {
    /// The killed component, e.g. `worker-1`.
    pub component: Option<String>,
    /// The kill's detail, e.g. `SIGKILL (the leader)`.
    pub detail: Option<String>,
    /// When it was killed, s since the run's start (as [`TimelineEvent::at_s`]); `None` when the run has no start.
    pub at_s: Option<f64>,
    /// Invocations intended from the kill until the next later kill (or the run's end) that did not succeed.
    pub failed: u64,
    /// Seconds from the kill to the earliest completion (intended + response time) of a success intended from it on.
    pub first_ok_s: Option<f64>,
    /// The same for a successful cold start; `None` also when the CSV does not say which were cold starts.
    pub first_cold_ok_s: Option<f64>,
    /// Seconds from the kill to the intended time of its window's last failure (service whole again after it).
    pub last_failure_s: Option<f64>,
}

/// The per-invocation distributions kept for plots and the gate (not serialized).
#[derive(Debug, Clone)]
pub struct Samples {
    /// Scheduling latency of successful invocations, µs.
    pub scheduling_latency: Histogram<u64>,
    /// Response time of successful invocations, µs.
    pub response_time: Histogram<u64>,
}

/// Everything computed from one run folder; `report.json` is this, serialized.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunAnalysis {
    /// The run folder.
    pub run_dir: PathBuf,
    /// The options used.
    pub options: Options,
    /// The loader's verdict on its own send lag; `None` when the run folder has no `summary.json`.
    pub trustworthy: Option<bool>,
    /// From `manifest.json`, when present.
    pub manifest: Option<Manifest>,
    /// From `summary.json`, when present.
    pub loader_summary: Option<RunSummary>,
    /// Counts.
    pub counts: Counts,
    /// Shares of the analysed invocations.
    pub shares: Shares,
    /// Rates.
    pub rates: Rates,
    /// Per-invocation scheduling latency (response time − execution time) of successful invocations, µs.
    pub scheduling_latency_us: Option<Percentiles>,
    /// Per-invocation response time of successful invocations, µs.
    pub response_time_us: Option<Percentiles>,
    /// Send lag of the analysed invocations, µs (the loader's own figures are in `loader_summary`).
    pub send_lag_us: Option<Percentiles>,
    /// Distribution over functions of the per-function mean scheduling latency, µs.
    pub function_scheduling_latency_us: Option<Percentiles>,
    /// Distribution over functions of the per-function slowdown.
    pub function_slowdown: Option<Percentiles>,
    /// Per function, by name.
    pub functions: Vec<FunctionResult>,
    /// Throughput, cold starts and p99 scheduling latency over time.
    pub timeline: Timeline,
    /// The manifest's events, in its order, placed on the timeline's axis.
    pub events: Vec<TimelineEvent>,
    /// Per timed kill, by time: how the run recovered; empty when nothing was killed.
    pub recovery: Vec<Recovery>,
    /// Histograms for plots and the gate.
    #[serde(skip)]
    pub samples: Samples,
}

impl RunAnalysis {
    /// Whether the loader marked the run untrustworthy (its send lag exceeded the threshold).
    pub fn is_untrustworthy(&self) -> bool {
        self.trustworthy == Some(false)
    }

    /// `trustworthy`, `UNTRUSTWORTHY` or `trustworthiness unknown`, for every output.
    pub fn trust_label(&self) -> &'static str {
        match self.trustworthy {
            Some(true) => "trustworthy",
            Some(false) => "UNTRUSTWORTHY",
            None => "trustworthiness unknown",
        }
    }

    /// Per-function mean scheduling latencies, µs (functions with one).
    pub fn function_latencies(&self) -> Vec<f64> {
        self.functions.iter().filter_map(|function| function.mean_scheduling_latency_us).collect()
    }

    /// Per-function slowdowns (functions with one).
    pub fn function_slowdowns(&self) -> Vec<f64> {
        self.functions.iter().filter_map(|function| function.slowdown).collect()
    }
}
