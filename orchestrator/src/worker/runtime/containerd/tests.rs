//! The containerd runtime's logic against the recording fakes: step order and breakdown, clean-up after a
//! failed step, crash reports, reaping what a previous worker left, the image cache.

use std::sync::Arc;

use super::*;
use crate::test_util::containerd::{FakeContainerd, FakeNetwork, IMAGE};
use crate::test_util::contract;

struct Fixture {
    api: Arc<FakeContainerd>,
    network: Arc<FakeNetwork>,
    runtime: ContainerdRuntime,
}

async fn fixture_with(api: FakeContainerd) -> Fixture {
    let (api, network) = (Arc::new(api), Arc::new(FakeNetwork::default()));
    let runtime = ContainerdRuntime::start(
        Arc::clone(&api) as Arc<dyn ContainerdApi>,
        Arc::clone(&network) as Arc<dyn SandboxNetwork>,
        ContainerdConfig::default(),
        "worker-a",
    )
    .await
    .expect("the fake answers");
    Fixture { api, network, runtime }
}

async fn fixture() -> Fixture {
    fixture_with(FakeContainerd::default()).await
}

/// The network's attach and detach calls (what it made and removed), without takes from the pool and prepare.
fn attached(network: &FakeNetwork) -> Vec<String> {
    let calls = network.journal().calls();
    calls.into_iter().filter(|call| call.starts_with("attach ") || call.starts_with("detach ")).collect()
}

/// The calls named, in order, without their details.
fn names(calls: &[String]) -> Vec<&str> {
    calls.iter().filter_map(|call| call.split(' ').next()).collect()
}

#[tokio::test]
async fn creates_in_the_breakdowns_order_and_serves_on_the_sandboxs_address() {
    let f = fixture().await;
    let sandbox = f.runtime.create(contract::spec("s-1", IMAGE, &[])).await.expect("created");
    assert_eq!(sandbox.address, "10.0.0.1:8080".parse().unwrap());
    let calls = f.api.journal().calls();
    assert_eq!(
        names(&calls),
        [
            "containers_labelled",
            "image_target",
            "read_content",
            "read_content",
            "create_lease",
            "prepare_snapshot",
            "create_container",
            "create_task",
            "start_task"
        ]
    );
    assert!(calls.contains(&"prepare_snapshot s-1 on sha256:layer under dirigent-sandbox-s-1".to_owned()), "{calls:?}");
    assert!(calls.contains(&"create_container s-1 runc dirigent.owner=worker-a".to_owned()), "{calls:?}");
    assert_eq!(f.network.journal().calls(), ["prepare", "take none", "attach dirigent-s-1"]);
    let steps: Vec<&str> = f.runtime.creation_steps("s-1").iter().map(|(name, _)| *name).collect();
    assert_eq!(steps, ["image", "snapshot", "container", "network", "task", "start"]);
}

#[tokio::test]
async fn a_failed_step_removes_what_the_steps_before_it_made() {
    let api = FakeContainerd::default();
    api.fail("start_task");
    let f = fixture_with(api).await;
    let created = f.runtime.create(contract::spec("s-1", IMAGE, &[])).await;
    let err = created.expect_err("start fails").to_string();
    assert!(err.contains("starting the task") && err.contains("s-1"), "{err}");
    let calls = f.api.journal().calls();
    let after: Vec<&str> = names(&calls).into_iter().skip_while(|&name| name != "start_task").collect();
    assert_eq!(after, ["start_task", "delete_task", "delete_container", "remove_snapshot", "delete_lease"]);
    assert_eq!(attached(&f.network), ["attach dirigent-s-1", "detach dirigent-s-1"]);
    assert!(f.runtime.list().is_empty());
}

#[tokio::test]
async fn a_missing_image_says_how_to_import_it() {
    let f = fixture().await;
    let err = f.runtime.create(contract::spec("s-1", "nowhere.local/x:1", &[])).await.expect_err("unknown").to_string();
    assert!(err.contains("ctr -n dirigent images import") && err.contains("nowhere.local/x:1"), "{err}");
    assert!(!names(&f.api.journal().calls()).contains(&"create_lease"), "nothing is made for a missing image");
}

#[tokio::test]
async fn a_crash_is_reported_after_the_sandbox_is_released() {
    let f = fixture().await;
    let mut exits = f.runtime.exits();
    f.runtime.create(contract::spec("s-1", IMAGE, &[])).await.expect("created");
    f.api.end("s-1", 3);
    let exited = exits.recv().await.expect("an exit");
    assert_eq!((exited.id.as_str(), exited.reason.as_str()), ("s-1", "exit status 3"));
    let calls = f.api.journal().calls();
    for call in ["delete_task s-1", "delete_container s-1", "remove_snapshot s-1", "delete_lease dirigent-sandbox-s-1"]
    {
        assert!(calls.contains(&call.to_owned()), "{call} missing from {calls:?}");
    }
    assert!(f.runtime.list().is_empty());
}

#[tokio::test]
async fn destroy_kills_and_releases_without_an_exit_and_shutdown_removes_the_bridge() {
    let f = fixture().await;
    let mut exits = f.runtime.exits();
    f.runtime.create(contract::spec("s-1", IMAGE, &[])).await.expect("created");
    f.runtime.destroy("s-1").await.expect("destroyed");
    assert!(f.api.journal().calls().contains(&"kill_task s-1".to_owned()));
    assert_eq!(attached(&f.network), ["attach dirigent-s-1", "detach dirigent-s-1"]);
    f.runtime.shutdown().await;
    assert_eq!(f.network.journal().calls().last().map(String::as_str), Some("shutdown"));
    assert!(exits.try_recv().is_err(), "a destroy is no exit");
}

#[tokio::test]
async fn starting_removes_what_a_previous_worker_left() {
    let api = FakeContainerd::default();
    api.leave("old-1");
    let f = fixture_with(api).await;
    let calls = f.api.journal().calls();
    assert_eq!(calls[0], "containers_labelled dirigent.owner=worker-a");
    for call in ["kill_task old-1", "delete_task old-1", "delete_container old-1", "remove_snapshot old-1"] {
        assert!(calls.contains(&call.to_owned()), "{call} missing from {calls:?}");
    }
    assert_eq!(f.network.journal().calls(), ["detach dirigent-old-1", "prepare"], "reaped, then the pool prepared");
}

#[tokio::test]
async fn a_pooled_namespace_serves_the_sandbox_and_is_removed_with_it() {
    let f = fixture().await;
    f.network.pool("dirigent-pool-7-0", std::net::IpAddr::from([10, 0, 0, 9]));
    let sandbox = f.runtime.create(contract::spec("s-1", IMAGE, &[])).await.expect("created");
    assert_eq!(sandbox.address, "10.0.0.9:8080".parse().unwrap());
    f.runtime.destroy("s-1").await.expect("destroyed");
    assert_eq!(attached(&f.network), ["detach dirigent-pool-7-0"], "no attach on the cold start; its pooled one goes");
}

#[tokio::test]
async fn an_image_is_looked_up_once() {
    let f = fixture().await;
    f.runtime.create(contract::spec("s-1", IMAGE, &[])).await.expect("created");
    f.runtime.create(contract::spec("s-2", IMAGE, &[])).await.expect("created");
    let lookups = f.api.journal().calls().iter().filter(|call| call.starts_with("image_target")).count();
    assert_eq!(lookups, 1);
}
