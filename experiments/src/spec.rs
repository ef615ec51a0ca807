//! The experiment spec: one YAML file naming the platform, the load and the analysis. Everything is checked when
//! the file is read, before any process starts; errors name the file, the line and the key.

mod cluster;

use std::path::{Path, PathBuf};
use std::time::Duration;

use contracts::config::{
    ControlPlaneConfig, DataPlaneConfig, InvalidConfig, RoleConfig, StandaloneConfig, StoreConfig, WorkerConfig,
};
use contracts::yaml::YamlError;
use loader::config::{RunConfig, TargetConfig, Workload};
use serde::{Deserialize, Serialize};

pub use cluster::{ClusterSpec, FailureSpec};

/// One experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentSpec {
    /// Short name, used in folder names and reports.
    pub name: String,
    /// Results folder; each `experiments run` writes a new timestamped folder inside it.
    #[serde(default = "default_output")]
    pub output: PathBuf,
    /// The platform under test and how to start it.
    pub platform: PlatformSpec,
    /// Hosts over SSH to run the platform and the loader on; absent: everything on this machine.
    #[serde(default)]
    pub cluster: Option<ClusterSpec>,
    /// Failures injected during each run's load, in any order.
    #[serde(default)]
    pub failures: Vec<FailureSpec>,
    /// The load: a loader run config without `target` and `output` (the platform and the runner decide those).
    #[serde(default)]
    pub load: RunConfig,
    /// Optional: one run per rate of an `rps` or `cold-starts` workload, then the sweep plot.
    #[serde(default)]
    pub sweep: Option<SweepSpec>,
    /// What to analyse once the runs are done.
    #[serde(default)]
    pub analysis: AnalysisSpec,
}

/// The analysis of an experiment's runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnalysisSpec {
    /// Write `report.md`, `report.json` and the plots into each run folder, and the sweep plot for a sweep.
    pub report: bool,
    /// What the analysis excludes and how it bins the timeline.
    pub options: analysis::Options,
}

impl Default for AnalysisSpec {
    fn default() -> Self {
        AnalysisSpec { report: true, options: analysis::Options::default() }
    }
}

fn default_output() -> PathBuf {
    PathBuf::from("results")
}

/// The platform under test.
///
/// Read through a buffer (as any internally tagged enum is) with its own key path, so an error inside names the
/// key (`platform.worker.sandbox_ports`), which the parser alone could not follow into the buffer.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
#[expect(clippy::large_enum_variant, reason = "one per experiment, read once: size does not matter")]
pub enum PlatformSpec {
    /// The bundled orchestrator, started by the runner (on this machine or on a cluster's hosts).
    Dirigent(DirigentSpec),
    /// Knative Serving on a Kubernetes cluster that already runs: the keys of the loader's `knative` target.
    Knative(TargetSettings),
    /// AWS Lambda (or an emulator): the keys of the loader's `lambda` target.
    Lambda(TargetSettings),
    /// Any HTTP endpoint that already runs: the keys of the loader's `http` target.
    Http(TargetSettings),
    /// A vHive-style gRPC endpoint that already runs: the keys of the loader's `grpc` target.
    Grpc(TargetSettings),
}

/// The settings of a platform the runner does not start: a loader target's keys (without `kind`).
pub type TargetSettings = serde_json::Map<String, serde_json::Value>;

impl<'de> Deserialize<'de> for PlatformSpec {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let serde_json::Value::Object(mut settings) = serde_json::Value::deserialize(deserializer)? else {
            return Err(D::Error::custom("platform must be a mapping with a `kind`"));
        };
        let kind = match settings.remove("kind") {
            Some(serde_json::Value::String(kind)) => kind,
            _ => {
                return Err(D::Error::custom(
                    "platform.kind: missing; give one of dirigent, knative, lambda, http, grpc",
                ));
            }
        };
        Ok(match kind.as_str() {
            "dirigent" => PlatformSpec::Dirigent(dirigent_settings(settings).map_err(D::Error::custom)?),
            "knative" => PlatformSpec::Knative(settings),
            "lambda" => PlatformSpec::Lambda(settings),
            "http" => PlatformSpec::Http(settings),
            "grpc" => PlatformSpec::Grpc(settings),
            other => {
                return Err(D::Error::custom(format!(
                    "platform.kind: unknown variant `{other}`, expected one of dirigent, knative, lambda, http, grpc"
                )));
            }
        })
    }
}

