//! The regression gate: is a candidate run worse than a baseline run on one metric, beyond a tolerated regression,
//! with statistical confidence?
//!
//! Method (percentile bootstrap of the ratio candidate / baseline):
//! - Each run is resampled independently, [`REPLICATES`] times, with a ChaCha8 generator seeded with
//!   [`BOOTSTRAP_SEED`], so a verdict is deterministic for the same two runs.
//! - Percentile metrics (e.g. p99 scheduling latency) resample the run's invocations through its histogram. A
//!   bootstrap sample of n values is `F⁻¹(U₁) … F⁻¹(Uₙ)` for uniform `Uᵢ` and the empirical quantile function `F⁻¹`,
//!   so its k-th smallest value is `F⁻¹(U₍ₖ₎)` with `U₍ₖ₎ ~ Beta(k, n − k + 1)`: one Beta draw per replicate gives
//!   the exact bootstrap distribution of the sample quantile without drawing a million values.
//! - Per-function metrics (mean per-function scheduling latency, slowdown) resample the functions' values with
//!   replacement.
//! - The gate fails only when the lower end of the central [`CONFIDENCE`] interval of the ratio exceeds
//!   `1 + max_regression`: the candidate is then worse by more than the tolerance with at least 97.5% confidence.
//!   Noise (the same distribution measured twice) keeps the interval around 1 and passes.
//!
//! Invocations are treated as independent; consecutive invocations of a real run are correlated (a slow period
//! slows many), which makes the interval narrower than the run-to-run spread. The `max_regression` tolerance is
//! what absorbs that spread: choose it from a few repeated baseline runs.

use std::fmt;
use std::str::FromStr;

use hdrhistogram::Histogram;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Beta, Distribution};
use serde::{Deserialize, Serialize};

use crate::RunAnalysis;
use crate::markdown::micros;
use crate::model::nearest_rank;

/// Bootstrap replicates per run.
pub const REPLICATES: usize = 2000;
/// Two-sided confidence of the ratio's interval.
pub const CONFIDENCE: f64 = 0.95;
/// Seed of the bootstrap's random generator.
pub const BOOTSTRAP_SEED: u64 = 0x6761_7465_5eed;

/// A metric the gate (and the comparison table) can judge; lower is better for all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Median per-invocation scheduling latency.
    P50SchedulingLatency,
    /// 99th percentile per-invocation scheduling latency.
    P99SchedulingLatency,
    /// Mean over functions of the per-function average scheduling latency.
    MeanFunctionSchedulingLatency,
    /// Median response time.
    P50ResponseTime,
    /// 99th percentile response time.
    P99ResponseTime,
    /// Geometric mean over functions of the per-function slowdown.
    Slowdown,
}

impl Metric {
    /// Every metric, in table order.
    pub const ALL: [Metric; 6] = [
        Metric::P50SchedulingLatency,
        Metric::P99SchedulingLatency,
        Metric::MeanFunctionSchedulingLatency,
        Metric::P50ResponseTime,
        Metric::P99ResponseTime,
        Metric::Slowdown,
    ];

    /// The name used on the command line and in YAML.
    pub fn name(self) -> &'static str {
        match self {
            Metric::P50SchedulingLatency => "p50_scheduling_latency",
            Metric::P99SchedulingLatency => "p99_scheduling_latency",
            Metric::MeanFunctionSchedulingLatency => "mean_function_scheduling_latency",
            Metric::P50ResponseTime => "p50_response_time",
            Metric::P99ResponseTime => "p99_response_time",
            Metric::Slowdown => "slowdown",
        }
    }

    /// The metric's value for `run` (µs for latencies), or `None` when the run has no data for it.
    pub fn value(self, run: &RunAnalysis) -> Option<f64> {
        self.resampler(run).map(|resampler| resampler.estimate())
    }

    /// Formats a value of this metric for people.
    pub fn format(self, value: f64) -> String {
        match self {
            Metric::Slowdown => format!("{value:.3}"),
            _ => micros(value),
        }
    }

    fn resampler(self, run: &RunAnalysis) -> Option<Resampler> {
        let samples = &run.samples;
        match self {
            Metric::P50SchedulingLatency => Resampler::quantile(&samples.scheduling_latency, 0.5),
            Metric::P99SchedulingLatency => Resampler::quantile(&samples.scheduling_latency, 0.99),
            Metric::P50ResponseTime => Resampler::quantile(&samples.response_time, 0.5),
            Metric::P99ResponseTime => Resampler::quantile(&samples.response_time, 0.99),
            Metric::MeanFunctionSchedulingLatency => Resampler::values(run.function_latencies(), mean),
            Metric::Slowdown => Resampler::values(run.function_slowdowns(), geometric_mean),
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.name())
    }
}

