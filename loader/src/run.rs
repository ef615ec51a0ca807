//! One run end to end: read and slice the trace, deploy on the target, replay the schedule, stream every
//! record to `invocations.csv`, then write `summary.json` and `manifest.json`, and tear down.

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use crate::config::{RunConfig, TargetConfig};
use crate::driver::{DriverOptions, ReplayStats, StopSignal, replay};
use crate::output::{
    InvocationsCsv, ManifestInputs, RunStats, SummaryInputs, trace_checksum, write_manifest, write_summary,
};
use crate::progress::Progress;
use crate::schedule::{MinuteWindow, schedule_window_shared};
use crate::target::dirigent::{DirigentConfig, DirigentTarget};
use crate::target::grpc::{GrpcTarget, GrpcTargetConfig};
use crate::target::http::{HttpTarget, HttpTargetConfig};
use crate::target::{FunctionDeployment, Target};
use crate::trace::{FunctionSelection, Slice, Trace, read_trace};

/// A run failed; what was measured before the failure is still in the run folder where possible.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// the trace is invalid
    #[error("invalid trace: {0}")]
    Trace(#[from] crate::trace::TraceError),
    /// the slice does not fit the trace
    #[error("invalid slice: {0}")]
    Slice(#[from] crate::trace::SliceError),
    /// the schedule cannot be generated
    #[error(transparent)]
    Schedule(#[from] crate::schedule::ScheduleError),
    /// the run folder cannot be created
    #[error("cannot create the run folder {path}: {source}")]
    OutputFolder {
        /// The folder.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// the run folder already holds a run
    #[error("{0} already exists: choose a new output folder")]
    OutputExists(std::path::PathBuf),
    /// writing a run file failed
    #[error(transparent)]
    Output(#[from] crate::output::OutputError),
    /// the target refused to deploy or tear down
    #[error("target: {0}")]
    Target(#[from] crate::target::TargetError),
    /// the driver failed
    #[error("replay: {0}")]
    Driver(#[from] crate::driver::DriverError),
    /// the trace could not be checksummed for the manifest
    #[error("cannot checksum the trace: {0}")]
    Checksum(#[source] std::io::Error),
    /// the config cannot be recorded in the manifest
    #[error("cannot record the config: {0}")]
    Config(#[from] serde_json::Error),
}

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// The driver's counts.
    pub replay: ReplayStats,
    /// Whether the send lag stayed under the threshold.
    pub trustworthy: bool,
}

/// Runs `config`; `stop` ends sending early (Ctrl-C) and the files are still written.
pub async fn run(config: &RunConfig, stop: StopSignal) -> Result<RunReport, RunError> {
    let slice = slice_of(config);
    let trace = Arc::new(read_trace(&config.trace)?.slice(&slice)?);
    let names: Arc<Vec<String>> = Arc::new(trace.functions.iter().map(|f| f.name.clone()).collect());
    // The slice already checked start_minute against the trace's 1440 minutes.
    let origin = u32::try_from(slice.start_minute).unwrap_or(u32::MAX);
    let window = MinuteWindow { origin, start: 0, len: None };
    // Checked before anything is deployed or any file is written.
    let schedule = schedule_window_shared(Arc::clone(&trace), &config.schedule, config.warmup_minutes, window)?;
    prepare_output(&config.output)?;
    let target = build_target(config)?;
    target.deploy(&deployments(&trace, config)).await?;
    let started = SystemTime::now();
    let mut csv = InvocationsCsv::create(&config.output.join("invocations.csv"), &names)?;
    let mut stats = RunStats::new(&names);
    let mut progress = Progress::new(schedule.remaining());
    let mut write_error = None;
    let replayed = replay(Arc::clone(&target), Arc::clone(&names), schedule, driver_options(config), stop, |record| {
        progress.record(&record);
        stats.record(&record);
        if let Err(err) = csv.write(&record) {
            write_error.get_or_insert(err);
        }
    })
    .await;
    progress.finish();
    let ended = SystemTime::now();
    let teardown = target.teardown().await;
    csv.flush()?;
    if let Some(err) = write_error {
        return Err(err.into());
    }
    let replay = replayed?;
    let summary = summary_inputs(&trace, config);
    write_summary(&config.output.join("summary.json"), &stats, &summary)?;
    let trustworthy = crate::output::summarize(&stats, &summary).trustworthy;
    write_manifest(&config.output.join("manifest.json"), &manifest(config, started, ended)?)?;
    teardown?;
    Ok(RunReport { replay, trustworthy })
}

fn slice_of(config: &RunConfig) -> Slice {
    let functions = match (config.slice.functions, config.slice.sample_seed) {
        (None, _) => FunctionSelection::All,
        (Some(count), None) => FunctionSelection::First(count),
        (Some(count), Some(seed)) => FunctionSelection::Sample { count, seed },
    };
    Slice { start_minute: config.slice.start_minute, minutes: config.slice.minutes, functions }
}

/// Creates the run folder; refuses one that already holds a run, so nothing measured is overwritten.
fn prepare_output(dir: &Path) -> Result<(), RunError> {
    std::fs::create_dir_all(dir).map_err(|source| RunError::OutputFolder { path: dir.into(), source })?;
    for file in ["invocations.csv", "summary.json", "manifest.json"] {
        let path = dir.join(file);
        if path.exists() {
            return Err(RunError::OutputExists(path));
        }
    }
    Ok(())
}

fn build_target(config: &RunConfig) -> Result<Arc<dyn Target>, RunError> {
    let timeout = Some(config.driver.request_timeout);
    Ok(match &config.target {
        TargetConfig::Dirigent { api, proxy, image, .. } => Arc::new(DirigentTarget::new(DirigentConfig {
            api: api.clone(),
            proxy: proxy.clone(),
            image: image.clone(),
            request_timeout: timeout,
        })?),
        TargetConfig::Grpc { address } => {
            Arc::new(GrpcTarget::new(GrpcTargetConfig { address_template: address.clone(), request_timeout: timeout })?)
        }
        TargetConfig::Http { url, host, http2 } => {
            let mut http = HttpTargetConfig::new(url.clone());
            http.host_template = host.clone();
            http.http2_prior_knowledge = *http2;
            http.request_timeout = timeout;
            Arc::new(HttpTarget::new(http)?)
        }
    })
}

fn deployments(trace: &Trace, config: &RunConfig) -> Vec<FunctionDeployment> {
    let (min_scale, max_scale) = match config.target {
        TargetConfig::Dirigent { min_scale, max_scale, .. } => (min_scale, max_scale),
        TargetConfig::Http { .. } | TargetConfig::Grpc { .. } => (0, 0),
    };
    trace
        .functions
        .iter()
        .map(|f| FunctionDeployment {
            name: f.name.clone(),
            requested_cpu_ms: f.duration.percentiles[3].round() as u32,
            requested_memory_mib: f.memory.percentiles[3].round() as u32,
            min_scale,
            max_scale,
            ..FunctionDeployment::default()
        })
        .collect()
}

fn driver_options(config: &RunConfig) -> DriverOptions {
    DriverOptions {
        max_in_flight: config.driver.max_in_flight,
        request_timeout: Some(config.driver.request_timeout),
        drain_timeout: config.driver.drain_timeout,
        ..DriverOptions::default()
    }
}

fn summary_inputs(trace: &Trace, config: &RunConfig) -> SummaryInputs {
    let warmup = config.warmup_minutes as usize;
    let measured_minutes = config.slice.minutes.saturating_sub(warmup);
    SummaryInputs {
        measured_duration_s: measured_minutes as f64 * 60.0 / config.schedule.compression,
        scheduled_per_function: trace
            .functions
            .iter()
            .map(|f| f.invocations_per_minute.iter().skip(warmup).map(|&n| u64::from(n)).sum())
            .collect(),
        send_lag_threshold_us: u64::try_from(config.send_lag_threshold.as_micros()).unwrap_or(u64::MAX),
    }
}

fn manifest(config: &RunConfig, started: SystemTime, ended: SystemTime) -> Result<ManifestInputs, RunError> {
    Ok(ManifestInputs {
        config: serde_json::to_value(config)?,
        seed: config.schedule.seed,
        trace_checksum: trace_checksum(&config.trace).map_err(RunError::Checksum)?,
        started,
        ended,
        events: Vec::new(),
    })
}
