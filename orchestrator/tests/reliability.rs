//! The reliability suite: under load, `kill -9` of a worker, a data plane, the control plane (restarted on
//! its embedded store), and the leader and a follower of three control-plane replicas, each on a cluster of real
//! role processes. No registered function may be lost, requests
//! must succeed again afterwards, no sandbox may leak, and the only requests that may fail are those in flight
//! when the kill happened. `cargo bench -p orchestrator --bench reliability` times the same scenarios.

mod support;

use support::chaos::{self, Scenario};

/// One cluster at a time: the scenarios share the machine's two cores and a sandbox port range.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn survives(scenario: Scenario) {
    let _serial = SERIAL.lock().await;
    let report = chaos::run(scenario).await;
    eprintln!("{report:#?}");
    assert!(report.functions_lost.is_empty(), "{}: functions lost: {:?}", scenario.name(), report.functions_lost);
    assert!(
        report.failed_after_kill.is_empty(),
        "{}: requests sent after the kill failed: {:?}",
        scenario.name(),
        report.failed_after_kill
    );
    assert!(report.succeeded_after_kill > 0, "{}: nothing succeeded after the kill", scenario.name());
    assert!(report.first_cold_start.is_some(), "{}: no cold start was served after the kill", scenario.name());
    assert_eq!(report.leaked_sandboxes, 0, "{}: sandboxes leaked", scenario.name());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_kill_loses_only_what_ran_on_it() {
    survives(Scenario::WorkerKill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_plane_kill_loses_only_what_went_through_it() {
    survives(Scenario::DataPlaneKill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_plane_restart_loses_nothing() {
    survives(Scenario::ControlPlaneRestart).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_kill_loses_nothing() {
    survives(Scenario::LeaderKill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_kill_loses_nothing() {
    survives(Scenario::FollowerKill).await;
}

/// The registry store's write counter from `/metrics`.
async fn store_writes(api: &str) -> u64 {
    let metrics = support::client().get(format!("http://{api}/metrics")).send().await.unwrap().text().await.unwrap();
    let prefix = format!("{} ", orchestrator::control_plane::metrics::STORE_WRITES);
    let line = metrics.lines().find_map(|line| line.strip_prefix(&prefix)).expect("the store-writes counter");
    line.trim().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_run_writes_nothing_to_the_store() {
    let _serial = SERIAL.lock().await;
    let mut cluster = chaos::Cluster::start().await;
    let name = format!("quiet-{}", std::process::id());
    assert_eq!(chaos::register_led(&cluster.api, &name, |s| (s.min_scale, s.max_scale) = (2, 2)).await, 201);
    let two = |v: &contracts::api::FunctionView| v.status.ready == 2;
    support::wait_for_function(&cluster.api, &name, std::time::Duration::from_secs(30), "two sandboxes", two).await;
    let before = store_writes(&cluster.api).await;
    assert!(before >= 1 + 2 + 2, "the function, the workers and the data planes are stored: {before}");
    let load = chaos::Load::start(cluster.proxies(), name.clone(), std::time::Duration::from_millis(5));
    // One second of load with heartbeats, load reports, autoscaler ticks and cold-start requests.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let outcomes = load.stop().await;
    assert!(outcomes.iter().filter(|o| o.error.is_none()).count() > 50, "the load ran");
    assert_eq!(store_writes(&cluster.api).await, before, "the invocation path wrote to the store");
    cluster.stop();
}
