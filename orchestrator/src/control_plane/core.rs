//! The control plane's core, split by concern, each owning its part of the state: the [`registry`] of
//! functions, the [`members`] (workers and data planes, heartbeats, expiry) and their [`liveness`] by
//! attachment, [`scaling`] and placement, the sandbox [`lifecycle`] and the [`distribution`] of endpoint
//! sets to data planes.
//!
//! The parts live in one [`State`] behind one mutex, so that a change touching several of them (a creation
//! settling: lifecycle, registry and a worker's reservation) is one atomic step with no lock order to get
//! wrong. Decisions happen under the lock; every RPC happens after it is released.

mod distribution;
mod lifecycle;
mod liveness;
mod members;
mod recovery;
mod registry;
mod scaling;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::watch;

use contracts::api::{DataPlaneView, FunctionView, Health, Sandbox, WorkerView};

use super::ControlPlaneConfig;
use super::metrics::{LatencyHistogram, Overview};
use super::placement::{Placer, Resources};
use super::store::{RegistryStore, StoreError, StoredDataPlane, StoredWorker};
use crate::clock::Clock;
use crate::peers::{DataPlanePeer, PeerConnector, WorkerPeer};
use crate::proto::dirigent::FunctionState;
use distribution::Distribution;
use lifecycle::{Lifecycle, PlannedSandbox};
use members::Members;
use registry::{FunctionRecord, Registry};

pub use liveness::{Lease, LeasedPeer};

/// Registering or deleting a function failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// a function with this name exists
    #[error("a function named '{0}' is already registered")]
    Duplicate(String),
    /// no function with this name exists
    #[error("no function named '{0}' is registered")]
    Unknown(String),
    /// the store refused the change
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An RPC target named by what the caller knows it as.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// the caller is not registered (it should register again)
    #[error("{0} is not registered")]
    Unknown(String),
    /// an address is not a valid URI
    #[error(transparent)]
    Address(#[from] crate::net::AddressError),
}

/// What a membership watcher sees: registered workers and data planes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Membership {
    /// Registered workers.
    pub workers: usize,
    /// Registered data planes.
    pub data_planes: usize,
}

/// The control plane's shared core.
pub struct Core {
    pub(super) config: ControlPlaneConfig,
    /// When this control plane last took the lead (ns since the Unix epoch; at first its start): data planes
    /// order updates by it first, so a later leader's win over an earlier one's.
    incarnation: AtomicU64,
    /// Whether this control plane leads, as confirmed by a majority of replicas (with one control plane,
    /// always): only then does it take peers' calls and act.
    leading: AtomicBool,
    pub(super) clock: Arc<dyn Clock>,
    state: Mutex<State>,
    placer: Mutex<Placer>,
    store: Arc<dyn RegistryStore>,
    peers: Arc<dyn PeerConnector>,
    membership: watch::Sender<Membership>,
    /// Peer registrations on their way to the store, in order.
    peer_writes: recovery::PeerWrites,
    /// The stored workers and data planes, until recovery takes them.
    restored_peers: Mutex<Option<(Vec<StoredWorker>, Vec<StoredDataPlane>)>>,
    /// Whether recovery is over (scaling waits for it).
    reconstructed: AtomicBool,
}

/// The data planes a push goes to, by name.
type DataPlanes = Vec<(String, Arc<dyn DataPlanePeer>)>;

/// The workers a kill may go to, by name.
type Workers = Vec<(String, Arc<dyn WorkerPeer>)>;