/// The dirigent platform's settings, with the key path of an error (`platform.worker.sandbox_ports`).
fn dirigent_settings(settings: TargetSettings) -> Result<DirigentSpec, String> {
    let mut track = serde_path_to_error::Track::new();
    let value = serde_json::Value::Object(settings);
    DirigentSpec::deserialize(serde_path_to_error::Deserializer::new(value, &mut track)).map_err(|error| {
        let path = track.path().to_string();
        let key = if path == "." { "platform".to_string() } else { format!("platform.{path}") };
        format!("{key}: {error}")
    })
}

impl PlatformSpec {
    /// The bundled orchestrator's settings, when that is the platform.
    pub fn dirigent(&self) -> Option<&DirigentSpec> {
        match self {
            PlatformSpec::Dirigent(dirigent) => Some(dirigent),
            _ => None,
        }
    }

    /// For a platform the runner does not start, the loader target that reaches it; `None` for dirigent.
    pub fn external_target(&self) -> Option<Result<TargetConfig, SpecInvalid>> {
        let (kind, settings) = match self {
            PlatformSpec::Dirigent(_) => return None,
            PlatformSpec::Knative(settings) => ("knative", settings),
            PlatformSpec::Lambda(settings) => ("lambda", settings),
            PlatformSpec::Http(settings) => ("http", settings),
            PlatformSpec::Grpc(settings) => ("grpc", settings),
        };
        let mut target = settings.clone();
        target.insert("kind".into(), kind.into());
        Some(serde_json::from_value(target.into()).map_err(|source| SpecInvalid::Target { kind, source }))
    }
}

/// How to run the bundled orchestrator locally.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirigentSpec {
    /// `roles`: control plane, data plane and each worker in its own process; `standalone`: one process.
    #[serde(default)]
    pub processes: Processes,
    /// Worker count.
    #[serde(default = "two")]
    pub workers: u32,
    /// Control-plane replicas (1, 3, 5 or 7), the registry replicated among them through Raft; default: one, or
    /// on a cluster one on each control-plane host. Several go round the control-plane hosts in turn.
    #[serde(default)]
    pub replicas: Option<u32>,
    /// Folder holding `dirigent` and `trace-function`; default: beside the `experiments` binary, else
    /// `target/release` under the working directory.
    #[serde(default)]
    pub bin_dir: Option<PathBuf>,
    /// The image the loader registers every function with; default the `trace-function` binary (the process
    /// runtime's image). With `worker: { runtime: containerd }`, an OCI image reference containerd holds, such as
    /// `dirigent.local/trace-function:latest` (what `dirigent image` writes).
    #[serde(default)]
    pub image: Option<String>,
    /// Keys of `orchestrator/config/control-plane.yaml` (listen addresses are filled in: see `roles::config`).
    #[serde(default)]
    pub control_plane: ControlPlaneConfig,
    /// Keys of `orchestrator/config/data-plane.yaml` (listen and control-plane addresses are filled in).
    #[serde(default)]
    pub data_plane: DataPlaneConfig,
    /// Keys of `orchestrator/config/worker.yaml`, for every worker (addresses and sandbox ports are filled in).
    #[serde(default)]
    pub worker: WorkerConfig,
    /// CPU priority adjustment (`nice`, 0 to 19) of the roles and their sandboxes. On one shared machine the
    /// loader is the instrument: a positive value lets it win CPU contention against the system it measures, so its
    /// send lag stays small. Use 0 when the loader runs on its own host.
    #[serde(default = "default_nice")]
    pub nice: u8,
    /// How long the roles may take to start and register.
    #[serde(default = "default_start_timeout", with = "humantime_serde")]
    pub start_timeout: Duration,
}

/// How the orchestrator's roles map to processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Processes {
    /// One process per role, as on a real cluster.
    #[default]
    Roles,
    /// `dirigent standalone`: every role in one process.
    Standalone,
}