impl FromStr for Metric {
    type Err = GateError;

    fn from_str(text: &str) -> Result<Self, GateError> {
        Metric::ALL.into_iter().find(|metric| metric.name() == text).ok_or_else(|| GateError::UnknownMetric {
            name: text.to_owned(),
            known: Metric::ALL.map(Metric::name).join(", "),
        })
    }
}

/// Why the gate could not judge.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    /// The metric's name is not known.
    #[error("unknown metric `{name}`: use one of {known}")]
    UnknownMetric {
        /// The name given.
        name: String,
        /// The names known.
        known: String,
    },
    /// The tolerated regression is not a non-negative number or percentage.
    #[error("cannot read `{0}` as a maximum regression: use a percentage such as 10% or a fraction such as 0.1")]
    BadRegression(String),
    /// A run has nothing to measure the metric on.
    #[error("the {run} run has no data for {metric} (no successful invocations analysed?)")]
    NoData {
        /// `baseline` or `candidate`.
        run: &'static str,
        /// The metric.
        metric: Metric,
    },
}

/// Parses a tolerated regression: `10%` or `0.1` both mean 10%.
pub fn parse_regression(text: &str) -> Result<f64, GateError> {
    let trimmed = text.trim();
    let (number, scale) = match trimmed.strip_suffix('%') {
        Some(number) => (number, 0.01),
        None => (trimmed, 1.0),
    };
    let value = number.trim().parse::<f64>().map(|value| value * scale);
    value.ok().filter(|value| value.is_finite() && *value >= 0.0).ok_or_else(|| GateError::BadRegression(text.into()))
}

/// The gate's verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GateVerdict {
    /// False when the candidate regressed beyond the tolerance with confidence.
    pub passed: bool,
    /// The metric judged.
    pub metric: Metric,
    /// The baseline's value (µs for latencies).
    pub baseline: f64,
    /// The candidate's value.
    pub candidate: f64,
    /// candidate / baseline.
    pub ratio: f64,
    /// Lower end of the ratio's confidence interval.
    pub ci_low: f64,
    /// Upper end of the ratio's confidence interval.
    pub ci_high: f64,
    /// The tolerated regression (0.1 = 10%).
    pub max_regression: f64,
    /// One line for people and CI logs.
    pub reason: String,
}

/// Judges `candidate` against `baseline` on `metric`, tolerating a regression of `max_regression` (0.1 = 10%); see
/// the module documentation for the method.
pub fn gate(
    baseline: &RunAnalysis,
    candidate: &RunAnalysis,
    metric: Metric,
    max_regression: f64,
) -> Result<GateVerdict, GateError> {
    let mut base = metric.resampler(baseline).ok_or(GateError::NoData { run: "baseline", metric })?;
    let mut cand = metric.resampler(candidate).ok_or(GateError::NoData { run: "candidate", metric })?;
    let mut rng = ChaCha8Rng::seed_from_u64(BOOTSTRAP_SEED);
    let mut ratios: Vec<f64> =
        (0..REPLICATES).map(|_| ratio(cand.replicate(&mut rng), base.replicate(&mut rng))).collect();
    ratios.sort_by(f64::total_cmp);
    let tail = (1.0 - CONFIDENCE) / 2.0;
    let (ci_low, ci_high) =
        (nearest_rank(&ratios, tail).unwrap_or(1.0), nearest_rank(&ratios, 1.0 - tail).unwrap_or(1.0));
    let (baseline_value, candidate_value) = (base.estimate(), cand.estimate());
    let mut verdict = GateVerdict {
        passed: ci_low <= 1.0 + max_regression,
        metric,
        baseline: baseline_value,
        candidate: candidate_value,
        ratio: ratio(candidate_value, baseline_value),
        ci_low,
        ci_high,
        max_regression,
        reason: String::new(),
    };
    verdict.reason = reason(&verdict, baseline, candidate);
    Ok(verdict)
}

/// candidate / baseline, with 0 / 0 = 1 and x / 0 = ∞.
fn ratio(candidate: f64, baseline: f64) -> f64 {
    match (candidate, baseline) {
        (_, b) if b > 0.0 => candidate / b,
        (c, _) if c > 0.0 => f64::INFINITY,
        _ => 1.0,
    }
}

