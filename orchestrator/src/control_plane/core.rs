//! The control plane's operations: registration, autoscaling ticks, sandbox lifecycle, endpoint pushes.
//!
//! Decisions happen under the state lock; every RPC happens after it is released.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::watch;

use super::ControlPlaneConfig;
use super::function::FunctionSpec;
use super::placement::{PlacementError, Placer, Resources, WorkerLoad};
use super::state::{DataPlaneRecord, FunctionRecord, SandboxRecord, State, WorkerRecord};
use super::store::{RegistryStore, StoreError};
use crate::clock::Clock;
use crate::peers::{DataPlanePeer, PeerConnector, WorkerPeer};
use crate::proto::dirigent::{
    CreateSandboxReply, CreateSandboxRequest, DataPlaneInfo, FunctionFailure, FunctionRef, FunctionSet, FunctionState,
    KillSandboxRequest, LoadReport, WorkerInfo,
};

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

/// A sandbox placed on a worker, its resources reserved, not yet created.
struct PlannedSandbox {
    worker: String,
    client: Arc<dyn WorkerPeer>,
    request: CreateSandboxRequest,
    /// The registration it is for: a function deleted and registered again under the same name is another.
    function_uid: u64,
    /// What was reserved on the worker.
    resources: Resources,
}

/// The control plane's shared core.
pub struct Core {
    pub(super) config: ControlPlaneConfig,
    /// This process's start time (ns since the Unix epoch): data planes order updates by it first.
    incarnation: u64,
    pub(super) clock: Arc<dyn Clock>,
    state: Mutex<State>,
    placer: Mutex<Placer>,
    store: Arc<dyn RegistryStore>,
    peers: Arc<dyn PeerConnector>,
    membership: watch::Sender<Membership>,
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
        for spec in store.load_functions()? {
            let uid = state.next_sequence();
            state.functions.insert(spec.name.clone(), FunctionRecord::new(spec, uid, &config.autoscaler));
        }
        let placer = Placer::new(config.placement, config.placement_seed);
        let incarnation = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        Ok(Self {
            config,
            incarnation,
            clock,
            state: Mutex::new(state),
            placer: Mutex::new(placer),
            store,
            peers,
            membership: watch::channel(Membership::default()).0,
        })
    }

    /// The state, locked. Callers must not hold the guard across an await.
    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Watches how many workers and data planes are registered.
    pub fn membership(&self) -> watch::Receiver<Membership> {
        self.membership.subscribe()
    }

    fn publish_membership(&self, state: &State) {
        let now = Membership { workers: state.workers.len(), data_planes: state.data_planes.len() };
        self.membership.send_if_modified(|m| std::mem::replace(m, now) != now);
    }

    // ---- functions ------------------------------------------------------------------------------

    /// Registers a function and tells every data plane it exists (requests queue rather than 404).
    pub async fn register_function(self: &Arc<Self>, spec: FunctionSpec) -> Result<(), RegistryError> {
        let push = {
            let mut state = self.state();
            if state.functions.contains_key(&spec.name) {
                return Err(RegistryError::Duplicate(spec.name));
            }
            self.store.save_function(&spec)?;
            let generation = state.next_sequence();
            let record = FunctionRecord::new(spec.clone(), generation, &self.config.autoscaler);
            let snapshot = record.snapshot(generation);
            state.functions.insert(spec.name.clone(), record);
            (snapshot, state.data_plane_clients())
        };
        tracing::info!(function = %spec.name, image = %spec.image, "function registered");
        self.push(push.0, push.1).await;
        if spec.min_scale > 0 {
            self.scale_function(&spec.name).await;
        }
        Ok(())
    }

    /// Deletes a function: data planes drop it (queued requests fail, in-flight ones finish), then its
    /// sandboxes are killed.
    pub async fn delete_function(self: &Arc<Self>, name: &str) -> Result<(), RegistryError> {
        let (sandboxes, data_planes, workers, generation) = {
            let mut state = self.state();
            if !state.functions.contains_key(name) {
                return Err(RegistryError::Unknown(name.to_owned()));
            }
            // The store first: if it refuses, nothing has changed.
            self.store.delete_function(name)?;
            let record = state.functions.remove(name).ok_or_else(|| RegistryError::Unknown(name.to_owned()))?;
            let generation = state.next_sequence();
            let resources = record.resources();
            for sandbox in record.sandboxes.values() {
                state.release(&sandbox.worker, resources);
                state.retiring.insert(sandbox.id.clone());
            }
            (
                record.sandboxes.into_values().collect::<Vec<_>>(),
                state.data_plane_clients(),
                self.worker_clients(&state),
                generation,
            )
        };
        tracing::info!(function = %name, sandboxes = sandboxes.len(), "function deleted");
        let removal = FunctionRef { name: name.to_owned(), generation, incarnation: self.incarnation };
        let failed = futures_util::future::join_all(data_planes.into_iter().map(|(dp, client)| {
            let removal = removal.clone();
            async move {
                let status = client.remove_function(removal).await.err()?;
                tracing::warn!(data_plane = %dp, %status, "cannot remove a function from a data plane; a resync follows");
                Some(dp)
            }
        }))
        .await;
        self.mark_for_resync(failed.into_iter().flatten());
        self.retire(sandboxes, &workers).await;
        Ok(())
    }

    // ---- membership -----------------------------------------------------------------------------

    /// Registers (or re-registers) a worker.
    pub fn register_worker(self: &Arc<Self>, info: WorkerInfo) -> Result<(), PeerError> {
        let client = self.peers.worker(&info.address)?;
        let mut state = self.state();
        let now = self.clock.now();
        let previous = state.workers.remove(&info.name);
        let (cpu_used_millis, memory_used_mib, sandboxes) =
            previous.map_or((0, 0, 0), |w| (w.load.cpu_used_millis, w.load.memory_used_mib, w.load.sandboxes));
        let load = WorkerLoad {
            name: info.name.clone(),
            cpu_capacity_millis: info.cpu_millis,
            memory_capacity_mib: info.memory_mib,
            cpu_used_millis,
            memory_used_mib,
            sandboxes,
        };
        tracing::info!(worker = %info.name, address = %info.address, "worker registered");
        state.workers.insert(
            info.name.clone(),
            WorkerRecord { address: info.address, client, load, last_seen: now, count_mismatches: 0 },
        );
        self.publish_membership(&state);
        let core = Arc::clone(self);
        tokio::spawn(async move { core.reconcile_worker(&info.name).await });
        Ok(())
    }

    /// Makes a (re-)registered worker and the registry agree: sandboxes the registry does not know are
    /// killed (nothing leaks across a control-plane restart), and sandboxes the worker lost are dropped.
    async fn reconcile_worker(&self, name: &str) {
        let (client, recorded) = {
            let state = self.state();
            let Some(worker) = state.workers.get(name) else { return };
            // Only what was recorded before asking can be judged lost: a creation may finish meanwhile.
            let recorded: HashSet<String> = state
                .functions
                .values()
                .flat_map(|f| f.sandboxes.values())
                .filter(|s| s.worker == name)
                .map(|s| s.id.clone())
                .collect();
            (Arc::clone(&worker.client), recorded)
        };
        let listed = match client.list_sandboxes().await {
            Ok(list) => list.sandboxes,
            Err(status) => return tracing::warn!(worker = %name, %status, "cannot list the worker's sandboxes"),
        };
        let live: HashSet<&str> = listed.iter().map(|s| s.sandbox_id.as_str()).collect();
        let (unknown, pushes, data_planes) = {
            let mut state = self.state();
            let known = |id: &str| {
                state.pending.contains(id)
                    || state.retiring.contains(id)
                    || state.functions.values().any(|f| f.sandboxes.contains_key(id))
            };
            let unknown: Vec<String> =
                listed.iter().filter(|s| !known(&s.sandbox_id)).map(|s| s.sandbox_id.clone()).collect();
            let pushes = state.drop_sandboxes(|s| recorded.contains(&s.id) && !live.contains(s.id.as_str()));
            (unknown, pushes, state.data_plane_clients())
        };
        for id in unknown {
            tracing::info!(worker = %name, sandbox = %id, "killing a sandbox the registry does not know");
            let _ = client.kill_sandbox(KillSandboxRequest { sandbox_id: id }).await;
        }
        for push in pushes {
            self.push(push, data_planes.clone()).await;
        }
    }

    /// Notes a worker's heartbeat. When the worker's sandbox count disagrees with the registry's for
    /// several heartbeats in a row (creations and kills in flight disagree briefly), the two reconcile:
    /// this catches a lost exit report.
    pub fn worker_heartbeat(self: &Arc<Self>, name: &str, sandboxes: u32) -> Result<(), PeerError> {
        const MISMATCHES_BEFORE_RECONCILE: u32 = 3;
        let now = self.clock.now();
        let reconcile = {
            let mut state = self.state();
            let worker = state.workers.get_mut(name).ok_or_else(|| PeerError::Unknown(format!("worker {name}")))?;
            worker.last_seen = now;
            if worker.load.sandboxes == sandboxes {
                worker.count_mismatches = 0;
            } else {
                worker.count_mismatches += 1;
            }
            // Every few mismatching heartbeats, not once: a reconcile may fail or leave a real difference.
            worker.count_mismatches > 0 && worker.count_mismatches % MISMATCHES_BEFORE_RECONCILE == 0
        };
        if reconcile {
            let core = Arc::clone(self);
            let name = name.to_owned();
            tokio::spawn(async move { core.reconcile_worker(&name).await });
        }
        Ok(())
    }

    /// Registers a data plane and pushes every function to it.
    pub fn register_data_plane(self: &Arc<Self>, info: DataPlaneInfo) -> Result<(), PeerError> {
        let client = self.peers.data_plane(&info.grpc_address)?;
        {
            let mut state = self.state();
            let record = DataPlaneRecord {
                proxy_address: info.proxy_address.clone(),
                grpc_address: info.grpc_address.clone(),
                client: Arc::clone(&client),
                last_seen: self.clock.now(),
                needs_resync: false,
                resyncing: true,
            };
            state.data_planes.insert(info.name.clone(), record);
            self.publish_membership(&state);
        }
        tracing::info!(data_plane = %info.name, proxy = %info.proxy_address, "data plane registered");
        let core = Arc::clone(self);
        tokio::spawn(async move { core.resync(info.name, client).await });
        Ok(())
    }

    /// Takes a data plane's load report (its heartbeat too).
    pub fn report_load(&self, report: LoadReport) -> Result<(), PeerError> {
        let now = self.clock.now();
        let mut state = self.state();
        let dp = state
            .data_planes
            .get_mut(&report.data_plane)
            .ok_or_else(|| PeerError::Unknown(format!("data plane {}", report.data_plane)))?;
        dp.last_seen = now;
        for load in report.functions {
            state.latency.add(&load.latency_buckets, load.latency_sum_seconds);
            let Some(function) = state.functions.get_mut(&load.function) else { continue };
            function.counters.invocations += load.invocations;
            function.counters.cold_starts += load.cold_starts;
            function.counters.failures += load.failures;
            function.loads.insert(report.data_plane.clone(), load);
        }
        Ok(())
    }

    /// Drops workers and data planes that stopped reporting, and the sandboxes on those workers.
    pub async fn expire_peers(self: &Arc<Self>) {
        let now = self.clock.now();
        let (pushes, data_planes) = {
            let mut state = self.state();
            let dead = silent(&state.workers, |w| w.last_seen, now, self.config.worker_timeout);
            let dead_dps = silent(&state.data_planes, |d| d.last_seen, now, self.config.data_plane_timeout);
            for name in &dead_dps {
                tracing::warn!(data_plane = %name, "data plane stopped reporting; dropped");
                state.data_planes.remove(name);
                for function in state.functions.values_mut() {
                    function.loads.remove(name);
                }
            }
            for name in &dead {
                tracing::warn!(worker = %name, "worker missed its heartbeats; dropped with its sandboxes");
                state.workers.remove(name);
            }
            if !dead.is_empty() || !dead_dps.is_empty() {
                self.publish_membership(&state);
            }
            let pushes = state.drop_sandboxes(|s| dead.contains(&s.worker));
            (pushes, state.data_plane_clients())
        };
        // In the background: a push waits for drains, and this runs on the autoscaler's loop.
        for push in pushes {
            let (core, data_planes) = (Arc::clone(self), data_planes.clone());
            tokio::spawn(async move { core.push(push, data_planes).await });
        }
        self.resync_failed().await;
    }

    // ---- sandboxes ------------------------------------------------------------------------------

    /// A data plane queued a request for a function at zero: create a sandbox now, not at the next tick.
    pub fn request_cold_start(self: &Arc<Self>, function: &str) {
        let now = self.clock.now();
        let planned = {
            let mut state = self.state();
            let Some(record) = state.functions.get_mut(function) else { return };
            if record.ready() + record.creating > 0 || record.spec.max_scale == 0 {
                return;
            }
            // The request is load the data planes have not reported yet; without this sample the next
            // tick would see an idle window and scale the new sandbox straight back to zero.
            record.autoscaler.record(now, 1.0);
            self.plan_creations(&mut state, function, 1)
        };
        self.launch_creations(function, planned);
    }

    /// A worker reports a sandbox that exited on its own.
    pub async fn sandbox_exited(self: &Arc<Self>, function: &str, sandbox_id: &str, reason: &str) {
        let push = {
            let mut state = self.state();
            if state.pending.contains(sandbox_id) {
                // It died between its worker's reply and our recording it: do not record a dead sandbox.
                state.exited_early.insert(sandbox_id.to_owned());
                return;
            }
            let generation = state.next_sequence();
            let Some(record) = state.functions.get_mut(function) else { return };
            let Some(sandbox) = record.sandboxes.remove(sandbox_id) else { return };
            let resources = record.resources();
            let snapshot = record.snapshot(generation);
            state.release(&sandbox.worker, resources);
            (snapshot, state.data_plane_clients())
        };
        tracing::warn!(%function, sandbox = %sandbox_id, %reason, "sandbox exited; removed from the data planes");
        // Detached: the registry already changed, so the push must happen even if the worker's call is cancelled.
        let core = Arc::clone(self);
        let _ = tokio::spawn(async move { core.push(push.0, push.1).await }).await;
    }

    /// One autoscaler tick over every function.
    pub async fn tick(self: &Arc<Self>) {
        let names: Vec<String> = self.state().functions.keys().cloned().collect();
        for name in names {
            self.scale_function(&name).await;
        }
    }

    /// Runs the autoscaler of one function and starts the creations or removals it asks for.
    pub async fn scale_function(self: &Arc<Self>, name: &str) {
        let now = self.clock.now();
        let (planned, remove) = {
            let mut state = self.state();
            let Some(record) = state.functions.get_mut(name) else { return };
            let concurrency = record.concurrency();
            record.autoscaler.record(now, concurrency);
            let decision = record.autoscaler.decide(now, record.ready());
            record.last_decision = Some(decision);
            let current = record.ready() + record.creating;
            let (create, remove) =
                (decision.desired.saturating_sub(current), record.ready().saturating_sub(decision.desired));
            (self.plan_creations(&mut state, name, create), remove)
        };
        self.launch_creations(name, planned);
        if remove > 0 {
            let core = Arc::clone(self);
            let name = name.to_owned();
            tokio::spawn(async move { core.remove_sandboxes(&name, remove).await });
        }
    }

    /// Places `count` sandboxes and reserves their resources and `creating` slots, all under the caller's
    /// lock, so that a concurrent decision already counts them.
    fn plan_creations(&self, state: &mut State, function: &str, count: u32) -> Vec<Result<PlannedSandbox, String>> {
        (0..count).map_while(|_| self.plan_creation(state, function).transpose()).collect()
    }

    /// One placement; `Ok(None)` when the function is gone.
    fn plan_creation(&self, state: &mut State, function: &str) -> Result<Option<PlannedSandbox>, String> {
        let sequence = state.next_sequence();
        let Some(record) = state.functions.get(function) else { return Ok(None) };
        let resources = record.resources();
        let function_uid = record.uid;
        let spec = record.spec.clone();
        let loads: Vec<WorkerLoad> = state.workers.values().map(|w| w.load.clone()).collect();
        let index = self.placer.lock().unwrap_or_else(|e| e.into_inner()).place(&loads, resources);
        let index = index.map_err(|e: PlacementError| format!("cannot place a sandbox of '{function}': {e}"))?;
        let worker = loads[index].name.clone();
        let client = state
            .workers
            .get(&worker)
            .map(|w| Arc::clone(&w.client))
            .ok_or_else(|| format!("worker {worker} vanished"))?;
        state.reserve(&worker, resources);
        if let Some(record) = state.functions.get_mut(function) {
            record.creating += 1;
        }
        let request = CreateSandboxRequest {
            sandbox_id: format!("{function}-{sequence}"),
            function: function.to_owned(),
            image: spec.image,
            args: spec.args,
            port: u32::from(spec.port),
            cpu_millis: spec.cpu_millis,
            memory_mib: spec.memory_mib,
            env: spec.env.into_iter().collect(),
        };
        state.pending.insert(request.sandbox_id.clone());
        Ok(Some(PlannedSandbox { worker, client, request, function_uid, resources }))
    }

    /// Runs planned creations in the background.
    fn launch_creations(self: &Arc<Self>, function: &str, planned: Vec<Result<PlannedSandbox, String>>) {
        for plan in planned {
            let core = Arc::clone(self);
            let function = function.to_owned();
            tokio::spawn(async move { core.create_with_retry(&function, plan).await });
        }
    }

    /// One creation, tried again once on a fresh placement: a transient failure (a worker restarting, a
    /// port taken by another process between check and bind) must not fail the requests waiting for it.
    async fn create_with_retry(&self, function: &str, first: Result<PlannedSandbox, String>) {
        const ATTEMPTS: u32 = 2;
        let mut plan = first;
        for attempt in 1..=ATTEMPTS {
            let message = match plan {
                Ok(planned) => match self.create_sandbox(function, planned).await {
                    Ok(()) => return,
                    Err(message) => message,
                },
                Err(message) => message,
            };
            if attempt == ATTEMPTS {
                return self.creation_failed(function, message).await;
            }
            tracing::info!(%function, %message, "sandbox creation failed; trying once more");
            plan = match self.plan_creation(&mut self.state(), function) {
                Ok(Some(planned)) => Ok(planned),
                Ok(None) => return,
                Err(message) => Err(message),
            };
        }
    }

    /// Creates one planned sandbox; on failure its reservation is released and the reason returned.
    async fn create_sandbox(&self, function: &str, plan: PlannedSandbox) -> Result<(), String> {
        let deadline = self.config.sandbox_create_timeout;
        let outcome = tokio::time::timeout(deadline, plan.client.create_sandbox(plan.request.clone())).await;
        let worker = &plan.worker;
        let message = match outcome {
            Ok(Ok(reply)) => {
                self.creation_succeeded(function, plan, reply).await;
                return Ok(());
            }
            Ok(Err(status)) => format!("worker {worker} could not create a sandbox: {}", status.message()),
            Err(_) => format!("worker {worker} did not create a sandbox within {deadline:?}"),
        };
        self.state().settle(function, &plan.request.sandbox_id, plan.function_uid, worker, plan.resources, false);
        Err(message)
    }

    /// Records a ready sandbox and pushes it to the data planes, unless its function was deleted (or
    /// registered anew), its worker was dropped, or it already exited: then it is killed.
    async fn creation_succeeded(&self, function: &str, plan: PlannedSandbox, reply: CreateSandboxReply) {
        let push = {
            let mut state = self.state();
            let kept =
                state.settle(function, &plan.request.sandbox_id, plan.function_uid, &plan.worker, plan.resources, true);
            let generation = state.next_sequence();
            match state.functions.get_mut(function).filter(|_| kept) {
                Some(record) => {
                    record.counters.sandboxes_created += 1;
                    record.last_error = None;
                    let sandbox = SandboxRecord {
                        id: reply.sandbox_id.clone(),
                        worker: plan.worker.clone(),
                        address: reply.address.clone(),
                        creation_micros: reply.creation_micros,
                    };
                    record.sandboxes.insert(sandbox.id.clone(), sandbox);
                    Some((record.snapshot(generation), state.data_plane_clients()))
                }
                None => None,
            }
        };
        match push {
            Some((snapshot, data_planes)) => {
                tracing::debug!(%function, sandbox = %reply.sandbox_id, worker = %plan.worker, micros = reply.creation_micros, "sandbox ready");
                self.push(snapshot, data_planes).await;
            }
            None => {
                let _ = plan.client.kill_sandbox(KillSandboxRequest { sandbox_id: reply.sandbox_id }).await;
            }
        }
    }

    /// Records a failed creation; when the function has no sandbox at all, its queued requests fail now.
    async fn creation_failed(&self, function: &str, message: String) {
        tracing::warn!(%function, %message, "sandbox creation failed");
        let fail = {
            let mut state = self.state();
            let Some(record) = state.functions.get_mut(function) else { return };
            record.counters.creation_failures += 1;
            record.last_error = Some(message.clone());
            let none_left = record.ready() + record.creating == 0;
            none_left.then(|| state.data_plane_clients())
        };
        let Some(data_planes) = fail else { return };
        let failure = FunctionFailure { name: function.to_owned(), message };
        futures_util::future::join_all(data_planes.iter().map(|(_, client)| client.fail_queued(failure.clone()))).await;
    }

    /// Removes `count` sandboxes: out of the data planes first (drained), then killed.
    pub async fn remove_sandboxes(&self, function: &str, count: u32) {
        let (removed, push, workers) = {
            let mut state = self.state();
            let generation = state.next_sequence();
            let Some(record) = state.functions.get_mut(function) else { return };
            // The newest sandboxes go first: the oldest have proven themselves and keep their warm caches.
            let victims: Vec<String> = record.sandboxes.keys().rev().take(count as usize).cloned().collect();
            let removed: Vec<SandboxRecord> = victims.iter().filter_map(|id| record.sandboxes.remove(id)).collect();
            let resources = record.resources();
            let snapshot = record.snapshot(generation);
            for sandbox in &removed {
                state.release(&sandbox.worker, resources);
                state.retiring.insert(sandbox.id.clone());
            }
            (removed, (snapshot, state.data_plane_clients()), self.worker_clients(&state))
        };
        tracing::debug!(%function, count = removed.len(), "scaling down");
        self.push(push.0, push.1).await;
        self.retire(removed, &workers).await;
    }

    /// Pushes one function's full state to data planes and returns when all have applied it (for removed
    /// endpoints, that includes their drain). A data plane that missed it gets every function again later.
    async fn push(&self, mut state: FunctionState, data_planes: DataPlanes) {
        state.incarnation = self.incarnation;
        let failed = send_state(state, data_planes).await;
        self.mark_for_resync(failed);
    }

    fn mark_for_resync(&self, data_planes: impl IntoIterator<Item = String>) {
        let mut state = self.state();
        for name in data_planes {
            if let Some(data_plane) = state.data_planes.get_mut(&name) {
                data_plane.needs_resync = true;
            }
        }
    }

    /// Brings one data plane in line with the registry (after it registered, or after a push to it failed):
    /// first it drops every function the registry no longer has, then it gets every function's state.
    async fn resync(&self, name: String, client: Arc<dyn DataPlanePeer>) {
        let (set, states) = {
            let mut state = self.state();
            let generation = state.next_sequence();
            let names = state.functions.keys().cloned().collect();
            let set = FunctionSet { names, generation, incarnation: self.incarnation };
            (set, state.functions.values().map(|f| f.snapshot(generation)).collect::<Vec<_>>())
        };
        match client.retain_functions(set).await {
            Ok(_) => {
                for state in states {
                    self.push(state, vec![(name.clone(), Arc::clone(&client))]).await;
                }
            }
            Err(status) => {
                tracing::warn!(data_plane = %name, %status, "resync failed; trying again later");
                self.mark_for_resync([name.clone()]);
            }
        }
        if let Some(data_plane) = self.state().data_planes.get_mut(&name) {
            data_plane.resyncing = false;
        }
    }

    /// Resyncs the data planes whose last push failed.
    async fn resync_failed(self: &Arc<Self>) {
        let targets: DataPlanes = {
            let mut state = self.state();
            state
                .data_planes
                .iter_mut()
                // One resync per data plane at a time: an unreachable one is retried, not stormed.
                .filter(|(_, d)| d.needs_resync && !d.resyncing)
                .map(|(name, d)| {
                    d.needs_resync = false;
                    d.resyncing = true;
                    (name.clone(), Arc::clone(&d.client))
                })
                .collect()
        };
        for (name, client) in targets {
            let core = Arc::clone(self);
            tokio::spawn(async move { core.resync(name, client).await });
        }
    }

    /// Kills sandboxes already taken out of the registry (and out of the data planes, drained); until then
    /// they are `retiring`, which reconciliation leaves alone.
    async fn retire(&self, sandboxes: Vec<SandboxRecord>, workers: &[(String, Arc<dyn WorkerPeer>)]) {
        futures_util::future::join_all(sandboxes.iter().map(|sandbox| {
            let client = workers.iter().find(|(name, _)| *name == sandbox.worker).map(|(_, c)| Arc::clone(c));
            async move {
                let Some(client) = client else { return };
                let request = KillSandboxRequest { sandbox_id: sandbox.id.clone() };
                if let Err(status) = client.kill_sandbox(request).await {
                    tracing::warn!(sandbox = %sandbox.id, worker = %sandbox.worker, %status, "cannot kill a sandbox");
                }
            }
        }))
        .await;
        let mut state = self.state();
        for sandbox in &sandboxes {
            state.retiring.remove(&sandbox.id);
        }
    }

    fn worker_clients(&self, state: &State) -> Workers {
        state.workers.iter().map(|(name, w)| (name.clone(), Arc::clone(&w.client))).collect()
    }

    /// The data planes' proxy addresses, for `/registerService`'s reply.
    pub fn proxy_addresses(&self) -> Vec<String> {
        self.state().data_planes.values().map(|d| d.proxy_address.clone()).collect()
    }
}

/// Names of the peers not heard from within `deadline`.
fn silent<T>(
    peers: &BTreeMap<String, T>,
    last_seen: impl Fn(&T) -> Duration,
    now: Duration,
    deadline: Duration,
) -> Vec<String> {
    peers.iter().filter(|(_, p)| now.saturating_sub(last_seen(p)) > deadline).map(|(name, _)| name.clone()).collect()
}

/// Sends one function's full state to data planes, concurrently; returns the names of those that failed.
async fn send_state(state: FunctionState, data_planes: DataPlanes) -> Vec<String> {
    let results = futures_util::future::join_all(data_planes.into_iter().map(|(name, client)| {
        let state = state.clone();
        async move {
            let result = client.sync_function(state).await;
            result.err().map(|status| {
                tracing::warn!(data_plane = %name, %status, "endpoint push failed; a full resync follows");
                name
            })
        }
    }))
    .await;
    results.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests;
