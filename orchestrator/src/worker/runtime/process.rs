//! The `process` runtime: a sandbox is a child process in its own process group.
//!
//! The image is an executable path; the sandbox learns its address from `HOST` and `PORT` (a port of the
//! worker's `sandbox_ports` range). Destroying a sandbox kills its whole group and reaps it; if the worker
//! itself dies, the kernel kills the sandbox (`PR_SET_PDEATHSIG`), so no sandbox outlives its worker.
//!
//! Children are forked by one dedicated spawner thread: the death signal follows the thread that forked,
//! so that thread must live as long as the runtime, and a fork (which cannot be a cheap vfork once
//! `pre_exec` is set) then never stalls the async worker threads that carry the proxy.

use std::collections::HashMap;
use std::net::IpAddr;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::sync::{broadcast, oneshot, watch};

use super::ports::{PortAllocator, PortRange};
use super::{RuntimeError, SandboxExited, SandboxInfo, SandboxRuntime, SandboxSpec, readiness};

struct Entry {
    info: SandboxInfo,
    group: Pid,
    destroying: Arc<AtomicBool>,
    /// `Some(reason)` once the process has been reaped.
    exited: watch::Receiver<Option<String>>,
}

type SpawnJob = (Command, oneshot::Sender<std::io::Result<Child>>);

/// Runs sandboxes as child processes.
pub struct ProcessRuntime {
    host: IpAddr,
    sandboxes: Arc<Mutex<HashMap<String, Entry>>>,
    ports: Arc<Mutex<PortAllocator>>,
    exits: broadcast::Sender<SandboxExited>,
    spawner: std::sync::mpsc::Sender<SpawnJob>,
}

impl ProcessRuntime {
    /// A runtime whose sandboxes listen on `host`, on ports from `ports`. Must be called inside a tokio
    /// runtime, which reaps the children.
    pub fn new(host: IpAddr, ports: PortRange) -> Self {
        Self {
            host,
            sandboxes: Arc::default(),
            ports: Arc::new(Mutex::new(PortAllocator::new(host, ports))),
            exits: broadcast::channel(1024).0,
            spawner: spawn_thread(tokio::runtime::Handle::current()),
        }
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
        let address =
            lock(&self.ports).allocate().map_err(|source| RuntimeError::Port { id: spec.id.clone(), source })?;
        let start_error = |source| RuntimeError::Start { id: spec.id.clone(), image: spec.image.clone(), source };
        let spawned = self.spawn(self.command(&spec, address.port())).await;
        let mut child = match spawned {
            Ok(child) => child,
            Err(err) => {
                lock(&self.ports).release(address);
                return Err(start_error(err));
            }
        };
        let pid = child.id().and_then(|id| i32::try_from(id).ok()).map(Pid::from_raw);
        let group = pid.ok_or_else(|| start_error(std::io::Error::other("the child exited at once")))?;
        let info = SandboxInfo { id: spec.id.clone(), function: spec.function.clone(), address };
        let destroying = Arc::new(AtomicBool::new(false));
        let (exited_tx, exited) = watch::channel(None);
        self.lock()
            .insert(spec.id.clone(), Entry { info: info.clone(), group, destroying: Arc::clone(&destroying), exited });
        let (sandboxes, exits, exited_info) = (Arc::clone(&self.sandboxes), self.exits.clone(), info.clone());
        let ports = Arc::clone(&self.ports);
        tokio::spawn(async move {
            let reason = match child.wait().await {
                Ok(status) => status.to_string(),
                Err(err) => format!("wait failed: {err}"),
            };
            // Whatever the sandbox started in its group goes with it.
            let _ = killpg(group, Signal::SIGKILL);
            lock(&ports).release(address);
            let _ = exited_tx.send(Some(reason.clone()));
            if !destroying.load(Ordering::SeqCst) {
                sandboxes.lock().unwrap_or_else(|e| e.into_inner()).remove(&exited_info.id);
                let _ = exits.send(SandboxExited { id: exited_info.id, function: exited_info.function, reason });
            }
        });
        Ok(info)
    }

    /// Forks on the spawner thread.
    async fn spawn(&self, command: Command) -> std::io::Result<Child> {
        let (reply, spawned) = oneshot::channel();
        self.spawner.send((command, reply)).map_err(|_| std::io::Error::other("the spawner thread is gone"))?;
        spawned.await.map_err(|_| std::io::Error::other("the spawner thread is gone"))?
    }

    async fn ready(&self, sandbox: &SandboxInfo, timeout: Duration) -> Result<(), RuntimeError> {
        let exited = match self.lock().get(&sandbox.id) {
            Some(entry) => entry.exited.clone(),
            None => return Err(RuntimeError::Unknown(sandbox.id.clone())),
        };
        readiness::ready_unless_ended(sandbox, timeout, exited).await
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

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The thread that forks every sandbox; it ends (and with it, by the death signal, any sandbox left)
/// when the runtime is dropped.
fn spawn_thread(runtime: tokio::runtime::Handle) -> std::sync::mpsc::Sender<SpawnJob> {
    let (jobs, queue) = std::sync::mpsc::channel::<SpawnJob>();
    let thread = std::thread::Builder::new().name("sandbox-spawner".into()).spawn(move || {
        // tokio's child handles register with the runtime's reaper, which needs its context.
        let _context = runtime.enter();
        for (mut command, reply) in queue {
            // Nobody waits for this child any more: kill it rather than leave it untracked.
            if let Err(Ok(mut child)) = reply.send(command.spawn()) {
                let _ = child.start_kill();
            }
        }
    });
    if let Err(err) = thread {
        tracing::error!(%err, "cannot start the sandbox spawner thread; sandbox creation will fail");
    }
    jobs
}

/// Asks the kernel to SIGKILL the child when the thread that spawned it (the spawner thread) dies.
#[allow(unsafe_code)]
fn die_with_parent(command: &mut Command) {
    // SAFETY: the closure runs between fork and exec and only makes one async-signal-safe syscall.
    unsafe {
        command.pre_exec(|| nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from));
    }
}
