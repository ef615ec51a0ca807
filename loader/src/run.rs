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
use crate::schedule::{MinuteWindow, schedule_window_shared};
use crate::target::dirigent::{DirigentConfig, DirigentTarget};
use crate::target::http::{HttpTarget, HttpTargetConfig};
use crate::target::{FunctionDeployment, Target};
use crate::trace::{FunctionSelection, Slice, Trace, read_trace};

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// The driver's counts.
    pub replay: ReplayStats,
    /// Whether the send lag stayed under the threshold.
    pub trustworthy: bool,
}

/// Runs `config`; `stop` ends sending early (Ctrl-C) and the files are still written.
pub async fn run(config: &RunConfig, stop: StopSignal) -> anyhow::Result<RunReport> {
    use anyhow::Context;
    let slice = slice_of(config);
    let trace = Arc::new(read_trace(&config.trace).context("invalid trace")?.slice(&slice).context("invalid slice")?);
    let names: Arc<Vec<String>> = Arc::new(trace.functions.iter().map(|f| f.name.clone()).collect());
    let origin = u32::try_from(slice.start_minute).context("slice.start_minute is out of range")?;
    let window = MinuteWindow { origin, start: 0, len: None };
    // Checked before anything is deployed or any file is written.
    let schedule = schedule_window_shared(Arc::clone(&trace), &config.schedule, config.warmup_minutes, window)?;
    prepare_output(&config.output)?;
    let target = build_target(config)?;
    target.deploy(&deployments(&trace, config)).await.context("deploying the functions")?;
    let started = SystemTime::now();
    let mut csv = InvocationsCsv::create(&config.output.join("invocations.csv"), &names)?;
    let mut stats = RunStats::new(&names);
    let mut write_error = None;
    let replayed = replay(Arc::clone(&target), Arc::clone(&names), schedule, driver_options(config), stop, |record| {
        stats.record(&record);
        if let Err(err) = csv.write(&record) {
            write_error.get_or_insert(err);
        }
    })
    .await;
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
    teardown.context("tearing down the functions")?;
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
fn prepare_output(dir: &Path) -> anyhow::Result<()> {
    use anyhow::Context;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create the run folder {}", dir.display()))?;
    for file in ["invocations.csv", "summary.json", "manifest.json"] {
        let path = dir.join(file);
        anyhow::ensure!(!path.exists(), "{} already exists: choose a new output folder", path.display());
    }
    Ok(())
}

fn build_target(config: &RunConfig) -> anyhow::Result<Arc<dyn Target>> {
    let timeout = Some(config.driver.request_timeout);
    Ok(match &config.target {
        TargetConfig::Dirigent { api, proxy, image, .. } => Arc::new(DirigentTarget::new(DirigentConfig {
            api: api.clone(),
            proxy: proxy.clone(),
            image: image.clone(),
            request_timeout: timeout,
        })?),
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
        TargetConfig::Http { .. } => (0, 0),
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

fn manifest(config: &RunConfig, started: SystemTime, ended: SystemTime) -> anyhow::Result<ManifestInputs> {
    use anyhow::Context;
    Ok(ManifestInputs {
        config: serde_json::to_value(config)?,
        seed: config.schedule.seed,
        trace_checksum: trace_checksum(&config.trace).context("checksumming the trace")?,
        started,
        ended,
        events: Vec::new(),
    })
}
