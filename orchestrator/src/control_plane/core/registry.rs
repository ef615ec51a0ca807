//! Registry: the registered functions, each with its autoscaler, its ready sandboxes and its counters; and
//! the two operations users call, registering and deleting.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use contracts::api::{FunctionCounters, FunctionSpec, FunctionStatus, FunctionView, Sandbox};

use super::{Core, RegistryError};
use crate::control_plane::autoscaler::{AutoscalerConfig, Decision, FunctionAutoscaler, ScaleBounds};
use crate::control_plane::placement::Resources;
use crate::control_plane::store::StoreChange;
use crate::proto::dirigent::{CreateSandboxRequest, CreationStep, Endpoint, FunctionLoad, FunctionRef, FunctionState};

/// One registered function.
pub(super) struct FunctionRecord {
    spec: FunctionSpec,
    /// Which registration this is: a name deleted and registered again gets a new uid.
    uid: u64,
    autoscaler: FunctionAutoscaler,
    /// Ready sandboxes, by id.
    sandboxes: BTreeMap<String, Sandbox>,
    /// Sandboxes being created.
    creating: u32,
    /// The latest load report from each data plane.
    loads: BTreeMap<String, FunctionLoad>,
    counters: FunctionCounters,
    last_decision: Option<Decision>,
    /// Why the last sandbox creation failed, if it did.
    last_error: Option<String>,
    /// Until when (clock time) the autoscaler may not remove sandboxes: after a restart it has seen no
    /// traffic yet, and the adopted sandboxes must not go before it has watched a stable window.
    hold_scale_down_until: Duration,
}

impl FunctionRecord {
    /// A new record with its own autoscaler.
    pub(super) fn new(spec: FunctionSpec, uid: u64, autoscaling: &AutoscalerConfig) -> Self {
        let mut config = autoscaling.clone();
        if spec.cold_start_sweep {
            // Each invocation of a sweep function must meet a cold start: forget traffic after one tick.
            config.stable_window = config.tick;
            config.panic_window = config.tick;
        }
        let bounds = ScaleBounds { min: spec.min_scale, max: spec.max_scale };
        Self {
            autoscaler: FunctionAutoscaler::new(config, bounds),
            spec,
            uid,
            sandboxes: BTreeMap::new(),
            creating: 0,
            loads: BTreeMap::new(),
            counters: FunctionCounters::default(),
            last_decision: None,
            last_error: None,
            hold_scale_down_until: Duration::ZERO,
        }
    }

    /// A record loaded after a restart: no scale-down before `until`.
    pub(super) fn restored(spec: FunctionSpec, uid: u64, autoscaling: &AutoscalerConfig, until: Duration) -> Self {
        Self { hold_scale_down_until: until, ..Self::new(spec, uid, autoscaling) }
    }

    /// Whether the autoscaler may remove sandboxes at `now`.
    pub(super) fn may_scale_down(&self, now: Duration) -> bool {
        now >= self.hold_scale_down_until
    }

    pub(super) fn spec(&self) -> &FunctionSpec {
        &self.spec
    }

    pub(super) fn uid(&self) -> u64 {
        self.uid
    }

    /// Ready sandboxes.
    pub(super) fn ready(&self) -> u32 {
        u32::try_from(self.sandboxes.len()).unwrap_or(u32::MAX)
    }

    /// Sandboxes being created.
    pub(super) fn creating(&self) -> u32 {
        self.creating
    }

    /// The resources one sandbox asks for.
    pub(super) fn resources(&self) -> Resources {
        Resources { cpu_millis: self.spec.cpu_millis, memory_mib: self.spec.memory_mib }
    }

    fn concurrency(&self) -> f64 {
        self.loads.values().map(|l| l.average_concurrency).filter(|c| c.is_finite() && *c > 0.0).fold(0.0, |a, b| a + b)
    }

    fn queued(&self) -> u64 {
        self.loads.values().map(|l| u64::from(l.queued)).fold(0, u64::saturating_add)
    }

    /// Feeds the autoscaler the current concurrency and keeps its decision.
    pub(super) fn decide(&mut self, now: Duration) -> Decision {
        let concurrency = self.concurrency();
        self.autoscaler.record(now, concurrency);
        let decision = self.autoscaler.decide(now, self.ready());
        self.last_decision = Some(decision);
        decision
    }

    /// Load the data planes have not reported yet (a queued cold start).
    pub(super) fn record_load(&mut self, now: Duration, concurrency: f64) {
        self.autoscaler.record(now, concurrency);
    }

