//! The core against fake workers and data planes: what it sends, to whom, in what order.

use std::time::Duration;

use contracts::api::FunctionSpec;

use super::*;
use crate::clock::ManualClock;
use crate::control_plane::autoscaler::AutoscalerConfig;
use crate::control_plane::store::MemoryStore;
use crate::proto::dirigent::{
    CreateSandboxRequest, DataPlaneInfo, Endpoint, FunctionLoad, LoadReport, SandboxExit, WorkerInfo,
};
use crate::test_util::peers::{FakePeers, PeerCall, Sent};
use crate::test_util::script::{Gate, Step};

/// A core whose workers and data planes are fakes, each registered at an address equal to its name.
struct Cluster {
    core: Arc<Core>,
    peers: Arc<FakePeers>,
    clock: Arc<ManualClock>,
}

const DATA_PLANES: [&str; 2] = ["dp-1", "dp-2"];

impl Cluster {
    fn new() -> Self {
        let (clock, peers) = (Arc::new(ManualClock::default()), FakePeers::new());
        let store = Arc::new(MemoryStore::default());
        let connector = Arc::clone(&peers) as Arc<dyn PeerConnector>;
        let core = Core::new(ControlPlaneConfig::default(), Arc::clone(&clock) as Arc<dyn Clock>, store, connector);
        Self { core: Arc::new(core.unwrap()), peers, clock }
    }

    /// A cluster with `workers` workers and both data planes registered.
    fn with(workers: &[&str]) -> Self {
        let cluster = Self::new();
        for name in workers {
            cluster.core.register_worker(worker(name)).unwrap();
        }
        for name in DATA_PLANES {
            cluster.register_data_plane(name);
        }
        cluster
    }

    fn register_data_plane(&self, name: &str) {
        let info = DataPlaneInfo { name: name.into(), grpc_address: name.into(), proxy_address: format!("{name}:80") };
        self.core.register_data_plane(info).unwrap();
    }

    async fn register(&self, json: &str) {
        self.core.register_function(FunctionSpec::from_json(json.as_bytes()).unwrap()).await.unwrap();
    }

