//! Run statistics folded from invocation records: counts and HdrHistograms per function and overall. Memory
//! grows with the number of functions and the magnitude of the largest value (capped), never with the number of
//! invocations.

use contracts::run_folder::{Counts, MAX_RECORDED_US};
use hdrhistogram::Histogram;

use crate::record::{InvocationRecord, Outcome};
use crate::schedule::Phase;

/// Significant decimal digits of the run-wide histograms (0.1% resolution; at most about 190 KB each).
const OVERALL_DIGITS: u8 = 3;

/// Significant decimal digits of the per-function histograms: 1% resolution keeps each at most about 27 KB, so a
/// replay of thousands of functions stays within tens of MB.
const PER_FUNCTION_DIGITS: u8 = 2;

/// Counts and histograms (µs) for one function, or for the whole run.
#[derive(Debug, Clone)]
pub struct FunctionStats {
    /// The counts.
    pub counts: Counts,
    /// Response time of measured invocations (failed ones included when they have a response time > 0).
    pub response_time: Histogram<u64>,
    /// Scheduling latency of measured invocations that reported an execution time.
    pub scheduling_latency: Histogram<u64>,
    /// Send lag of measured invocations.
    pub send_lag: Histogram<u64>,
    /// Largest send lag seen among measured invocations, µs (uncapped).
    pub max_send_lag_us: u64,
    /// Sum of scheduling latencies, µs, for the mean.
    pub scheduling_latency_sum_us: u128,
    /// Sum of ln(response time / requested duration) over successful measured invocations with both > 0.
    pub log_slowdown_sum: f64,
    /// How many invocations `log_slowdown_sum` covers.
    pub slowdown_count: u64,
}

fn new_histogram(digits: u8) -> Histogram<u64> {
    let mut histogram = Histogram::new(digits).expect("2 or 3 significant digits is valid");
    histogram.auto(true);
    histogram
}

/// Records `value` capped at [`MAX_RECORDED_US`]; the histogram auto-resizes up to that bound.
fn add(histogram: &mut Histogram<u64>, value: u64) {
    // With auto-resize on, recording only fails when a bucket's u64 count would overflow: not reachable.
    let _ = histogram.record(value.min(MAX_RECORDED_US));
}

impl Default for FunctionStats {
    fn default() -> Self {
        Self::with_digits(OVERALL_DIGITS)
    }
}

impl FunctionStats {
    /// Empty statistics whose histograms keep `digits` significant decimal digits.
    fn with_digits(digits: u8) -> Self {
        Self {
            counts: Counts::default(),
            response_time: new_histogram(digits),
            scheduling_latency: new_histogram(digits),
            send_lag: new_histogram(digits),
            max_send_lag_us: 0,
            scheduling_latency_sum_us: 0,
            log_slowdown_sum: 0.0,
            slowdown_count: 0,
        }
    }
}

impl FunctionStats {
    /// Folds one record in.
    pub fn record(&mut self, record: &InvocationRecord) {
        if record.phase == Phase::Warmup {
            self.counts.warmup += 1;
            if !record.outcome.is_ok() {
                self.counts.warmup_failures += 1;
            }
            return;
        }
        let counts = &mut self.counts;
        counts.measured += 1;
        match record.outcome {
            Outcome::Ok => counts.ok += 1,
            Outcome::ConnectionFailed(_) => counts.connection_failed += 1,
            Outcome::Timeout => counts.timeout += 1,
            Outcome::Status(..) => counts.status_error += 1,
        }
        if record.cold_start == Some(true) {
            counts.cold_starts += 1;
        }
        counts.failovers += u64::from(record.failovers);
        if record.outcome.is_ok() || record.response_time_us > 0 {
            add(&mut self.response_time, record.response_time_us);
        }
        if let Some(latency) = record.scheduling_latency_us() {
            add(&mut self.scheduling_latency, latency);
            self.scheduling_latency_sum_us += u128::from(latency);
        }
        let lag = record.send_lag_us();
        add(&mut self.send_lag, lag);
        self.max_send_lag_us = self.max_send_lag_us.max(lag);
        if record.outcome.is_ok() && record.response_time_us > 0 && record.requested_duration_us > 0 {
            self.log_slowdown_sum += (record.response_time_us as f64 / record.requested_duration_us as f64).ln();
            self.slowdown_count += 1;
        }
    }

    /// Mean scheduling latency, µs (the per-function scheduling latency of the definitions), if any was measured.
    pub fn mean_scheduling_latency_us(&self) -> Option<f64> {
        let count = self.scheduling_latency.len();
        (count > 0).then(|| self.scheduling_latency_sum_us as f64 / count as f64)
    }

    /// Geometric mean of slowdown (response time / requested duration) over successful measured invocations.
    pub fn geomean_slowdown(&self) -> Option<f64> {
        (self.slowdown_count > 0).then(|| (self.log_slowdown_sum / self.slowdown_count as f64).exp())
    }

    /// Total number of counter slots held by the three histograms (a proxy for their memory).
    pub fn histogram_slots(&self) -> usize {
        self.response_time.distinct_values()
            + self.scheduling_latency.distinct_values()
            + self.send_lag.distinct_values()
    }
}

/// Statistics for a whole run: one [`FunctionStats`] per function plus the overall one.
#[derive(Debug, Clone)]
pub struct RunStats {
    names: Vec<String>,
    functions: Vec<FunctionStats>,
    overall: FunctionStats,
}

impl RunStats {
    /// Empty statistics for the functions named `names` (indexed by [`InvocationRecord::function`]).
    pub fn new(names: &[String]) -> Self {
        Self {
            names: names.to_vec(),
            functions: names.iter().map(|_| FunctionStats::with_digits(PER_FUNCTION_DIGITS)).collect(),
            overall: FunctionStats::default(),
        }
    }

    /// Folds one record in; an index beyond the known names adds functions named `function-<index>`.
    pub fn record(&mut self, record: &InvocationRecord) {
        let index = record.function as usize;
        while self.functions.len() <= index {
            self.names.push(format!("function-{}", self.functions.len()));
            self.functions.push(FunctionStats::with_digits(PER_FUNCTION_DIGITS));
        }
        self.functions[index].record(record);
        self.overall.record(record);
    }

    /// The function names, in index order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Per-function statistics, in index order.
    pub fn functions(&self) -> &[FunctionStats] {
        &self.functions
    }

    /// Statistics over all functions.
    pub fn overall(&self) -> &FunctionStats {
        &self.overall
    }

    /// How many histograms are held: 3 × (functions + 1).
    pub fn histogram_count(&self) -> usize {
        3 * (self.functions.len() + 1)
    }

    /// Total counter slots over all histograms (a proxy for memory, independent of the invocation count).
    pub fn histogram_slots(&self) -> usize {
        self.functions.iter().map(FunctionStats::histogram_slots).sum::<usize>() + self.overall.histogram_slots()
    }
}
