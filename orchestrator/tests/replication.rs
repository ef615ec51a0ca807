//! The replicated registry: three replicas in this process over real loopback gRPC, each with its SQLite file
//! in a temporary folder. Readiness is openraft's metrics (a leader agreed, an index applied), never a sleep.

use std::collections::BTreeMap;
use std::sync::Arc;

use contracts::api::FunctionSpec;
use contracts::config::{ControlPlaneConfig, ReplicationConfig, SqliteStoreConfig, StoreConfig};
use orchestrator::control_plane::core::RegistryError;
use orchestrator::control_plane::replication::ReplicatedStore;
use orchestrator::control_plane::store::{RegistryStore, StoreChange, StoreError, StoredRegistry};
use orchestrator::control_plane::{ControlPlane, Core};
use orchestrator::test_util::replicas::{Replicas, agreed_leader};
use orchestrator::test_util::script::PATIENCE;
use tokio_util::sync::CancellationToken;

fn save(name: &str) -> StoreChange {
    StoreChange::SaveFunction(FunctionSpec::new(name, "image"))
}

fn names(registry: &StoredRegistry) -> Vec<&str> {
    registry.functions.iter().map(|f| f.name.as_str()).collect()
}

/// Writes `name` on `leader` and waits until every running replica applied it.
async fn commit(replicas: &Replicas, leader: u64, name: &str) {
    let written = replicas.store(leader).write(save(name)).await;
    let index = written.unwrap_or_else(|e| panic!("writing {name} on {leader}: {e}"));
    for id in replicas.running() {
        replicas.applied(id, index).await;
    }
}

