//! Recovery after a restart: the stored workers are asked what runs on them, sandboxes of registered functions
//! are adopted (anything else is killed), the stored data planes get full sets, and only then does the
//! autoscaler start, so that nothing that survived the restart is created twice. Peer registrations reach the
//! store through one ordered writer, off the request path.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use contracts::api::Sandbox;
use tokio::sync::mpsc;

use super::registry::FunctionRecord;
use super::{Core, State};
use crate::control_plane::store::{RegistryStore, StoreChange, StoredDataPlane, StoredRegistry, StoredWorker};
use crate::proto::dirigent::{DataPlaneInfo, KillSandboxRequest, SandboxInfo, WorkerInfo};

/// How long a restarted control plane waits for one stored worker's list before it goes on without it.
const LIST_TIMEOUT: Duration = Duration::from_millis(500);

/// Peer changes waiting for the store; beyond this many the newest are dropped with a warning (a peer's next
/// registration stores it again).
const PEER_WRITES_QUEUED: usize = 1024;

/// The ordered queue of peer changes for the store.
pub(super) struct PeerWrites {
    sender: mpsc::Sender<StoreChange>,
    receiver: std::sync::Mutex<Option<mpsc::Receiver<StoreChange>>>,
}

impl PeerWrites {
    pub(super) fn new() -> Self {
        let (sender, receiver) = mpsc::channel(PEER_WRITES_QUEUED);
        Self { sender, receiver: std::sync::Mutex::new(Some(receiver)) }
    }

    pub(super) fn send(&self, change: StoreChange) {
        if let Err(err) = self.sender.try_send(change) {
            tracing::warn!(%err, "the store is far behind; a peer registration is not stored");
        }
    }

    /// Applies the queued changes in order until the core is dropped; once per core.
    pub(super) async fn run(&self, store: Arc<dyn RegistryStore>) {
        let Some(mut receiver) = self.receiver.lock().unwrap_or_else(|e| e.into_inner()).take() else { return };
        while let Some(change) = receiver.recv().await {
            if let Err(err) = store.apply(change).await {
                tracing::warn!(%err, "cannot store a worker or data plane registration");
            }
        }
    }
}

impl From<&WorkerInfo> for StoredWorker {
    fn from(info: &WorkerInfo) -> Self {
        Self {
            name: info.name.clone(),
            address: info.address.clone(),
            cpu_millis: info.cpu_millis,
            memory_mib: info.memory_mib,
        }
    }
}

impl From<StoredWorker> for WorkerInfo {
    fn from(w: StoredWorker) -> Self {
        Self { name: w.name, address: w.address, cpu_millis: w.cpu_millis, memory_mib: w.memory_mib }
    }
}

impl From<&DataPlaneInfo> for StoredDataPlane {
    fn from(info: &DataPlaneInfo) -> Self {
        Self {
            name: info.name.clone(),
            grpc_address: info.grpc_address.clone(),
            proxy_address: info.proxy_address.clone(),
        }
    }
}

impl From<StoredDataPlane> for DataPlaneInfo {
    fn from(d: StoredDataPlane) -> Self {
        Self { name: d.name, grpc_address: d.grpc_address, proxy_address: d.proxy_address }
    }
}

impl Core {
    /// Whether recovery is over and the autoscaler may create sandboxes.
    pub(super) fn is_reconstructed(&self) -> bool {
        self.reconstructed.load(Ordering::Acquire)
    }

    /// Becomes the core that acts for the cluster: takes in what the registry holds now (a replica that
    /// followed read its store only at its start), then rebuilds the cluster state as a restarted control
    /// plane does.
    pub async fn take_leadership(self: &Arc<Self>) {
        match self.store.load() {
            Ok(stored) => self.catch_up(stored),
            Err(err) => {
                tracing::error!(%err, "cannot read the registry on taking the lead; going on with what is loaded")
            }
        }
        self.reconstruct().await;
    }

    /// Makes the registry's functions and the peers to rebuild from those of `stored`.
    fn catch_up(&self, stored: StoredRegistry) {
        {
            let mut state = self.locked();
            let hold = self.clock.now() + self.config.autoscaler.stable_window;
            let names: HashSet<&str> = stored.functions.iter().map(|spec| spec.name.as_str()).collect();
            for gone in state.registry.names().into_iter().filter(|name| !names.contains(name.as_str())) {
                state.registry.remove(&gone);
            }
            for spec in &stored.functions {
                if !state.registry.contains(&spec.name) {
                    let uid = state.next_sequence();
                    let record = FunctionRecord::restored(spec.clone(), uid, &self.config.autoscaler, hold);
                    state.registry.insert(record);
                }
            }
            state.members.stored_workers = stored.workers.iter().map(|w| (w.name.clone(), w.clone())).collect();
            state.members.stored_data_planes = stored.data_planes.iter().map(|d| (d.name.clone(), d.clone())).collect();
        }
        *self.restored_peers.lock().unwrap_or_else(|e| e.into_inner()) = Some((stored.workers, stored.data_planes));
    }