fn two() -> u32 {
    2
}

fn default_nice() -> u8 {
    5
}

fn default_start_timeout() -> Duration {
    Duration::from_secs(30)
}

/// A sweep over the workload's rate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepSpec {
    /// The rates, one run each, in this order (invocations or cold starts per second).
    pub rates: Vec<f64>,
}

/// Why a spec is unusable.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// "cannot read {path}", with the cause.
    #[error("cannot read {path}", path = .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// "invalid experiment spec {path}", with what is wrong.
    #[error("invalid experiment spec {path}", path = .path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the key (and the line when the parser knows it).
        source: SpecInvalid,
    },
}

/// What is wrong with a spec's content; the message names the key (and the line when the parser knows it).
#[derive(Debug, thiserror::Error)]
pub enum SpecInvalid {
    /// The YAML does not fit the spec's keys and types (the message names line, column and key).
    #[error(transparent)]
    Yaml(YamlError),
    /// "platform.{section}: {error}": a role config section the orchestrator would refuse.
    #[error("platform.{section}: {error}")]
    Role {
        /// `control_plane`, `data_plane`, `worker`, or empty for a rule across sections.
        section: &'static str,
        /// What is wrong there.
        error: InvalidConfig,
    },
    /// "platform ({kind})", with what the loader's target config said.
    #[error("platform ({kind})")]
    Target {
        /// The platform kind.
        kind: &'static str,
        /// The cause.
        source: serde_json::Error,
    },
    /// "load: {0}", what the loader's config check said.
    #[error("load: {0}")]
    Load(String),
    /// "{key}", with what is wrong with the inventory there.
    #[error("{key}")]
    Inventory {
        /// `cluster` or `cluster.inventory`.
        key: &'static str,
        /// What is wrong.
        source: crate::cluster::inventory::InventoryInvalid,
    },
    /// A rule the types cannot express: "{0}", naming the key and what to do.
    #[error("{0}")]
    Rule(String),
}

impl ExperimentSpec {
    /// Reads and checks a spec file; relative paths inside it stay relative to the working directory.
    pub fn load(path: &Path) -> Result<Self, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read { path: path.into(), source })?;
        Self::parse(&text).map_err(|source| SpecError::Invalid { path: path.into(), source })
    }

    /// Parses and checks spec text.
    pub fn parse(text: &str) -> Result<Self, SpecInvalid> {
        let spec: Self = contracts::yaml::parse(text).map_err(SpecInvalid::Yaml)?;
        spec.validate()?;
        Ok(spec)
    }

    /// Checks what the types cannot; the message names the key.
    pub fn validate(&self) -> Result<(), SpecInvalid> {
        let rule = |message: String| Err(SpecInvalid::Rule(message));
        if self.name.is_empty() || !self.name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
            return rule(format!("name '{}' must be non-empty letters, digits, '-', '_' or '.'", self.name));
        }
        if self.load.target != TargetConfig::default() {
            return rule("load.target is decided by `platform`; remove it".into());
        }
        if self.load.output != RunConfig::default().output {
            return rule("load.output is decided by the runner (see `output`); remove it".into());
        }
        match (self.platform.dirigent(), self.platform.external_target()) {
            (Some(dirigent), _) => dirigent.validate()?,
            (None, Some(target)) => {
                target?;
                if self.cluster.is_some() {
                    return rule(
                        "cluster: only platform `dirigent` runs on a cluster's hosts; remove `cluster`".into(),
                    );
                }
                if !self.failures.is_empty() {
                    return rule("failures: the runner can kill roles of platform `dirigent` only".into());
                }
            }
            (None, None) => {}
        }
        if let Some(cluster) = &self.cluster {
            cluster.validate()?;
        }
        for (index, failure) in self.failures.iter().enumerate() {
            if self.platform.dirigent().is_some_and(|d| d.processes == Processes::Standalone) {
                return rule(format!("failures[{index}]: `processes: standalone` has no separate role to kill"));
            }
            if !is_component_name(&failure.kill) {
                return rule(format!(
                    "failures[{index}].kill '{}' must be control-plane, control-plane-N, {}, data-plane, \
                     data-plane-N or worker-N",
                    failure.kill,
                    crate::roles::LEADER
                ));
            }
        }
        for rate in self.rates() {
            let mut config = self.load.clone();
            set_rate(&mut config.workload, rate)?;
            config.validate().map_err(SpecInvalid::Load)?;
        }
        Ok(())
    }

    /// The rates of the runs: the sweep's, or the workload's own (one run) when there is no sweep.
    pub fn rates(&self) -> Vec<Option<f64>> {
        match &self.sweep {
            Some(sweep) => sweep.rates.iter().copied().map(Some).collect(),
            None => vec![None],
        }
    }
}

