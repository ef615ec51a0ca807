//! `experiments run`: for each run of the spec (one, or one per sweep rate) start the platform, replay the load
//! with the loader library, stop the platform and check that no sandbox survived; then analyse. The results
//! folder keeps everything measured, also after a failure or a Ctrl-C.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use loader::config::{RunConfig, TargetConfig};
use loader::driver::StopSignal;
use loader::output::{HostFacts, format_rfc3339, git_commit};
use serde::Serialize;

use crate::dirigent::local::{Binaries, LocalDirigent, StopReport};
use crate::spec::{ExperimentSpec, PlatformSpec, set_rate};

/// Why an experiment could not run at all (a failure of one run is recorded in its entry instead).
#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    /// "{0}".
    #[error("{0}")]
    Binaries(String),
    /// "cannot create the results folder {path}: {source}".
    #[error("cannot create the results folder {path}: {source}")]
    Folder {
        /// The folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The platform's config is invalid.
    #[error(transparent)]
    Platform(#[from] crate::dirigent::ClusterError),
    /// "load: {0}".
    #[error("load: {0}")]
    Load(String),
    /// "cannot write {path}: {source}".
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// One run of an experiment, as recorded in `experiment.json`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunEntry {
    /// The run folder.
    pub dir: PathBuf,
    /// The sweep rate, if any.
    pub rate: Option<f64>,
    /// Invocations sent.
    pub sent: u64,
    /// Invocations that succeeded.
    pub ok: u64,
    /// Invocations that failed.
    pub failed: u64,
    /// Whether the loader kept its send lag under the threshold.
    pub trustworthy: bool,
    /// What stopping the platform found.
    pub platform_stop: StopReport,
    /// Why the run failed, if it did.
    pub error: Option<String>,
    /// Why its analysis failed, if it did.
    pub analysis_error: Option<String>,
}

/// What `experiments run` did.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentRecord {
    /// The spec's name.
    pub name: String,
    /// The results folder of this execution.
    pub folder: PathBuf,
    /// The spec as resolved.
    pub spec: ExperimentSpec,
    /// The executables started.
    pub binaries: Binaries,
    /// Git commit of the toolkit.
    pub git_commit: String,
    /// The machine.
    pub host: HostFacts,
    /// Start, RFC 3339.
    pub started_at: String,
    /// End, RFC 3339.
    pub ended_at: String,
    /// The runs, in order.
    pub runs: Vec<RunEntry>,
    /// Whether a Ctrl-C cut the experiment short.
    pub interrupted: bool,
    /// Why the sweep plot could not be drawn, if it could not.
    pub sweep_error: Option<String>,
}

impl ExperimentRecord {
    /// Whether every run completed, with a clean platform stop.
    pub fn succeeded(&self) -> bool {
        !self.interrupted && self.runs.iter().all(|r| r.error.is_none() && r.platform_stop.is_clean())
    }
}

/// Runs `spec`; results go to a new timestamped folder under `spec.output`. `stop` (Ctrl-C) ends the current run
/// early, starts no further run, and still tears down and writes everything.
pub async fn run_experiment(spec: &ExperimentSpec, stop: StopSignal) -> Result<ExperimentRecord, ExperimentError> {
    let PlatformSpec::Dirigent(platform) = &spec.platform;
    let binaries = Binaries::locate(platform.bin_dir.as_deref()).map_err(ExperimentError::Binaries)?;
    check_load(spec)?;
    LocalDirigent::check(platform, &binaries).await?;
    let started = SystemTime::now();
    let folder = create_folder(&spec.output, &spec.name, started)?;
    let mut record = ExperimentRecord {
        name: spec.name.clone(),
        folder: folder.clone(),
        spec: spec.clone(),
        binaries: binaries.clone(),
        git_commit: git_commit(),
        host: HostFacts::collect(),
        started_at: format_rfc3339(started),
        ended_at: String::new(),
        runs: Vec::new(),
        interrupted: false,
        sweep_error: None,
    };
    for rate in spec.rates() {
        if stop.is_stopped() {
            break;
        }
        let dir = folder.join(rate.map_or_else(|| "run".to_owned(), |r| format!("rate-{r}")));
        let marker = format!("{}-{}", spec.name, dir.display());
        let entry = run_once(spec, rate, &binaries, &dir, &marker, stop.clone()).await;
        tracing::info!(dir = %dir.display(), sent = entry.sent, ok = entry.ok, error = ?entry.error, "run finished");
        record.runs.push(entry);
    }
    record.interrupted = stop.is_stopped();
    if spec.analysis.report {
        record.sweep_error = analyse(spec, &mut record.runs, &folder).err();
    }
    record.ended_at = format_rfc3339(SystemTime::now());
    write_json(&folder.join("experiment.json"), &record)?;
    Ok(record)
}

