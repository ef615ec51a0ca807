//! One open-loop replay at a constant rate (the library's equidistant `ConstantRate` schedule) through the loader's
//! real driver (`loader::driver::replay`) and HTTP target, with the per-record work a real run does (`RunStats` and the `invocations.csv` writer) unless
//! `BENCH_RECORD_WORK=0`.

use std::fs::File;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hdrhistogram::Histogram;
use loader::driver::{DriverOptions, StopSignal, replay};
use loader::output::{InvocationsCsv, OutputError, RunStats};
use loader::record::InvocationRecord;
use loader::schedule::{Arrivals, ConstantRate, Phase};
use loader::target::Target;
use loader::target::http::{HttpTarget, HttpTargetConfig};
use serde::Serialize;

use super::Settings;
use super::cpu::{CpuSpan, CpuUse};

/// Per-request timeout, as a run's `driver.request_timeout` would set it (the trivial target answers in µs).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long in-flight requests may take to finish after the schedule ends.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Lead between starting a replay and its first intended send.
const START_DELAY: Duration = Duration::from_millis(10);
/// A replay whose send lag passes this is stopped: it has fallen behind for good and would only run on late.
const ABORT_LAG_US: u64 = 1_000_000;
/// Largest value the histograms hold, µs (an hour, as `RunStats` caps it).
const HISTOGRAM_MAX_US: u64 = 3_600_000_000;

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HISTOGRAM_MAX_US, 3).expect("valid histogram bounds")
}

/// A distribution's headline figures, µs.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Dist {
    /// Median.
    pub p50_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// Largest value.
    pub max_us: u64,
}

impl Dist {
    /// The figures of `histogram` (all zero when it is empty).
    pub fn of(histogram: &Histogram<u64>) -> Self {
        if histogram.is_empty() {
            return Self::default();
        }
        Self {
            p50_us: histogram.value_at_quantile(0.5),
            p99_us: histogram.value_at_quantile(0.99),
            max_us: histogram.max(),
        }
    }
}

/// What one constant-rate replay measured (measured phase only, except `sent` and the CPU figures).
#[derive(Debug, Clone, Serialize)]
pub struct RateCase {
    /// Intended rate, invocations/s.
    pub rate: f64,
    /// Measured invocations scheduled.
    pub scheduled: u64,
    /// Invocations the driver sent, warm-up included.
    pub sent: u64,
    /// Measured invocations completed.
    pub measured: u64,
    /// Measured invocations over the span of their actual send times, per second.
    pub achieved_per_s: f64,
    /// Send lag: actual minus intended send time.
    pub send_lag: Dist,
    /// Response time from the intended send time to the last byte.
    pub response: Dist,
    /// Measured invocations that did not end `ok`, plus any abandoned at the drain timeout.
    pub failed: u64,
    /// The first failure's outcome, if any.
    pub first_failure: Option<String>,
    /// Whether the replay was stopped because its send lag passed a second.
    pub aborted: bool,
    /// CPU used by the loader and the server during the replay.
    pub cpu: CpuUse,
}

impl RateCase {
    /// Whether the loader kept up: send-lag p99 under `threshold_us`, nothing failed, not stopped.
    pub fn kept_up(&self, threshold_us: u64) -> bool {
        !self.aborted && self.failed == 0 && self.measured == self.scheduled && self.send_lag.p99_us < threshold_us
    }
}

/// Where replays go and how they are set up.
pub struct Bench<'a> {
    /// The runtime replays run on (multi-threaded, as `loader run` uses).
    pub runtime: &'a tokio::runtime::Runtime,
    /// The target server's `host:port`.
    pub address: String,
    /// The target server's process id.
    pub server_pid: u32,
    /// The settings.
    pub settings: &'a Settings,
}