    /// Registers `f` and cold-starts it; returns once both data planes got its sandbox.
    async fn cold_started(&self) -> CreateSandboxRequest {
        self.register(r#"{"name":"f","image":"img"}"#).await;
        self.core.request_cold_start("f");
        let calls = self.endpoints_everywhere(1).await;
        calls.into_iter().find_map(|sent| created(&sent).cloned()).expect("a create")
    }

    /// Waits until every data plane's latest set for `f` has `count` endpoints; returns the calls so far.
    async fn endpoints_everywhere(&self, count: usize) -> Vec<Sent> {
        let what = format!("{count} endpoints of f on every data plane");
        let on_every = |calls: &[Sent]| {
            DATA_PLANES.iter().all(|dp| pushed(calls, dp, "f").last().is_some_and(|set| set.len() == count))
        };
        self.peers.journal().wait_until(&what, on_every).await
    }

    /// Waits until every data plane got a set for `f` that is `sandbox` alone (a replacement may follow).
    async fn only_everywhere(&self, sandbox: &str) {
        let what = format!("only {sandbox} on every data plane");
        let alone =
            |calls: &[Sent]| DATA_PLANES.iter().all(|dp| pushed(calls, dp, "f").iter().any(|set| set == &[sandbox]));
        self.peers.journal().wait_until(&what, alone).await;
    }

    /// Keeps the data planes from expiring.
    fn data_planes_report(&self) {
        for name in DATA_PLANES {
            self.core.report_load(LoadReport { data_plane: name.into(), functions: Vec::new() }).unwrap();
        }
    }
}

fn worker(name: &str) -> WorkerInfo {
    WorkerInfo { name: name.into(), address: name.into(), cpu_millis: 2000, memory_mib: 4096 }
}

/// Sandboxes placed on `worker`, ready or being created, as the API shows them.
fn placed_on(core: &Core, worker: &str) -> u32 {
    core.workers().into_iter().find(|w| w.name == worker).map(|w| w.sandboxes).expect("a registered worker")
}

fn sandbox(id: &str, worker: &str) -> Sandbox {
    Sandbox {
        id: id.into(),
        worker: worker.into(),
        address: "127.0.0.1:2".into(),
        creation_micros: 1,
        creation_steps: Vec::new(),
    }
}

fn core(clock: &Arc<ManualClock>) -> Arc<Core> {
    let config = ControlPlaneConfig::default();
    let (clock, store) = (Arc::clone(clock) as Arc<dyn Clock>, Arc::new(MemoryStore::default()));
    Arc::new(Core::new(config, clock, store, FakePeers::new()).unwrap())
}

/// The endpoint sets of `function` pushed to `data_plane`, in order, as sandbox ids.
fn pushed(calls: &[Sent], data_plane: &str, function: &str) -> Vec<Vec<String>> {
    calls
        .iter()
        .filter(|sent| sent.to == data_plane)
        .filter_map(|sent| match &sent.call {
            PeerCall::SyncFunction(state) if state.name == function => {
                Some(state.endpoints.iter().map(|e| e.sandbox_id.clone()).collect())
            }
            _ => None,
        })
        .collect()
}

fn created(sent: &Sent) -> Option<&CreateSandboxRequest> {
    match &sent.call {
        PeerCall::CreateSandbox(request) => Some(request),
        _ => None,
    }
}

fn killed(sent: &Sent) -> Option<&str> {
    match &sent.call {
        PeerCall::KillSandbox(request) => Some(&request.sandbox_id),
        _ => None,
    }
}

fn is_retain(sent: &Sent) -> bool {
    matches!(sent.call, PeerCall::RetainFunctions(_))
}

/// The calls that went to `peer`, after the first `skip` calls of the journal.
fn calls_to(calls: &[Sent], peer: &str, skip: usize) -> Vec<PeerCall> {
    calls.iter().skip(skip).filter(|sent| sent.to == peer).map(|sent| sent.call.clone()).collect()
}

#[tokio::test]
async fn a_scale_up_creates_on_a_worker_then_pushes_the_endpoint_to_every_data_plane() {
    let cluster = Cluster::with(&["w-1"]);
    let request = cluster.cold_started().await;
    assert_eq!((request.function.as_str(), request.image.as_str()), ("f", "img"));
    let calls = cluster.peers.journal().calls();
    let create = calls.iter().position(|sent| sent.to == "w-1" && created(sent).is_some()).unwrap();
    let reply_address = cluster.peers.worker_at("w-1").sandboxes()[0].address.clone();
    for dp in DATA_PLANES {
        let push = calls
            .iter()
            .rposition(|sent| {
                sent.to == dp && matches!(&sent.call, PeerCall::SyncFunction(s) if !s.endpoints.is_empty())
            })
            .unwrap();
        assert!(create < push, "{dp} heard of the sandbox before it was created");
        let PeerCall::SyncFunction(state) = &calls[push].call else { unreachable!() };
        let expected = Endpoint {
            sandbox_id: request.sandbox_id.clone(),
            address: reply_address.clone(),
            creation_micros: 1_000,
            steps: Vec::new(),
        };
        assert_eq!(state.endpoints, [expected], "{dp} got the worker's answer as the endpoint");
        assert_eq!(state.incarnation, cluster.core.incarnation());
    }
}

#[tokio::test]
async fn an_autoscaler_tick_that_scales_up_pushes_each_new_endpoint_to_every_data_plane() {
    let cluster = Cluster::with(&["w-1", "w-2"]);
    cluster.register(r#"{"name":"f","image":"img"}"#).await;
    let load = FunctionLoad { function: "f".into(), average_concurrency: 3.0, ..FunctionLoad::default() };
    cluster.core.report_load(LoadReport { data_plane: "dp-1".into(), functions: vec![load] }).unwrap();
    cluster.core.tick().await;
    let calls = cluster.endpoints_everywhere(3).await;
    let created: Vec<&str> = calls.iter().filter_map(created).map(|r| r.sandbox_id.as_str()).collect();
    assert_eq!(created.len(), 3, "concurrency 3 at target 1 asks for three sandboxes: {created:?}");
    for dp in DATA_PLANES {
        // In generation order (the order a data plane applies them); before the first sandbox, the
        // registration and the data plane's resync push f's empty set.
        let mut states: Vec<(u64, usize)> = calls
            .iter()
            .filter(|sent| sent.to == dp)
            .filter_map(|sent| match &sent.call {
                PeerCall::SyncFunction(s) if s.name == "f" => Some((s.generation, s.endpoints.len())),
                _ => None,
            })
            .collect();
        states.sort_unstable();
        let sizes: Vec<usize> = states.into_iter().map(|(_, n)| n).skip_while(|n| *n == 0).collect();
        assert_eq!(sizes, [1, 2, 3], "{dp} hears of each sandbox as it becomes ready, in full sets");
        let mut last = pushed(&calls, dp, "f").pop().unwrap();
        last.sort_unstable();
        let mut expected: Vec<String> = created.iter().map(|id| (*id).to_owned()).collect();
        expected.sort_unstable();
        assert_eq!(last, expected, "{dp} routes to exactly the created sandboxes");
    }
    assert_eq!(cluster.core.function("f").unwrap().status.ready, 3);
}

/// Registers `f` with two sandboxes (on `w-1` and `w-2`) and waits until every data plane has both; returns
/// the one on `w-2`.
async fn two_sandboxes_everywhere(cluster: &Cluster) -> String {
    cluster.register(r#"{"name":"f","image":"img","min_scale":2,"max_scale":2}"#).await;
    cluster.endpoints_everywhere(2).await;
    cluster.peers.worker_at("w-2").sandboxes()[0].sandbox_id.clone()
}

#[tokio::test]
async fn a_worker_that_disappears_takes_its_sandboxes_out_of_every_data_plane() {
    let cluster = Cluster::with(&["w-1", "w-2"]);
    let survivor = two_sandboxes_everywhere(&cluster).await;
    let timeout = cluster.core.config.worker_timeout;
    cluster.clock.advance(timeout / 2);
    cluster.core.worker_heartbeat("w-2", 1).unwrap();
    cluster.data_planes_report();
    cluster.clock.advance(timeout / 2 + Duration::from_millis(1));
    let before = cluster.peers.journal().calls().len();
    cluster.core.expire_peers().await;
    cluster.only_everywhere(&survivor).await;
    // No tick: the lost sandbox is replaced at once, on the worker left.
    let calls = cluster
        .peers
        .journal()
        .wait_until("a replacement", |calls| calls[before..].iter().any(|c| created(c).is_some()))
        .await;
    let replacement = calls[before..].iter().find(|c| created(c).is_some()).unwrap();
    assert_eq!(replacement.to, "w-2", "{replacement:?}");
}

#[tokio::test]
async fn a_registering_data_plane_first_drops_what_is_gone_then_gets_every_function() {
    let cluster = Cluster::with(&["w-1"]);
    let sandbox = cluster.cold_started().await.sandbox_id;
    cluster.register(r#"{"name":"g","image":"img"}"#).await;
    for (dp, again) in [("dp-3", "a new data plane"), ("dp-1", "a data plane registering again")] {
        let before = cluster.peers.journal().calls().len();
        cluster.register_data_plane(dp);
        let calls = cluster.peers.journal().wait_until(again, |calls| calls_to(calls, dp, before).len() == 3).await;
        let resync = calls_to(&calls, dp, before);
        let PeerCall::RetainFunctions(set) = &resync[0] else { panic!("{again} got {resync:?} first") };
        assert_eq!(set.names, ["f", "g"], "{again}: retain every registered function");
        let states: Vec<(&str, Vec<&str>)> = resync[1..]
            .iter()
            .map(|call| match call {
                PeerCall::SyncFunction(s) => {
                    (s.name.as_str(), s.endpoints.iter().map(|e| e.sandbox_id.as_str()).collect())
                }
                other => panic!("{again}: expected the functions' states, got {other:?}"),
            })
            .collect();
        assert_eq!(states, [("f", vec![sandbox.as_str()]), ("g", vec![])], "{again}: every function's full state");
    }
}

#[tokio::test]
async fn a_failed_push_is_followed_by_a_resync_of_that_data_plane_only() {
    let cluster = Cluster::with(&["w-1"]);
    cluster.register(r#"{"name":"f","image":"img"}"#).await;
    let failing_push = |sent: &Sent| sent.to == "dp-1" && matches!(sent.call, PeerCall::SyncFunction(_));
    cluster.peers.script().push(failing_push, Step::fail(tonic::Status::unavailable("dp-1 is restarting")));
    cluster.core.request_cold_start("f");
    let calls = cluster
        .peers
        .journal()
        .wait_until("the endpoint pushed", |calls| pushed(calls, "dp-2", "f").last().is_some_and(|s| s.len() == 1))
        .await;
    let after_push = calls.len();
    cluster.core.expire_peers().await;
    let calls = cluster
        .peers
        .journal()
        .wait_until("dp-1 resynced", |calls| calls_to(calls, "dp-1", after_push).len() == 2)
        .await;
    let resync = calls_to(&calls, "dp-1", after_push);
    assert!(matches!(&resync[0], PeerCall::RetainFunctions(set) if set.names == ["f"]), "{resync:?}");
    assert!(matches!(&resync[1], PeerCall::SyncFunction(s) if s.endpoints.len() == 1), "{resync:?}");
    assert!(!calls[after_push..].iter().any(|sent| sent.to == "dp-2" && is_retain(sent)), "dp-2 missed nothing");
}

#[tokio::test]
async fn deletion_drops_the_function_from_every_data_plane_before_killing_its_sandboxes() {
    let cluster = Cluster::with(&["w-1"]);
    let sandbox = cluster.cold_started().await.sandbox_id;
    let gate = Gate::new();
    let removal = |sent: &Sent| sent.to == "dp-1" && matches!(sent.call, PeerCall::RemoveFunction(_));
    cluster.peers.script().push(removal, Step::answer().after(&gate));
    let deleting = tokio::spawn({
        let core = Arc::clone(&cluster.core);
        async move { core.delete_function("f").await }
    });
    let removed = |calls: &[Sent]| {
        DATA_PLANES.iter().all(|dp| {
            calls.iter().any(|s| s.to == *dp && matches!(&s.call, PeerCall::RemoveFunction(r) if r.name == "f"))
        })
    };
    let calls = cluster.peers.journal().wait_until("f removed from every data plane", removed).await;
    assert!(!calls.iter().any(|sent| killed(sent).is_some()), "a sandbox was killed while dp-1 still routed to it");
    gate.open();
    deleting.await.unwrap().unwrap();
    let calls = cluster.peers.journal().calls();
    let kills: Vec<&str> = calls.iter().filter_map(killed).collect();
    assert_eq!(kills, [sandbox.as_str()], "the deleted function's sandbox is killed");
    assert!(cluster.peers.worker_at("w-1").sandboxes().is_empty());
}

#[tokio::test]
async fn a_creation_that_fails_twice_fails_the_queued_requests_on_every_data_plane() {
    let cluster = Cluster::with(&["w-1"]);
    cluster.register(r#"{"name":"f","image":"img"}"#).await;
    for _ in 0..2 {
        let creation = |sent: &Sent| created(sent).is_some();
        cluster.peers.script().push(creation, Step::fail(tonic::Status::failed_precondition("no such image")));
    }
    cluster.core.request_cold_start("f");
    let failed = |calls: &[Sent]| {
        DATA_PLANES.iter().all(|dp| calls.iter().any(|s| s.to == *dp && matches!(s.call, PeerCall::FailQueued(_))))
    };
    let calls = cluster.peers.journal().wait_until("the queued requests failed", failed).await;
    assert_eq!(calls.iter().filter(|sent| created(sent).is_some()).count(), 2, "one creation, tried once more");
    let PeerCall::FailQueued(failure) = &calls.last().unwrap().call else { panic!("{calls:?}") };
    assert_eq!(failure.name, "f");
    assert!(failure.message.contains("no such image"), "the worker's reason reaches the requests: {failure:?}");
    let record = cluster.core.function("f").unwrap().status;
    assert_eq!((record.creating, record.counters.creation_failures), (0, 1));
    assert_eq!(placed_on(&cluster.core, "w-1"), 0, "no reservation is left behind");
}

#[tokio::test]
async fn a_sandbox_that_exited_leaves_every_data_plane() {
    let cluster = Cluster::with(&["w-1"]);
    let sandbox = cluster.cold_started().await.sandbox_id;
    let exit =
        SandboxExit { worker: "w-1".into(), sandbox_id: sandbox, function: "f".into(), reason: "signal 9".into() };
    cluster.core.sandbox_exited(&exit.function, &exit.sandbox_id, &exit.reason).await;
    let calls = cluster.peers.journal().calls();
    for dp in DATA_PLANES {
        assert_eq!(pushed(&calls, dp, "f").last(), Some(&vec![]), "{dp} still routes to the dead sandbox");
    }
    assert_eq!(placed_on(&cluster.core, "w-1"), 0, "its slot is free again");
}

#[tokio::test]
async fn reconciling_kills_what_the_registry_does_not_know_and_drops_what_the_worker_lost() {
    let cluster = Cluster::with(&[]);
    let leftover = cluster.peers.worker_at("w-1");
    leftover.add_sandbox("f-999", "f");
    cluster.core.register_worker(worker("w-1")).unwrap();
    let calls = cluster
        .peers
        .journal()
        .wait_until("the leftover killed", |calls| calls.iter().any(|sent| killed(sent) == Some("f-999")))
        .await;
    let list = calls.iter().position(|sent| matches!(sent.call, PeerCall::ListSandboxes)).unwrap();
    assert!(list < calls.iter().position(|sent| killed(sent).is_some()).unwrap(), "listed before killing");

    let sandbox = cluster.cold_started().await.sandbox_id;
    leftover.lose_sandbox(&sandbox);
    for _ in 0..3 {
        cluster.core.worker_heartbeat("w-1", 0).unwrap();
    }
    cluster
        .peers
        .journal()
        .wait_until("the lost sandbox out of every data plane", |calls| {
            DATA_PLANES.iter().all(|dp| pushed(calls, dp, "f").last() == Some(&vec![]))
        })
        .await;
    assert!(cluster.core.function("f").unwrap().status.sandboxes.is_empty());
}

#[tokio::test]
async fn silent_workers_are_dropped_with_their_sandboxes_and_heartbeats_keep_them() {
    let clock = Arc::new(ManualClock::default());
    let core = core(&clock);
    core.register_worker(worker("quiet")).unwrap();
    core.register_worker(worker("chatty")).unwrap();
    let spec = FunctionSpec::from_json(br#"{"name":"f","image":"x"}"#).unwrap();
    core.register_function(spec).await.unwrap();
    {
        let mut state = core.locked();
        let record = state.registry.get_mut("f").unwrap();
        record.add_sandbox(sandbox("a", "quiet"));
        record.add_sandbox(sandbox("b", "chatty"));
    }
    let timeout = core.config.worker_timeout;
    clock.advance(timeout / 2);
    core.worker_heartbeat("chatty", 1).unwrap();
    clock.advance(timeout / 2 + Duration::from_millis(1));
    core.expire_peers().await;

    let workers: Vec<String> = core.workers().into_iter().map(|w| w.name).collect();
    assert!(!workers.contains(&"quiet".to_owned()), "a worker silent for longer than worker_timeout is dropped");
    assert!(workers.contains(&"chatty".to_owned()), "a heartbeat within the timeout keeps it");
    let left: Vec<String> = core.function("f").unwrap().status.sandboxes.into_iter().map(|s| s.id).collect();
    assert_eq!(left, ["b"], "the dropped worker's sandboxes go with it");
    assert!(matches!(core.worker_heartbeat("quiet", 0), Err(PeerError::Unknown(_))), "it must register again");
}

#[tokio::test]
async fn registry_errors_keep_what_is_registered() {
    let clock = Arc::new(ManualClock::default());
    let core = core(&clock);
    let spec = FunctionSpec::from_json(br#"{"name":"f","image":"x"}"#).unwrap();
    core.register_function(spec.clone()).await.unwrap();
    // The same registration again (a loader re-deploying after a restart) changes nothing; another one is refused.
    core.register_function(spec.clone()).await.unwrap();
    let other = FunctionSpec { min_scale: 1, ..spec };
    assert!(matches!(core.register_function(other).await, Err(RegistryError::Duplicate(_))));
    assert_eq!(core.function("f").unwrap().spec.min_scale, 0);
    assert!(matches!(core.delete_function("g").await, Err(RegistryError::Unknown(_))));
    assert!(core.function("f").is_some());
    core.delete_function("f").await.unwrap();
    assert!(core.functions().is_empty());
}

#[tokio::test]
async fn a_cold_start_request_plans_one_sandbox_and_no_more() {
    let clock = Arc::new(ManualClock::default());
    let core = core(&clock);
    core.register_worker(worker("w")).unwrap();
    let spec = FunctionSpec::from_json(br#"{"name":"f","image":"x"}"#).unwrap();
    core.register_function(spec).await.unwrap();
    core.request_cold_start("f");
    core.request_cold_start("f");
    // The test runtime is single-threaded and nothing was awaited, so no creation has run yet: the
    // second request must have seen the first one's planned creation.
    assert_eq!(core.function("f").unwrap().status.creating, 1);
    assert_eq!(core.locked().lifecycle.pending_count(), 1);
    assert_eq!(placed_on(&core, "w"), 1, "the placement reserved one slot");
}

// ---- settling a creation: lifecycle, registry and reservation in one step --------------------------------

fn state_with(function_uid: u64) -> State {
    let mut state = State::default();
    let spec = FunctionSpec::from_json(br#"{"name":"f","image":"x","cpu_millis":100,"memory_mib":64}"#).unwrap();
    let mut record = FunctionRecord::new(spec, function_uid, &AutoscalerConfig::default());
    let _ = record.start_creation("f-1".into());
    state.registry.insert(record);
    state.lifecycle.begin("f-1");
    state
}

fn reserved(state: &mut State, worker: &str) {
    let info = WorkerInfo { name: worker.into(), address: String::new(), cpu_millis: 1000, memory_mib: 1024 };
    state.members.add_worker(info, FakePeers::new().worker_at(worker), Duration::ZERO);
    state.members.reserve(worker, ASKED);
}

const ASKED: Resources = Resources { cpu_millis: 100, memory_mib: 64 };

/// The creation of `f-1` for registration `uid` of `f`, placed on `worker`.
fn plan(uid: u64, worker: &str) -> PlannedSandbox {
    let request = CreateSandboxRequest { sandbox_id: "f-1".into(), function: "f".into(), ..Default::default() };
    let client = FakePeers::new().worker_at(worker);
    PlannedSandbox { worker: worker.into(), client, request, function_uid: uid, resources: ASKED }
}

fn creating(state: &State) -> u32 {
    state.registry.get("f").unwrap().creating()
}

fn placed(state: &State, worker: &str) -> (u32, u64) {
    state.members.load(worker).map(|l| (l.sandboxes, l.cpu_used_millis)).unwrap()
}

#[test]
fn a_created_sandbox_is_kept_only_for_the_same_live_registration() {
    let mut state = state_with(1);
    reserved(&mut state, "w");
    assert!(state.settle("f", &plan(1, "w"), true));
    assert_eq!(creating(&state), 0);
    assert_eq!(placed(&state, "w").0, 1, "a kept sandbox keeps its reservation");
    assert_eq!(state.lifecycle.pending_count(), 0);

    // Deleted and registered again under the same name while the sandbox started.
    let mut state = state_with(2);
    reserved(&mut state, "w");
    assert!(!state.settle("f", &plan(1, "w"), true));
    assert_eq!(creating(&state), 1, "the new registration's own creation is untouched");
    assert_eq!(placed(&state, "w").0, 0);
    assert_eq!(placed(&state, "w").1, 0);
}

#[test]
fn failures_early_exits_and_dropped_workers_release_everything() {
    let mut state = state_with(1);
    reserved(&mut state, "w");
    assert!(!state.settle("f", &plan(1, "w"), false));
    assert_eq!((creating(&state), placed(&state, "w").0), (0, 0));

    let mut state = state_with(1);
    reserved(&mut state, "w");
    state.lifecycle.exited_early_for_test("f-1");
    assert!(!state.settle("f", &plan(1, "w"), true), "it died before it was recorded");
    assert_eq!(state.lifecycle.early_exits(), 0);
    assert_eq!(creating(&state), 0);

    let mut state = state_with(1);
    assert!(!state.settle("f", &plan(1, "gone"), true), "its worker was dropped meanwhile");
    assert_eq!(creating(&state), 0, "no creation stays counted forever");
}

/// A restarted core over a store that holds `f`, worker `w-1` and data plane `dp-1`, where `w-1` still runs two
/// sandboxes of `f` and one of a function nobody registered.
async fn restarted(clock: &Arc<ManualClock>) -> (Arc<Core>, Arc<FakePeers>) {
    use crate::control_plane::store::{RegistryStore, StoreChange, StoredDataPlane, StoredWorker};
    let store = Arc::new(MemoryStore::default());
    let spec = FunctionSpec::from_json(br#"{"name":"f","image":"img"}"#).unwrap();
    let w = StoredWorker { name: "w-1".into(), address: "w-1".into(), cpu_millis: 2000, memory_mib: 4096 };
    let dp = StoredDataPlane { name: "dp-1".into(), grpc_address: "dp-1".into(), proxy_address: "dp-1:80".into() };
    for change in [StoreChange::SaveFunction(spec), StoreChange::SaveWorker(w), StoreChange::SaveDataPlane(dp)] {
        store.apply(change).await.unwrap();
    }
    let peers = FakePeers::new();
    let survivor = peers.worker_at("w-1");
    for (id, function) in [("f-old-1", "f"), ("f-old-2", "f"), ("g-old", "g")] {
        survivor.add_sandbox(id, function);
    }
    let connector = Arc::clone(&peers) as Arc<dyn PeerConnector>;
    let config = ControlPlaneConfig::default();
    let core = Arc::new(Core::new(config, Arc::clone(clock) as Arc<dyn Clock>, store, connector).unwrap());
    (core, peers)
}

#[tokio::test]
async fn a_restarted_core_adopts_what_survived_kills_the_rest_and_resyncs_the_data_planes() {
    let clock = Arc::new(ManualClock::default());
    let (core, peers) = restarted(&clock).await;
    assert_eq!(core.function("f").map(|f| f.status.ready), Some(0), "the function is back before any worker");
    core.reconstruct().await;
    let view = core.function("f").unwrap();
    let ids: Vec<&str> = view.status.sandboxes.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["f-old-1", "f-old-2"]);
    assert_eq!(placed_on(&core, "w-1"), 2, "the adopted sandboxes hold their resources");
    let calls = peers
        .journal()
        .wait_until("g's sandbox killed and f's set on dp-1", |calls| {
            calls.iter().any(|sent| killed(sent) == Some("g-old"))
                && pushed(calls, "dp-1", "f").last().is_some_and(|set| set.len() == 2)
        })
        .await;
    assert!(!calls.iter().any(|sent| created(sent).is_some()), "nothing created twice: {calls:?}");
    assert_eq!(calls.iter().filter_map(killed).collect::<Vec<_>>(), ["g-old"]);
}

#[tokio::test]
async fn adopted_sandboxes_stay_for_a_stable_window_whatever_the_traffic() {
    let clock = Arc::new(ManualClock::default());
    let (core, peers) = restarted(&clock).await;
    core.reconstruct().await;
    let window = core.config.autoscaler.stable_window;
    let tick = core.config.autoscaler.tick;
    // Traffic for one sandbox: the autoscaler, which has seen nothing before, would remove the other at once.
    let one = FunctionLoad { function: "f".into(), average_concurrency: 0.3, ..FunctionLoad::default() };
    while clock.now() + tick < window {
        clock.advance(tick);
        core.report_load(LoadReport { data_plane: "dp-1".into(), functions: vec![one.clone()] }).unwrap();
        core.tick().await;
        // A removal runs in a task of its own: let it run before the next tick.
        for _ in 0..16 {
            tokio::task::yield_now().await;
        }
    }
    assert_eq!(core.function("f").unwrap().status.ready, 2, "scaled down before a stable window passed");
    assert!(!peers.journal().calls().iter().any(|sent| killed(sent).is_some_and(|id| id.starts_with("f-"))));
    for _ in 0..(2 * window.as_millis() / tick.as_millis().max(1)) {
        clock.advance(tick);
        core.tick().await;
    }
    peers
        .journal()
        .wait_until("f scaled to zero once the window passed", |calls| {
            calls.iter().filter(|sent| killed(sent).is_some_and(|id| id.starts_with("f-"))).count() == 2
        })
        .await;
}

#[tokio::test]
async fn sandbox_ids_differ_across_restarts() {
    let cluster = Cluster::with(&["w-1"]);
    let id = cluster.cold_started().await.sandbox_id;
    assert!(id.starts_with(&format!("f-{:x}-", cluster.core.incarnation())), "{id}");
}

/// Registers `f` with one sandbox on each of `w-1` and `w-2` (attached), and both data planes; returns the
/// cluster, the leases of the workers, and the sandbox on `w-2`.
async fn attached_cluster() -> (Cluster, [Lease; 2], String) {
    let cluster = Cluster::new();
    let leases = ["w-1", "w-2"].map(|name| cluster.core.attach_worker(worker(name)).unwrap());
    for name in DATA_PLANES {
        cluster.register_data_plane(name);
    }
    let survivor = two_sandboxes_everywhere(&cluster).await;
    (cluster, leases, survivor)
}

fn worker_names(core: &Core) -> Vec<String> {
    core.workers().into_iter().map(|w| w.name).collect()
}

#[tokio::test]
async fn the_end_of_a_workers_attachment_drops_it_at_once_and_pushes_its_sandboxes_out() {
    let (cluster, [lease, _], survivor) = attached_cluster().await;
    let mut membership = cluster.core.membership();
    // No time passes: only the stream's end can explain the drop.
    cluster.core.detach(&lease, "lost its connection");
    assert_eq!(worker_names(&cluster.core), ["w-2"]);
    assert_eq!(membership.borrow_and_update().workers, 1, "the membership watch sees it");
    let left: Vec<String> = cluster.core.function("f").unwrap().status.sandboxes.into_iter().map(|s| s.id).collect();
    assert_eq!(left, std::slice::from_ref(&survivor), "its sandbox goes with it");
    cluster.only_everywhere(&survivor).await;
    assert!(matches!(cluster.core.attached_heartbeat(&lease, 1), Err(PeerError::Unknown(_))), "it must attach again");
}

#[tokio::test]
async fn the_end_of_a_replaced_attachment_keeps_the_newer_registration() {
    let (cluster, [old, _], _) = attached_cluster().await;
    let new = cluster.core.attach_worker(worker("w-1")).unwrap();
    assert!(new.registration() > old.registration());
    tokio::time::timeout(Duration::from_secs(10), old.released()).await.expect("the replaced lease is released");
    assert!(matches!(cluster.core.attached_heartbeat(&old, 1), Err(PeerError::Unknown(_))));
    let before = cluster.peers.journal().calls().len();
    cluster.core.detach(&old, "lost its connection");
    assert_eq!(worker_names(&cluster.core), ["w-1", "w-2"], "the newer registration stays");
    assert_eq!(placed_on(&cluster.core, "w-1"), 1, "with what is placed on it");
    assert_eq!(cluster.core.function("f").unwrap().status.sandboxes.len(), 2);
    cluster.core.attached_heartbeat(&new, 1).unwrap();
    let since = cluster.peers.journal().calls().split_off(before);
    assert!(pushed(&since, "dp-1", "f").is_empty(), "nothing is pushed for a stale attachment's end");
}

#[tokio::test]
async fn the_heartbeat_deadline_drops_a_silent_attached_peer_and_ends_its_attachment() {
    let (cluster, [quiet, chatty], survivor) = attached_cluster().await;
    let dp = DataPlaneInfo { name: "dp-3".into(), grpc_address: "dp-3".into(), proxy_address: "dp-3:80".into() };
    let silent_dp = cluster.core.attach_data_plane(dp).unwrap();
    let timeout = cluster.core.config.worker_timeout.max(cluster.core.config.data_plane_timeout);
    cluster.clock.advance(timeout / 2);
    cluster.core.attached_heartbeat(&chatty, 1).unwrap();
    cluster.data_planes_report();
    cluster.clock.advance(timeout / 2 + Duration::from_millis(1));
    cluster.core.expire_peers().await;
    assert_eq!(worker_names(&cluster.core), ["w-2"], "a worker silent past worker_timeout is dropped");
    let data_planes: Vec<String> = cluster.core.data_planes().into_iter().map(|d| d.name).collect();
    assert_eq!(data_planes, DATA_PLANES, "so is a silent data plane; reporting ones stay");
    for lease in [&quiet, &silent_dp] {
        tokio::time::timeout(Duration::from_secs(10), lease.released()).await.expect("its attachment is ended");
    }
    let left: Vec<String> = cluster.core.function("f").unwrap().status.sandboxes.into_iter().map(|s| s.id).collect();
    assert_eq!(left, [survivor]);
    cluster.core.attached_heartbeat(&chatty, 1).unwrap();
}

#[tokio::test]
async fn failovers_the_data_planes_report_are_summed_per_function() {
    let cluster = Cluster::with(&["w-1"]);
    cluster.register(r#"{"name":"f","image":"img"}"#).await;
    for (data_plane, failovers) in [("dp-1", 2), ("dp-2", 3), ("dp-1", 1)] {
        let load = FunctionLoad { function: "f".into(), failovers, ..FunctionLoad::default() };
        cluster.core.report_load(LoadReport { data_plane: data_plane.into(), functions: vec![load] }).unwrap();
    }
    assert_eq!(cluster.core.function("f").unwrap().status.counters.failovers, 6);
}

#[tokio::test]
async fn taking_the_lead_takes_in_what_the_registry_holds_now() {
    use crate::control_plane::store::{RegistryStore, StoreChange};
    let store = Arc::new(MemoryStore::default());
    store.apply(StoreChange::SaveFunction(FunctionSpec::new("f", "img"))).await.unwrap();
    let (clock, peers) = (Arc::new(ManualClock::default()), FakePeers::new());
    let connector = Arc::clone(&peers) as Arc<dyn PeerConnector>;
    let config = ControlPlaneConfig::default();
    let shared = Arc::clone(&store) as Arc<dyn RegistryStore>;
    let core = Arc::new(Core::new(config, clock as Arc<dyn Clock>, shared, connector).unwrap());
    // What another replica's leader committed while this one followed.
    store.apply(StoreChange::SaveFunction(FunctionSpec::new("g", "img"))).await.unwrap();
    store.apply(StoreChange::DeleteFunction("f".into())).await.unwrap();
    assert!(core.function("f").is_some() && core.function("g").is_none(), "a follower's core lags");
    core.take_leadership().await;
    let names: Vec<String> = core.functions().into_iter().map(|f| f.spec.name).collect();
    assert_eq!(names, ["g"]);
}
