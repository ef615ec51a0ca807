//! A recording [`SandboxRuntime`] whose sandboxes do what the test scripts for their image.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use tokio::sync::{broadcast, watch};

use super::contract::{self, Harness};
use super::lock;
use super::script::{Gate, Journal};
use crate::worker::runtime::{RuntimeError, SandboxExited, SandboxInfo, SandboxRuntime, SandboxSpec};

/// One call a worker made to its runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeCall {
    /// [`SandboxRuntime::create`].
    Create(SandboxSpec),
    /// [`SandboxRuntime::wait_ready`], by sandbox id.
    WaitReady(String),
    /// [`SandboxRuntime::destroy`].
    Destroy(String),
    /// [`SandboxRuntime::list`].
    List,
    /// [`SandboxRuntime::shutdown`].
    Shutdown,
}

/// How the sandboxes of one image behave.
#[derive(Debug, Clone, Default)]
pub enum Behaviour {
    /// They start and are ready at once.
    #[default]
    Ready,
    /// They start and become ready once the gate opens (or fail at the readiness timeout).
    ReadyWhen(Gate),
    /// They start and never become ready: readiness fails at its timeout.
    NeverReady,
    /// They start and exit with this reason before they are ready.
    ExitsBeforeReady(String),
    /// They cannot be started: creation fails with this message.
    Unstartable(String),
}

struct Live {
    info: SandboxInfo,
    behaviour: Behaviour,
    /// `Some(reason)` once the sandbox has ended, however.
    ended: watch::Sender<Option<String>>,
}

/// A runtime that keeps its sandboxes in memory, each at its own loopback address.
pub struct FakeRuntime {
    journal: Journal<RuntimeCall>,
    behaviours: Mutex<HashMap<String, Behaviour>>,
    sandboxes: Mutex<BTreeMap<String, Live>>,
    exits: broadcast::Sender<SandboxExited>,
    ports: AtomicU16,
    /// Set: `list` panics, as a runtime bug would, to test that a role stops instead of limping on.
    list_panics: AtomicBool,
}

impl std::fmt::Debug for FakeRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeRuntime").field("calls", &self.journal.calls()).finish_non_exhaustive()
    }
}

