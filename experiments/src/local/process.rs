//! A platform component as a local child process: its own process group (so a Ctrl-C at the terminal reaches
//! only the runner, which then stops everything in order), killed by the kernel if the runner dies, stderr kept in
//! a log file, and started when it prints its JSON ready line.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use contracts::ready::ReadyLine;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::lifecycle::host::StopState;

/// Why a component did not start (the lifecycle says which one).
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// "cannot start {program}", with the cause.
    #[error("cannot start {program}", program = .program.display())]
    Spawn {
        /// The executable.
        program: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// "it exited before it was ready ({status}); its log {log} ends with: {tail}".
    #[error("it exited before it was ready ({status}); its log {log} ends with: {tail}", log = .log.display())]
    Exited {
        /// How it exited.
        status: String,
        /// Its log file.
        log: PathBuf,
        /// The last lines of the log.
        tail: String,
    },
    /// "it printed no ready line within {timeout:?}; see its log {log}".
    #[error("it printed no ready line within {timeout:?}; see its log {log}", log = .log.display())]
    NotReady {
        /// The limit.
        timeout: Duration,
        /// Its log file.
        log: PathBuf,
    },
}

/// A running component.
#[derive(Debug)]
pub struct ComponentProcess {
    /// Its ready line.
    pub ready: ReadyLine,
    /// Its stderr log.
    pub log: PathBuf,
    child: Child,
}

/// What to start.
#[derive(Debug, Clone)]
pub struct Launch<'a> {
    /// The stem of its log file (`<name>.log`).
    pub name: &'a str,
    /// The executable.
    pub program: &'a Path,
    /// Its arguments.
    pub args: Vec<String>,
    /// Folder for the log.
    pub log_dir: &'a Path,
    /// Extra environment (inherited by the component's own children, e.g. sandboxes).
    pub env: Vec<(String, String)>,
    /// Deadline for the ready line.
    pub ready_timeout: Duration,
}

impl ComponentProcess {
    /// Starts `launch` and waits for its ready line ([`ReadyLine`] on stdout).
    pub async fn start(launch: Launch<'_>) -> Result<Self, ProcessError> {
        let log = launch.log_dir.join(format!("{}.log", launch.name));
        let spawn_error = |source| ProcessError::Spawn { program: launch.program.into(), source };
        let log_file = std::fs::File::create(&log).map_err(spawn_error)?;
        let mut command = Command::new(launch.program);
        command
            // Its working folder is the run's: what it writes there (the control plane's store) stays with the run.
            .current_dir(launch.log_dir)
            .args(&launch.args)
            .envs(launch.env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .process_group(0)
            .kill_on_drop(true);
        prepare_child(&mut command);
        let mut child = command.spawn().map_err(spawn_error)?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut process = ComponentProcess { ready: ReadyLine::default(), log, child };
        let ready = tokio::time::timeout(launch.ready_timeout, ready_line(stdout)).await;
        match ready {
            Ok(Some(ready)) => {
                process.ready = ready;
                Ok(process)
            }
            Ok(None) => Err(process.exited().await),
            Err(_) => {
                process.kill().await;
                Err(ProcessError::NotReady { timeout: launch.ready_timeout, log: process.log.clone() })
            }
        }
    }

    /// The process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// An address from the ready line.
    pub fn address(&self, key: &str) -> Option<String> {
        self.ready.address(key).map(str::to_owned)
    }

    /// SIGTERM, then SIGKILL after `grace`; says how it ended.
    pub async fn stop(mut self, grace: Duration) -> StopState {
        if let Ok(Some(_)) = self.child.try_wait() {
            return StopState::Gone;
        }
        let Some(pid) = self.child.id() else { return StopState::Gone };
        if kill(Pid::from_raw(pid as i32), Signal::SIGTERM).is_err() {
            return StopState::Gone;
        }
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(Ok(status)) if status.success() => StopState::Stopped,
            Ok(Ok(status)) => StopState::ExitedWith(status.to_string()),
            Ok(Err(e)) => StopState::ExitedWith(format!("an unknown status ({e})")),
            Err(_) => {
                self.kill().await;
                StopState::Killed
            }
        }
    }

