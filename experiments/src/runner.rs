//! `experiments run`: for each run of the spec (one, or one per sweep rate) start the platform on the experiment's
//! site (this machine, or a cluster's hosts), replay the load, inject the failures meanwhile, stop the platform and
//! check that nothing survived; then analyse. The results folder keeps everything measured, also after a failure
//! or a Ctrl-C.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use contracts::json_file::{JsonFileError, write_pretty};
use contracts::run_folder::{Event, HostFacts};
use loader::config::{RunConfig, TargetConfig};
use loader::driver::StopSignal;
use loader::output::{format_rfc3339, git_commit};
use serde::Serialize;

use crate::binaries::{Binaries, BinariesError};
use crate::cluster::preflight::HostReport;
use crate::cluster::{Cluster, ClusterError};
use crate::events::ManifestError;
use crate::failures::UnknownComponent;
use crate::lifecycle::{Lifecycle, LifecycleError, Setup, StopReport, system_clock};
use crate::load::{LoadCounts, LoadError};
use crate::local::ThisMachine;
use crate::platform::Platform;
use crate::site::{RunPlace, Site};
use crate::spec::{ExperimentSpec, SpecInvalid, set_rate};

/// Why an experiment could not run at all (a failure of one run is recorded in its entry instead).
#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    /// The binaries were not found.
    #[error(transparent)]
    Binaries(#[from] BinariesError),
    /// "cannot create the results folder {path}", with the cause.
    #[error("cannot create the results folder {path}", path = .path.display())]
    Folder {
        /// The folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// "load", with what is wrong with a run's load.
    #[error("load")]
    Load(#[source] SpecInvalid),
    /// "load", with why a run's workload cannot be prepared.
    #[error("load")]
    Workload(#[source] loader::workload::WorkloadError),
    /// A failure names no component of the platform.
    #[error(transparent)]
    Failures(#[from] UnknownComponent),
    /// The cluster cannot be used.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// `experiment.json` could not be written (the error names it).
    #[error(transparent)]
    Write(#[from] JsonFileError),
}

/// Why one run failed (recorded in its entry, with its causes).
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// "starting the platform", with why.
    #[error("starting the platform")]
    Start(#[source] Box<LifecycleError>),
    /// The loader config for this run cannot be made.
    #[error(transparent)]
    Target(SpecInvalid),
    /// The load failed.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The events could not be added to the manifest.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
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
    pub events: Vec<Event>,
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
            let binaries = Binaries::locate(platform.bin_dir.as_deref())?;
            Some(binaries)
        }
        None => None,
    };
    let setup = std::time::Instant::now();
    let cluster = match (&spec.cluster, &binaries) {
        (Some(cluster_spec), Some(binaries)) => Some(prepare_cluster(cluster_spec, binaries).await?),
        _ => None,
    };
    let experiment = Experiment {
        spec,
        binaries: binaries.as_ref(),
        cluster_hosts: cluster.as_ref().map(|c| c.reports.clone()).unwrap_or_default(),
        cluster_setup_s: cluster.as_ref().map_or(0.0, |_| setup.elapsed().as_secs_f64()),
    };
    let site: &dyn Site = match &cluster {
        Some(cluster) => cluster,
        None => &ThisMachine,
    };
    let record = experiment.runs(site, &durations, &stop).await;
    if let Some(cluster) = &cluster {
        for problem in cluster.finish().await {
            tracing::warn!("{problem}");
        }
    }
    let mut record = record?;
    record.interrupted = stop.is_stopped();
    if spec.analysis.report {
        record.sweep_error = analyse(spec, &mut record.runs, &record.folder).err().map(|e| crate::error_chain(&e));
    }
    record.ended_at = format_rfc3339(SystemTime::now());
    write_pretty(&record.folder.join("experiment.json"), &record)?;
    Ok(record)
}

/// An experiment whose binaries and cluster are ready.
struct Experiment<'a> {
    spec: &'a ExperimentSpec,
    binaries: Option<&'a Binaries>,
    cluster_hosts: Vec<HostReport>,
    cluster_setup_s: f64,
}

impl Experiment<'_> {
    /// Checks the failures against the platform, creates the results folder and executes every run on `site`, each
    /// expected to take its entry of `durations`; stops early when `stop` says so.
    async fn runs(
        &self,
        site: &dyn Site,
        durations: &[Duration],
        stop: &StopSignal,
    ) -> Result<ExperimentRecord, ExperimentError> {
        let spec = self.spec;
        let components = spec.platform.dirigent().map(|p| site.placement(p).names()).unwrap_or_default();
        crate::failures::check(&spec.failures, &components)?;
        let started = SystemTime::now();
        let folder = create_folder(&spec.output, &spec.name, started)?;
        let mut record = ExperimentRecord {
            name: spec.name.clone(),
            folder: folder.clone(),
            spec: spec.clone(),
            binaries: self.binaries.cloned(),
            git_commit: git_commit(),
            host: HostFacts::collect(),
            cluster_hosts: self.cluster_hosts.clone(),
            cluster_setup_s: self.cluster_setup_s,
            started_at: format_rfc3339(started),
            ended_at: String::new(),
            runs: Vec::new(),
            interrupted: false,
            sweep_error: None,
        };
        for (rate, &expected) in spec.rates().into_iter().zip(durations) {
            if stop.is_stopped() {
                break;
            }
            let name = rate.map_or_else(|| "run".to_owned(), |r| format!("rate-{r}"));
            let dir = folder.join(&name);
            let run_id = run_id(&folder, &name);
            let place = RunPlace { dir: &dir, run_id: &run_id, expected };
            let run = Run { spec, rate, binaries: self.binaries, site, place };
            let entry = run.execute(stop.clone()).await;
            tracing::info!(dir = %dir.display(), sent = entry.sent, ok = entry.ok, error = ?entry.error, "run finished");
            record.runs.push(entry);
        }
        Ok(record)
    }
}

/// Connects to the cluster, runs preflight on every host and ships the binaries.
async fn prepare_cluster(spec: &crate::spec::ClusterSpec, binaries: &Binaries) -> Result<Cluster, ExperimentError> {
    let loader = binaries.loader()?;
    let cluster = Cluster::connect(spec).await?;
    match cluster.ship(binaries, loader).await {
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
fn analyse(spec: &ExperimentSpec, runs: &mut [RunEntry], folder: &Path) -> Result<(), analysis::ReportError> {
    let mut points = Vec::new();
    for run in runs.iter_mut().filter(|r| r.dir.join("invocations.csv").is_file()) {
        let analysed = analysis::analyze(&run.dir, &spec.analysis.options).map_err(|e| crate::error_chain(&e));
        let written =
            analysed.and_then(|a| analysis::report::write(&a, &run.dir).map(|_| a).map_err(|e| crate::error_chain(&e)));
        match written {
            Ok(analysed) => points.extend(run.rate.map(|rate| (rate, analysed))),
            Err(e) => run.analysis_error = Some(e),
        }
    }
    if spec.sweep.is_none() || points.is_empty() {
        return Ok(());
    }
    analysis::sweep::write(&points, &folder.join("sweep")).map(drop)
}

/// Prepares every run's workload once (reading and checking the trace), so a bad trace fails before anything
/// starts; returns each run's expected length, in the order of `spec.rates()`.
fn check_load(spec: &ExperimentSpec) -> Result<Vec<Duration>, ExperimentError> {
    let expected = |rate| {
        let mut config = spec.load.clone();
        set_rate(&mut config.workload, rate).map_err(ExperimentError::Load)?;
        let workload = loader::workload::prepare(&config).map_err(ExperimentError::Workload)?;
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
    binaries: Option<&'a Binaries>,
    site: &'a dyn Site,
    place: RunPlace<'a>,
}

impl Run<'_> {
    /// Platform up, load (with the failures injected), platform down. Never returns early without stopping what it
    /// started.
    async fn execute(&self, stop: StopSignal) -> RunEntry {
        let mut entry = RunEntry {
            dir: self.place.dir.to_owned(),
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
        let mut platform = match self.start_platform().await {
            Ok(platform) => platform,
            Err((error, report)) => {
                entry.error = Some(crate::error_chain(&RunnerError::Start(Box::new(error))));
                entry.platform_stop = report;
                return entry;
            }
        };
        entry.phases.platform_start_s = lap();
        let outcome = self.load(&mut platform, stop, &mut entry.events).await;
        entry.phases.load_s = lap();
        entry.platform_stop = platform.stop().await;
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
        errors.extend(crate::events::append_to_manifest(self.place.dir, &entry.events).err().map(RunnerError::from));
        let errors: Vec<String> = errors.iter().map(|e| crate::error_chain(e)).collect();
        entry.error = (!errors.is_empty()).then(|| errors.join("; "));
        entry
    }

    async fn start_platform(&self) -> Result<Platform, (LifecycleError, StopReport)> {
        let (Some(spec), Some(binaries)) = (self.spec.platform.dirigent(), self.binaries) else {
            return Ok(Platform::External);
        };
        let setup = Setup {
            spec: spec.clone(),
            placement: self.site.placement(spec),
            hosts: self.site.hosts(&self.place, binaries),
            control_plane: self.site.control_plane(),
            platform_dir: self.place.dir.join("platform"),
            marker: format!("{}-{}", self.spec.name, self.place.dir.display()),
            loader_clock_offset_us: self.site.loader_clock_offset_us(),
            clock: system_clock,
        };
        Lifecycle::start(setup).await.map(|lifecycle| Platform::Started(Box::new(lifecycle)))
    }

    /// Runs the load on the site, with the failures injected meanwhile; their events go to `events`.
    async fn load(
        &self,
        platform: &mut Platform,
        stop: StopSignal,
        events: &mut Vec<Event>,
    ) -> Result<LoadCounts, RunnerError> {
        let config = self.load_config(platform)?;
        let done = tokio::sync::Notify::new();
        // Failure times count from the loader's start, which on a cluster comes after uploading the trace.
        let (started, loader_started) = tokio::sync::oneshot::channel();
        let load = async {
            let result = self.site.load(&self.place, &config, stop, started).await;
            done.notify_one();
            result
        };
        let inject = crate::failures::inject(&self.spec.failures, platform, loader_started, &done);
        let (result, injected) = tokio::join!(load, inject);
        *events = injected;
        Ok(result?)
    }

    /// The loader config of this run: the spec's load aimed at the platform, writing into the run's folder.
    fn load_config(&self, platform: &Platform) -> Result<RunConfig, RunnerError> {
        let mut config = self.spec.load.clone();
        set_rate(&mut config.workload, self.rate).map_err(RunnerError::Target)?;
        config.output = self.place.dir.to_owned();
        config.target = match (self.spec.platform.external_target(), self.binaries) {
            (Some(target), _) => target.map_err(RunnerError::Target)?,
            (None, binaries) => TargetConfig::Dirigent {
                api: platform.api(),
                proxy: platform.proxies(),
                image: match self.spec.platform.dirigent().and_then(|spec| spec.image.clone()) {
                    Some(image) => image,
                    None => binaries.map(|b| self.site.image(b)).unwrap_or_default(),
                },
                min_scale: 0,
                max_scale: 0,
            },
        };
        Ok(config)
    }
}

#[cfg(test)]
mod tests;
