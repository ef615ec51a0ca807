//! Streaming analysis of one run folder: `invocations.csv` is read once, row by row, into histograms and
//! per-function accumulators; memory grows with functions and timeline windows, never with rows.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::path::Path;

use contracts::run_folder::{MAX_RECORDED_US, Manifest, RunSummary};
use hdrhistogram::Histogram;

use crate::columns::{Columns, Failure, Row};
use crate::meta::{read_manifest, read_summary};
use crate::model::{Counts, FunctionResult, Percentiles, Rates, RunAnalysis, Samples, Shares};
use crate::recovery::RecoveryAccumulator;
use crate::timeline::TimelineAccumulator;
use crate::{AnalyzeError, Options};

/// Run-wide histograms keep 3 significant digits (0.1% resolution), like the loader's.
const RUN_DIGITS: u8 = 3;

/// Analyses the run folder `run_dir` (`invocations.csv`, and `summary.json` and `manifest.json` when present).
pub fn analyze(run_dir: &Path, options: &Options) -> Result<RunAnalysis, AnalyzeError> {
    if options.window.is_zero() {
        return Err(AnalyzeError::Options("window must be longer than zero"));
    }
    let summary = read_summary(run_dir)?;
    let manifest = read_manifest(run_dir)?;
    let start_us = manifest.as_ref().and_then(|manifest| manifest.started_unix_us);
    // The kills are known before the rows, so recovery is folded in the same pass.
    let events = manifest.as_ref().map_or(&[][..], |manifest| &manifest.events[..]);
    let mut accumulator = Accumulator::new(options, start_us, RecoveryAccumulator::new(events));
    read_invocations(&run_dir.join("invocations.csv"), &mut accumulator)?;
    Ok(accumulator.finish(run_dir, options, summary, manifest))
}

fn read_invocations(path: &Path, accumulator: &mut Accumulator) -> Result<(), AnalyzeError> {
    let csv_error = |source| AnalyzeError::Csv { path: path.to_path_buf(), source };
    let file = std::fs::File::open(path).map_err(|source| AnalyzeError::Io { path: path.to_path_buf(), source })?;
    // 256 KiB instead of the default 8 KiB: fewer read calls on a multi-GB CSV.
    let mut reader = csv::ReaderBuilder::new().buffer_capacity(256 * 1024).from_reader(file);
    let columns = Columns::from_header(path, reader.byte_headers().map_err(csv_error)?)?;
    accumulator.cold_starts_known = columns.has_cold_starts();
    let mut record = csv::ByteRecord::new();
    while reader.read_byte_record(&mut record).map_err(csv_error)? {
        accumulator.add(&columns.row(path, &record)?);
    }
    Ok(())
}

/// One function's running sums.
#[derive(Debug, Default)]
struct FunctionSums {
    invocations: u64,
    ok: u64,
    failures: u64,
    cold_starts: u64,
    scheduling_latency_sum_us: u128,
    scheduling_latency_count: u64,
    log_slowdown_sum: f64,
    slowdown_count: u64,
    slowdown_below_one: u64,
}

impl FunctionSums {
    fn finish(&self, name: String) -> FunctionResult {
        let mean = |sum: f64, count: u64| (count > 0).then(|| sum / count as f64);
        FunctionResult {
            name,
            invocations: self.invocations,
            ok: self.ok,
            failures: self.failures,
            cold_starts: self.cold_starts,
            mean_scheduling_latency_us: mean(self.scheduling_latency_sum_us as f64, self.scheduling_latency_count),
            slowdown: mean(self.log_slowdown_sum, self.slowdown_count).map(f64::exp),
            slowdown_below_one: self.slowdown_below_one,
        }
    }
}

