//! `experiments run`: for each run of the spec (one, or one per sweep rate) start the platform, replay the load
//! with the loader library, stop the platform and check that no sandbox survived; then analyse. The results
//! folder keeps everything measured, also after a failure or a Ctrl-C.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use loader::config::{RunConfig, TargetConfig};
use loader::driver::StopSignal;
use loader::output::{HostFacts, format_rfc3339, git_commit};
use serde::Serialize;

use crate::dirigent::local::{Binaries, LocalDirigent, StopReport};
use crate::platform::Platform;
use crate::remote::cluster::{RemoteCluster, RemoteError};
use crate::remote::dirigent::RemoteDirigent;
use crate::remote::load::{LoadCounts, RemoteLoad};
use crate::remote::preflight::HostReport;
use crate::spec::{ExperimentSpec, set_rate};

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
    /// "{0}".
    #[error("{0}")]
    Failures(String),
    /// The cluster cannot be used.
    #[error(transparent)]
    Remote(#[from] RemoteError),
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
    /// Injected failures (also in the run's `manifest.json`).
    pub events: Vec<serde_json::Value>,
    /// Wall-clock seconds of the run's phases.
    pub phases: RunPhases,
}

/// How long a run's phases took, seconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunPhases {
    /// Starting the platform until every role registered.
    pub platform_start_s: f64,
    /// The load, from the loader's start to its results collected.
    pub load_s: f64,
    /// Stopping the platform, the survivor sweep and (on a cluster) fetching logs and removing the run folders.
    pub teardown_s: f64,
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
    /// The executables started (none when the runner starts no platform).
    pub binaries: Option<Binaries>,
    /// Git commit of the toolkit.
    pub git_commit: String,
    /// The machine the runner ran on.
    pub host: HostFacts,
    /// The cluster's hosts as preflight found them (none for a local experiment).
    pub cluster_hosts: Vec<HostReport>,
    /// Seconds spent on preflight and on shipping the binaries (zero for a local experiment).
    pub cluster_setup_s: f64,
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
    let durations = check_load(spec)?;
    let binaries = match spec.platform.dirigent() {
        Some(platform) => {
            let binaries = Binaries::locate(platform.bin_dir.as_deref()).map_err(ExperimentError::Binaries)?;
            LocalDirigent::check(platform, &binaries).await?;
            Some(binaries)
        }
        None => None,
    };
    let setup = std::time::Instant::now();
    let cluster = match (&spec.cluster, &binaries) {
        (Some(cluster_spec), Some(binaries)) => Some(prepare_cluster(cluster_spec, binaries).await?),
        _ => None,
    };
    let cluster_setup_s = cluster.as_ref().map_or(0.0, |_| setup.elapsed().as_secs_f64());
    let components = spec.platform.dirigent().map(|p| component_names(p, cluster.as_ref())).unwrap_or_default();
    let checked = crate::failures::check(&spec.failures, &components).map_err(ExperimentError::Failures);
    let started = SystemTime::now();
    let folder = match checked.and_then(|()| create_folder(&spec.output, &spec.name, started)) {
        Ok(folder) => folder,
        Err(e) => {
            if let Some(cluster) = &cluster {
                cluster.finish().await;
            }
            return Err(e);
        }
    };
    let mut record = ExperimentRecord {
        name: spec.name.clone(),
        folder: folder.clone(),
        spec: spec.clone(),
        binaries: binaries.clone(),
        git_commit: git_commit(),
        host: HostFacts::collect(),
        cluster_hosts: cluster.as_ref().map(|c| c.reports.clone()).unwrap_or_default(),
        cluster_setup_s,
        started_at: format_rfc3339(started),
        ended_at: String::new(),
        runs: Vec::new(),
        interrupted: false,
        sweep_error: None,
    };
    for (rate, expected) in spec.rates().into_iter().zip(durations) {
        if stop.is_stopped() {
            break;
        }
        let name = rate.map_or_else(|| "run".to_owned(), |r| format!("rate-{r}"));
        let dir = folder.join(&name);
        let run_id = run_id(&folder, &name);
        let (binaries, cluster) = (binaries.as_ref(), cluster.as_ref());
        let run = Run { spec, rate, expected, binaries, dir: &dir, run_id: &run_id, cluster };
        let entry = run.execute(stop.clone()).await;
        tracing::info!(dir = %dir.display(), sent = entry.sent, ok = entry.ok, error = ?entry.error, "run finished");
        record.runs.push(entry);
    }
    if let Some(cluster) = &cluster {
        for problem in cluster.finish().await {
            tracing::warn!("{problem}");
        }
    }
    record.interrupted = stop.is_stopped();
    if spec.analysis.report {
        record.sweep_error = analyse(spec, &mut record.runs, &folder).err();
    }
    record.ended_at = format_rfc3339(SystemTime::now());
    write_json(&folder.join("experiment.json"), &record)?;
    Ok(record)
}