    async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    async fn exited(&mut self) -> ProcessError {
        let status = match self.child.wait().await {
            Ok(status) => status.to_string(),
            Err(e) => format!("unknown: {e}"),
        };
        ProcessError::Exited { status, log: self.log.clone(), tail: log_tail(&self.log) }
    }
}

/// The first ready line, or `None` when stdout closes first.
async fn ready_line(stdout: tokio::process::ChildStdout) -> Option<ReadyLine> {
    let mut lines = BufReader::new(stdout).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(ready) = ReadyLine::parse(&line) {
            // Keep draining stdout in the background so the component never blocks on a full pipe.
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            return Some(ready);
        }
    }
    None
}

/// The last few lines of a log, on one line.
pub fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(3)..].join(" | ");
    if tail.is_empty() { "(empty)".into() } else { tail }
}

/// Hooks for every child: the kernel SIGKILLs it when the runner dies (so no component outlives a crashed
/// runner), and it runs at normal CPU priority even when the runner's threads are real-time (the loader's are).
#[allow(unsafe_code)]
pub fn prepare_child(command: &mut Command) {
    // SAFETY: runs between fork and exec and makes two async-signal-safe system calls.
    unsafe {
        command.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)?;
            loader::driver::realtime::leave_in_child()
        });
    }
}

/// Live (non-zombie) processes whose environment holds `marker` (`KEY=value`): what survived a shutdown.
pub fn processes_with_env(marker: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_string_lossy().parse::<u32>().ok())
        .filter(|pid| {
            let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "));
            !zombie && environ.split(|b| *b == 0).any(|var| var == marker.as_bytes())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch<'a>(dir: &'a Path, script: &str) -> Launch<'a> {
        Launch {
            name: "probe",
            program: Path::new("/bin/sh"),
            args: vec!["-c".into(), script.into()],
            log_dir: dir,
            env: vec![("PROBE_MARKER".into(), "yes".into())],
            ready_timeout: Duration::from_secs(10),
        }
    }

    /// Whether `pid` carries the probe marker within `limit`: the shell execs `sleep` right after its ready line,
    /// and while the kernel swaps the image, `/proc/PID/environ` reads empty.
    async fn marked_within(pid: u32, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while !processes_with_env("PROBE_MARKER=yes").contains(&pid) {
            if tokio::time::Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }

    #[tokio::test]
    async fn a_ready_component_gives_its_addresses_and_stops_on_sigterm() {
        let dir = tempfile::tempdir().unwrap();
        let script = r#"echo '{"ready":{"addresses":{"api":"127.0.0.1:1"}}}'; exec sleep 60"#;
        let p = ComponentProcess::start(launch(dir.path(), script)).await.unwrap();
        assert_eq!(p.address("api").as_deref(), Some("127.0.0.1:1"));
        let pid = p.pid().unwrap();
        assert!(marked_within(pid, Duration::from_secs(5)).await, "pid {pid} never showed PROBE_MARKER");
        // sleep dies of SIGTERM, which is not a clean exit: the state says so.
        let state = p.stop(Duration::from_secs(10)).await;
        assert!(matches!(&state, StopState::ExitedWith(status) if status.contains("SIGTERM")), "{state:?}");
        assert!(!processes_with_env("PROBE_MARKER=yes").contains(&pid));
    }

    #[tokio::test]
    async fn a_component_that_dies_early_shows_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let err = ComponentProcess::start(launch(dir.path(), "echo 'bad config key' >&2; exit 3")).await.unwrap_err();
        let text = err.to_string();
        assert!(text.contains("exited before it was ready") && text.contains("bad config key"), "{text}");
    }

    #[tokio::test]
    async fn a_silent_component_times_out_and_is_killed() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = launch(dir.path(), "exec sleep 60");
        l.ready_timeout = Duration::from_millis(300);
        let err = ComponentProcess::start(l).await.unwrap_err();
        assert!(err.to_string().contains("no ready line"), "{err}");
    }
}