fn reason(verdict: &GateVerdict, baseline: &RunAnalysis, candidate: &RunAnalysis) -> String {
    let metric = verdict.metric;
    let outcome = if verdict.passed { "ok" } else { "REGRESSION" };
    let mut text = format!(
        "{outcome}: {metric} candidate {} vs baseline {} (ratio {:.3}, {:.0}% CI {:.3}–{:.3}; fails when the CI's low \
         end exceeds {:.3})",
        metric.format(verdict.candidate),
        metric.format(verdict.baseline),
        verdict.ratio,
        CONFIDENCE * 100.0,
        verdict.ci_low,
        verdict.ci_high,
        1.0 + verdict.max_regression
    );
    for (name, run) in [("baseline", baseline), ("candidate", candidate)] {
        if run.is_untrustworthy() {
            text.push_str(&format!("; {name} run UNTRUSTWORTHY (loader send lag over threshold)"));
        }
    }
    text
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

fn geometric_mean(values: &[f64]) -> f64 {
    (values.iter().map(|value| value.ln()).sum::<f64>() / values.len() as f64).exp()
}

/// Draws bootstrap replicates of one run's statistic.
enum Resampler {
    /// A quantile of a histogram: `(value, cumulative count)` per recorded value, and the quantile.
    Quantile { cumulative: Vec<(f64, u64)>, quantile: f64 },
    /// A statistic of a list of values.
    Values { values: Vec<f64>, statistic: fn(&[f64]) -> f64, buffer: Vec<f64> },
}

impl Resampler {
    fn quantile(histogram: &Histogram<u64>, quantile: f64) -> Option<Self> {
        let mut seen = 0;
        let cumulative: Vec<(f64, u64)> = histogram
            .iter_recorded()
            .map(|value| {
                seen += value.count_at_value();
                (value.value_iterated_to() as f64, seen)
            })
            .collect();
        (!cumulative.is_empty()).then_some(Resampler::Quantile { cumulative, quantile })
    }

    fn values(values: Vec<f64>, statistic: fn(&[f64]) -> f64) -> Option<Self> {
        let buffer = Vec::with_capacity(values.len());
        (!values.is_empty()).then_some(Resampler::Values { values, statistic, buffer })
    }

    /// The statistic on the run itself.
    fn estimate(&self) -> f64 {
        match self {
            Resampler::Quantile { cumulative, quantile } => {
                let count = cumulative.last().map_or(0, |last| last.1);
                value_at_rank(cumulative, rank(*quantile, count))
            }
            Resampler::Values { values, statistic, .. } => statistic(values),
        }
    }

    /// The statistic on one bootstrap resample.
    fn replicate(&mut self, rng: &mut ChaCha8Rng) -> f64 {
        match self {
            Resampler::Quantile { cumulative, quantile } => {
                let count = cumulative.last().map_or(0, |last| last.1);
                let k = rank(*quantile, count) as f64;
                // k ≥ 1 and count − k + 1 ≥ 1, so both shape parameters are valid.
                let order = Beta::new(k, count as f64 - k + 1.0).map_or(*quantile, |beta| beta.sample(rng));
                value_at_rank(cumulative, rank(order, count))
            }
            Resampler::Values { values, statistic, buffer } => {
                buffer.clear();
                buffer.extend((0..values.len()).map(|_| values[rng.random_range(0..values.len())]));
                statistic(buffer)
            }
        }
    }
}

/// The nearest rank (1-based) of `quantile` among `count` values.
fn rank(quantile: f64, count: u64) -> u64 {
    ((quantile * count as f64).ceil() as u64).clamp(1, count.max(1))
}

/// The smallest recorded value whose cumulative count reaches `rank`.
fn value_at_rank(cumulative: &[(f64, u64)], rank: u64) -> f64 {
    let index = cumulative.partition_point(|&(_, seen)| seen < rank);
    cumulative.get(index).or(cumulative.last()).map_or(0.0, |&(value, _)| value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_regressions() {
        assert_eq!(parse_regression("10%").unwrap(), 0.1);
        assert_eq!(parse_regression("0.25").unwrap(), 0.25);
        assert_eq!(parse_regression(" 5 % ").unwrap(), 0.05);
        for bad in ["", "-1%", "ten", "inf", "NaN%"] {
            assert!(parse_regression(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn metric_names_round_trip() {
        for metric in Metric::ALL {
            assert_eq!(metric.name().parse::<Metric>().unwrap(), metric);
            assert_eq!(serde_json::to_value(metric).unwrap(), metric.name());
        }
        let error = "p42".parse::<Metric>().unwrap_err().to_string();
        assert!(error.contains("p99_scheduling_latency"), "{error}");
    }

    #[test]
    fn quantile_resampling_matches_the_histogram() {
        let mut histogram = Histogram::<u64>::new(3).unwrap();
        for value in 1..=1000u64 {
            histogram.record(value).unwrap();
        }
        let mut resampler = Resampler::quantile(&histogram, 0.99).unwrap();
        assert_eq!(resampler.estimate(), histogram.value_at_quantile(0.99) as f64);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let replicates: Vec<f64> = (0..500).map(|_| resampler.replicate(&mut rng)).collect();
        let average = mean(&replicates);
        assert!((975.0..=1000.0).contains(&average), "{average}");
    }
}