/// The names of the role processes a run will start (what failures can name).
fn component_names(spec: &crate::spec::DirigentSpec, cluster: Option<&RemoteCluster>) -> Vec<String> {
    use crate::ssh::inventory::Role;
    let (data_planes, workers) = match cluster {
        Some(cluster) => (cluster.with_role(Role::DataPlane).len(), cluster.with_role(Role::Worker).len()),
        None => (1, spec.workers as usize),
    };
    let name = crate::dirigent::role::component_name;
    std::iter::once(name("control-plane", 0))
        .chain((0..data_planes).map(|i| name("data-plane", i)))
        .chain((0..workers).map(|i| name("worker", i)))
        .collect()
}

/// Connects to the cluster, runs preflight on every host and ships the binaries.
async fn prepare_cluster(
    spec: &crate::spec::ClusterSpec,
    binaries: &Binaries,
) -> Result<RemoteCluster, ExperimentError> {
    let loader = binaries.loader.clone().ok_or_else(|| {
        ExperimentError::Binaries(format!(
            "a cluster run starts the loader on the loader host, but no loader binary is beside {}; build it with \
             `cargo build --release -p loader`",
            binaries.dirigent.display()
        ))
    })?;
    let cluster = RemoteCluster::connect(spec).await?;
    match cluster.ship(binaries, &loader).await {
        Ok(sent) => tracing::info!(files = sent, "binaries shipped (unchanged ones skipped)"),
        Err(e) => {
            cluster.finish().await;
            return Err(e.into());
        }
    }
    Ok(cluster)
}

/// The run's marker on the hosts: the results folder's and the run's names, in characters safe everywhere.
fn run_id(folder: &Path, name: &str) -> String {
    let base = folder.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    format!("{base}-{name}")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' })
        .collect()
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
/// starts; returns each run's expected length, in the order of `spec.rates()`.
fn check_load(spec: &ExperimentSpec) -> Result<Vec<Duration>, ExperimentError> {
    let expected = |rate| {
        let mut config = spec.load.clone();
        set_rate(&mut config.workload, rate).map_err(ExperimentError::Load)?;
        let workload = loader::workload::prepare(&config).map_err(|e| ExperimentError::Load(e.to_string()))?;
        Ok(Duration::from_secs_f64(workload.run_duration_s))
    };
    spec.rates().into_iter().map(expected).collect()
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

/// One run of an experiment.
struct Run<'a> {
    spec: &'a ExperimentSpec,
    rate: Option<f64>,
    /// How long the load should take (the remote loader is given up on well after it).
    expected: Duration,
    binaries: Option<&'a Binaries>,
    dir: &'a Path,
    run_id: &'a str,
    cluster: Option<&'a RemoteCluster>,
}

impl Run<'_> {
    /// Platform up, load (with the failures injected), platform down. Never returns early without stopping what it
    /// started.
    async fn execute(&self, stop: StopSignal) -> RunEntry {
        let mut entry = RunEntry {
            dir: self.dir.to_owned(),
            rate: self.rate,
            sent: 0,
            ok: 0,
            failed: 0,
            trustworthy: false,
            platform_stop: StopReport::default(),
            error: None,
            analysis_error: None,
            events: Vec::new(),
            phases: RunPhases::default(),
        };
        let mut phase = std::time::Instant::now();
        let mut lap = || std::mem::replace(&mut phase, std::time::Instant::now()).elapsed().as_secs_f64();
        let platform_dir = self.dir.join("platform");
        let mut platform = match self.start_platform(&platform_dir).await {
            Ok(platform) => platform,
            Err((error, report)) => {
                entry.error = Some(format!("starting the platform: {error}"));
                entry.platform_stop = report;
                return entry;
            }
        };
        entry.phases.platform_start_s = lap();
        let outcome = self.load(&mut platform, stop, &mut entry.events).await;
        entry.phases.load_s = lap();
        entry.platform_stop = platform.stop(&platform_dir, self.run_id).await;
        entry.phases.teardown_s = lap();
        let mut errors = Vec::new();
        match outcome {
            Ok(counts) => {
                (entry.sent, entry.ok, entry.failed, entry.trustworthy) =
                    (counts.sent, counts.ok, counts.failed, counts.trustworthy);
            }
            Err(e) => errors.push(e),
        }
        // The events stay in experiment.json even when the manifest cannot take them.
        errors.extend(add_events(self.dir, &entry.events).err());
        entry.error = (!errors.is_empty()).then(|| errors.join("; "));
        entry
    }

    async fn start_platform(&self, platform_dir: &Path) -> Result<Platform<'_>, (String, StopReport)> {
        let (Some(spec), Some(binaries)) = (self.spec.platform.dirigent(), self.binaries) else {
            return Ok(Platform::External);
        };
        match self.cluster {
            None => {
                let marker = format!("{}-{}", self.spec.name, self.dir.display());
                LocalDirigent::start(spec, binaries, platform_dir, &marker)
                    .await
                    .map(Platform::Local)
                    .map_err(|e| (e.to_string(), StopReport::default()))
            }
            Some(cluster) => RemoteDirigent::start(cluster, spec, self.run_id, platform_dir)
                .await
                .map(|remote| Platform::Remote(remote, cluster)),
        }
    }

    /// Runs the load here or on the loader host, with the failures injected meanwhile; their events go to
    /// `events`.
    async fn load(
        &self,
        platform: &mut Platform<'_>,
        stop: StopSignal,
        events: &mut Vec<serde_json::Value>,
    ) -> Result<LoadCounts, String> {
        let config = self.load_config(platform)?;
        let done = tokio::sync::Notify::new();
        // Failure times count from the loader's start, which on a cluster comes after uploading the trace.
        let (started, loader_started) = tokio::sync::oneshot::channel();
        let load = async {
            let result = match self.cluster {
                None => {
                    let _ = started.send(tokio::time::Instant::now());
                    local_load(&config, stop).await
                }
                Some(cluster) => {
                    let remote = RemoteRun { cluster, run_id: self.run_id, dir: self.dir, expected: self.expected };
                    remote.load(&config, &stop, started).await
                }
            };
            done.notify_one();
            result
        };
        let inject = crate::failures::inject(&self.spec.failures, platform, loader_started, &done);
        let (result, injected) = tokio::join!(load, inject);
        *events = injected;
        result
    }
}