    /// Rebuilds the cluster state from the stored workers and data planes, then starts scaling. A stored peer
    /// that is gone costs at most [`LIST_TIMEOUT`] and is dropped when its heartbeat deadline passes.
    pub async fn reconstruct(self: &Arc<Self>) {
        let restored = self.restored_peers.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some((workers, data_planes)) = restored {
            tracing::info!(workers = workers.len(), data_planes = data_planes.len(), "rebuilding the cluster state");
            let names: Vec<String> = workers.iter().map(|w| w.name.clone()).collect();
            for worker in workers {
                if let Err(err) = self.admit_worker(WorkerInfo::from(worker)) {
                    tracing::warn!(%err, "cannot reach a stored worker");
                }
            }
            let lists = names.iter().map(|name| tokio::time::timeout(LIST_TIMEOUT, self.reconcile_worker(name)));
            futures_util::future::join_all(lists).await;
            for data_plane in data_planes {
                if let Err(err) = self.register_data_plane(DataPlaneInfo::from(data_plane)) {
                    tracing::warn!(%err, "cannot reach a stored data plane");
                }
            }
        }
        self.reconstructed.store(true, Ordering::Release);
        self.tick().await;
    }

    /// Adopts the listed sandboxes of registered functions that the registry does not know; returns the ids of
    /// those it does not adopt (no such function): the caller kills them. Adopted sandboxes' resources are
    /// reserved on their worker.
    pub(super) fn adopt(state: &mut State, worker: &str, listed: &[SandboxInfo]) -> (Vec<String>, HashSet<String>) {
        let mut kill = Vec::new();
        let mut changed = HashSet::new();
        let unknown: Vec<&SandboxInfo> = listed.iter().filter(|s| !state.knows_sandbox(&s.sandbox_id)).collect();
        for info in unknown {
            let Some(record) = state.registry.get_mut(&info.function) else {
                kill.push(info.sandbox_id.clone());
                continue;
            };
            let resources = record.resources();
            record.adopt_sandbox(Sandbox {
                id: info.sandbox_id.clone(),
                worker: worker.to_owned(),
                address: info.address.clone(),
                creation_micros: 0,
                creation_steps: Vec::new(),
            });
            state.members.reserve(worker, resources);
            changed.insert(info.function.clone());
        }
        (kill, changed)
    }

    /// Reconciles a worker with the registry, adopting and killing as [`Core::adopt`] decides.
    pub(super) async fn reconcile_worker(&self, name: &str) {
        let (client, recorded) = {
            let state = self.locked();
            let Some(client) = state.members.worker_client(name) else { return };
            // Only what was recorded before asking can be judged lost: a creation may finish meanwhile.
            (client, state.registry.sandboxes_on(name))
        };
        let listed = match client.list_sandboxes().await {
            Ok(list) => list.sandboxes,
            Err(status) => return tracing::warn!(worker = %name, %status, "cannot list the worker's sandboxes"),
        };
        let live: HashSet<&str> = listed.iter().map(|s| s.sandbox_id.as_str()).collect();
        let (kill, pushes, data_planes) = {
            let mut state = self.locked();
            if !state.members.has_worker(name) {
                return;
            }
            let (kill, adopted) = Self::adopt(&mut state, name, &listed);
            let mut pushes = state.drop_sandboxes(|s| recorded.contains(&s.id) && !live.contains(s.id.as_str()));
            let generation = state.next_sequence();
            let already: HashSet<String> = pushes.iter().map(|p| p.name.clone()).collect();
            for function in adopted.iter().filter(|f| !already.contains(*f)) {
                if let Some(record) = state.registry.get(function) {
                    pushes.push(record.snapshot(generation));
                }
            }
            if !adopted.is_empty() {
                tracing::info!(worker = %name, functions = adopted.len(), "adopted the sandboxes a worker runs");
            }
            (kill, pushes, state.members.data_plane_clients())
        };
        for id in kill {
            tracing::info!(worker = %name, sandbox = %id, "killing a sandbox of no registered function");
            let _ = client.kill_sandbox(KillSandboxRequest { sandbox_id: id }).await;
        }
        for push in pushes {
            self.push(push, data_planes.clone()).await;
        }
    }
}
