//! The `simulated` runtime: a sandbox is a task inside the worker that serves the workload function on its own
//! port (HTTP/1.1, h2c and gRPC, the same replies as `trace-function`) but sleeps through the requested time and
//! only accounts the requested memory, so that thousands of sandboxes fit on one machine and a benchmark measures
//! the orchestrator rather than the sandboxes. Creation takes `creation_delay` (Dirigent's fake runtime: 40 ms)
//! before the sandbox listens.
//!
//! The image is only a name, except for behaviours a test can ask for (the runtime contract needs sandboxes that
//! hang, exit or cannot start): `simulated:never-ready`, `simulated:exit-after=<duration>` and an empty image,
//! which cannot be started.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use super::ports::{PortAllocator, PortRange};
use super::{RuntimeError, SandboxExited, SandboxInfo, SandboxRuntime, SandboxSpec};
use crate::function::Instance;

/// Never listens: its readiness times out.
pub const NEVER_READY: &str = "simulated:never-ready";
/// Exits by itself after the duration that follows (`simulated:exit-after=200ms`), never ready.
pub const EXIT_AFTER: &str = "simulated:exit-after=";

/// How a sandbox's task ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum End {
    /// `destroy` or the worker's shutdown.
    Destroyed,
    /// By itself or by [`SimulatedRuntime::crash`]: reported as an exit.
    Exited(String),
}

struct Entry {
    info: SandboxInfo,
    stop: CancellationToken,
    crash: CancellationToken,
    /// `Some(reason)` once the task has ended.
    ended: watch::Receiver<Option<String>>,
    /// True once the sandbox's listener is bound: its server is then in this process and answers `/health`, so
    /// readiness needs no probe (probing was two thirds of a worker's CPU at 500 cold starts/s).
    listening: watch::Receiver<bool>,
}

/// Runs sandboxes as tasks of the worker.
pub struct SimulatedRuntime {
    host: IpAddr,
    creation_delay: Duration,
    sandboxes: Arc<Mutex<HashMap<String, Entry>>>,
    ports: Arc<Mutex<PortAllocator>>,
    exits: broadcast::Sender<SandboxExited>,
    /// Each sandbox's task holds its token while it runs, whatever the list says (tests check it).
    alive: Arc<Mutex<HashMap<String, std::sync::Weak<()>>>>,
}

impl SimulatedRuntime {
    /// A runtime whose sandboxes listen on `host`, on ports from `ports`, each `creation_delay` after its
    /// creation.
    pub fn new(host: IpAddr, ports: PortRange, creation_delay: Duration) -> Self {
        Self {
            host,
            creation_delay,
            sandboxes: Arc::default(),
            ports: Arc::new(Mutex::new(PortAllocator::new(host, ports))),
            exits: broadcast::channel(1024).0,
            alive: Arc::default(),
        }
    }

    /// The same runtime with its sandboxes spread over `addresses` consecutive addresses from its host, each with
    /// every port of its range: one range alone holds too few for thousands of sandboxes at once.
    pub fn with_addresses(mut self, addresses: u32) -> Self {
        let ports = lock(&self.ports).range();
        self.ports = Arc::new(Mutex::new(PortAllocator::over(self.host, addresses, ports)));
        self
    }

