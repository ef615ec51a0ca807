//! The control plane's in-memory state: one struct, guarded by one mutex, never held across an await.

use std::collections::BTreeMap;
use std::time::Duration;

use std::sync::Arc;

use serde::Serialize;

use super::autoscaler::{AutoscalerConfig, Decision, FunctionAutoscaler, ScaleBounds};
use super::function::FunctionSpec;
use super::placement::{Resources, WorkerLoad};
use crate::data_plane::stats::LATENCY_BUCKETS;
use crate::peers::{DataPlanePeer, WorkerPeer};
use crate::proto::dirigent::{Endpoint, FunctionLoad, FunctionState};

/// A ready sandbox.
#[derive(Debug, Clone, Serialize)]
pub struct SandboxRecord {
    /// Its id.
    pub id: String,
    /// The worker it runs on.
    pub worker: String,
    /// Where it serves.
    pub address: String,
    /// How long it took to become ready, µs.
    pub creation_micros: u64,
}

/// Counters of one function, summed from data-plane reports and sandbox operations.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FunctionCounters {
    /// Invocations that reached a sandbox.
    pub invocations: u64,
    /// Invocations that waited for a sandbox creation.
    pub cold_starts: u64,
    /// Invocations that failed in a data plane.
    pub failures: u64,
    /// Sandboxes created.
    pub sandboxes_created: u64,
    /// Sandbox creations that failed.
    pub creation_failures: u64,
}

/// One registered function.
pub struct FunctionRecord {
    /// What was registered.
    pub spec: FunctionSpec,
    /// Which registration this is: a name deleted and registered again gets a new uid.
    pub uid: u64,
    /// Its autoscaler.
    pub autoscaler: FunctionAutoscaler,
    /// Its ready sandboxes, by id.
    pub sandboxes: BTreeMap<String, SandboxRecord>,
    /// Sandboxes being created.
    pub creating: u32,
    /// The latest load report from each data plane.
    pub loads: BTreeMap<String, FunctionLoad>,
    /// Counters for `/metrics`.
    pub counters: FunctionCounters,
    /// The last autoscaler decision.
    pub last_decision: Option<Decision>,
    /// Why the last sandbox creation failed, if it did.
    pub last_error: Option<String>,
}

impl FunctionRecord {
    /// A new record with its own autoscaler.
    pub fn new(spec: FunctionSpec, uid: u64, autoscaling: &AutoscalerConfig) -> Self {
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
        }
    }

    /// Ready sandboxes.
    pub fn ready(&self) -> u32 {
        u32::try_from(self.sandboxes.len()).unwrap_or(u32::MAX)
    }

    /// The resources one sandbox asks for.
    pub fn resources(&self) -> Resources {
        Resources { cpu_millis: self.spec.cpu_millis, memory_mib: self.spec.memory_mib }
    }

    /// Concurrency summed over the data planes' latest reports.
    pub fn concurrency(&self) -> f64 {
        self.loads.values().map(|l| l.average_concurrency).filter(|c| c.is_finite() && *c > 0.0).fold(0.0, |a, b| a + b)
    }

    /// Requests queued over all data planes.
    pub fn queued(&self) -> u64 {
        self.loads.values().map(|l| u64::from(l.queued)).sum()
    }

    /// The state pushed to data planes.
    pub fn snapshot(&self, generation: u64) -> FunctionState {
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
                })
                .collect(),
            generation,
            incarnation: 0,
        }
    }
}

/// A registered worker.
pub struct WorkerRecord {
    /// Its gRPC address.
    pub address: String,
    /// Its service.
    pub client: Arc<dyn WorkerPeer>,
    /// What it offers and what is placed on it.
    pub load: WorkerLoad,
    /// When it last said it was alive (clock time).
    pub last_seen: Duration,
    /// Heartbeats in a row whose sandbox count differed from the registry's.
    pub count_mismatches: u32,
}