fn followers(replicas: &Replicas, leader: u64) -> Vec<u64> {
    replicas.running().into_iter().filter(|id| *id != leader).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_on_the_leader_reaches_every_state_machine() {
    let dir = tempfile::tempdir().unwrap();
    let mut replicas = Replicas::start(3, dir.path()).await;
    let leader = replicas.leader().await;
    commit(&replicas, leader, "hello").await;
    for id in replicas.running() {
        assert_eq!(names(&replicas.store(id).load().unwrap()), ["hello"], "replica {id}");
    }
    assert_eq!(replicas.store(leader).writes(), 1);
    replicas.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_on_a_follower_is_refused_naming_the_leader() {
    let dir = tempfile::tempdir().unwrap();
    let mut replicas = Replicas::start(3, dir.path()).await;
    let leader = replicas.leader().await;
    let follower = followers(&replicas, leader)[0];
    let err = replicas.store(follower).apply(save("nope")).await.unwrap_err();
    let expected = (leader, replicas.address(leader).to_owned());
    assert!(matches!(&err, StoreError::NotLeader { leader: Some(named) } if *named == expected), "{err:?}");
    assert!(err.to_string().contains(replicas.address(leader)), "{err}");
    assert_eq!(replicas.store(follower).writes(), 0);
    replicas.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_takes_writes_after_the_leader_stops() {
    let dir = tempfile::tempdir().unwrap();
    let mut replicas = Replicas::start(3, dir.path()).await;
    let first = replicas.leader().await;
    commit(&replicas, first, "before").await;
    replicas.stop(first).await;
    let second = replicas.leader().await;
    assert_ne!(second, first);
    commit(&replicas, second, "after").await;
    for id in replicas.running() {
        assert_eq!(names(&replicas.store(id).load().unwrap()), ["after", "before"], "replica {id}");
    }
    replicas.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_replica_catches_up_from_its_files_and_the_leader() {
    let dir = tempfile::tempdir().unwrap();
    let mut replicas = Replicas::start(3, dir.path()).await;
    let leader = replicas.leader().await;
    commit(&replicas, leader, "one").await;
    let follower = followers(&replicas, leader)[0];
    replicas.stop(follower).await;
    // Committed by the two left: a majority.
    commit(&replicas, leader, "two").await;
    let index = replicas.store(leader).write(StoreChange::DeleteFunction("one".into())).await.unwrap();
    replicas.restart(follower).await;
    replicas.applied(follower, index).await;
    let restarted = replicas.store(follower).load().unwrap();
    assert_eq!(names(&restarted), ["two"]);
    assert_eq!(restarted, replicas.store(leader).load().unwrap());
    replicas.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_cluster_restarted_keeps_what_was_committed() {
    let dir = tempfile::tempdir().unwrap();
    let mut replicas = Replicas::start(3, dir.path()).await;
    let leader = replicas.leader().await;
    commit(&replicas, leader, "kept").await;
    replicas.stop_all().await;
    for id in 1..=3 {
        replicas.restart(id).await;
    }
    for id in 1..=3 {
        assert_eq!(names(&replicas.store(id).load().unwrap()), ["kept"], "replica {id} before any leader");
    }
    let leader = replicas.leader().await;
    commit(&replicas, leader, "more").await;
    assert_eq!(names(&replicas.store(leader).load().unwrap()), ["kept", "more"]);
    replicas.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_behind_a_purged_log_catches_up_from_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let mut replicas = Replicas::start(3, dir.path()).await;
    let leader = replicas.leader().await;
    commit(&replicas, leader, "one").await;
    let follower = followers(&replicas, leader)[0];
    replicas.stop(follower).await;
    commit(&replicas, leader, "two").await;
    let index = replicas.store(leader).write(save("three")).await.unwrap();
    let raft = replicas.store(leader).raft();
    raft.trigger().snapshot().await.unwrap();
    let wait = raft.wait(Some(PATIENCE));
    wait.metrics(|m| m.snapshot.is_some_and(|s| s.index >= index), "the leader's snapshot").await.unwrap();
    raft.trigger().purge_log(index).await.unwrap();
    wait.metrics(|m| m.purged.is_some_and(|p| p.index >= index), "the leader's log purged").await.unwrap();
    replicas.restart(follower).await;
    replicas.applied(follower, index).await;
    let installed = replicas.store(follower).raft().metrics().borrow().snapshot;
    assert!(installed.is_some_and(|s| s.index >= index), "caught up from a snapshot: {installed:?}");
    let caught_up = replicas.store(follower).load().unwrap();
    assert_eq!(names(&caught_up), ["one", "three", "two"]);
    replicas.stop_all().await;
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A control plane that is replica `id` of `peers`, its file in `dir`, serving until `shutdown`.
async fn control_plane(
    id: u64,
    peers: &BTreeMap<u64, String>,
    dir: &std::path::Path,
    shutdown: &CancellationToken,
) -> Plane {
    let sqlite = SqliteStoreConfig { path: dir.join(format!("control-plane-{id}.sqlite")), ..Default::default() };
    let config = ControlPlaneConfig {
        grpc_listen: peers[&id].parse().unwrap(),
        http_listen: "127.0.0.1:0".parse().unwrap(),
        store: StoreConfig::Sqlite(sqlite),
        replication: Some(ReplicationConfig::new(id, peers.clone())),
        ..Default::default()
    };
    let bound = ControlPlane::bind(config).await.unwrap();
    let (core, replica) = (Arc::clone(bound.core()), Arc::clone(bound.replica().expect("replication is set")));
    let api = bound.http_address().to_owned();
    let serving = bound.serve(shutdown.clone());
    let serving = tokio::spawn(async move { serving.await.expect("the control plane serves") });
    Plane { core, replica, api, serving }
}

/// A control plane that is a replica.
struct Plane {
    core: Arc<Core>,
    replica: Arc<ReplicatedStore>,
    /// Its HTTP API's address.
    api: String,
    serving: tokio::task::JoinHandle<()>,
}

/// Three control planes, replicas of one registry on loopback ports, each stopped by its own token.
struct Cluster {
    peers: BTreeMap<u64, String>,
    planes: BTreeMap<u64, Plane>,
    stops: BTreeMap<u64, CancellationToken>,
}

impl Cluster {
    /// Starts them, their files in `dir`; `shutdown` stops them all.
    async fn start(dir: &std::path::Path, shutdown: &CancellationToken) -> Self {
        let peers: BTreeMap<u64, String> = (1..=3).map(|id| (id, format!("127.0.0.1:{}", free_port()))).collect();
        let (mut planes, mut stops) = (BTreeMap::new(), BTreeMap::new());
        for id in 1..=3 {
            let stop = shutdown.child_token();
            planes.insert(id, control_plane(id, &peers, dir, &stop).await);
            stops.insert(id, stop);
        }
        Self { peers, planes, stops }
    }
}

/// The leader the running planes agree on, once its core has taken the lead (confirmed by the others).
async fn leader_of(planes: &BTreeMap<u64, Plane>) -> u64 {
    let leader = agreed_leader(&planes.values().map(|plane| plane.replica.raft()).collect::<Vec<_>>()).await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !planes[&leader].core.leads() {
        assert!(tokio::time::Instant::now() < deadline, "control plane {leader} never took the lead");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    leader
}

/// Stops every plane and waits for each to end cleanly.
async fn stop_all(shutdown: &CancellationToken, planes: BTreeMap<u64, Plane>) {
    shutdown.cancel();
    for plane in planes.into_values() {
        plane.serving.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_control_planes_replicate_a_registration_over_their_own_grpc_servers() {
    let dir = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();
    let Cluster { planes, .. } = Cluster::start(dir.path(), &shutdown).await;
    let leader = leader_of(&planes).await;
    planes[&leader].core.register_function(FunctionSpec::new("hello", "image")).await.unwrap();
    // Committed once the registration returned, so at or below the leader's last index.
    let committed = planes[&leader].replica.raft().metrics().borrow().last_log_index.expect("an entry");
    for (id, Plane { replica, .. }) in &planes {
        replica.raft().wait(Some(PATIENCE)).applied_index_at_least(Some(committed), "applied").await.unwrap();
        assert_eq!(names(&replica.load().unwrap()), ["hello"], "control plane {id}");
    }
    // Agreed again: a replica that started late may have stood for election meanwhile.
    let leader = leader_of(&planes).await;
    let follower = *planes.keys().find(|id| **id != leader).unwrap();
    assert_eq!(
        (planes[&leader].core.health().role, planes[&follower].core.health().role),
        ("leader".into(), "follower".into())
    );
    let refused = planes[&follower].core.register_function(FunctionSpec::new("elsewhere", "image")).await.unwrap_err();
    assert!(
        matches!(&refused, RegistryError::Store(StoreError::NotLeader { leader: Some((id, _)) }) if *id == leader),
        "a follower's core refuses a registration, naming the leader (its API forwards): {refused:?}"
    );
    stop_all(&shutdown, planes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_given_every_replica_is_sent_from_a_follower_to_the_leader() {
    use orchestrator::peers::{GrpcControlPlane, WorkerUplink};
    use orchestrator::proto::dirigent::WorkerInfo;
    let dir = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();
    let Cluster { peers, planes, .. } = Cluster::start(dir.path(), &shutdown).await;
    let leader = leader_of(&planes).await;
    // One commit first, then agreed again: a replica that started late may have stood for election meanwhile.
    planes[&leader].core.register_function(FunctionSpec::new("hello", "image")).await.unwrap();
    let leader = leader_of(&planes).await;
    let follower = *planes.keys().find(|id| **id != leader).unwrap();
    let others = peers.keys().filter(|id| **id != follower).map(|id| peers[id].as_str());
    let listed: Vec<&str> = std::iter::once(peers[&follower].as_str()).chain(others).collect();
    let uplink = GrpcControlPlane::connect(&listed.join(",")).unwrap();
    let info = WorkerInfo { name: "w".into(), address: "127.0.0.1:1".into(), cpu_millis: 1000, memory_mib: 512 };
    let refused = uplink.register_worker(info.clone()).await.expect_err("a follower refuses peers");
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition, "{refused:?}");
    assert_eq!(uplink.current(), peers[&leader], "the refusal names the leader, and the uplink goes there");
    uplink.register_worker(info).await.expect("the leader registers the worker");
    let workers: Vec<String> = planes[&leader].core.workers().into_iter().map(|w| w.name).collect();
    assert_eq!(workers, ["w"]);
    stop_all(&shutdown, planes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_takes_in_what_the_old_one_registered() {
    let dir = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();
    let Cluster { mut planes, stops, .. } = Cluster::start(dir.path(), &shutdown).await;
    let leader = leader_of(&planes).await;
    planes[&leader].core.register_function(FunctionSpec::new("hello", "image")).await.unwrap();
    let leader = leader_of(&planes).await;
    // Registered after every core loaded its store: only the Raft log brings it to the others.
    planes[&leader].core.register_function(FunctionSpec::new("late", "image")).await.unwrap();
    stops[&leader].cancel();
    planes.remove(&leader).unwrap().serving.await.unwrap();
    let successor = leader_of(&planes).await;
    assert_ne!(successor, leader);
    let core = &planes[&successor].core;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while core.function("late").is_none() {
        assert!(tokio::time::Instant::now() < deadline, "the new leader's core never took in `late`");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(core.function("hello").is_some());
    stop_all(&shutdown, planes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_followers_api_forwards_to_the_leader() {
    use contracts::api::{FUNCTIONS_PATH, FunctionView, HEALTH_PATH, Health, WORKERS_PATH, WorkerList};
    use orchestrator::control_plane::api::forward::FORWARDED_HEADER;
    let dir = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();
    let Cluster { planes, .. } = Cluster::start(dir.path(), &shutdown).await;
    let leader = leader_of(&planes).await;
    planes[&leader].core.register_function(FunctionSpec::new("first", "image")).await.unwrap();
    // Agreed again: a replica that started late may have stood for election meanwhile.
    let leader = leader_of(&planes).await;
    let follower = &planes[planes.keys().find(|id| **id != leader).unwrap()];
    let client = reqwest::Client::new();
    let url = |path: &str| format!("http://{}{path}", follower.api);
    let body = serde_json::to_vec(&FunctionSpec::new("through-a-follower", "image")).unwrap();
    let created = client.post(url(FUNCTIONS_PATH)).body(body).send().await.unwrap();
    assert_eq!(created.status(), reqwest::StatusCode::CREATED);
    let view: FunctionView = created.json().await.unwrap();
    assert_eq!(view.spec.name, "through-a-follower");
    assert!(planes[&leader].core.function("through-a-follower").is_some(), "the leader registered it");
    let duplicate = serde_json::to_vec(&FunctionSpec::new("first", "other-image")).unwrap();
    let refused = client.post(url(FUNCTIONS_PATH)).body(duplicate).send().await.unwrap();
    assert_eq!(refused.status(), reqwest::StatusCode::CONFLICT, "the leader's answer, passed on");
    let workers: WorkerList = client.get(url(WORKERS_PATH)).send().await.unwrap().json().await.unwrap();
    assert_eq!(workers.workers.len(), planes[&leader].core.workers().len());
    let health: Health = client.get(url(HEALTH_PATH)).send().await.unwrap().json().await.unwrap();
    assert_eq!(health.role, "follower", "/health is the follower's own");
    let looped = client.get(url(FUNCTIONS_PATH)).header(FORWARDED_HEADER, "1").send().await.unwrap();
    assert_eq!(looped.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE, "a forwarded request is not passed on");
    stop_all(&shutdown, planes).await;
}
