//! A run-folder writer for the analysis' tests and bench, built only on `contracts::run_folder` (the analysis must
//! not link the loader): `invocations.csv` in [`Column::ALL`] order, a `summary.json` computed the loader's way
//! (counts, HdrHistogram percentiles, send-lag verdict) and a `manifest.json`. `loader/tests/run_folder_analysis.rs`
//! checks that the analysis reads what the loader itself writes, and that this writer's CSV and summary are
//! byte for byte the loader's.
#![allow(dead_code)] // each test binary uses a different part

use std::fs::File;
use std::path::{Path, PathBuf};

use contracts::json_file::write_pretty;
use contracts::run_folder::{
    Column, Counts, HostFacts, INVOCATIONS_CSV, INVOCATIONS_HEADER, LoaderVersion, MANIFEST_JSON, MAX_RECORDED_US,
    Manifest, Percentiles, RunSummary, SUMMARY_JSON, StatsSummary,
};
use hdrhistogram::Histogram;

/// When every fixture run starts, Unix µs (2027-01-15T08:00:00Z).
pub const START_US: u64 = 1_800_000_000_000_000;

/// Warm-up or measured (the CSV's `phase`: 1 or 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Excluded from the summary's histograms and measured counts.
    Warmup,
    /// Counted.
    Measured,
}

/// How an invocation ended (the CSV's `outcome`, `connectionTimeout` and `functionTimeout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Success.
    Ok,
    /// No connection, or it broke.
    ConnectionFailed,
    /// Timed out.
    Timeout,
    /// A non-success status.
    Status(u16),
}

/// One invocation as the fixture writes it (times in µs, memory in MiB).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// Warm-up or measured.
    pub phase: Phase,
    /// Index into the run's function names.
    pub function: u32,
    /// `invocationID` is `min<minute>.inv<index_in_minute>`.
    pub minute: u32,
    /// See `minute`.
    pub index_in_minute: u32,
    /// When it was due, Unix µs.
    pub intended_unix_us: u64,
    /// When it was sent, Unix µs.
    pub sent_unix_us: u64,
    /// Execution time asked for.
    pub requested_duration_us: u64,
    /// Intended send to last response byte (0 when it failed before any).
    pub response_time_us: u64,
    /// Execution time the function reported.
    pub actual_duration_us: Option<u64>,
    /// Memory the function reported.
    pub actual_memory_mib: Option<u32>,
    /// How it ended.
    pub outcome: Outcome,
    /// Whether it met a cold start, where known.
    pub cold_start: Option<bool>,
    /// The platform's queueing time.
    pub queue_us: Option<u64>,
    /// The platform's proxying time.
    pub proxy_us: Option<u64>,
}

impl Invocation {
    fn send_lag_us(&self) -> u64 {
        self.sent_unix_us.saturating_sub(self.intended_unix_us)
    }

    fn scheduling_latency_us(&self) -> Option<u64> {
        self.actual_duration_us.map(|actual| self.response_time_us.saturating_sub(actual))
    }

    fn cell(&self, column: Column, names: &[String]) -> String {
        let number = |value: Option<u64>| value.map(|value| value.to_string()).unwrap_or_default();
        let boolean = |value: Option<bool>| value.map(|value| value.to_string()).unwrap_or_default();
        match column {
            Column::Phase => (if self.phase == Phase::Warmup { "1" } else { "2" }).into(),
            Column::Instance => names[self.function as usize].clone(),
            Column::InvocationId => format!("min{}.inv{}", self.minute, self.index_in_minute),
            Column::StartTime => self.sent_unix_us.to_string(),
            Column::RequestedDuration => self.requested_duration_us.to_string(),
            Column::ResponseTime => self.response_time_us.to_string(),
            Column::ActualDuration => number(self.actual_duration_us),
            Column::ConnectionTimeout => boolean(Some(self.outcome == Outcome::ConnectionFailed)),
            Column::FunctionTimeout => boolean(Some(self.outcome == Outcome::Timeout)),
            Column::ActualMemoryUsage => number(self.actual_memory_mib.map(u64::from)),
            Column::IntendedTime => self.intended_unix_us.to_string(),
            Column::SendLag => self.send_lag_us().to_string(),
            Column::ColdStart => boolean(self.cold_start),
            Column::SchedulingLatency => number(self.scheduling_latency_us()),
            Column::Outcome => match self.outcome {
                Outcome::Ok => "ok".into(),
                Outcome::ConnectionFailed => "connection".into(),
                Outcome::Timeout => "timeout".into(),
                Outcome::Status(code) => format!("http-{code}"),
            },
            Column::QueueTime => number(self.queue_us),
            Column::ProxyTime => number(self.proxy_us),
            Column::CreateTime | Column::PlatformColdStart => String::new(),
        }
    }
}