/// A registered data plane.
pub struct DataPlaneRecord {
    /// Where users send invocations.
    pub proxy_address: String,
    /// Its gRPC address.
    pub grpc_address: String,
    /// Its service.
    pub client: Arc<dyn DataPlanePeer>,
    /// When it last reported (clock time).
    pub last_seen: Duration,
    /// A push to it failed: it gets every function again.
    pub needs_resync: bool,
    /// A resync to it is running.
    pub resyncing: bool,
}

/// Scheduling-latency histogram summed over data planes.
#[derive(Debug, Clone)]
pub struct LatencyHistogram {
    /// Counts per bucket of [`LATENCY_BUCKETS`], plus +Inf.
    pub buckets: Vec<u64>,
    /// Sum of the observations, seconds.
    pub sum_seconds: f64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self { buckets: vec![0; LATENCY_BUCKETS.len() + 1], sum_seconds: 0.0 }
    }
}

impl LatencyHistogram {
    /// Adds a data plane's bucket counts (ignoring a report with a different bucket layout).
    pub fn add(&mut self, buckets: &[u64], sum_seconds: f64) {
        if buckets.len() != self.buckets.len() {
            return;
        }
        for (total, add) in self.buckets.iter_mut().zip(buckets) {
            *total += add;
        }
        if sum_seconds.is_finite() {
            self.sum_seconds += sum_seconds;
        }
    }
}

/// Everything the control plane knows.
#[derive(Default)]
pub struct State {
    /// Functions by name.
    pub functions: BTreeMap<String, FunctionRecord>,
    /// Workers by name.
    pub workers: BTreeMap<String, WorkerRecord>,
    /// Data planes by name.
    pub data_planes: BTreeMap<String, DataPlaneRecord>,
    /// Source of sandbox ids and endpoint-set generations; only grows.
    pub sequence: u64,
    /// Scheduling latency over all functions.
    pub latency: LatencyHistogram,
    /// Ids of sandboxes being created: known, though not ready yet.
    pub pending: std::collections::BTreeSet<String>,
    /// Sandboxes out of the registry and being drained or killed.
    pub retiring: std::collections::BTreeSet<String>,
    /// Pending sandboxes whose exit was reported before their creation finished.
    pub exited_early: std::collections::BTreeSet<String>,
}

impl State {
    /// The next sequence number.
    pub fn next_sequence(&mut self) -> u64 {
        self.sequence += 1;
        self.sequence
    }

    /// The data planes' clients, for a push outside the lock.
    pub fn data_plane_clients(&self) -> Vec<(String, Arc<dyn DataPlanePeer>)> {
        self.data_planes.iter().map(|(name, dp)| (name.clone(), Arc::clone(&dp.client))).collect()
    }

    /// Closes the books on one creation attempt: the sandbox is no longer pending, and its function, if
    /// still the same registration, has one creation fewer in flight. Returns whether a created sandbox
    /// is to be kept (registration and worker still there, no exit meanwhile); otherwise the worker's
    /// reservation is released.
    pub fn settle(
        &mut self,
        function: &str,
        sandbox_id: &str,
        uid: u64,
        worker: &str,
        resources: Resources,
        created: bool,
    ) -> bool {
        self.pending.remove(sandbox_id);
        let exited = self.exited_early.remove(sandbox_id);
        let worker_alive = self.workers.contains_key(worker);
        let same_registration = match self.functions.get_mut(function) {
            Some(record) if record.uid == uid => {
                record.creating = record.creating.saturating_sub(1);
                true
            }
            _ => false,
        };
        let kept = created && same_registration && worker_alive && !exited;
        if !kept {
            self.release(worker, resources);
        }
        kept
    }

    /// Forgets the sandboxes matching `gone` (their worker died or lost them), releasing their resources;
    /// returns the new state of every function that changed, to push to the data planes.
    pub fn drop_sandboxes(&mut self, gone: impl Fn(&SandboxRecord) -> bool) -> Vec<FunctionState> {
        let generation = self.next_sequence();
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
        for (worker, resources) in released {
            self.release(&worker, resources);
        }
        pushes
    }