impl DirigentSpec {
    /// The three sections and the worker count as one standalone config: what the roles validate.
    fn role_configs(&self) -> StandaloneConfig {
        StandaloneConfig {
            workers: self.workers,
            control_plane: self.control_plane.clone(),
            data_plane: self.data_plane.clone(),
            worker: self.worker.clone(),
        }
    }

    fn validate(&self) -> Result<(), SpecInvalid> {
        let rule = |message: String| Err(SpecInvalid::Rule(message));
        if self.workers == 0 {
            return rule("platform.workers must be at least 1".into());
        }
        self.role_configs().validate().map_err(|error| match error {
            InvalidConfig::In { section, error } => SpecInvalid::Role { section, error: *error },
            error => SpecInvalid::Role { section: "workers", error },
        })?;
        if self.nice > 19 {
            return rule(format!("platform.nice must be between 0 and 19, got {}", self.nice));
        }
        if self.start_timeout.is_zero() {
            return rule("platform.start_timeout must be above 0".into());
        }
        self.validate_replicas()
    }

    fn validate_replicas(&self) -> Result<(), SpecInvalid> {
        let rule = |message: String| Err(SpecInvalid::Rule(message));
        let Some(replicas) = self.replicas else { return Ok(()) };
        if ![1, 3, 5, 7].contains(&replicas) {
            return rule(format!(
                "platform.replicas must be 1, 3, 5 or 7, got {replicas}: a majority must stay up, and an even count \
                 survives no more failures than one replica fewer"
            ));
        }
        if replicas > 1 && self.processes == Processes::Standalone {
            return rule(
                "platform.replicas: `processes: standalone` runs one control plane; use `processes: roles`".into(),
            );
        }
        if replicas > 1 && self.control_plane.replication.is_some() {
            return rule("platform.control_plane.replication is filled in from platform.replicas; remove it".into());
        }
        if replicas > 1 && !matches!(self.control_plane.store, StoreConfig::Sqlite(_)) {
            return rule(
                "platform.replicas: replicas keep their Raft log in SQLite; set control_plane.store.kind: sqlite"
                    .into(),
            );
        }
        Ok(())
    }
}

/// The `dirigent` platform of a spec whose `platform:` is `platform` (YAML), for tests.
#[cfg(test)]
pub(crate) fn dirigent_spec(platform: &str) -> DirigentSpec {
    let spec = ExperimentSpec::parse(&format!("name: t\nplatform: {platform}\n")).expect("a valid spec");
    let PlatformSpec::Dirigent(dirigent) = spec.platform else { panic!("platform {platform} is not dirigent") };
    dirigent
}