    /// One more creation in flight, and the request that starts it.
    pub(super) fn start_creation(&mut self, sandbox_id: String) -> CreateSandboxRequest {
        self.creating += 1;
        let spec = self.spec.clone();
        CreateSandboxRequest {
            sandbox_id,
            function: spec.name,
            image: spec.image,
            args: spec.args,
            port: u32::from(spec.port),
            cpu_millis: spec.cpu_millis,
            memory_mib: spec.memory_mib,
            env: spec.env.into_iter().collect(),
        }
    }

    /// One creation fewer in flight.
    pub(super) fn end_creation(&mut self) {
        self.creating = self.creating.saturating_sub(1);
    }

    /// Takes in a running sandbox a worker reported after a restart (not counted as created).
    pub(super) fn adopt_sandbox(&mut self, sandbox: Sandbox) {
        self.sandboxes.insert(sandbox.id.clone(), sandbox);
    }

    /// Records a ready sandbox.
    pub(super) fn add_sandbox(&mut self, sandbox: Sandbox) {
        self.counters.sandboxes_created += 1;
        self.last_error = None;
        self.sandboxes.insert(sandbox.id.clone(), sandbox);
    }

    /// Records a failed creation.
    pub(super) fn creation_failed(&mut self, message: String) {
        self.counters.creation_failures += 1;
        self.last_error = Some(message);
    }

    pub(super) fn remove_sandbox(&mut self, id: &str) -> Option<Sandbox> {
        self.sandboxes.remove(id)
    }

    /// Takes out the `count` newest sandboxes: the oldest have proven themselves and keep their warm caches.
    pub(super) fn take_newest(&mut self, count: u32) -> Vec<Sandbox> {
        let victims: Vec<String> = self.sandboxes.keys().rev().take(count as usize).cloned().collect();
        victims.iter().filter_map(|id| self.sandboxes.remove(id)).collect()
    }

    pub(super) fn into_sandboxes(self) -> Vec<Sandbox> {
        self.sandboxes.into_values().collect()
    }

    /// Adds a data plane's report.
    pub(super) fn add_load(&mut self, data_plane: &str, load: FunctionLoad) {
        // Counts come from peers: they saturate rather than wrap (or panic in a debug build).
        self.counters.invocations = self.counters.invocations.saturating_add(load.invocations);
        self.counters.cold_starts = self.counters.cold_starts.saturating_add(load.cold_starts);
        self.counters.failures = self.counters.failures.saturating_add(load.failures);
        self.counters.failovers = self.counters.failovers.saturating_add(load.failovers);
        self.loads.insert(data_plane.to_owned(), load);
    }

    /// The state pushed to data planes.
    pub(super) fn snapshot(&self, generation: u64) -> FunctionState {
        FunctionState {
            name: self.spec.name.clone(),
            container_concurrency: self.spec.container_concurrency,
            endpoints: self
                .sandboxes
                .values()
                .map(|s| Endpoint {
                    sandbox_id: s.id.clone(),
                    address: s.address.clone(),
                    creation_micros: s.creation_micros,
                    steps: s
                        .creation_steps
                        .iter()
                        .map(|step| CreationStep { name: step.name.clone(), micros: step.micros })
                        .collect(),
                })
                .collect(),
            generation,
            incarnation: 0,
        }
    }

    /// The function as the API shows it.
    pub(super) fn view(&self) -> FunctionView {
        let status = FunctionStatus {
            ready: self.ready(),
            creating: self.creating,
            desired: self.last_decision.map(|d| d.desired),
            panicking: self.last_decision.is_some_and(|d| d.panicking),
            concurrency: self.concurrency(),
            queued: self.queued(),
            sandboxes: self.sandboxes.values().cloned().collect(),
            counters: self.counters.clone(),
            last_error: self.last_error.clone(),
        };
        FunctionView { spec: self.spec.clone(), status }
    }
}

/// The registered functions, by name.
#[derive(Default)]
pub(super) struct Registry {
    functions: BTreeMap<String, FunctionRecord>,
    /// Names whose registration is being stored: a second registration of one waits for none.
    reserved: HashSet<String>,
}

impl Registry {
    /// Claims a name while its registration is stored; false when another registration holds it.
    pub(super) fn reserve(&mut self, name: &str) -> bool {
        self.reserved.insert(name.to_owned())
    }

    pub(super) fn unreserve(&mut self, name: &str) {
        self.reserved.remove(name);
    }

    pub(super) fn contains(&self, name: &str) -> bool {
        self.functions.contains_key(name)
    }

