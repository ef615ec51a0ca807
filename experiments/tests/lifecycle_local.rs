//! The lifecycle a cluster run uses, on this machine without root: a cluster-shaped placement (control plane, two
//! data planes, two workers, each on a host of its own) whose hosts are local hosts on loopback addresses of their
//! own (127.0.0.2 and up), running real `dirigent` processes. A data plane and a worker are killed and restarted on
//! the addresses they first announced, then everything stops and nothing with the run's marker is left. Needs the
//! orchestrator's binaries in the same target folder (`cargo test --workspace` builds them).

mod support;

use std::path::Path;
use std::sync::Arc;

use experiments::cluster::inventory::Inventory;
use experiments::lifecycle::health::ControlPlaneApi;
use experiments::lifecycle::host::Host;
use experiments::lifecycle::{Lifecycle, Setup, system_clock};
use experiments::local::LocalHost;
use experiments::roles::Placement;
use experiments::spec::{ExperimentSpec, PlatformSpec};

/// The loader's host first (it runs nothing of the platform here), then one host per component.
const INVENTORY: &str = "user: u\nhosts:\n\
    - { address: 127.0.0.1, roles: [loader] }\n\
    - { address: 127.0.0.2, roles: [control-plane] }\n\
    - { address: 127.0.0.3, roles: [data-plane] }\n\
    - { address: 127.0.0.4, roles: [data-plane] }\n\
    - { address: 127.0.0.5, roles: [worker] }\n\
    - { address: 127.0.0.6, roles: [worker] }\n";

fn setup(dir: &Path, marker: &str) -> Setup {
    let dirigent = support::bin_dir(&["dirigent", "trace-function"]).join("dirigent");
    let spec = "name: t\nplatform: { kind: dirigent, nice: 0, start_timeout: 30s }\n";
    let PlatformSpec::Dirigent(spec) = ExperimentSpec::parse(spec).unwrap().platform else { panic!("dirigent") };
    let inventory = Inventory::parse(INVENTORY).unwrap();
    let platform_dir = dir.join("platform");
    let hosts = inventory
        .hosts
        .iter()
        .map(|host| Arc::new(LocalHost::new(&host.destination.address, &platform_dir, &dirigent)) as Arc<dyn Host>)
        .collect();
    Setup {
        spec,
        placement: Placement::from_inventory(&inventory, None),
        hosts,
        control_plane: Arc::new(ControlPlaneApi::default()),
        platform_dir,
        marker: marker.into(),
        loader_clock_offset_us: 0,
        clock: system_clock,
    }
}

fn read_json(path: &Path) -> serde_json::Value {
    support::read_json(path)
}

#[tokio::test]
async fn a_cluster_shaped_platform_runs_on_loopback_hosts_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let marker = format!("lifecycle-local-{}", std::process::id());
    let mut lifecycle = Lifecycle::start(setup(dir.path(), &marker))
        .await
        .unwrap_or_else(|(e, report)| panic!("{}; teardown: {report:?}", experiments::error_chain(&e)));
    assert!(lifecycle.api().starts_with("127.0.0.2:"), "{}", lifecycle.api());
    assert!(lifecycle.proxy().starts_with("127.0.0.3:"), "the first data plane: {}", lifecycle.proxy());
    let names = ["control-plane", "data-plane", "data-plane-1", "worker-0", "worker-1"];
    assert_eq!(lifecycle.component_names(), names);
    let platform = dir.path().join("platform");
    assert_eq!(read_json(&platform.join("data-plane-1.yaml"))["advertise_host"], "127.0.0.4");
    assert_eq!(
        read_json(&platform.join("worker-1.yaml"))["control_plane"],
        read_json(&platform.join("data-plane.yaml"))["control_plane"]
    );

    let kill = serde_json::to_value(lifecycle.kill("data-plane-1").await.unwrap()).unwrap();
    assert_eq!((&kill["host"], &kill["role"]), (&serde_json::json!("127.0.0.4"), &serde_json::json!("data-plane")));
    lifecycle.restart("data-plane-1").await.unwrap();
    let again = read_json(&platform.join("data-plane-1.1.yaml"));
    let proxy = again["proxy_listen"].as_str().unwrap();
    assert!(proxy.starts_with("127.0.0.4:") && !proxy.ends_with(":0"), "the announced address, bound again: {proxy}");
    lifecycle.kill("worker-0").await.unwrap();

    let report = lifecycle.stop().await;
    assert!(report.unclean.is_empty() && report.errors.is_empty(), "worker-0 was killed on purpose: {report:?}");
    assert!(report.surviving_sandboxes.is_empty(), "{report:?}");
    for log in ["control-plane.log", "data-plane-1.log", "data-plane-1.1.log", "worker-1.log"] {
        assert!(platform.join(log).is_file(), "{log}");
    }
    let left = support::processes_where(|p| p.environ.contains(&format!("FAAS_TOOLKIT_RUN={marker}@")));
    assert!(left.is_empty(), "processes of the run left: {left:?}");
}
