//! This machine as a host of the lifecycle: components as child processes on a loopback address, each in its own
//! process group (a Ctrl-C at the terminal reaches only the runner, which then stops everything in order), killed by
//! the kernel should the runner die, with its log and config in the run's platform folder, which on this machine
//! is the run's folder itself.

mod process;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use loader::config::RunConfig;
use loader::driver::StopSignal;
use serde_json::Value;
use tokio::sync::oneshot;

use crate::binaries::Binaries;
use crate::lifecycle::host::{Host, HostError, HostId, Launch, RUN_MARKER_VAR, StopState, announced};
use crate::load::{LoadCounts, LoadError};
use crate::roles::Placement;
use crate::site::{RunPlace, Site};
use crate::spec::DirigentSpec;

pub use process::{ComponentProcess, ProcessError, log_tail, prepare_child, processes_with_env};

/// The address local runs listen on.
pub const LOOPBACK: &str = "127.0.0.1";
/// coreutils' `nice`, which runs a command with an adjusted CPU priority.
const NICE: &str = "/usr/bin/nice";

/// This machine, running components as its child processes.
#[derive(Debug)]
pub struct LocalHost {
    id: HostId,
    dir: PathBuf,
    dirigent: PathBuf,
    /// The running components by name (a restart replaces the entry of the killed process).
    processes: Mutex<HashMap<String, ComponentProcess>>,
}

impl LocalHost {
    /// Components listening on `address` (a loopback address), with `dir` as the run's folder, started from the
    /// `dirigent` binary. Named `localhost` on 127.0.0.1, else by its address.
    pub fn new(address: &str, dir: &Path, dirigent: &Path) -> Self {
        let name = if address == LOOPBACK { "localhost".into() } else { address.into() };
        LocalHost {
            id: HostId { name, address: address.into(), clock_offset_us: 0 },
            dir: dir.into(),
            dirigent: dirigent.into(),
            processes: Mutex::default(),
        }
    }

    fn processes(&self) -> std::sync::MutexGuard<'_, HashMap<String, ComponentProcess>> {
        self.processes.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Host for LocalHost {
    fn id(&self) -> &HostId {
        &self.id
    }

    fn prepare(&self) -> BoxFuture<'_, Result<(), HostError>> {
        let created = std::fs::create_dir_all(&self.dir).map_err(|source| HostError::Io {
            step: "cannot create",
            path: self.dir.clone(),
            source,
        });
        Box::pin(async move { created })
    }

    fn start<'a>(&'a self, launch: &'a Launch) -> BoxFuture<'a, Result<Value, HostError>> {
        Box::pin(async move {
            // Absolute, because the component runs in the run's folder (where the control plane keeps its store).
            let absolute = |path: &Path| std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
            let (dirigent, config) = (absolute(&self.dirigent), absolute(&launch.config));
            let mut command = launch.command(NICE, &dirigent.display().to_string(), &config.display().to_string());
            let program = PathBuf::from(command.remove(0));
            let process = ComponentProcess::start(process::Launch {
                name: &launch.stem,
                program: &program,
                args: command,
                log_dir: &self.dir,
                env: launch.env.clone(),
                ready_timeout: launch.ready_timeout,
            })
            .await?;
            let addresses = announced(&process.ready);
            // A restart replaces the killed process, whose exit nobody needs any more.
            self.processes().insert(launch.component.clone(), process);
            Ok(addresses)
        })
    }

    fn kill<'a>(&'a self, component: &'a str) -> BoxFuture<'a, Result<i128, HostError>> {
        let pid = self.processes().get(component).and_then(ComponentProcess::pid);
        let killed = match pid {
            None => Err(HostError::NotRunning),
            Some(pid) => signal(pid, nix::sys::signal::Signal::SIGKILL).map(|()| now_ns()),
        };
        Box::pin(async move { killed })
    }

    fn stop<'a>(&'a self, component: &'a str, grace: Duration) -> BoxFuture<'a, Result<StopState, HostError>> {
        let process = self.processes().remove(component);
        Box::pin(async move {
            Ok(match process {
                Some(process) => process.stop(grace).await,
                None => StopState::Gone,
            })
        })
    }

    fn sweep<'a>(&'a self, marker: &'a str) -> BoxFuture<'a, Result<Vec<String>, HostError>> {
        let survivors = processes_with_env(&format!("{RUN_MARKER_VAR}={marker}"))
            .into_iter()
            .map(|pid| {
                let command = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                let _ = signal(pid, nix::sys::signal::Signal::SIGKILL);
                format!("{pid} {}", command.trim())
            })
            .collect();
        Box::pin(async move { Ok(survivors) })
    }

    /// Nothing to do: the logs are written into the run's folder on this machine, which is kept.
    fn finish<'a>(&'a self, _components: &'a [String], _into: &'a Path) -> BoxFuture<'a, Vec<HostError>> {
        Box::pin(async { Vec::new() })
    }

    /// A port the kernel has free now. Another process could take it before the component binds it; the
    /// component's start then fails and says so: a rare, loud failure, not a silent one.
    fn port_for(&self, _preferred: u16) -> BoxFuture<'_, Result<u16, HostError>> {
        let address = self.address().to_owned();
        let port = std::net::TcpListener::bind((address.as_str(), 0))
            .and_then(|listener| listener.local_addr())
            .map(|bound| bound.port())
            .map_err(|source| HostError::Port { address, source });
        Box::pin(async move { port })
    }
}

/// This machine as the site of an experiment: every component on 127.0.0.1, the loader library in this process.
#[derive(Debug, Clone, Copy, Default)]
pub struct ThisMachine;

impl Site for ThisMachine {
    fn hosts(&self, run: &RunPlace<'_>, binaries: &Binaries) -> Vec<Arc<dyn Host>> {
        vec![Arc::new(LocalHost::new(LOOPBACK, &run.dir.join("platform"), &binaries.dirigent))]
    }

    fn placement(&self, spec: &DirigentSpec) -> Placement {
        Placement::one_host(spec)
    }

    fn loader_clock_offset_us(&self) -> i64 {
        0
    }

    fn image(&self, binaries: &Binaries) -> String {
        binaries.trace_function.display().to_string()
    }

    fn load<'a>(
        &'a self,
        _run: &'a RunPlace<'a>,
        config: &'a RunConfig,
        stop: StopSignal,
        started: oneshot::Sender<tokio::time::Instant>,
    ) -> BoxFuture<'a, Result<LoadCounts, LoadError>> {
        let _ = started.send(tokio::time::Instant::now());
        Box::pin(crate::load::in_process(config, stop))
    }
}

fn signal(pid: u32, signal: nix::sys::signal::Signal) -> Result<(), HostError> {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal).map_err(|source| HostError::Signal {
        signal: signal.as_str(),
        pid,
        source,
    })
}

fn now_ns() -> i128 {
    crate::lifecycle::system_clock() * 1000
}