    /// Whether the task of sandbox `id` still runs (listed or not).
    pub fn task_alive(&self, id: &str) -> bool {
        lock(&self.alive).get(id).is_some_and(|token| token.strong_count() > 0)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.sandboxes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Ends sandbox `id` as a crash would (it is reported as an exit); false when there is none.
    pub fn crash(&self, id: &str) -> bool {
        self.lock().get(id).map(|entry| entry.crash.cancel()).is_some()
    }

    fn start(&self, spec: SandboxSpec) -> Result<SandboxInfo, RuntimeError> {
        if spec.image.trim().is_empty() {
            let source = std::io::Error::new(std::io::ErrorKind::InvalidInput, "an empty image cannot be started");
            return Err(RuntimeError::Start { id: spec.id, image: spec.image, source });
        }
        let exit_after = match spec.image.strip_prefix(EXIT_AFTER) {
            Some(after) => Some(humantime::parse_duration(after).map_err(|e| RuntimeError::Start {
                id: spec.id.clone(),
                image: spec.image.clone(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
            })?),
            None => None,
        };
        let mut sandboxes = self.lock();
        if sandboxes.contains_key(&spec.id) {
            return Err(RuntimeError::Duplicate(spec.id));
        }
        let address =
            lock(&self.ports).allocate().map_err(|source| RuntimeError::Port { id: spec.id.clone(), source })?;
        let info = SandboxInfo { id: spec.id.clone(), function: spec.function.clone(), address };
        let (stop, crash) = (CancellationToken::new(), CancellationToken::new());
        let (ended_tx, ended) = watch::channel(None);
        let (listening_tx, listening) = watch::channel(false);
        let behaviour = match (exit_after, spec.image.as_str()) {
            (Some(after), _) => Behaviour::ExitAfter(after),
            (None, NEVER_READY) => Behaviour::NeverReady,
            (None, _) => Behaviour::Serve(self.creation_delay),
        };
        let token = Arc::new(());
        lock(&self.alive).insert(spec.id.clone(), Arc::downgrade(&token));
        let task = Task {
            info: info.clone(),
            stop: stop.clone(),
            crash: crash.clone(),
            behaviour,
            listening: listening_tx,
            _alive: token,
        };
        let (registry, exits, ports) = (Arc::clone(&self.sandboxes), self.exits.clone(), Arc::clone(&self.ports));
        let alive = Arc::clone(&self.alive);
        tokio::spawn(async move {
            let end = task.run().await;
            lock(&alive).remove(&spec.id);
            lock(&ports).release(address);
            let _ = ended_tx.send(Some(match &end {
                End::Destroyed => "destroyed".into(),
                End::Exited(reason) => reason.clone(),
            }));
            if let End::Exited(reason) = end {
                registry.lock().unwrap_or_else(|e| e.into_inner()).remove(&spec.id);
                let _ = exits.send(SandboxExited { id: spec.id, function: spec.function, reason });
            }
        });
        sandboxes.insert(info.id.clone(), Entry { info: info.clone(), stop, crash, ended, listening });
        Ok(info)
    }

    /// Ready once the task's listener is bound; the same errors as the probing runtimes' (not ready at the
    /// timeout, exited early) otherwise.
    async fn ready(&self, sandbox: &SandboxInfo, timeout: Duration) -> Result<(), RuntimeError> {
        let (mut ended, mut listening) = match self.lock().get(&sandbox.id) {
            Some(entry) => (entry.ended.clone(), entry.listening.clone()),
            None => return Err(RuntimeError::Unknown(sandbox.id.clone())),
        };
        let not_ready = || RuntimeError::NotReady { id: sandbox.id.clone(), address: sandbox.address, timeout };
        tokio::select! {
            bound = tokio::time::timeout(timeout, listening.wait_for(|bound| *bound)) => match bound {
                Ok(Ok(_)) => Ok(()),
                // The sender went with the task: it ended before it listened.
                Ok(Err(_)) => Err(RuntimeError::ExitedEarly { id: sandbox.id.clone(), reason: "it ended".into() }),
                Err(_) => Err(not_ready()),
            },
            reason = ended.wait_for(Option::is_some) => {
                let reason = reason.map(|r| r.clone().unwrap_or_default()).unwrap_or_else(|_| "unknown".into());
                Err(RuntimeError::ExitedEarly { id: sandbox.id.clone(), reason })
            }
        }
    }

    async fn kill(&self, id: &str) -> Result<(), RuntimeError> {
        let mut ended = {
            let sandboxes = self.lock();
            let entry = sandboxes.get(id).ok_or_else(|| RuntimeError::Unknown(id.to_owned()))?;
            entry.stop.cancel();
            entry.ended.clone()
        };
        let _ = ended.wait_for(Option::is_some).await;
        self.lock().remove(id);
        Ok(())
    }
}

/// What a sandbox's task does.
enum Behaviour {
    /// Waits the creation delay, then serves.
    Serve(Duration),
    /// Runs without ever listening.
    NeverReady,
    /// Exits by itself after this long, never listening.
    ExitAfter(Duration),
}

/// One sandbox's task.
struct Task {
    info: SandboxInfo,
    stop: CancellationToken,
    crash: CancellationToken,
    behaviour: Behaviour,
    /// Told once the listener is bound.
    listening: watch::Sender<bool>,
    /// Dropped when the task ends, before anyone hears of it.
    _alive: Arc<()>,
}

impl Task {
    async fn run(self) -> End {
        let life = async {
            match self.behaviour {
                Behaviour::Serve(delay) => {
                    tokio::time::sleep(delay).await;
                    self.serve().await
                }
                Behaviour::NeverReady => std::future::pending().await,
                Behaviour::ExitAfter(after) => {
                    tokio::time::sleep(after).await;
                    End::Exited("exited by itself (simulated)".into())
                }
            }
        };
        tokio::select! {
            end = life => end,
            () = self.stop.cancelled() => End::Destroyed,
            () = self.crash.cancelled() => End::Exited("crashed (simulated)".into()),
        }
    }

    /// Serves the workload function until the task is stopped (the select in `run` drops the server, which
    /// closes its listener and connections).
    async fn serve(&self) -> End {
        let listener = match tokio::net::TcpListener::bind(self.info.address).await {
            Ok(listener) => listener,
            Err(error) => return End::Exited(format!("cannot listen on {}: {error}", self.info.address)),
        };
        self.listening.send_replace(true);
        let router = crate::function::router_for(Arc::new(Instance::sleeping(&self.info.function)));
        match axum::serve(listener, router).await {
            Ok(()) => End::Exited("the server stopped".into()),
            Err(error) => End::Exited(format!("serving failed: {error}")),
        }
    }
}

impl SandboxRuntime for SimulatedRuntime {
    fn create(&self, spec: SandboxSpec) -> BoxFuture<'_, Result<SandboxInfo, RuntimeError>> {
        let started = self.start(spec);
        async move { started }.boxed()
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

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