/// FNV-1a: function names are short and come from our own files, so a fast hash beats SipHash's protection
/// against adversarial keys (the name lookup is one of the costliest steps per row).
struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv1a {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Everything folded from the rows.
struct Accumulator {
    include_warmup: bool,
    exclude_leading_us: u64,
    window_us: u64,
    /// The run's start: the manifest's, else the first row's time.
    origin_us: Option<u64>,
    cold_starts_known: bool,
    counts: Counts,
    cold_starts: u64,
    index: HashMap<Vec<u8>, usize, BuildHasherDefault<Fnv1a>>,
    functions: Vec<(String, FunctionSums)>,
    scheduling_latency: Histogram<u64>,
    scheduling_latency_sum_us: u128,
    response_time: Histogram<u64>,
    response_time_sum_us: u128,
    send_lag: Histogram<u64>,
    send_lag_sum_us: u128,
    span_us: Option<(u64, u64)>,
    timeline: Option<TimelineAccumulator>,
    recovery: RecoveryAccumulator,
}

fn new_histogram() -> Histogram<u64> {
    let mut histogram = Histogram::new(RUN_DIGITS).expect("3 significant digits is valid");
    histogram.auto(true);
    histogram
}

/// Records `value` (capped at the loader's bound, like the loader's histograms) and adds it, uncapped, to `sum`.
fn record(histogram: &mut Histogram<u64>, sum: &mut u128, value: u64) {
    // With auto-resize on, recording only fails when a u64 bucket count would overflow: not reachable.
    let _ = histogram.record(value.min(MAX_RECORDED_US));
    *sum += u128::from(value);
}

fn micros(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

impl Accumulator {
    fn new(options: &Options, origin_us: Option<u64>, recovery: RecoveryAccumulator) -> Self {
        Self {
            include_warmup: options.include_warmup,
            exclude_leading_us: micros(options.exclude_leading),
            window_us: micros(options.window).max(1),
            origin_us,
            cold_starts_known: false,
            counts: Counts::default(),
            cold_starts: 0,
            index: HashMap::default(),
            functions: Vec::new(),
            scheduling_latency: new_histogram(),
            scheduling_latency_sum_us: 0,
            response_time: new_histogram(),
            response_time_sum_us: 0,
            send_lag: new_histogram(),
            send_lag_sum_us: 0,
            span_us: None,
            timeline: None,
            recovery,
        }
    }

    fn add(&mut self, row: &Row<'_>) {
        self.counts.rows += 1;
        let origin = *self.origin_us.get_or_insert(row.time_us);
        if row.warmup && !self.include_warmup {
            self.counts.excluded_warmup += 1;
        } else if row.time_us < origin.saturating_add(self.exclude_leading_us) {
            self.counts.excluded_leading += 1;
        } else {
            self.add_analysed(row, origin);
        }
    }

    fn function(&mut self, name: &[u8]) -> &mut FunctionSums {
        let next = self.functions.len();
        let index = match self.index.get(name) {
            Some(&index) => index,
            None => {
                self.index.insert(name.to_vec(), next);
                self.functions.push((String::from_utf8_lossy(name).into_owned(), FunctionSums::default()));
                next
            }
        };
        &mut self.functions[index].1
    }

    fn add_analysed(&mut self, row: &Row<'_>, origin: u64) {
        self.counts.analysed += 1;
        let (first, last) = self.span_us.get_or_insert((row.time_us, row.time_us));
        (*first, *last) = ((*first).min(row.time_us), (*last).max(row.time_us));
        if let Some(lag) = row.send_lag_us {
            record(&mut self.send_lag, &mut self.send_lag_sum_us, lag);
        }
        let cold = row.cold == Some(true);
        self.cold_starts += u64::from(cold);
        let function = self.function(row.function);
        function.invocations += 1;
        function.cold_starts += u64::from(cold);
        let latency = match row.failure {
            Some(failure) => {
                self.add_failure(row.function, failure);
                None
            }
            None => self.add_success(row),
        };
        let window_us = self.window_us;
        let timeline = self.timeline.get_or_insert_with(|| TimelineAccumulator::new(origin, window_us));
        timeline.add(row.time_us, row.failure.is_none(), cold, latency);
        self.recovery.add(row.time_us, row.failure.is_none(), cold, row.response_us);
    }

    fn add_failure(&mut self, function: &[u8], failure: Failure) {
        self.function(function).failures += 1;
        let counter = match failure {
            Failure::Connection => &mut self.counts.connection_failures,
            Failure::Timeout => &mut self.counts.function_timeouts,
            Failure::Other => &mut self.counts.other_failures,
        };
        *counter += 1;
    }

    /// Folds a successful invocation in; returns its scheduling latency, if it reported an execution time.
    fn add_success(&mut self, row: &Row<'_>) -> Option<u64> {
        self.counts.ok += 1;
        record(&mut self.response_time, &mut self.response_time_sum_us, row.response_us);
        let latency = row.actual_us.map(|actual| row.response_us.saturating_sub(actual));
        match latency {
            Some(latency) => record(&mut self.scheduling_latency, &mut self.scheduling_latency_sum_us, latency),
            None => self.counts.missing_execution_time += 1,
        }
        let slowdown =
            (row.requested_us > 0 && row.response_us > 0).then(|| row.response_us as f64 / row.requested_us as f64);
        let below_one = slowdown.is_some_and(|slowdown| slowdown < 1.0);
        self.counts.slowdown_below_one += u64::from(below_one);
        let function = self.function(row.function);
        function.ok += 1;
        if let Some(latency) = latency {
            function.scheduling_latency_sum_us += u128::from(latency);
            function.scheduling_latency_count += 1;
        }
        match slowdown {
            Some(_) if below_one => function.slowdown_below_one += 1,
            Some(slowdown) => {
                function.log_slowdown_sum += slowdown.ln();
                function.slowdown_count += 1;
            }
            None => {}
        }
        latency
    }

    fn finish(
        mut self,
        run_dir: &Path,
        options: &Options,
        summary: Option<RunSummary>,
        manifest: Option<Manifest>,
    ) -> RunAnalysis {
        self.counts.cold_starts = self.cold_starts_known.then_some(self.cold_starts);
        let mut functions: Vec<FunctionResult> =
            std::mem::take(&mut self.functions).into_iter().map(|(name, sums)| sums.finish(name)).collect();
        functions.sort_by(|a, b| a.name.cmp(&b.name));
        let requested = summary.as_ref().and_then(|summary| summary.overall.requested_rate_per_s);
        let requested = requested.or_else(|| manifest.as_ref().and_then(Manifest::workload_rate));
        let per_function = |value: fn(&FunctionResult) -> Option<f64>| {
            Percentiles::of_values(&functions.iter().filter_map(value).collect::<Vec<_>>())
        };
        let mean = |sum: u128, histogram: &Histogram<u64>| sum as f64 / histogram.len().max(1) as f64;
        // The analysed span bounds the first and last timeline windows, which are usually only partly inside it.
        let span = self.origin_us.map(|origin| self.analysed_span(origin, summary.as_ref()));
        let raw_events = manifest.as_ref().map_or(&[][..], |manifest| &manifest.events[..]);
        let events = crate::events::from_manifest(raw_events, self.origin_us);
        RunAnalysis {
            run_dir: run_dir.to_path_buf(),
            options: options.clone(),
            trustworthy: summary.as_ref().map(|summary| summary.trustworthy),
            shares: self.shares(),
            rates: self.rates(requested),
            scheduling_latency_us: Percentiles::of_histogram(
                &self.scheduling_latency,
                mean(self.scheduling_latency_sum_us, &self.scheduling_latency),
            ),
            response_time_us: Percentiles::of_histogram(
                &self.response_time,
                mean(self.response_time_sum_us, &self.response_time),
            ),
            send_lag_us: Percentiles::of_histogram(&self.send_lag, mean(self.send_lag_sum_us, &self.send_lag)),
            function_scheduling_latency_us: per_function(|function| function.mean_scheduling_latency_us),
            function_slowdown: per_function(|function| function.slowdown),
            functions,
            timeline: self
                .timeline
                .map_or_else(|| TimelineAccumulator::new(0, self.window_us).finish(None), |t| t.finish(span)),
            events,
            recovery: self.recovery.finish(self.origin_us),
            samples: Samples { scheduling_latency: self.scheduling_latency, response_time: self.response_time },
            counts: self.counts,
            manifest,
            loader_summary: summary,
        }
    }

    /// `(start, end)` of the analysed part of the schedule, Unix µs: after the excluded leading window and (unless
    /// included) the warm-up, whose length is the loader summary's run minus measured duration; up to the
    /// schedule's end when the summary gives it.
    fn analysed_span(&self, origin: u64, summary: Option<&RunSummary>) -> (u64, u64) {
        let seconds = |s: f64| (s.max(0.0) * 1e6) as u64;
        let run = summary.and_then(|s| s.run_duration_s);
        let warmup = match (run, summary.map(|s| s.measured_duration_s)) {
            (Some(run), Some(measured)) if !self.include_warmup => seconds(run - measured),
            _ => 0,
        };
        let start = origin.saturating_add(warmup.max(self.exclude_leading_us));
        (start, run.map_or(u64::MAX, |run| origin.saturating_add(seconds(run))))
    }

    fn shares(&self) -> Shares {
        let counts = &self.counts;
        let share = |count: u64| if counts.analysed > 0 { count as f64 / counts.analysed as f64 } else { 0.0 };
        Shares {
            cold_start: counts.cold_starts.map(share),
            failure: share(counts.failures()),
            connection_failure: share(counts.connection_failures),
            function_timeout: share(counts.function_timeouts),
            other_failure: share(counts.other_failures),
        }
    }

    fn rates(&self, requested_per_s: Option<f64>) -> Rates {
        let analysed = self.counts.analysed;
        let duration_s = match self.span_us {
            Some((first, last)) if analysed > 1 && last > first => {
                (last - first) as f64 / 1e6 * analysed as f64 / (analysed - 1) as f64
            }
            _ => 0.0,
        };
        let rate = |count: u64| if duration_s > 0.0 { count as f64 / duration_s } else { 0.0 };
        Rates {
            duration_s,
            requested_per_s,
            achieved_per_s: rate(analysed),
            ok_per_s: rate(self.counts.ok),
            cold_starts_per_s: self.counts.cold_starts.map(rate),
        }
    }
}