impl Core {
    /// A core with no registrations but those in `store`, reaching workers and data planes through `peers`.
    pub fn new(
        config: ControlPlaneConfig,
        clock: Arc<dyn Clock>,
        store: Arc<dyn RegistryStore>,
        peers: Arc<dyn PeerConnector>,
    ) -> Result<Self, StoreError> {
        let mut state = State::default();
        let stored = store.load()?;
        let hold = clock.now() + config.autoscaler.stable_window;
        for spec in stored.functions {
            let uid = state.next_sequence();
            state.registry.insert(FunctionRecord::restored(spec, uid, &config.autoscaler, hold));
        }
        state.members.stored_workers = stored.workers.iter().map(|w| (w.name.clone(), w.clone())).collect();
        state.members.stored_data_planes = stored.data_planes.iter().map(|d| (d.name.clone(), d.clone())).collect();
        let reconstructed = AtomicBool::new(stored.workers.is_empty() && stored.data_planes.is_empty());
        let placer = Placer::new(config.placement, config.placement_seed);
        Ok(Self {
            config,
            incarnation: AtomicU64::new(unix_ns()),
            leading: AtomicBool::new(!store.replicated()),
            clock,
            state: Mutex::new(state),
            placer: Mutex::new(placer),
            store,
            peers,
            membership: watch::channel(Membership::default()).0,
            peer_writes: recovery::PeerWrites::new(),
            restored_peers: Mutex::new(Some((stored.workers, stored.data_planes))),
            reconstructed,
        })
    }

    /// Stores peer registrations until the core is dropped; run once, beside the control loops.
    pub async fn store_peers(&self) {
        self.peer_writes.run(Arc::clone(&self.store)).await;
    }

    /// The state, locked. Callers must not hold the guard across an await.
    fn locked(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Watches how many workers and data planes are registered.
    pub fn membership(&self) -> watch::Receiver<Membership> {
        self.membership.subscribe()
    }

    fn publish_membership(&self, state: &State) {
        let now = state.members.counts();
        self.membership.send_if_modified(|m| std::mem::replace(m, now) != now);
    }

    /// Every registered function as the API shows it, by name.
    pub fn functions(&self) -> Vec<FunctionView> {
        self.locked().registry.views()
    }

    /// Which control-plane replica leads now as this one's Raft node sees it (with one control plane, this one).
    pub fn leadership(&self) -> super::store::Leadership {
        self.store.leadership()
    }

    /// Whether this control plane leads, confirmed: it takes peers' calls and acts only then.
    pub fn leads(&self) -> bool {
        self.leading.load(Ordering::Acquire)
    }

    /// Whether a majority of replicas confirms that this one leads (with one control plane, it does).
    pub async fn confirm_leadership(&self) -> bool {
        self.store.confirm_leadership().await
    }

    /// Starts leading: a new incarnation (later than any before it), then peers' calls are taken.
    pub fn begin_leading(&self) {
        let previous = self.incarnation.load(Ordering::Acquire);
        self.incarnation.store(unix_ns().max(previous + 1), Ordering::Release);
        self.leading.store(true, Ordering::Release);
    }

    /// Stops leading: peers' calls are refused from now on and every attachment ends, so workers and data
    /// planes go to the leader; should this one lead again, it rebuilds from the store.
    pub fn stop_leading(&self) {
        self.leading.store(false, Ordering::Release);
        let mut state = self.locked();
        state.members.end_attachments();
        self.publish_membership(&state);
    }

    /// The current incarnation (see the field).
    pub(super) fn incarnation(&self) -> u64 {
        self.incarnation.load(Ordering::Acquire)
    }

    /// One function as the API shows it.
    pub fn function(&self, name: &str) -> Option<FunctionView> {
        self.locked().registry.get(name).map(FunctionRecord::view)
    }

    /// The registered workers and what is placed on them, by name.
    pub fn workers(&self) -> Vec<WorkerView> {
        self.locked().members.worker_views()
    }

    /// The registered data planes, by name.
    pub fn data_planes(&self) -> Vec<DataPlaneView> {
        self.locked().members.data_plane_views()
    }

    /// How much is registered.
    pub fn health(&self) -> Health {
        let role = match self.store.leadership() {
            _ if self.leads() => "leader",
            super::store::Leadership::Other(_) => "follower",
            super::store::Leadership::This | super::store::Leadership::Unknown => "electing",
        };
        let state = self.locked();
        let Membership { workers, data_planes } = state.members.counts();
        Health { status: "ok".into(), functions: state.registry.len(), workers, data_planes, role: role.into() }
    }

    /// What `/metrics` shows, taken under one lock so that the figures agree with each other.
    pub fn overview(&self) -> Overview {
        let state = self.locked();
        let Membership { workers, data_planes } = state.members.counts();
        Overview {
            functions: state.registry.views(),
            workers,
            data_planes,
            latency: state.latency.clone(),
            store_writes: self.store.writes(),
            creation_steps: state.creation_steps.iter().map(|(step, times)| (step.clone(), times.clone())).collect(),
        }
    }

    /// The data planes' proxy addresses, for `/registerService`'s reply.
    pub fn proxy_addresses(&self) -> Vec<String> {
        self.locked().members.proxy_addresses()
    }
}

/// Everything the control plane knows, one part per concern.
#[derive(Default)]
struct State {
    registry: Registry,
    members: Members,
    lifecycle: Lifecycle,
    distribution: Distribution,
    /// Source of registration uids, sandbox ids and endpoint-set generations; only grows.
    sequence: u64,
    /// Scheduling latency over all functions, summed from the data planes' reports.
    latency: LatencyHistogram,
    /// Sandbox creation time per step, from the workers' replies (at most [`MAX_STEP_NAMES`] names).
    creation_steps: std::collections::BTreeMap<String, LatencyHistogram>,
}

/// Step names come from workers: a bound keeps a confused one from growing the map.
const MAX_STEP_NAMES: usize = 16;

impl State {
    /// Counts a creation's steps into their histograms.
    fn observe_steps(&mut self, steps: &[crate::proto::dirigent::CreationStep]) {
        for step in steps {
            if !self.creation_steps.contains_key(&step.name) && self.creation_steps.len() >= MAX_STEP_NAMES {
                continue;
            }
            let times = self.creation_steps.entry(step.name.clone()).or_default();
            times.observe(step.micros as f64 / 1e6);
        }
    }

