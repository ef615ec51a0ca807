use std::collections::BTreeSet;
use std::path::PathBuf;

use openraft::{CommittedLeaderId, Membership};

use super::*;
use crate::control_plane::store::StoreChange;
use crate::control_plane::store::sqlite::Database;
use crate::test_util::store::{data_plane, function, worker};

fn log_id(index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(1, 1), index)
}

/// Entries carrying `payloads`, at indexes from `first` on.
fn entries(first: u64, payloads: Vec<EntryPayload<TypeConfig>>) -> Vec<Entry> {
    (first..).zip(payloads).map(|(index, payload)| Entry { log_id: log_id(index), payload }).collect()
}

fn normal(changes: Vec<StoreChange>) -> Vec<EntryPayload<TypeConfig>> {
    changes.into_iter().map(EntryPayload::Normal).collect()
}

fn opened(dir: &tempfile::TempDir, name: &str) -> (PathBuf, StateMachine) {
    let path = dir.path().join(name);
    let machine = StateMachine::open(&path, Synchronous::Normal).unwrap();
    (path, machine)
}

fn load(path: &Path) -> StoredRegistry {
    Database::read_only(path).unwrap().load().unwrap()
}

#[tokio::test]
async fn applies_every_kind_of_change_to_the_registry_tables() {
    let dir = tempfile::tempdir().unwrap();
    let (path, mut machine) = opened(&dir, "replica.sqlite");
    let saves = normal(vec![
        StoreChange::SaveFunction(function("f", 1)),
        StoreChange::SaveFunction(function("g", 1)),
        StoreChange::SaveWorker(worker("w", 1)),
        StoreChange::SaveWorker(worker("v", 1)),
        StoreChange::SaveDataPlane(data_plane("d", 1)),
        StoreChange::SaveDataPlane(data_plane("e", 1)),
    ]);
    let answers = machine.apply(entries(1, saves)).await.unwrap();
    assert_eq!(answers.len(), 6, "one answer per entry");
    let registry = load(&path);
    assert_eq!(registry.functions, [function("f", 1), function("g", 1)]);
    assert_eq!(registry.workers, [worker("v", 1), worker("w", 1)]);
    assert_eq!(registry.data_planes, [data_plane("d", 1), data_plane("e", 1)]);
    let changes = normal(vec![
        StoreChange::SaveFunction(function("f", 2)),
        StoreChange::DeleteFunction("g".into()),
        StoreChange::DeleteWorker("v".into()),
        StoreChange::DeleteDataPlane("e".into()),
        StoreChange::DeleteWorker("never-there".into()),
    ]);
    machine.apply(entries(7, changes)).await.unwrap();
    let expected = StoredRegistry {
        functions: vec![function("f", 2)],
        workers: vec![worker("w", 1)],
        data_planes: vec![data_plane("d", 1)],
    };
    assert_eq!(load(&path), expected);
    assert_eq!(machine.applied_state().await.unwrap().0, Some(log_id(11)));
}

#[tokio::test]
async fn keeps_the_membership_and_the_position_across_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (path, mut machine) = opened(&dir, "replica.sqlite");
    let membership = Membership::new(vec![BTreeSet::from([1, 2, 3])], None);
    let payloads = vec![
        EntryPayload::Membership(membership.clone()),
        EntryPayload::Blank,
        EntryPayload::Normal(StoreChange::SaveFunction(function("f", 1))),
    ];
    machine.apply(entries(0, payloads)).await.unwrap();
    drop(machine);
    let mut machine = StateMachine::open(&path, Synchronous::Normal).unwrap();
    let (applied, stored) = machine.applied_state().await.unwrap();
    assert_eq!(applied, Some(log_id(2)));
    assert_eq!(stored, StoredMembership::new(Some(log_id(0)), membership));
    assert_eq!(load(&path).functions, [function("f", 1)]);
}

#[tokio::test]
async fn a_snapshot_installed_elsewhere_replaces_that_registry() {
    let dir = tempfile::tempdir().unwrap();
    let (_, mut leader) = opened(&dir, "leader.sqlite");
    let changes = normal(vec![StoreChange::SaveFunction(function("f", 1)), StoreChange::SaveWorker(worker("w", 1))]);
    leader.apply(entries(1, changes)).await.unwrap();
    let snapshot = leader.get_snapshot_builder().await.build_snapshot().await.unwrap();
    assert_eq!(snapshot.meta.last_log_id, Some(log_id(2)));
    let current = leader.get_current_snapshot().await.unwrap().expect("the one just built");
    assert_eq!(current.meta, snapshot.meta);

    let (path, mut follower) = opened(&dir, "follower.sqlite");
    follower.apply(entries(1, normal(vec![StoreChange::SaveFunction(function("stale", 1))]))).await.unwrap();
    follower.install_snapshot(&snapshot.meta, snapshot.snapshot).await.unwrap();
    let registry = load(&path);
    assert_eq!((registry.functions, registry.workers), (vec![function("f", 1)], vec![worker("w", 1)]));
    assert_eq!(follower.applied_state().await.unwrap().0, Some(log_id(2)));
    let kept = follower.get_current_snapshot().await.unwrap().expect("the installed one");
    assert_eq!(kept.meta, snapshot.meta);
}