impl Run<'_> {
    /// The loader config of this run: the spec's load aimed at the platform, writing into the run's folder.
    fn load_config(&self, platform: &Platform<'_>) -> Result<RunConfig, String> {
        let mut config = self.spec.load.clone();
        set_rate(&mut config.workload, self.rate)?;
        config.output = self.dir.to_owned();
        config.target = match (self.spec.platform.external_target(), self.binaries) {
            (Some(target), _) => target?,
            (None, Some(binaries)) => {
                let image = match self.cluster {
                    // Shipped beside dirigent on every host, where dirigent looks for a bare image name first.
                    Some(_) => "trace-function".to_owned(),
                    None => binaries.trace_function.display().to_string(),
                };
                TargetConfig::Dirigent {
                    api: platform.api().into(),
                    proxy: platform.proxy().into(),
                    image,
                    min_scale: 0,
                    max_scale: 0,
                }
            }
            (None, None) => return Err("no binaries for the dirigent platform".into()),
        };
        Ok(config)
    }
}

async fn local_load(config: &RunConfig, stop: StopSignal) -> Result<LoadCounts, String> {
    let report = loader::run::run(config, stop).await.map_err(|e| format!("load: {e}"))?;
    let replay = &report.replay;
    Ok(LoadCounts { sent: replay.sent, ok: replay.ok, failed: replay.failed, trustworthy: report.trustworthy })
}

/// One run's load on the loader host.
struct RemoteRun<'a> {
    cluster: &'a RemoteCluster,
    run_id: &'a str,
    dir: &'a Path,
    expected: Duration,
}

impl RemoteRun<'_> {
    /// Starts the loader on its host (then tells `started`), waits for it and fetches what it wrote.
    async fn load(
        &self,
        config: &RunConfig,
        stop: &StopSignal,
        started: tokio::sync::oneshot::Sender<tokio::time::Instant>,
    ) -> Result<LoadCounts, String> {
        let (cluster, dir) = (self.cluster, self.dir);
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let load = RemoteLoad::start(cluster, config, self.run_id, dir).await.map_err(|e| format!("load: {e}"))?;
        let _ = started.send(tokio::time::Instant::now());
        let waited = load.wait(cluster, stop, self.expected).await;
        // Whatever the loader wrote is fetched, also after a failure.
        let counts = load.collect(cluster, dir).await;
        waited.map_err(|e| format!("load: {e}"))?;
        counts.map_err(|e| format!("load: {e}"))
    }
}

/// Appends `events` to the run's `manifest.json`.
fn add_events(dir: &Path, events: &[serde_json::Value]) -> Result<(), String> {
    if events.is_empty() {
        return Ok(());
    }
    let path = dir.join("manifest.json");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut manifest: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    match manifest.get_mut("events").and_then(serde_json::Value::as_array_mut) {
        Some(list) => list.extend(events.iter().cloned()),
        None => manifest["events"] = serde_json::Value::Array(events.to_vec()),
    }
    let text = serde_json::to_string_pretty(&manifest).unwrap_or_default() + "\n";
    std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<(), ExperimentError> {
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    std::fs::write(path, text + "\n").map_err(|source| ExperimentError::Write { path: path.into(), source })
}
