//! What the lifecycle needs from a host: a folder for the run, components started detached with their ready line
//! awaited, killed, stopped, swept for survivors, and their logs brought back. Implemented for this machine
//! ([`crate::local::LocalHost`]), for a host over SSH ([`crate::cluster::SshHost`]) and, for tests, by a recording
//! fake.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use contracts::ready::ReadyLine;
use futures_util::future::BoxFuture;
use serde_json::Value;

use crate::roles::Role;
use crate::ssh::SshError;

/// Environment variable set on every component; sandboxes inherit it, which is how survivors are found.
pub const RUN_MARKER_VAR: &str = "FAAS_TOOLKIT_RUN";

/// One start of a component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    /// The component (e.g. `worker-1`), as `kill` and `stop` name it later.
    pub component: String,
    /// The stem of this start's files: its config is `<stem>.yaml` and its log `<stem>.log` in the run's folder.
    pub stem: String,
    /// The `dirigent` subcommand.
    pub role: Role,
    /// The config as written on this machine.
    pub config: PathBuf,
    /// Its environment (the run's marker and the log filter), inherited by its sandboxes.
    pub env: Vec<(String, String)>,
    /// Its CPU priority adjustment.
    pub nice: u8,
    /// How long it may take to print its ready line.
    pub ready_timeout: Duration,
}

impl Launch {
    /// `nice -n N DIRIGENT ROLE --config CONFIG`: `nice` execs `dirigent` with a lower CPU priority, which its
    /// sandboxes inherit.
    pub fn command(&self, nice: &str, dirigent: &str, config: &str) -> Vec<String> {
        [nice, "-n", &self.nice.to_string(), dirigent, self.role.subcommand(), "--config", config]
            .map(String::from)
            .into()
    }
}

/// How a component's process ended when it was stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopState {
    /// It exited cleanly on SIGTERM.
    Stopped,
    /// It exited on SIGTERM, not cleanly (its exit status).
    ExitedWith(String),
    /// It was not running any more when the stop came.
    Gone,
    /// It outlived the grace period after SIGTERM and was killed.
    Killed,
}

/// Why a step on a host failed.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// A component on this machine did not start.
    #[error(transparent)]
    Process(#[from] crate::local::ProcessError),
    /// "{reason}": the host's own account of why a component did not start (its log's last lines).
    #[error("{reason}")]
    NotReady {
        /// What the host reported.
        reason: String,
    },
    /// "it printed a bad ready line '{line}'".
    #[error("it printed a bad ready line '{line}'")]
    ReadyLine {
        /// The line.
        line: String,
    },
    /// "it is not running".
    #[error("it is not running")]
    NotRunning,
    /// "cannot send {signal} to PID {pid}", with the cause.
    #[error("cannot send {signal} to PID {pid}")]
    Signal {
        /// The signal.
        signal: &'static str,
        /// The process.
        pid: u32,
        /// The cause.
        source: nix::errno::Errno,
    },
    /// "{step}: {path}", with the cause.
    #[error("{step} {path}")]
    Io {
        /// What was being done (`cannot create`, ...).
        step: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// "{step}", with the SSH error (which names the host).
    #[error("{step}")]
    Ssh {
        /// What was being done (`uploading the config`, `creating the run folder`, ...).
        step: &'static str,
        /// The cause.
        source: Box<SshError>,
    },
    /// "no free port on {address}", with the cause.
    #[error("no free port on {address}")]
    Port {
        /// The host's address.
        address: String,
        /// The cause.
        source: std::io::Error,
    },
    /// "{step}: unexpected answer '{answer}'".
    #[error("{step}: unexpected answer '{answer}'")]
    Answer {
        /// What was being done.
        step: &'static str,
        /// What the host printed.
        answer: String,
    },
}

/// Who a host is to the lifecycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostId {
    /// How messages and events name it: `localhost`, or `user@address:port`.
    pub name: String,
    /// The address components there listen on and advertise to the others.
    pub address: String,
    /// Its clock minus this machine's, µs.
    pub clock_offset_us: i64,
}

