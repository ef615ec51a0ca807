//! A cluster of hosts over SSH, once per experiment: the inventory, preflight on every host (refusing hosts the
//! binaries cannot run on), shipping the binaries, the hosts of each run for the lifecycle ([`SshHost`]), the loader
//! on the loader host ([`loader_host`]), and at the end removing what was installed unless it is kept. Built on
//! [`crate::ssh`].

mod host;
pub mod inventory;
pub mod loader_host;
pub mod preflight;
pub mod script;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use loader::config::RunConfig;
use loader::driver::StopSignal;
use tokio::sync::{Semaphore, oneshot};

use self::inventory::{Duty, Inventory, InventoryError};
use self::loader_host::LoaderProcess;
use self::preflight::HostReport;
use crate::binaries::Binaries;
use crate::lifecycle::host::{Host, HostId};
use crate::load::{LoadCounts, LoadError};
use crate::roles::Placement;
use crate::site::{RunPlace, Site};
use crate::spec::{ClusterSpec, DirigentSpec};
use crate::ssh::{Hosts, Session, SshError, shell_quote};

pub use host::SshHost;

/// Limit for short commands (mkdir, rm, kill).
pub const SHORT: Duration = Duration::from_secs(30);

/// Why a host cannot take part.
#[derive(Debug, thiserror::Error)]
pub enum Unfit {
    /// It could not be checked.
    #[error(transparent)]
    Unreachable(#[from] SshError),
    /// "{host}: the roles need Linux, the host runs '{os}'".
    #[error("{host}: the roles need Linux, the host runs '{os}'")]
    NotLinux {
        /// `user@address:port`.
        host: String,
        /// What `uname -s` said.
        os: String,
    },
    /// "{host}: the host is {arch} but the binaries here are built for {local}; build for it ... and set
    /// platform.bin_dir".
    #[error(
        "{host}: the host is {arch} but the binaries here are built for {local}; build for it (cargo build \
         --release --target {arch}-unknown-linux-gnu) and set platform.bin_dir"
    )]
    Architecture {
        /// `user@address:port`.
        host: String,
        /// What `uname -m` said.
        arch: String,
        /// This machine's architecture.
        local: &'static str,
    },
}

/// Why the cluster cannot be used; every message names the host and the step.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The inventory is unusable.
    #[error(transparent)]
    Inventory(#[from] InventoryError),
    /// "preflight: {problem}; preflight: {problem}...", one per host that cannot take part.
    #[error("{}", .0.iter().map(|p| format!("preflight: {}", crate::error_chain(p))).collect::<Vec<_>>().join("; "))]
    Preflight(Vec<Unfit>),
    /// "{step}: {error}; {error}...", one per host where `step` failed.
    #[error("{step}: {}", .errors.iter().map(|e| crate::error_chain(e)).collect::<Vec<_>>().join("; "))]
    Step {
        /// What was being done.
        step: &'static str,
        /// What failed, per host.
        errors: Vec<SshError>,
    },
}

/// The hosts of an experiment after preflight.
#[derive(Debug)]
pub struct Cluster {
    /// The checked inventory.
    pub inventory: Inventory,
    /// Preflight per host, in inventory order.
    pub reports: Vec<HostReport>,
    hosts: Arc<Hosts>,
    parallelism: usize,
    permits: Arc<Semaphore>,
    keep_binaries: bool,
    remote_dir: String,
}

impl Cluster {
    /// Reads the inventory, connects to every host and runs preflight there; fails naming each host that is
    /// unreachable, refuses the key, or cannot run the binaries built here.
    pub async fn connect(spec: &ClusterSpec) -> Result<Self, ClusterError> {
        let inventory = spec.inventory()?;
        let hosts = Arc::new(Hosts::from_inventory(&inventory, &spec.session_options()));
        let parallelism = spec.parallelism;
        let checking = Arc::clone(&hosts);
        let preflight = move || checking.run_all(parallelism, |session| preflight::check(session, &[]));
        let results = join(tokio::task::spawn_blocking(preflight).await);
        let mut reports = Vec::new();
        let mut problems = Vec::new();
        for result in results {
            match result {
                Ok(report) => {
                    problems.extend(unfit(&report));
                    reports.push(report);
                }
                Err(source) => problems.push(Unfit::Unreachable(source)),
            }
        }
        if !problems.is_empty() {
            hosts.disconnect();
            return Err(ClusterError::Preflight(problems));
        }
        for warning in reports.iter().flat_map(|r| &r.warnings) {
            tracing::warn!("{warning}");
        }
        Ok(Cluster {
            inventory,
            reports,
            hosts,
            parallelism,
            permits: Arc::new(Semaphore::new(parallelism.max(1))),
            keep_binaries: spec.keep_binaries,
            remote_dir: spec.remote_dir.clone(),
        })
    }

