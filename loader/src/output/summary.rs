//! `summary.json`: counts, percentiles, rates and the trustworthy flag, per function and overall.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::OutputError;
use super::stats::{Counts, FunctionStats, RunStats};

/// What the summary needs beyond the records themselves.
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryInputs {
    /// Length of the measured phase, seconds (the rate denominator).
    pub measured_duration_s: f64,
    /// Length of the whole schedule, warm-up included, seconds (from the run start to the last intended send).
    pub run_duration_s: f64,
    /// Measured invocations the schedule asked for, per function index (empty: requested rates are `null`).
    pub scheduled_per_function: Vec<u64>,
    /// A run (or function) is trustworthy when its send-lag p99 is at most this, µs.
    pub send_lag_threshold_us: u64,
}

/// Percentiles of one histogram, µs; `null` in JSON when nothing was recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Percentiles {
    /// Number of values recorded.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest value (capped at [`super::MAX_RECORDED_US`]).
    pub max: u64,
}

impl Percentiles {
    /// Percentiles of `histogram`, or `None` when it is empty.
    pub fn of(histogram: &Histogram<u64>) -> Option<Self> {
        (!histogram.is_empty()).then(|| Self {
            count: histogram.len(),
            p50: histogram.value_at_quantile(0.5),
            p90: histogram.value_at_quantile(0.9),
            p99: histogram.value_at_quantile(0.99),
            p999: histogram.value_at_quantile(0.999),
            max: histogram.max(),
        })
    }
}

/// The summary of one function, or of the whole run (then `name` is absent).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatsSummary {
    /// The function's stable name; absent for the overall summary.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Invocation counts (measured unless named `warmup*`).
    pub counts: Counts,
    /// Measured failures of any kind.
    pub failures: u64,
    /// Scheduled measured invocations per second, if the schedule's counts were given.
    pub requested_rate_per_s: Option<f64>,
    /// Measured invocations sent per second.
    pub achieved_rate_per_s: f64,
    /// Successful measured invocations per second.
    pub ok_rate_per_s: f64,
    /// Response-time percentiles, µs.
    pub response_time_us: Option<Percentiles>,
    /// Scheduling-latency percentiles, µs.
    pub scheduling_latency_us: Option<Percentiles>,
    /// Mean scheduling latency, µs.
    pub mean_scheduling_latency_us: Option<f64>,
    /// Geometric-mean slowdown (response time / requested duration) of successful invocations.
    pub geomean_slowdown: Option<f64>,
    /// Send-lag percentiles, µs.
    pub send_lag_us: Option<Percentiles>,
    /// Largest send lag, µs.
    pub max_send_lag_us: u64,
    /// Send-lag p99 ≤ the threshold (true when nothing was measured).
    pub trustworthy: bool,
}

/// The whole `summary.json` document.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    /// The send-lag p99 threshold used for `trustworthy`, µs.
    pub send_lag_threshold_us: u64,
    /// Length of the measured phase, seconds.
    pub measured_duration_s: f64,
    /// Length of the whole schedule, warm-up included, seconds.
    pub run_duration_s: f64,
    /// The overall `trustworthy` flag (same as `overall.trustworthy`).
    pub trustworthy: bool,
    /// Over all functions.
    pub overall: StatsSummary,
    /// Per function, in index order.
    pub functions: Vec<StatsSummary>,
}

fn rate(count: u64, duration_s: f64) -> f64 {
    if duration_s > 0.0 { count as f64 / duration_s } else { 0.0 }
}

fn summarize_one(
    name: Option<String>,
    stats: &FunctionStats,
    scheduled: Option<u64>,
    inputs: &SummaryInputs,
) -> StatsSummary {
    let duration = inputs.measured_duration_s;
    let send_lag_us = Percentiles::of(&stats.send_lag);
    let trustworthy = send_lag_us.as_ref().is_none_or(|lag| lag.p99 <= inputs.send_lag_threshold_us);
    StatsSummary {
        name,
        counts: stats.counts.clone(),
        failures: stats.counts.failures(),
        requested_rate_per_s: scheduled.map(|count| rate(count, duration)),
        achieved_rate_per_s: rate(stats.counts.measured, duration),
        ok_rate_per_s: rate(stats.counts.ok, duration),
        response_time_us: Percentiles::of(&stats.response_time),
        scheduling_latency_us: Percentiles::of(&stats.scheduling_latency),
        mean_scheduling_latency_us: stats.mean_scheduling_latency_us(),
        geomean_slowdown: stats.geomean_slowdown(),
        send_lag_us,
        max_send_lag_us: stats.max_send_lag_us,
        trustworthy,
    }
}

/// Builds the summary document from the statistics.
pub fn summarize(stats: &RunStats, inputs: &SummaryInputs) -> RunSummary {
    let scheduled = |index: usize| -> Option<u64> {
        (!inputs.scheduled_per_function.is_empty())
            .then(|| inputs.scheduled_per_function.get(index).copied().unwrap_or(0))
    };
    let functions: Vec<StatsSummary> = stats
        .functions()
        .iter()
        .enumerate()
        .map(|(index, function)| summarize_one(Some(stats.names()[index].clone()), function, scheduled(index), inputs))
        .collect();
    let total_scheduled =
        (!inputs.scheduled_per_function.is_empty()).then(|| inputs.scheduled_per_function.iter().sum());
    let overall = summarize_one(None, stats.overall(), total_scheduled, inputs);
    RunSummary {
        send_lag_threshold_us: inputs.send_lag_threshold_us,
        measured_duration_s: inputs.measured_duration_s,
        run_duration_s: inputs.run_duration_s,
        trustworthy: overall.trustworthy,
        overall,
        functions,
    }
}

/// Writes `summary.json` (pretty-printed) at `path`.
pub fn write_summary(path: &Path, stats: &RunStats, inputs: &SummaryInputs) -> Result<(), OutputError> {
    write_json(path, &summarize(stats, inputs))
}

/// Writes `value` as pretty JSON with a trailing newline at `path`.
pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), OutputError> {
    let io_error = |source| OutputError::Io { path: path.to_path_buf(), source };
    let file = File::create(path).map_err(io_error)?;
    let mut writer = BufWriter::new(file);
    serde_json::to_writer_pretty(&mut writer, value)
        .map_err(|source| OutputError::Json { path: path.to_path_buf(), source })?;
    writer.write_all(b"\n").map_err(io_error)?;
    writer.flush().map_err(io_error)
}