/// A host the lifecycle starts components on. Every method names its host in nothing it returns: the lifecycle
/// says which component on which host.
pub trait Host: Send + Sync + fmt::Debug {
    /// Who it is.
    fn id(&self) -> &HostId;
    /// How messages and events name it: `localhost`, or `user@address:port`.
    fn name(&self) -> &str {
        &self.id().name
    }
    /// The address components there listen on and advertise to the others.
    fn address(&self) -> &str {
        &self.id().address
    }
    /// Its clock minus this machine's, µs.
    fn clock_offset_us(&self) -> i64 {
        self.id().clock_offset_us
    }
    /// Creates the run's folder there.
    fn prepare(&self) -> BoxFuture<'_, Result<(), HostError>>;
    /// Starts `launch` detached in the run's folder (its config copied there first) and waits for its ready line;
    /// returns the addresses it announced.
    fn start<'a>(&'a self, launch: &'a Launch) -> BoxFuture<'a, Result<Value, HostError>>;
    /// Kills `component` with SIGKILL; returns the host's clock at the kill, ns since the epoch.
    fn kill<'a>(&'a self, component: &'a str) -> BoxFuture<'a, Result<i128, HostError>>;
    /// Stops `component`: SIGTERM, then SIGKILL after `grace`.
    fn stop<'a>(&'a self, component: &'a str, grace: Duration) -> BoxFuture<'a, Result<StopState, HostError>>;
    /// Kills every process whose environment holds `RUN_MARKER_VAR=marker`; returns `PID COMMAND` of each.
    fn sweep<'a>(&'a self, marker: &'a str) -> BoxFuture<'a, Result<Vec<String>, HostError>>;
    /// Brings the logs of `components` into `into` and removes the run's folder from the host; returns what could
    /// not be done.
    fn finish<'a>(&'a self, components: &'a [String], into: &'a Path) -> BoxFuture<'a, Vec<HostError>>;
    /// A port on the host's address for a component whose address must be known before it starts (a control-plane
    /// replica: its peers are given it): `preferred` unless the host can find a free one itself.
    fn port_for(&self, preferred: u16) -> BoxFuture<'_, Result<u16, HostError>> {
        Box::pin(async move { Ok(preferred) })
    }
}

/// The addresses a ready line announced, as the lifecycle keeps them: a JSON object (the role configs a restart pins
/// them into are JSON), `Null` when it announced none.
pub fn announced(ready: &ReadyLine) -> Value {
    if ready.addresses.is_empty() {
        return Value::Null;
    }
    Value::Object(ready.addresses.iter().map(|(name, address)| (name.clone(), address.as_str().into())).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ready_lines_give_their_addresses() {
        let ready = |line| ReadyLine::parse(line).as_ref().map(announced);
        let line = r#"{"ready":{"role":"data-plane","addresses":{"proxy":"127.0.0.1:4003"}}}"#;
        assert_eq!(ready(line), Some(json!({ "proxy": "127.0.0.1:4003" })));
        assert_eq!(ready(r#"{"ready":{"role":"worker"}}"#), Some(Value::Null));
        assert_eq!(ready(r#"{"level":"info"}"#), None);
        assert_eq!(ready("starting"), None);
    }

    #[test]
    fn the_command_runs_dirigent_under_nice() {
        let launch = Launch {
            component: "worker-0".into(),
            stem: "worker-0".into(),
            role: Role::Worker,
            config: "/r/worker-0.yaml".into(),
            env: Vec::new(),
            nice: 5,
            ready_timeout: Duration::from_secs(1),
        };
        let command = launch.command("nice", "/bin/dirigent", "worker-0.yaml");
        assert_eq!(command, ["nice", "-n", "5", "/bin/dirigent", "worker", "--config", "worker-0.yaml"]);
    }
}