/// Writes each run's report and plots into its folder, then, for a sweep, the sweep plot into `sweep/`; a run that
/// recorded nothing is skipped. Returns the sweep's error, if any.
fn analyse(spec: &ExperimentSpec, runs: &mut [RunEntry], folder: &Path) -> Result<(), String> {
    let mut points = Vec::new();
    for run in runs.iter_mut().filter(|r| r.dir.join("invocations.csv").is_file()) {
        let analysed = analysis::analyze(&run.dir, &spec.analysis.options).map_err(|e| e.to_string());
        let written =
            analysed.and_then(|a| analysis::report::write(&a, &run.dir).map(|_| a).map_err(|e| e.to_string()));
        match written {
            Ok(analysed) => points.extend(run.rate.map(|rate| (rate, analysed))),
            Err(e) => run.analysis_error = Some(e),
        }
    }
    if spec.sweep.is_none() || points.is_empty() {
        return Ok(());
    }
    analysis::sweep::write(&points, &folder.join("sweep")).map(|_| ()).map_err(|e| e.to_string())
}

/// Prepares every run's workload once (reading and checking the trace), so a bad trace fails before anything
/// starts.
fn check_load(spec: &ExperimentSpec) -> Result<(), ExperimentError> {
    for rate in spec.rates() {
        let mut config = spec.load.clone();
        set_rate(&mut config.workload, rate).map_err(ExperimentError::Load)?;
        loader::workload::prepare(&config).map_err(|e| ExperimentError::Load(e.to_string()))?;
    }
    Ok(())
}

/// `<output>/<name>-<UTC time>`, created; never an existing folder, so nothing measured is overwritten.
fn create_folder(output: &Path, name: &str, started: SystemTime) -> Result<PathBuf, ExperimentError> {
    let stamp: String = format_rfc3339(started).chars().take(19).filter(|c| c.is_ascii_digit() || *c == 'T').collect();
    let base = output.join(format!("{name}-{stamp}Z"));
    let mut folder = base.clone();
    for n in 2.. {
        match std::fs::create_dir_all(output).and_then(|()| std::fs::create_dir(&folder)) {
            Ok(()) => break,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                folder = PathBuf::from(format!("{}-{n}", base.display()))
            }
            Err(source) => return Err(ExperimentError::Folder { path: folder, source }),
        }
    }
    Ok(folder)
}

/// One run: platform up, load, platform down. Never returns early without stopping what it started.
async fn run_once(
    spec: &ExperimentSpec,
    rate: Option<f64>,
    binaries: &Binaries,
    dir: &Path,
    marker: &str,
    stop: StopSignal,
) -> RunEntry {
    let mut entry = RunEntry {
        dir: dir.to_owned(),
        rate,
        sent: 0,
        ok: 0,
        failed: 0,
        trustworthy: false,
        platform_stop: StopReport::default(),
        error: None,
        analysis_error: None,
    };
    let PlatformSpec::Dirigent(platform) = &spec.platform;
    let mut cluster = match LocalDirigent::start(platform, binaries, &dir.join("platform"), marker).await {
        Ok(cluster) => cluster,
        Err(e) => {
            entry.error = Some(format!("starting the platform: {e}"));
            return entry;
        }
    };
    let config = load_config(spec, rate, &cluster, binaries, dir);
    let outcome = match config {
        Ok(config) => loader::run::run(&config, stop).await.map_err(|e| format!("load: {e}")),
        Err(e) => Err(e),
    };
    entry.platform_stop = cluster.stop().await;
    match outcome {
        Ok(report) => {
            (entry.sent, entry.ok, entry.failed) = (report.replay.sent, report.replay.ok, report.replay.failed);
            entry.trustworthy = report.trustworthy;
        }
        Err(e) => entry.error = Some(e),
    }
    entry
}

/// The loader config of one run: the spec's load aimed at the started cluster, writing into `dir`.
fn load_config(
    spec: &ExperimentSpec,
    rate: Option<f64>,
    cluster: &LocalDirigent,
    binaries: &Binaries,
    dir: &Path,
) -> Result<RunConfig, String> {
    let mut config = spec.load.clone();
    set_rate(&mut config.workload, rate)?;
    let (min_scale, max_scale) = match &spec.load.target {
        TargetConfig::Dirigent { min_scale, max_scale, .. } => (*min_scale, *max_scale),
        TargetConfig::Http { .. } | TargetConfig::Grpc { .. } => (0, 0),
    };
    config.target = TargetConfig::Dirigent {
        api: cluster.api.clone(),
        proxy: cluster.proxy.clone(),
        image: binaries.trace_function.display().to_string(),
        min_scale,
        max_scale,
    };
    config.output = dir.to_owned();
    Ok(config)
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<(), ExperimentError> {
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    std::fs::write(path, text + "\n").map_err(|source| ExperimentError::Write { path: path.into(), source })
}
