//! Three replicas over the recording in-memory network ([`FakeRaftNetwork`]): the election and the refusal on a
//! follower as calls between replicas, without sockets.

use std::collections::BTreeMap;
use std::path::Path;

use contracts::api::FunctionSpec;
use contracts::config::{ReplicationConfig, SqliteStoreConfig};
use openraft::{RPCTypes, ServerState};

use super::ReplicatedStore;
use crate::control_plane::store::{RegistryStore, StoreChange, StoreError};
use crate::test_util::raft::{FakeRaftNetwork, RaftCall};
use crate::test_util::script::PATIENCE;

async fn three(dir: &Path, network: &FakeRaftNetwork) -> BTreeMap<u64, ReplicatedStore> {
    let peers: BTreeMap<u64, String> = (1..=3).map(|id| (id, format!("replica-{id}:1"))).collect();
    let mut stores = BTreeMap::new();
    for id in 1..=3 {
        let sqlite = SqliteStoreConfig { path: dir.join(format!("{id}.sqlite")), ..Default::default() };
        let config = ReplicationConfig::new(id, peers.clone());
        let store = ReplicatedStore::start(&config, &sqlite, network.factory(id)).await.unwrap();
        network.register(id, store.raft().clone());
        stores.insert(id, store);
    }
    stores
}

/// Waits until `store` sees a leader other than `not` that is not itself a follower's guess: the leader's own
/// metrics say it leads.
async fn leader_other_than(stores: &BTreeMap<u64, ReplicatedStore>, asking: u64, not: Option<u64>) -> u64 {
    let wait = stores[&asking].raft().wait(Some(PATIENCE));
    let seen = wait.metrics(|m| m.current_leader.is_some_and(|l| Some(l) != not), "a leader").await.unwrap();
    let leader = seen.current_leader.expect("waited for one");
    let wait = stores[&leader].raft().wait(Some(PATIENCE));
    wait.state(ServerState::Leader, "the leader leads").await.unwrap();
    leader
}

fn save(name: &str) -> StoreChange {
    StoreChange::SaveFunction(FunctionSpec::new(name, "image"))
}

async fn stop_all(stores: &BTreeMap<u64, ReplicatedStore>) {
    for store in stores.values() {
        store.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_was_voted_for_and_a_follower_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let network = FakeRaftNetwork::default();
    let stores = three(dir.path(), &network).await;
    let leader = leader_other_than(&stores, 1, None).await;
    let votes = |calls: &[RaftCall]| -> usize {
        let delivered =
            |to| calls.iter().any(|c| c.rpc == RPCTypes::Vote && c.from == leader && c.to == to && c.delivered);
        (1..=3).filter(|id| *id != leader).filter(|id| delivered(*id)).count()
    };
    // A majority of three is the leader and one other.
    network.journal().wait_until("the leader had a vote delivered", |calls| votes(calls) >= 1).await;
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    leader_other_than(&stores, follower, None).await;
    let err = stores[&follower].apply(save("f")).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::NotLeader { leader: Some((id, address)) }
        if *id == leader && *address == format!("replica-{leader}:1")),
        "{err:?}"
    );
    stop_all(&stores).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_leader_is_replaced_and_the_new_one_commits() {
    let dir = tempfile::tempdir().unwrap();
    let network = FakeRaftNetwork::default();
    let stores = three(dir.path(), &network).await;
    let old = leader_other_than(&stores, 1, None).await;
    network.cut(old);
    let survivor = (1..=3).find(|id| *id != old).unwrap();
    let new = leader_other_than(&stores, survivor, Some(old)).await;
    let index = stores[&new].write(save("after")).await.unwrap();
    for id in (1..=3).filter(|id| *id != old) {
        stores[&id].raft().wait(Some(PATIENCE)).applied_index_at_least(Some(index), "applied").await.unwrap();
        let names: Vec<String> = stores[&id].load().unwrap().functions.into_iter().map(|f| f.name).collect();
        assert_eq!(names, ["after"], "replica {id}");
    }
    let undelivered =
        network.journal().calls().iter().filter(|c| !c.delivered && (c.to == old || c.from == old)).count();
    assert!(undelivered > 0, "calls to or from the cut-off leader fail");
    stop_all(&stores).await;
}