/// What the summary and manifest need beyond the invocations.
#[derive(Debug, Clone)]
pub struct RunInfo {
    /// Length of the measured phase, s (the rate denominator).
    pub measured_duration_s: f64,
    /// Length of the whole schedule, warm-up included, s.
    pub run_duration_s: f64,
    /// Trustworthy when the send-lag p99 is at most this, µs.
    pub send_lag_threshold_us: u64,
    /// The manifest's config.
    pub config: serde_json::Value,
    /// The manifest's seed.
    pub seed: u64,
}

/// Counts and histograms of one function or the whole run, folded like the loader's `RunStats`.
struct Stats {
    counts: Counts,
    response_time: Histogram<u64>,
    scheduling_latency: Histogram<u64>,
    send_lag: Histogram<u64>,
    max_send_lag_us: u64,
    scheduling_latency_sum_us: u128,
    log_slowdown_sum: f64,
    slowdown_count: u64,
}

fn histogram(digits: u8) -> Histogram<u64> {
    let mut histogram = Histogram::new(digits).expect("2 or 3 significant digits");
    histogram.auto(true);
    histogram
}

fn add(histogram: &mut Histogram<u64>, value: u64) {
    histogram.record(value.min(MAX_RECORDED_US)).expect("an auto-resizing histogram records");
}

fn percentiles(histogram: &Histogram<u64>) -> Option<Percentiles> {
    (!histogram.is_empty()).then(|| Percentiles {
        count: histogram.len(),
        p50: histogram.value_at_quantile(0.5),
        p90: histogram.value_at_quantile(0.9),
        p99: histogram.value_at_quantile(0.99),
        p999: histogram.value_at_quantile(0.999),
        max: histogram.max(),
    })
}

impl Stats {
    /// The loader keeps 3 significant digits overall and 2 per function.
    fn new(digits: u8) -> Self {
        Stats {
            counts: Counts::default(),
            response_time: histogram(digits),
            scheduling_latency: histogram(digits),
            send_lag: histogram(digits),
            max_send_lag_us: 0,
            scheduling_latency_sum_us: 0,
            log_slowdown_sum: 0.0,
            slowdown_count: 0,
        }
    }

    fn record(&mut self, invocation: &Invocation) {
        let ok = invocation.outcome == Outcome::Ok;
        if invocation.phase == Phase::Warmup {
            self.counts.warmup += 1;
            self.counts.warmup_failures += u64::from(!ok);
            return;
        }
        let counts = &mut self.counts;
        counts.measured += 1;
        match invocation.outcome {
            Outcome::Ok => counts.ok += 1,
            Outcome::ConnectionFailed => counts.connection_failed += 1,
            Outcome::Timeout => counts.timeout += 1,
            Outcome::Status(_) => counts.status_error += 1,
        }
        counts.cold_starts += u64::from(invocation.cold_start == Some(true));
        if ok || invocation.response_time_us > 0 {
            add(&mut self.response_time, invocation.response_time_us);
        }
        if let Some(latency) = invocation.scheduling_latency_us() {
            add(&mut self.scheduling_latency, latency);
            self.scheduling_latency_sum_us += u128::from(latency);
        }
        let lag = invocation.send_lag_us();
        add(&mut self.send_lag, lag);
        self.max_send_lag_us = self.max_send_lag_us.max(lag);
        if ok && invocation.response_time_us > 0 && invocation.requested_duration_us > 0 {
            self.log_slowdown_sum +=
                (invocation.response_time_us as f64 / invocation.requested_duration_us as f64).ln();
            self.slowdown_count += 1;
        }
    }

