//! A cluster's host over SSH as a host of the lifecycle: the run's folder is `<remote_dir>/runs/<run>/` there; a
//! component's config is uploaded into it and the component started as a detached process that survives the SSH
//! session (`nohup setsid`), with its log and PID file next to it; waits, stops, kills and the survivor sweep are
//! shell scripts that poll on the host ([`super::script`]), one round trip each.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use contracts::ready::ReadyLine;
use futures_util::future::BoxFuture;
use serde_json::Value;
use tokio::sync::Semaphore;

use super::{SHORT, join, script};
use crate::lifecycle::host::{Host, HostError, HostId, Launch, RUN_MARKER_VAR, StopState, announced};
use crate::ssh::{Hosts, Session, SshError, shell_quote};

/// One host of the cluster for one run (made by [`super::Cluster::hosts_for_run`]).
#[derive(Debug)]
pub struct SshHost {
    /// Its index in the inventory (and in the pool).
    pub(super) index: usize,
    /// `user@address:port`; its address on the connection the runner came in on, which components there listen
    /// on; its clock offset from preflight.
    pub(super) id: HostId,
    /// The run's folder there.
    pub(super) run_dir: String,
    /// The binaries' folder there.
    pub(super) bin: String,
    /// The cluster's connections.
    pub(super) hosts: Arc<Hosts>,
    /// Shared by the cluster's hosts: at most `parallelism` of them worked on at once.
    pub(super) permits: Arc<Semaphore>,
}

impl SshHost {
    /// Runs `work` with the host's session off the async runtime, as `step`.
    async fn on<T, F>(&self, step: &'static str, work: F) -> Result<T, HostError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Session) -> Result<T, SshError> + Send + 'static,
    {
        let _permit = self.permits.acquire().await.expect("the semaphore is never closed");
        let (hosts, index) = (Arc::clone(&self.hosts), self.index);
        join(tokio::task::spawn_blocking(move || hosts.with(index, work)).await)
            .map_err(|source| HostError::Ssh { step, source: Box::new(source) })
    }

    /// Runs the short script `script` and returns its stdout, as `step`.
    async fn script(&self, step: &'static str, script: String, timeout: Duration) -> Result<String, HostError> {
        self.on(step, move |session| session.exec_ok(&script, timeout)).await.map(|output| output.stdout)
    }

    /// The PID file of `component` in the run's folder (one for all its starts).
    fn pid_file(&self, component: &str) -> String {
        format!("{}/{component}.pid", self.run_dir)
    }

    async fn start_detached(&self, launch: &Launch) -> Result<Value, HostError> {
        let (config, log) = (format!("{}.yaml", launch.stem), format!("{}.log", launch.stem));
        let local = launch.config.clone();
        let remote = format!("{}/{config}", self.run_dir);
        self.on("uploading the config", move |session| session.upload(&local, &remote, 0o644)).await?;
        let command = launch.command("nice", &format!("{}/dirigent", self.bin), &config);
        let env: Vec<(&str, &str)> = launch.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let pid_file = format!("{}.pid", launch.component);
        let start = script::start_detached(&self.run_dir, &env, &command, &log, &pid_file);
        let pid = self.script("starting it detached", start, SHORT).await?;
        let pid: u32 =
            pid.trim().parse().map_err(|_| HostError::Answer { step: "starting it detached", answer: pid })?;
        let timeout = launch.ready_timeout;
        let wait = script::wait_ready(&self.run_dir, pid, &log, timeout);
        let output = self.on("waiting for the ready line", move |s| s.exec(&wait, timeout + SHORT)).await?;
        if !output.success() {
            let reason: Vec<&str> = output.stderr.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
            return Err(HostError::NotReady { reason: reason.join(" | ") });
        }
        let line = output.stdout.trim();
        ReadyLine::parse(line).map(|ready| announced(&ready)).ok_or_else(|| HostError::ReadyLine { line: line.into() })
    }

    /// Downloads the logs of `components` (every start's) into `into`.
    async fn fetch_logs(&self, components: &[String], into: &Path) -> Result<(), HostError> {
        let files = self.script("collecting logs", script::list_files(&self.run_dir), SHORT).await?;
        let logs: Vec<String> = files
            .lines()
            .filter(|file| file.ends_with(".log") && components.iter().any(|c| file.starts_with(c.as_str())))
            .map(String::from)
            .collect();
        let (dir, into) = (self.run_dir.clone(), into.to_owned());
        self.on("collecting logs", move |session| {
            logs.iter().try_for_each(|file| session.download(&format!("{dir}/{file}"), &into.join(file)).map(drop))
        })
        .await
    }
}

impl Host for SshHost {
    fn id(&self) -> &HostId {
        &self.id
    }

    fn prepare(&self) -> BoxFuture<'_, Result<(), HostError>> {
        let mkdir = format!("mkdir -p {}", shell_quote(&self.run_dir));
        Box::pin(async move { self.script("creating the run folder", mkdir, SHORT).await.map(drop) })
    }

    fn start<'a>(&'a self, launch: &'a Launch) -> BoxFuture<'a, Result<Value, HostError>> {
        Box::pin(self.start_detached(launch))
    }

    fn kill<'a>(&'a self, component: &'a str) -> BoxFuture<'a, Result<i128, HostError>> {
        let kill = script::kill_now(&self.pid_file(component));
        Box::pin(async move {
            let at = self.script("sending SIGKILL", kill, SHORT).await?;
            at.trim().parse().map_err(|_| HostError::Answer { step: "sending SIGKILL", answer: at })
        })
    }

    fn stop<'a>(&'a self, component: &'a str, grace: Duration) -> BoxFuture<'a, Result<StopState, HostError>> {
        let stop = script::stop(&self.pid_file(component), grace);
        Box::pin(async move {
            let state = self.script("sending SIGTERM", stop, grace + SHORT).await?;
            match state.trim() {
                "stopped" => Ok(StopState::Stopped),
                "gone" => Ok(StopState::Gone),
                "killed" => Ok(StopState::Killed),
                _ => Err(HostError::Answer { step: "sending SIGTERM", answer: state }),
            }
        })
    }

    fn sweep<'a>(&'a self, marker: &'a str) -> BoxFuture<'a, Result<Vec<String>, HostError>> {
        let sweep = script::kill_marked(RUN_MARKER_VAR, marker);
        Box::pin(async move {
            let left = self.script("looking for surviving processes", sweep, SHORT).await?;
            Ok(left.lines().map(String::from).collect())
        })
    }

    fn finish<'a>(&'a self, components: &'a [String], into: &'a Path) -> BoxFuture<'a, Vec<HostError>> {
        Box::pin(async move {
            let mut errors = Vec::new();
            if !components.is_empty() {
                errors.extend(self.fetch_logs(components, into).await.err());
            }
            let rm = format!("rm -rf {}", shell_quote(&self.run_dir));
            errors.extend(self.script("removing the run folder", rm, SHORT).await.err());
            errors
        })
    }
}