impl FakeRuntime {
    /// A runtime with no sandboxes, in which every image behaves as [`Behaviour::Ready`].
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            journal: Journal::default(),
            behaviours: Mutex::default(),
            sandboxes: Mutex::default(),
            exits: broadcast::channel(1024).0,
            ports: AtomicU16::new(30_000),
            list_panics: AtomicBool::new(false),
        })
    }

    /// From now on `list` panics.
    pub fn panic_on_list(&self) {
        self.list_panics.store(true, Ordering::SeqCst);
    }

    /// Every call so far.
    pub fn journal(&self) -> &Journal<RuntimeCall> {
        &self.journal
    }

    /// Sandboxes of `image` created from now on behave as `behaviour`.
    pub fn behave(&self, image: &str, behaviour: Behaviour) {
        lock(&self.behaviours).insert(image.to_owned(), behaviour);
    }

    /// Ends a sandbox as a crash would: it leaves the list and its exit is notified. False if it was not alive.
    pub fn exit(&self, id: &str, reason: &str) -> bool {
        let Some(live) = self.end(id, reason) else { return false };
        let exited = SandboxExited { id: live.info.id, function: live.info.function, reason: reason.to_owned() };
        let _ = self.exits.send(exited);
        true
    }

    /// Whether anyone listens for exit notifications (so that an [`exit`](Self::exit) now is heard).
    pub fn has_exit_listeners(&self) -> bool {
        self.exits.receiver_count() > 0
    }

    /// Whether the sandbox is alive, without recording a call.
    pub fn is_alive(&self, id: &str) -> bool {
        lock(&self.sandboxes).contains_key(id)
    }

    fn end(&self, id: &str, reason: &str) -> Option<Live> {
        let live = lock(&self.sandboxes).remove(id)?;
        live.ended.send_replace(Some(reason.to_owned()));
        Some(live)
    }

    fn start(&self, spec: SandboxSpec) -> Result<SandboxInfo, RuntimeError> {
        self.journal.record(RuntimeCall::Create(spec.clone()));
        let behaviour = lock(&self.behaviours).get(&spec.image).cloned().unwrap_or_default();
        if let Behaviour::Unstartable(message) = &behaviour {
            let source = std::io::Error::other(message.clone());
            return Err(RuntimeError::Start { id: spec.id, image: spec.image, source });
        }
        let mut sandboxes = lock(&self.sandboxes);
        if sandboxes.contains_key(&spec.id) {
            return Err(RuntimeError::Duplicate(spec.id));
        }
        let port = self.ports.fetch_add(1, Ordering::Relaxed);
        let info = SandboxInfo {
            id: spec.id.clone(),
            function: spec.function,
            address: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        let live = Live { info: info.clone(), behaviour, ended: watch::Sender::new(None) };
        sandboxes.insert(spec.id, live);
        Ok(info)
    }

    async fn ready(&self, sandbox: &SandboxInfo, timeout: Duration) -> Result<(), RuntimeError> {
        self.journal.record(RuntimeCall::WaitReady(sandbox.id.clone()));
        let id = sandbox.id.clone();
        let (behaviour, mut ended) = match lock(&self.sandboxes).get(&id) {
            Some(live) => (live.behaviour.clone(), live.ended.subscribe()),
            None => return Err(RuntimeError::Unknown(id)),
        };
        let gate = match behaviour {
            Behaviour::Ready | Behaviour::Unstartable(_) => return Ok(()),
            Behaviour::ExitsBeforeReady(reason) => {
                self.exit(&id, &reason);
                return Err(RuntimeError::ExitedEarly { id, reason });
            }
            Behaviour::ReadyWhen(gate) => Some(gate),
            Behaviour::NeverReady => None,
        };
        let opened = async {
            match gate {
                Some(gate) => gate.passed().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = opened => Ok(()),
            reason = ended.wait_for(Option::is_some) => {
                let reason = reason.ok().and_then(|r| r.clone()).unwrap_or_default();
                Err(RuntimeError::ExitedEarly { id, reason })
            }
            () = tokio::time::sleep(timeout) => Err(RuntimeError::NotReady { id, address: sandbox.address, timeout }),
        }
    }
}

impl SandboxRuntime for FakeRuntime {
    fn create(&self, spec: SandboxSpec) -> BoxFuture<'_, Result<SandboxInfo, RuntimeError>> {
        std::future::ready(self.start(spec)).boxed()
    }

    fn wait_ready(&self, sandbox: &SandboxInfo, timeout: Duration) -> BoxFuture<'_, Result<(), RuntimeError>> {
        let sandbox = sandbox.clone();
        async move { self.ready(&sandbox, timeout).await }.boxed()
    }

    fn destroy(&self, id: &str) -> BoxFuture<'_, Result<(), RuntimeError>> {
        self.journal.record(RuntimeCall::Destroy(id.to_owned()));
        let destroyed = self.end(id, "destroyed").map(drop).ok_or_else(|| RuntimeError::Unknown(id.to_owned()));
        std::future::ready(destroyed).boxed()
    }

    fn list(&self) -> Vec<SandboxInfo> {
        self.journal.record(RuntimeCall::List);
        assert!(!self.list_panics.load(Ordering::SeqCst), "the fake runtime's list was told to panic");
        lock(&self.sandboxes).values().map(|live| live.info.clone()).collect()
    }

    fn exits(&self) -> broadcast::Receiver<SandboxExited> {
        self.exits.subscribe()
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        self.journal.record(RuntimeCall::Shutdown);
        let ids: Vec<String> = lock(&self.sandboxes).keys().cloned().collect();
        for id in ids {
            self.end(&id, "shut down");
        }
        std::future::ready(()).boxed()
    }
}

/// [`FakeRuntime`] under the runtime contract: an image per behaviour the suite asks for.
#[derive(Debug)]
pub struct FakeHarness {
    runtime: Arc<FakeRuntime>,
}

impl Default for FakeHarness {
    fn default() -> Self {
        let runtime = FakeRuntime::new();
        runtime.behave("never-ready", Behaviour::NeverReady);
        runtime.behave("exits-at-once", Behaviour::ExitsBeforeReady("exit status: 3".into()));
        runtime.behave("unstartable", Behaviour::Unstartable("no such image".into()));
        Self { runtime }
    }
}

impl Harness for FakeHarness {
    fn runtime(&self) -> &dyn SandboxRuntime {
        self.runtime.as_ref()
    }

    fn serving(&self, id: &str) -> SandboxSpec {
        contract::spec(id, "serving", &[])
    }

    fn never_ready(&self, id: &str) -> SandboxSpec {
        contract::spec(id, "never-ready", &[])
    }

    fn exits_at_once(&self, id: &str) -> SandboxSpec {
        contract::spec(id, "exits-at-once", &[])
    }

    fn unstartable(&self, id: &str) -> SandboxSpec {
        contract::spec(id, "unstartable", &[])
    }

    fn crash(&self, sandbox: &SandboxInfo) {
        self.runtime.exit(&sandbox.id, "signal: 9 (SIGKILL)");
    }

    fn running(&self, sandbox: &SandboxInfo) -> bool {
        self.runtime.is_alive(&sandbox.id)
    }
}

#[cfg(test)]
mod tests {
    crate::runtime_contract!(super::FakeHarness::default());
}