    /// `user@address:port` of host `index`.
    pub fn name(&self, index: usize) -> String {
        self.inventory.hosts[index].destination.to_string()
    }

    /// The toolkit's folder on host `index` (absolute).
    pub fn root(&self, index: usize) -> String {
        if self.remote_dir.starts_with('/') {
            self.remote_dir.clone()
        } else {
            format!("{}/{}", self.reports[index].home.trim_end_matches('/'), self.remote_dir)
        }
    }

    /// The binaries' folder on host `index`.
    pub fn bin(&self, index: usize) -> String {
        format!("{}/bin", self.root(index))
    }

    /// The folder of run `run_id` on host `index`.
    pub fn run_dir(&self, index: usize, run_id: &str) -> String {
        format!("{}/runs/{run_id}", self.root(index))
    }

    /// The indices of the hosts with `duty`, in inventory order.
    pub fn with_duty(&self, duty: Duty) -> Vec<usize> {
        (0..self.inventory.hosts.len()).filter(|&i| self.inventory.hosts[i].has(duty)).collect()
    }

    /// The loader host's index.
    pub fn loader_host(&self) -> usize {
        self.with_duty(Duty::Loader)[0]
    }

    /// Every host, for the lifecycle of run `run_id`, in inventory order.
    pub fn hosts_for_run(&self, run_id: &str) -> Vec<Arc<dyn Host>> {
        (0..self.inventory.hosts.len())
            .map(|index| {
                let report = &self.reports[index];
                let id = HostId {
                    name: self.name(index),
                    address: report.address.clone(),
                    clock_offset_us: report.clock_offset_us,
                };
                Arc::new(SshHost {
                    index,
                    id,
                    run_dir: self.run_dir(index, run_id),
                    bin: self.bin(index),
                    hosts: Arc::clone(&self.hosts),
                    permits: Arc::clone(&self.permits),
                }) as Arc<dyn Host>
            })
            .collect()
    }

    /// Runs `work` on host `index` off the async runtime.
    pub async fn on<T, F>(&self, index: usize, work: F) -> Result<T, SshError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Session) -> Result<T, SshError> + Send + 'static,
    {
        let hosts = Arc::clone(&self.hosts);
        join(tokio::task::spawn_blocking(move || hosts.with(index, work)).await)
    }

    /// Runs `work(index, session)` on the hosts at `indices`, `parallelism` at a time; results in that order.
    async fn on_each<T, F>(&self, indices: Vec<usize>, work: F) -> Vec<Result<T, SshError>>
    where
        T: Send + 'static,
        F: Fn(usize, &mut Session) -> Result<T, SshError> + Send + Sync + 'static,
    {
        let hosts = Arc::clone(&self.hosts);
        let parallelism = self.parallelism;
        join(tokio::task::spawn_blocking(move || hosts.run_on(&indices, parallelism, work)).await)
    }

    /// Uploads the binaries each host needs into its `bin/` (files whose checksum matches are skipped): `dirigent`
    /// and `trace-function` where a role of the orchestrator runs, `loader` on the loader host. Returns how many
    /// files were sent.
    pub async fn ship(&self, binaries: &Binaries, loader: &Path) -> Result<usize, ClusterError> {
        let plan: Vec<Vec<PathBuf>> = self
            .inventory
            .hosts
            .iter()
            .map(|host| {
                let mut files = Vec::new();
                if host.duties.iter().any(|duty| *duty != Duty::Loader) {
                    files.extend([binaries.dirigent.clone(), binaries.trace_function.clone()]);
                }
                if host.has(Duty::Loader) {
                    files.push(loader.to_owned());
                }
                files
            })
            .collect();
        let bins: Vec<String> = (0..plan.len()).map(|i| self.bin(i)).collect();
        let results = self
            .on_each((0..plan.len()).collect(), move |index, session| {
                let mut sent = 0;
                for file in &plan[index] {
                    let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                    sent += usize::from(session.upload(file, &format!("{}/{name}", bins[index]), 0o755)?);
                }
                Ok(sent)
            })
            .await;
        collect("shipping the binaries", results).map(|sent| sent.into_iter().sum())
    }

    /// Ends the experiment on the hosts: removes `bin/` unless it is kept, and closes every connection. Returns
    /// what could not be removed.
    pub async fn finish(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !self.keep_binaries {
            let commands: Vec<String> =
                (0..self.inventory.hosts.len()).map(|i| format!("rm -rf {}", shell_quote(&self.bin(i)))).collect();
            let results = self
                .on_each((0..commands.len()).collect(), move |index, session| {
                    session.exec_ok(&commands[index], SHORT).map(drop)
                })
                .await;
            problems.extend(collect("removing binaries", results).err().map(|e| crate::error_chain(&e)));
        }
        let hosts = Arc::clone(&self.hosts);
        let _ = tokio::task::spawn_blocking(move || hosts.disconnect()).await;
        problems
    }
}