impl Bench<'_> {
    /// Replays `rate` invocations/s for the warm-up plus `measured_secs` seconds and summarises the measured part.
    pub fn run_rate(&self, rate: f64, measured_secs: f64) -> anyhow::Result<RateCase> {
        let spec = self.schedule(rate, measured_secs);
        let names: Arc<Vec<String>> = Arc::new((0..spec.functions).map(|i| format!("fn-{i}")).collect());
        let measured = spec.counts().measured_per_function.iter().sum();
        let target = self.target()?;
        let options = DriverOptions {
            request_timeout: Some(REQUEST_TIMEOUT),
            drain_timeout: DRAIN_TIMEOUT,
            start_delay: START_DELAY,
            ..Default::default()
        };
        let dir = tempfile::tempdir().context("creating a folder for invocations.csv")?;
        let mut sink = Sink::new(&names, self.settings.record_work.then(|| dir.path().join("invocations.csv")))?;
        let stop = StopSignal::new();
        let cpu = CpuSpan::start(self.server_pid);
        let replayed =
            replay(target, Arc::clone(&names), spec.iter(), options, stop.clone(), |r| sink.record(&r, &stop));
        let stats = self.runtime.block_on(replayed)?;
        let cpu = cpu.finish(stats.completed);
        sink.finish()?;
        Ok(sink.case(rate, measured, stats.sent, stats.abandoned, cpu))
    }

    /// The library's constant-rate schedule: the warm-up, then `measured_secs` at `rate`, equidistant.
    fn schedule(&self, rate: f64, measured_secs: f64) -> ConstantRate {
        ConstantRate {
            rate_per_s: rate,
            warmup: Duration::from_secs_f64(self.settings.warmup_secs),
            duration: Duration::from_secs_f64(measured_secs),
            functions: self.settings.functions.max(1),
            arrivals: Arrivals::Equidistant,
            seed: 0,
            runtime_ms: 1,
            memory_mib: 128,
        }
    }

    /// A fresh HTTP target (its own connection pool) for the server, as `loader run` builds it.
    fn target(&self) -> anyhow::Result<Arc<dyn Target>> {
        let mut config = HttpTargetConfig::new(format!("http://{}/function/{{function}}", self.address));
        config.request_timeout = Some(REQUEST_TIMEOUT);
        Ok(Arc::new(HttpTarget::new(config)?))
    }
}

/// Folds the records: our own send-lag and response-time histograms, plus a real run's per-record work.
struct Sink {
    lag: Histogram<u64>,
    response: Histogram<u64>,
    measured: u64,
    failed: u64,
    first_failure: Option<String>,
    sent_span_us: (u64, u64),
    aborted: bool,
    work: Option<(RunStats, InvocationsCsv<File>)>,
    write_error: Option<OutputError>,
}

impl Sink {
    fn new(names: &[String], csv: Option<std::path::PathBuf>) -> anyhow::Result<Self> {
        let work = match csv {
            Some(path) => Some((RunStats::new(names), InvocationsCsv::create(&path, names)?)),
            None => None,
        };
        Ok(Self {
            lag: histogram(),
            response: histogram(),
            measured: 0,
            failed: 0,
            first_failure: None,
            sent_span_us: (u64::MAX, 0),
            aborted: false,
            work,
            write_error: None,
        })
    }

    fn record(&mut self, record: &InvocationRecord, stop: &StopSignal) {
        if let Some((stats, csv)) = &mut self.work {
            stats.record(record);
            if let Err(err) = csv.write(record) {
                self.write_error.get_or_insert(err);
            }
        }
        if record.phase == Phase::Warmup {
            return;
        }
        let lag = record.send_lag_us();
        self.lag.saturating_record(lag);
        self.response.saturating_record(record.response_time_us);
        self.measured += 1;
        self.sent_span_us =
            (self.sent_span_us.0.min(record.sent_unix_us), self.sent_span_us.1.max(record.sent_unix_us));
        if !record.outcome.is_ok() {
            self.failed += 1;
            self.first_failure.get_or_insert_with(|| format!("{:?}", record.outcome));
        }
        if lag > ABORT_LAG_US && !self.aborted {
            self.aborted = true;
            stop.stop();
        }
    }

    fn finish(&mut self) -> anyhow::Result<()> {
        if let Some((_, csv)) = &mut self.work {
            csv.flush()?;
        }
        match self.write_error.take() {
            Some(err) => Err(err).context("writing invocations.csv"),
            None => Ok(()),
        }
    }

    fn case(self, rate: f64, scheduled: u64, sent: u64, abandoned: u64, cpu: CpuUse) -> RateCase {
        let span_s = self.sent_span_us.1.saturating_sub(self.sent_span_us.0) as f64 / 1e6;
        RateCase {
            rate,
            scheduled,
            sent,
            measured: self.measured,
            achieved_per_s: if span_s > 0.0 { self.measured.saturating_sub(1) as f64 / span_s } else { 0.0 },
            send_lag: Dist::of(&self.lag),
            response: Dist::of(&self.response),
            failed: self.failed + abandoned,
            first_failure: self.first_failure,
            aborted: self.aborted,
            cpu,
        }
    }
}