    pub(super) fn get(&self, name: &str) -> Option<&FunctionRecord> {
        self.functions.get(name)
    }

    pub(super) fn get_mut(&mut self, name: &str) -> Option<&mut FunctionRecord> {
        self.functions.get_mut(name)
    }

    pub(super) fn insert(&mut self, record: FunctionRecord) {
        self.functions.insert(record.spec.name.clone(), record);
    }

    pub(super) fn remove(&mut self, name: &str) -> Option<FunctionRecord> {
        self.functions.remove(name)
    }

    pub(super) fn len(&self) -> usize {
        self.functions.len()
    }

    pub(super) fn names(&self) -> Vec<String> {
        self.functions.keys().cloned().collect()
    }

    pub(super) fn snapshots(&self, generation: u64) -> Vec<FunctionState> {
        self.functions.values().map(|f| f.snapshot(generation)).collect()
    }

    pub(super) fn views(&self) -> Vec<FunctionView> {
        self.functions.values().map(FunctionRecord::view).collect()
    }

    /// Ids of the ready sandboxes on `worker`.
    pub(super) fn sandboxes_on(&self, worker: &str) -> HashSet<String> {
        self.functions
            .values()
            .flat_map(|f| f.sandboxes.values())
            .filter(|s| s.worker == worker)
            .map(|s| s.id.clone())
            .collect()
    }

    pub(super) fn has_sandbox(&self, id: &str) -> bool {
        self.functions.values().any(|f| f.sandboxes.contains_key(id))
    }

    /// Forgets the sandboxes matching `gone`; returns the new state of every function that changed and the
    /// resources each forgotten sandbox held on its worker.
    pub(super) fn drop_sandboxes(
        &mut self,
        gone: impl Fn(&Sandbox) -> bool,
        generation: u64,
    ) -> (Vec<FunctionState>, Vec<(String, Resources)>) {
        let mut pushes = Vec::new();
        let mut released = Vec::new();
        for function in self.functions.values_mut() {
            let before = function.sandboxes.len();
            let resources = function.resources();
            function.sandboxes.retain(|_, s| {
                let keep = !gone(s);
                if !keep {
                    released.push((s.worker.clone(), resources));
                }
                keep
            });
            if function.sandboxes.len() != before {
                pushes.push(function.snapshot(generation));
            }
        }
        (pushes, released)
    }

    /// Forgets what a data plane reported: it is gone.
    pub(super) fn forget_loads(&mut self, data_plane: &str) {
        for function in self.functions.values_mut() {
            function.loads.remove(data_plane);
        }
    }
}

impl Core {
    /// Registers a function and tells every data plane it exists (requests queue rather than 404). The
    /// registration is stored before anyone sees it; registering the same spec again changes nothing.
    pub async fn register_function(self: &Arc<Self>, spec: FunctionSpec) -> Result<(), RegistryError> {
        {
            let mut state = self.locked();
            if let Some(existing) = state.registry.get(&spec.name) {
                return if existing.spec() == &spec { Ok(()) } else { Err(RegistryError::Duplicate(spec.name)) };
            }
            if !state.registry.reserve(&spec.name) {
                return Err(RegistryError::Duplicate(spec.name));
            }
        }
        let stored = self.store.apply(StoreChange::SaveFunction(spec.clone())).await;
        let push = {
            let mut state = self.locked();
            state.registry.unreserve(&spec.name);
            stored?;
            let generation = state.next_sequence();
            let record = FunctionRecord::new(spec.clone(), generation, &self.config.autoscaler);
            let snapshot = record.snapshot(generation);
            state.registry.insert(record);
            (snapshot, state.members.data_plane_clients())
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
        {
            let state = self.locked();
            if !state.registry.contains(name) {
                return Err(RegistryError::Unknown(name.to_owned()));
            }
        }
        // The store first: if it refuses, nothing has changed.
        self.store.apply(StoreChange::DeleteFunction(name.to_owned())).await?;
        let (sandboxes, data_planes, workers, generation) = {
            let mut state = self.locked();
            let record = state.registry.remove(name).ok_or_else(|| RegistryError::Unknown(name.to_owned()))?;
            let generation = state.next_sequence();
            let resources = record.resources();
            let sandboxes = record.into_sandboxes();
            state.retire_all(&sandboxes, resources);
            (sandboxes, state.members.data_plane_clients(), state.members.worker_clients(), generation)
        };
        tracing::info!(function = %name, sandboxes = sandboxes.len(), "function deleted");
        let removal = FunctionRef { name: name.to_owned(), generation, incarnation: self.incarnation() };
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
}