impl Site for Cluster {
    fn hosts(&self, run: &RunPlace<'_>, _binaries: &Binaries) -> Vec<Arc<dyn Host>> {
        self.hosts_for_run(run.run_id)
    }

    fn placement(&self, spec: &DirigentSpec) -> Placement {
        Placement::from_inventory(&self.inventory, spec.replicas)
    }

    fn loader_clock_offset_us(&self) -> i64 {
        self.reports[self.loader_host()].clock_offset_us
    }

    /// Shipped beside dirigent on every host, where dirigent looks for a bare image name first.
    fn image(&self, _binaries: &Binaries) -> String {
        "trace-function".into()
    }

    /// Starts the loader on its host (then tells `started`), waits for it and fetches what it wrote, also after a
    /// failure.
    fn load<'a>(
        &'a self,
        run: &'a RunPlace<'a>,
        config: &'a RunConfig,
        stop: StopSignal,
        started: oneshot::Sender<tokio::time::Instant>,
    ) -> BoxFuture<'a, Result<LoadCounts, LoadError>> {
        Box::pin(async move {
            let dir = run.dir;
            std::fs::create_dir_all(dir).map_err(|source| LoadError::Folder { path: dir.into(), source })?;
            let load = LoaderProcess::start(self, config, run.run_id, dir).await.map_err(LoadError::OnHost)?;
            let _ = started.send(tokio::time::Instant::now());
            let waited = load.wait(self, &stop, run.expected).await;
            let counts = load.collect(self, dir).await;
            waited.map_err(LoadError::OnHost)?;
            counts.map_err(LoadError::OnHost)
        })
    }
}

/// Why the binaries built here cannot run on the host of `report`, if they cannot.
fn unfit(report: &HostReport) -> Option<Unfit> {
    let local = std::env::consts::ARCH;
    if report.os != "Linux" {
        return Some(Unfit::NotLinux { host: report.host.clone(), os: report.os.clone() });
    }
    (report.arch != local).then(|| Unfit::Architecture { host: report.host.clone(), arch: report.arch.clone(), local })
}

/// Every host's value, or one error naming every host that failed `step`.
fn collect<T>(step: &'static str, results: Vec<Result<T, SshError>>) -> Result<Vec<T>, ClusterError> {
    let (values, errors): (Vec<_>, Vec<_>) = results.into_iter().partition(Result::is_ok);
    let errors: Vec<SshError> = errors.into_iter().filter_map(Result::err).collect();
    if errors.is_empty() {
        Ok(values.into_iter().filter_map(Result::ok).collect())
    } else {
        Err(ClusterError::Step { step, errors })
    }
}

/// The result of a blocking SSH task; a panic there is a bug and goes on unwinding here.
fn join<T>(joined: Result<T, tokio::task::JoinError>) -> T {
    joined.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}