/// Whether `name` can name a role's process: `control-plane`, `control-plane-N`, `control-plane-leader`,
/// `data-plane`, `data-plane-N` or `worker-N`.
fn is_component_name(name: &str) -> bool {
    let numbered = |prefix: &str| {
        name.strip_prefix(prefix).is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    ["control-plane", "data-plane", crate::roles::LEADER].contains(&name)
        || ["control-plane-", "data-plane-", "worker-"].into_iter().any(numbered)
}

/// Sets the rate of a synthetic workload (`None` leaves it); a trace replay has no rate to sweep.
pub fn set_rate(workload: &mut Workload, rate: Option<f64>) -> Result<(), SpecInvalid> {
    let Some(rate) = rate else { return Ok(()) };
    match workload {
        Workload::Rps(rps) => rps.rate = rate,
        Workload::ColdStarts(cold) => cold.rate = rate,
        Workload::Trace => {
            return Err(SpecInvalid::Rule("sweep.rates needs load.workload of kind rps or cold-starts".into()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "name: t\nplatform: { kind: dirigent }\n";

    #[test]
    fn a_minimal_spec_takes_the_defaults() {
        let spec = ExperimentSpec::parse(MINIMAL).unwrap();
        let d = spec.platform.dirigent().unwrap();
        assert_eq!((d.processes, d.workers, d.start_timeout), (Processes::Roles, 2, Duration::from_secs(30)));
        assert_eq!(spec.load, RunConfig::default());
        assert_eq!(spec.rates(), vec![None]);
    }

    #[test]
    fn errors_name_the_key() {
        for (text, key) in [
            ("name: t\nplatform: { kind: dirigent, wrkers: 2 }\n", "wrkers"),
            ("name: t\nplatform: { kind: kubernetes }\n", "kubernetes"),
            ("name: t\nplatform: { kind: http }\n", "url"),
            ("name: t\nplatform: { kind: http, url: x, colour: red }\n", "colour"),
            ("name: t\nplatform: { kind: http, url: x }\nfailures: [ { at: 1s, kill: worker-0 } ]\n", "failures"),
            ("name: t\nplatform: { kind: dirigent, workers: 0 }\n", "platform.workers"),
            ("name: t\nplatform: { kind: dirigent, worker: 3 }\n", "platform.worker"),
            ("name: t\nplatform: { kind: dirigent, worker: { sandbox_ports: lots } }\n", "lots"),
            ("name: t\nplatform: { kind: dirigent, control_plane: { placment: random } }\n", "placment"),
            ("name: t\nplatform: { kind: dirigent, data_plane: { queue_timeout: 0s } }\n", "platform.data_plane"),
            (
                "name: t\nplatform: { kind: dirigent, workers: 3, worker: { sandbox_ports: 30000-30001 } }\n",
                "sandbox_ports",
            ),
            ("name: 'a b'\nplatform: { kind: dirigent }\n", "name"),
            ("name: t\nplatform: { kind: dirigent }\nload: { slice: { minuts: 2 } }\n", "minuts"),
            ("name: t\nplatform: { kind: dirigent }\nload: { target: { kind: http, url: x } }\n", "load.target"),
            ("name: t\nplatform: { kind: dirigent }\nload: { output: x }\n", "load.output"),
            ("name: t\nplatform: { kind: dirigent }\nsweep: { rates: [1] }\n", "sweep.rates"),
            ("name: t\nplatform: { kind: dirigent, replicas: 2 }\n", "platform.replicas"),
            ("name: t\nplatform: { kind: dirigent, replicas: 3, processes: standalone }\n", "standalone"),
            (
                "name: t\nplatform: { kind: dirigent, replicas: 3, control_plane: { store: { kind: memory } } }\n",
                "sqlite",
            ),
            (
                "name: t\nplatform: { kind: dirigent }\nfailures: [ { at: 1s, kill: control-plane-lead } ]\n",
                "control-plane-leader",
            ),
            (
                "name: t\nplatform: { kind: dirigent }\nload: { workload: { kind: rps, rate: 1 } }\nsweep: { rates: [1, 0] }\n",
                "workload.rate",
            ),
        ] {
            let err = crate::error_chain(&ExperimentSpec::parse(text).unwrap_err());
            assert!(err.contains(key), "{text}: {err}");
        }
    }

    #[test]
    fn the_shipped_specs_are_valid() {
        for name in ["quickstart", "cold-start-sweep", "cluster", "knative", "lambda", "leader-failover"] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("specs/{name}.yaml"));
            let spec = ExperimentSpec::load(&path).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(spec.name, name);
        }
    }

    #[test]
    fn a_sweep_has_one_run_per_rate() {
        let text = "name: s\nplatform: { kind: dirigent }\nload: { workload: { kind: cold-starts, rate: 1 } }\n\
                    sweep: { rates: [1, 10, 50] }\n";
        let spec = ExperimentSpec::parse(text).unwrap();
        assert_eq!(spec.rates(), vec![Some(1.0), Some(10.0), Some(50.0)]);
    }
}