    /// The next sequence number.
    fn next_sequence(&mut self) -> u64 {
        self.sequence += 1;
        self.sequence
    }

    /// Whether a sandbox a worker runs is one the control plane knows (ready, being created or retiring).
    fn knows_sandbox(&self, id: &str) -> bool {
        self.lifecycle.knows(id) || self.registry.has_sandbox(id)
    }

    /// Closes the books on one creation attempt: the sandbox is no longer pending, and its function, if
    /// still the same registration, has one creation fewer in flight. Returns whether a created sandbox
    /// is to be kept (registration and worker still there, no exit meanwhile); otherwise the worker's
    /// reservation is released.
    fn settle(&mut self, function: &str, plan: &PlannedSandbox, created: bool) -> bool {
        let exited = self.lifecycle.finish(&plan.request.sandbox_id);
        let worker_alive = self.members.has_worker(&plan.worker);
        let same_registration = match self.registry.get_mut(function) {
            Some(record) if record.uid() == plan.function_uid => {
                record.end_creation();
                true
            }
            _ => false,
        };
        let kept = created && same_registration && worker_alive && !exited;
        if !kept {
            self.members.release(&plan.worker, plan.resources);
        }
        kept
    }

    /// Forgets the sandboxes matching `gone` (their worker died or lost them), releasing their resources;
    /// returns the new state of every function that changed, to push to the data planes.
    fn drop_sandboxes(&mut self, gone: impl Fn(&Sandbox) -> bool) -> Vec<FunctionState> {
        let generation = self.next_sequence();
        let (pushes, released) = self.registry.drop_sandboxes(gone, generation);
        for (worker, resources) in released {
            self.members.release(&worker, resources);
        }
        pushes
    }

    /// Sandboxes taken out of the registry: their reservations are released and they are retiring.
    fn retire_all(&mut self, sandboxes: &[Sandbox], resources: Resources) {
        for sandbox in sandboxes {
            self.members.release(&sandbox.worker, resources);
            self.lifecycle.retire(&sandbox.id);
        }
    }
}

/// Now, in ns since the Unix epoch.
fn unix_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests;