    fn summary(&self, name: Option<String>, info: &RunInfo) -> StatsSummary {
        let rate = |count: u64| count as f64 / info.measured_duration_s;
        let send_lag_us = percentiles(&self.send_lag);
        let measured = self.scheduling_latency.len();
        StatsSummary {
            name,
            counts: self.counts.clone(),
            failures: self.counts.failures(),
            requested_rate_per_s: None,
            achieved_rate_per_s: rate(self.counts.measured),
            ok_rate_per_s: rate(self.counts.ok),
            response_time_us: percentiles(&self.response_time),
            scheduling_latency_us: percentiles(&self.scheduling_latency),
            mean_scheduling_latency_us: (measured > 0).then(|| self.scheduling_latency_sum_us as f64 / measured as f64),
            geomean_slowdown: (self.slowdown_count > 0)
                .then(|| (self.log_slowdown_sum / self.slowdown_count as f64).exp()),
            trustworthy: send_lag_us.as_ref().is_none_or(|lag| lag.p99 <= info.send_lag_threshold_us),
            send_lag_us,
            max_send_lag_us: self.max_send_lag_us,
        }
    }
}

/// Streams invocations into `invocations.csv` and folds them into the summary; [`RunWriter::finish`] writes
/// `summary.json` and `manifest.json`.
pub struct RunWriter {
    dir: PathBuf,
    csv: csv::Writer<File>,
    names: Vec<String>,
    functions: Vec<Stats>,
    overall: Stats,
}

impl RunWriter {
    /// Creates `dir` and its `invocations.csv` with the header; `names[i]` names function index `i`.
    pub fn create(dir: &Path, names: Vec<String>) -> Self {
        std::fs::create_dir_all(dir).expect("create the run folder");
        let mut csv = csv::Writer::from_path(dir.join(INVOCATIONS_CSV)).expect("create invocations.csv");
        csv.write_record(INVOCATIONS_HEADER).expect("write the header");
        let functions = names.iter().map(|_| Stats::new(2)).collect();
        RunWriter { dir: dir.to_path_buf(), csv, names, functions, overall: Stats::new(3) }
    }

    /// Writes one row and counts it.
    pub fn write(&mut self, invocation: &Invocation) {
        let cells = Column::ALL.map(|column| invocation.cell(column, &self.names));
        self.csv.write_record(&cells).expect("write a row");
        self.functions[invocation.function as usize].record(invocation);
        self.overall.record(invocation);
    }

    /// Flushes the CSV and writes `summary.json` and `manifest.json` (started at [`START_US`]).
    pub fn finish(mut self, info: &RunInfo) {
        self.csv.flush().expect("flush invocations.csv");
        let overall = self.overall.summary(None, info);
        let functions = self.functions.iter().zip(&self.names);
        let summary = RunSummary {
            send_lag_threshold_us: info.send_lag_threshold_us,
            measured_duration_s: info.measured_duration_s,
            run_duration_s: Some(info.run_duration_s),
            trustworthy: overall.trustworthy,
            functions: functions.map(|(stats, name)| stats.summary(Some(name.clone()), info)).collect(),
            overall,
        };
        write_pretty(&self.dir.join(SUMMARY_JSON), &summary).expect("write summary.json");
        write_pretty(&self.dir.join(MANIFEST_JSON), &manifest(info)).expect("write manifest.json");
    }
}

fn manifest(info: &RunInfo) -> Manifest {
    let run_us = (info.run_duration_s * 1e6) as u64;
    Manifest {
        loader: LoaderVersion { version: Some(env!("CARGO_PKG_VERSION").into()), git_commit: Some("fixture".into()) },
        host: HostFacts::collect(),
        started_at: Some(rfc3339(0)),
        ended_at: Some(rfc3339(run_us)),
        started_unix_us: Some(START_US),
        ended_unix_us: Some(START_US + run_us),
        seed: Some(info.seed),
        trace_checksum: None,
        config: info.config.clone(),
        events: Vec::new(),
    }
}

/// [`START_US`] plus `offset_us` as the loader writes times; fixture runs end on the day they start.
fn rfc3339(offset_us: u64) -> String {
    let seconds = 8 * 3600 + offset_us / 1_000_000;
    assert!(seconds < 86_400, "a fixture run of {offset_us} µs ends after its first day");
    let (hours, minutes, rest) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    format!("2027-01-15T{hours:02}:{minutes:02}:{rest:02}.{:06}Z", offset_us % 1_000_000)
}
