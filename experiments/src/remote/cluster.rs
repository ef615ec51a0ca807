//! The hosts of an experiment, once per experiment: connect, preflight every host (and refuse hosts the binaries
//! cannot run on), ship the binaries, and at the end remove what was installed unless it is kept.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::preflight::{self, HostReport};
use crate::dirigent::local::Binaries;
use crate::spec::ClusterSpec;
use crate::ssh::inventory::{Inventory, InventoryError, Role};
use crate::ssh::{Hosts, Session, SshError, shell_quote};

/// Limit for short commands (mkdir, rm, kill).
pub const SHORT: Duration = Duration::from_secs(30);

/// Why the cluster cannot be used; every message names the host and the step.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The inventory is unusable.
    #[error(transparent)]
    Inventory(#[from] InventoryError),
    /// "{0}".
    #[error("{0}")]
    Local(String),
}

/// The hosts of an experiment after preflight.
#[derive(Debug)]
pub struct RemoteCluster {
    /// The checked inventory.
    pub inventory: Inventory,
    /// Preflight per host, in inventory order.
    pub reports: Vec<HostReport>,
    hosts: Arc<Hosts>,
    parallelism: usize,
    keep_binaries: bool,
    remote_dir: String,
}

impl RemoteCluster {
    /// Reads the inventory, connects to every host and runs preflight there; fails naming each host that is
    /// unreachable, refuses the key, or cannot run the binaries built here.
    pub async fn connect(spec: &ClusterSpec) -> Result<Self, RemoteError> {
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
                Err(source) => problems.push(format!("preflight: {source}")),
            }
        }
        if !problems.is_empty() {
            hosts.disconnect();
            return Err(RemoteError::Local(problems.join("; ")));
        }
        for warning in reports.iter().flat_map(|r| &r.warnings) {
            tracing::warn!("{warning}");
        }
        Ok(RemoteCluster {
            inventory,
            reports,
            hosts,
            parallelism,
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

    /// The indices of the hosts playing `role`, in inventory order.
    pub fn with_role(&self, role: Role) -> Vec<usize> {
        (0..self.inventory.hosts.len()).filter(|&i| self.inventory.hosts[i].has(role)).collect()
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
    pub async fn on_each<T, F>(&self, indices: Vec<usize>, work: F) -> Vec<Result<T, SshError>>
    where
        T: Send + 'static,
        F: Fn(usize, &mut Session) -> Result<T, SshError> + Send + Sync + 'static,
    {
        let hosts = Arc::clone(&self.hosts);
        let parallelism = self.parallelism;
        join(tokio::task::spawn_blocking(move || hosts.run_on(&indices, parallelism, work)).await)
    }

    /// Runs the short command `command_for_host(index)` on every host, `parallelism` at a time; returns one
    /// `"{step}: {error}"` per host where it failed.
    pub async fn on_all_hosts(&self, step: &str, command_for_host: impl Fn(usize) -> String) -> Vec<String> {
        let commands: Vec<String> = (0..self.inventory.hosts.len()).map(command_for_host).collect();
        let results = self
            .on_each((0..commands.len()).collect(), move |index, session| {
                session.exec_ok(&commands[index], SHORT).map(|_| ())
            })
            .await;
        errors(step, results)
    }

    /// Uploads the binaries each host needs into its `bin/` (files whose checksum matches are skipped): `dirigent`
    /// and `trace-function` where a role of the orchestrator runs, `loader` on the loader host. Returns how many
    /// files were sent.
    pub async fn ship(&self, binaries: &Binaries, loader: &Path) -> Result<usize, RemoteError> {
        let plan: Vec<(usize, Vec<PathBuf>)> = (0..self.inventory.hosts.len())
            .map(|index| {
                let host = &self.inventory.hosts[index];
                let mut files = Vec::new();
                if host.roles.iter().any(|role| *role != Role::Loader) {
                    files.extend([binaries.dirigent.clone(), binaries.trace_function.clone()]);
                }
                if host.has(Role::Loader) {
                    files.push(loader.to_owned());
                }
                (index, files)
            })
            .collect();
        let bins: Vec<String> = (0..self.inventory.hosts.len()).map(|i| self.bin(i)).collect();
        let results = self
            .on_each((0..plan.len()).collect(), move |index, session| {
                let mut sent = 0;
                for file in &plan[index].1 {
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
            problems = self
                .on_all_hosts("removing binaries", |index| format!("rm -rf {}", shell_quote(&self.bin(index))))
                .await;
        }
        let hosts = Arc::clone(&self.hosts);
        let _ = tokio::task::spawn_blocking(move || hosts.disconnect()).await;
        problems
    }
}

/// Why the binaries built here cannot run on the host of `report`, if they cannot.
fn unfit(report: &HostReport) -> Option<String> {
    let local = std::env::consts::ARCH;
    if report.os != "Linux" {
        return Some(format!("preflight: {}: the roles need Linux, the host runs '{}'", report.host, report.os));
    }
    (report.arch != local).then(|| {
        format!(
            "preflight: {}: the host is {} but the binaries here are built for {local}; build for it \
             (cargo build --release --target {}-unknown-linux-gnu) and set platform.bin_dir",
            report.host, report.arch, report.arch
        )
    })
}

/// Every host's value, or one error naming every host that failed `step`.
pub fn collect<T>(step: &str, results: Vec<Result<T, SshError>>) -> Result<Vec<T>, RemoteError> {
    let mut values = Vec::new();
    let mut errors = Vec::new();
    for result in results {
        match result {
            Ok(value) => values.push(value),
            Err(e) => errors.push(e.to_string()),
        }
    }
    if errors.is_empty() { Ok(values) } else { Err(RemoteError::Local(format!("{step}: {}", errors.join("; ")))) }
}

/// One `"{step}: {error}"` per failed result, in host order.
pub fn errors<T>(step: &str, results: Vec<Result<T, SshError>>) -> Vec<String> {
    results.into_iter().filter_map(|result| result.err().map(|e| format!("{step}: {e}"))).collect()
}

/// The result of a blocking SSH task; a panic there is a bug and goes on unwinding here.
fn join<T>(joined: Result<T, tokio::task::JoinError>) -> T {
    joined.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}