    /// Releases a sandbox's resources on its worker.
    pub fn release(&mut self, worker: &str, resources: Resources) {
        if let Some(w) = self.workers.get_mut(worker) {
            w.load.cpu_used_millis = w.load.cpu_used_millis.saturating_sub(resources.cpu_millis);
            w.load.memory_used_mib = w.load.memory_used_mib.saturating_sub(resources.memory_mib);
            w.load.sandboxes = w.load.sandboxes.saturating_sub(1);
        }
    }

    /// Reserves a sandbox's resources on its worker.
    pub fn reserve(&mut self, worker: &str, resources: Resources) {
        if let Some(w) = self.workers.get_mut(worker) {
            w.load.cpu_used_millis += resources.cpu_millis;
            w.load.memory_used_mib += resources.memory_mib;
            w.load.sandboxes += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state_with(function_uid: u64) -> State {
        let mut state = State::default();
        let spec = FunctionSpec::from_json(br#"{"name":"f","image":"x","cpu_millis":100,"memory_mib":64}"#).unwrap();
        let mut record = FunctionRecord::new(spec, function_uid, &AutoscalerConfig::default());
        record.creating = 1;
        state.functions.insert("f".into(), record);
        state.pending.insert("f-1".into());
        state
    }

    fn reserved(state: &mut State, worker: &str) {
        let load = WorkerLoad {
            name: worker.into(),
            cpu_capacity_millis: 1000,
            memory_capacity_mib: 1024,
            cpu_used_millis: 0,
            memory_used_mib: 0,
            sandboxes: 0,
        };
        let record = WorkerRecord {
            address: String::new(),
            client: crate::test_util::peers::FakePeers::new().worker_at(worker),
            load,
            last_seen: Duration::ZERO,
            count_mismatches: 0,
        };
        state.workers.insert(worker.into(), record);
        state.reserve(worker, Resources { cpu_millis: 100, memory_mib: 64 });
    }

    const ASKED: Resources = Resources { cpu_millis: 100, memory_mib: 64 };

    #[test]
    fn a_created_sandbox_is_kept_only_for_the_same_live_registration() {
        let mut state = state_with(1);
        reserved(&mut state, "w");
        assert!(state.settle("f", "f-1", 1, "w", ASKED, true));
        assert_eq!(state.functions["f"].creating, 0);
        assert_eq!(state.workers["w"].load.sandboxes, 1, "a kept sandbox keeps its reservation");
        assert!(state.pending.is_empty());

        // Deleted and registered again under the same name while the sandbox started.
        let mut state = state_with(2);
        reserved(&mut state, "w");
        assert!(!state.settle("f", "f-1", 1, "w", ASKED, true));
        assert_eq!(state.functions["f"].creating, 1, "the new registration's own creation is untouched");
        assert_eq!(state.workers["w"].load.sandboxes, 0);
        assert_eq!(state.workers["w"].load.cpu_used_millis, 0);
    }

    #[test]
    fn failures_early_exits_and_dropped_workers_release_everything() {
        let mut state = state_with(1);
        reserved(&mut state, "w");
        assert!(!state.settle("f", "f-1", 1, "w", ASKED, false));
        assert_eq!((state.functions["f"].creating, state.workers["w"].load.sandboxes), (0, 0));

        let mut state = state_with(1);
        reserved(&mut state, "w");
        state.exited_early.insert("f-1".into());
        assert!(!state.settle("f", "f-1", 1, "w", ASKED, true), "it died before it was recorded");
        assert!(state.exited_early.is_empty());
        assert_eq!(state.functions["f"].creating, 0);

        let mut state = state_with(1);
        assert!(!state.settle("f", "f-1", 1, "gone", ASKED, true), "its worker was dropped meanwhile");
        assert_eq!(state.functions["f"].creating, 0, "no creation stays counted forever");
    }
}
