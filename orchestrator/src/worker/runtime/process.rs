//! The `process` runtime: a sandbox is a child process in its own process group.
//!
//! The image is an executable path; the sandbox learns its address from `HOST` and `PORT`. Destroying a
//! sandbox kills its whole group and reaps it; if the worker itself dies, the kernel kills the sandbox
//! (`PR_SET_PDEATHSIG`), so no sandbox outlives its worker.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::Command;
use tokio::sync::{broadcast, watch};

use super::{RuntimeError, SandboxExited, SandboxInfo, SandboxRuntime, SandboxSpec, readiness};

struct Entry {
    info: SandboxInfo,
    group: Pid,
    destroying: Arc<AtomicBool>,
    /// `Some(reason)` once the process has been reaped.
    exited: watch::Receiver<Option<String>>,
}

/// Runs sandboxes as child processes.
pub struct ProcessRuntime {
    host: IpAddr,
    sandboxes: Arc<Mutex<HashMap<String, Entry>>>,
    exits: broadcast::Sender<SandboxExited>,
}

impl ProcessRuntime {
    /// A runtime whose sandboxes listen on `host`.
    pub fn new(host: IpAddr) -> Self {
        Self { host, sandboxes: Arc::default(), exits: broadcast::channel(1024).0 }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.sandboxes.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn command(&self, spec: &SandboxSpec, port: u16) -> Command {
        let mut command = Command::new(resolve_image(&spec.image));
        command
            .args(&spec.args)
            .env("HOST", self.host.to_string())
            .env("PORT", port.to_string())
            .env("FUNCTION_NAME", &spec.function)
            .env("SANDBOX_ID", &spec.id)
            .envs(&spec.env)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .process_group(0)
            .kill_on_drop(false);
        die_with_parent(&mut command);
        command
    }

    async fn start(&self, spec: SandboxSpec) -> Result<SandboxInfo, RuntimeError> {
        if self.lock().contains_key(&spec.id) {
            return Err(RuntimeError::Duplicate(spec.id));
        }
        let port = free_port(self.host).map_err(|source| RuntimeError::Port { id: spec.id.clone(), source })?;
        let start_error = |source| RuntimeError::Start { id: spec.id.clone(), image: spec.image.clone(), source };
        let mut child = self.command(&spec, port).spawn().map_err(start_error)?;
        let pid = child.id().and_then(|id| i32::try_from(id).ok()).map(Pid::from_raw);
        let group = pid.ok_or_else(|| start_error(std::io::Error::other("the child exited at once")))?;
        let info = SandboxInfo { id: spec.id.clone(), function: spec.function.clone(), address: SocketAddr::new(self.host, port) };
        let destroying = Arc::new(AtomicBool::new(false));
        let (exited_tx, exited) = watch::channel(None);
        self.lock().insert(
            spec.id.clone(),
            Entry { info: info.clone(), group, destroying: Arc::clone(&destroying), exited },
        );
        let (sandboxes, exits, exited_info) = (Arc::clone(&self.sandboxes), self.exits.clone(), info.clone());
        tokio::spawn(async move {
            let reason = match child.wait().await {
                Ok(status) => status.to_string(),
                Err(err) => format!("wait failed: {err}"),
            };
            // Whatever the sandbox started in its group goes with it.
            let _ = killpg(group, Signal::SIGKILL);
            let _ = exited_tx.send(Some(reason.clone()));
            if !destroying.load(Ordering::SeqCst) {
                sandboxes.lock().unwrap_or_else(|e| e.into_inner()).remove(&exited_info.id);
                let _ = exits.send(SandboxExited { id: exited_info.id, function: exited_info.function, reason });
            }
        });
        Ok(info)
    }

    async fn ready(&self, sandbox: &SandboxInfo, timeout: Duration) -> Result<(), RuntimeError> {
        let mut exited = match self.lock().get(&sandbox.id) {
            Some(entry) => entry.exited.clone(),
            None => return Err(RuntimeError::Unknown(sandbox.id.clone())),
        };
        let deadline = tokio::time::Instant::now() + timeout;
        let not_ready = || RuntimeError::NotReady { id: sandbox.id.clone(), address: sandbox.address, timeout };
        tokio::select! {
            ready = readiness::wait_http_ready(sandbox.address, deadline) => if ready { Ok(()) } else { Err(not_ready()) },
            reason = exited.wait_for(Option::is_some) => {
                let reason = reason.map(|r| r.clone().unwrap_or_default()).unwrap_or_else(|_| "unknown".into());
                Err(RuntimeError::ExitedEarly { id: sandbox.id.clone(), reason })
            }
        }
    }

    async fn kill(&self, id: &str) -> Result<(), RuntimeError> {
        let (group, mut exited) = {
            let sandboxes = self.lock();
            let entry = sandboxes.get(id).ok_or_else(|| RuntimeError::Unknown(id.to_owned()))?;
            entry.destroying.store(true, Ordering::SeqCst);
            (entry.group, entry.exited.clone())
        };
        match killpg(group, Signal::SIGKILL) {
            // ESRCH: the group is already gone; the reaper is about to report it.
            Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
            Err(errno) => return Err(RuntimeError::Kill { id: id.to_owned(), source: errno.into() }),
        }
        let _ = exited.wait_for(Option::is_some).await;
        self.lock().remove(id);
        Ok(())
    }
}

impl SandboxRuntime for ProcessRuntime {
    fn create(&self, spec: SandboxSpec) -> BoxFuture<'_, Result<SandboxInfo, RuntimeError>> {
        self.start(spec).boxed()
    }

    fn wait_ready(&self, sandbox: &SandboxInfo, timeout: Duration) -> BoxFuture<'_, Result<(), RuntimeError>> {
        let sandbox = sandbox.clone();
        async move { self.ready(&sandbox, timeout).await }.boxed()
    }

    fn destroy(&self, id: &str) -> BoxFuture<'_, Result<(), RuntimeError>> {
        let id = id.to_owned();
        async move { self.kill(&id).await }.boxed()
    }

    fn list(&self) -> Vec<SandboxInfo> {
        self.lock().values().map(|e| e.info.clone()).collect()
    }

    fn exits(&self) -> broadcast::Receiver<SandboxExited> {
        self.exits.subscribe()
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        async move {
            let ids: Vec<String> = self.lock().keys().cloned().collect();
            futures_util::future::join_all(ids.iter().map(|id| self.kill(id))).await;
        }
        .boxed()
    }
}

/// A bare image name (no `/`) is first looked for beside the running binary, so `trace-function` finds the
/// workload function built with `dirigent`; otherwise `PATH` decides, as for any command.
fn resolve_image(image: &str) -> std::path::PathBuf {
    if !image.contains('/') {
        let sibling = std::env::current_exe().ok().and_then(|exe| Some(exe.parent()?.join(image)));
        if let Some(sibling) = sibling.filter(|path| path.is_file()) {
            return sibling;
        }
    }
    image.into()
}

/// A port the kernel considers free right now on `host`.
fn free_port(host: IpAddr) -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind(SocketAddr::new(host, 0))?.local_addr()?.port())
}

/// Asks the kernel to SIGKILL the child when the thread that spawned it dies.
///
/// The spawning thread is a runtime worker thread, which lives as long as the worker does.
#[allow(unsafe_code)]
fn die_with_parent(command: &mut Command) {
    // SAFETY: the closure runs between fork and exec and only makes one async-signal-safe syscall.
    unsafe {
        command.pre_exec(|| nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from));
    }
}
