//! The replicated registry: three replicas in this process over real loopback gRPC, each with its SQLite file
//! in a temporary folder. Readiness is openraft's metrics (a leader agreed, an index applied), never a sleep.

use contracts::api::FunctionSpec;
use orchestrator::control_plane::store::{RegistryStore, StoreChange, StoreError, StoredRegistry};
use orchestrator::test_util::replicas::Replicas;
use orchestrator::test_util::script::PATIENCE;

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
