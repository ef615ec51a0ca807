//! `summary.json` ([`RunSummary`]) computed from the run's statistics: counts, percentiles, rates and the
//! trustworthy flag, per function and overall.

use std::path::Path;

use contracts::json_file::write_pretty;
use contracts::run_folder::{Percentiles, RunSummary, StatsSummary};
use hdrhistogram::Histogram;

use super::OutputError;
use super::stats::{FunctionStats, RunStats};

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

/// Percentiles of `histogram`, or `None` when it is empty (`null` in `summary.json`).
pub fn percentiles_of(histogram: &Histogram<u64>) -> Option<Percentiles> {
    (!histogram.is_empty()).then(|| Percentiles {
        count: histogram.len(),
        p50: histogram.value_at_quantile(0.5),
        p90: histogram.value_at_quantile(0.9),
        p99: histogram.value_at_quantile(0.99),
        p999: histogram.value_at_quantile(0.999),
        max: histogram.max(),
    })
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
    let send_lag_us = percentiles_of(&stats.send_lag);
    let trustworthy = send_lag_us.as_ref().is_none_or(|lag| lag.p99 <= inputs.send_lag_threshold_us);
    StatsSummary {
        name,
        counts: stats.counts.clone(),
        failures: stats.counts.failures(),
        requested_rate_per_s: scheduled.map(|count| rate(count, duration)),
        achieved_rate_per_s: rate(stats.counts.measured, duration),
        ok_rate_per_s: rate(stats.counts.ok, duration),
        response_time_us: percentiles_of(&stats.response_time),
        scheduling_latency_us: percentiles_of(&stats.scheduling_latency),
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
        run_duration_s: Some(inputs.run_duration_s),
        trustworthy: overall.trustworthy,
        overall,
        functions,
    }
}

/// Writes `summary.json` (pretty-printed) at `path`.
pub fn write_summary(path: &Path, stats: &RunStats, inputs: &SummaryInputs) -> Result<(), OutputError> {
    Ok(write_pretty(path, &summarize(stats, inputs))?)
}
