//! The lifecycle against fake hosts: what each host is asked to do, in which order, with which configs, and what
//! the lifecycle makes of the answers.

use std::sync::Arc;

use serde_json::json;

use super::fake::{Call, FakeControlPlane, FakeHost, Journal};
use super::host::StopState;
use super::*;
use crate::cluster::inventory::Inventory;
use crate::spec::dirigent_spec;

/// Host 0 the loader, 1 the control plane, 2 the data plane, 3 and 4 the workers.
const INVENTORY: &str = "nodes: 'root@h0 root@h1 root@h2 root@h3 root@h4'\n";

/// The loader's clock is 50 µs ahead of this machine's.
const LOADER_OFFSET_US: i64 = 50;

/// This machine's clock in the tests.
fn fixed_clock() -> i128 {
    2_000_000
}

struct Fixture {
    journal: Journal,
    hosts: Vec<Arc<FakeHost>>,
    control_plane: Arc<FakeControlPlane>,
    dir: tempfile::TempDir,
}

impl Fixture {
    /// Five fake hosts `root@hK:22` at address `10.0.0.K`; host K's clock is K×100 µs ahead.
    fn new() -> Fixture {
        let journal = Journal::default();
        let hosts = (0..5)
            .map(|k| Arc::new(FakeHost::new(&format!("root@h{k}:22"), &format!("10.0.0.{k}"), k * 100, &journal)))
            .collect();
        Fixture { journal, hosts, control_plane: Arc::default(), dir: tempfile::tempdir().unwrap() }
    }

    fn setup(&self) -> Setup {
        self.setup_with(INVENTORY)
    }

    fn setup_with(&self, inventory: &str) -> Setup {
        self.setup_of("{ kind: dirigent, nice: 3, worker: { sandbox_ports: 30000-30099 } }", inventory)
    }

    fn setup_of(&self, platform: &str, inventory: &str) -> Setup {
        let spec = dirigent_spec(platform);
        let placement = Placement::from_inventory(&Inventory::parse(inventory).unwrap(), spec.replicas);
        Setup {
            spec,
            placement,
            hosts: self.hosts.iter().map(|h| Arc::clone(h) as Arc<dyn Host>).collect(),
            control_plane: Arc::clone(&self.control_plane) as Arc<dyn ControlPlane>,
            platform_dir: self.dir.path().join("platform"),
            marker: "m".into(),
            loader_clock_offset_us: LOADER_OFFSET_US,
            clock: fixed_clock,
        }
    }

    async fn start(&self) -> Lifecycle {
        Lifecycle::start(self.setup()).await.unwrap_or_else(|(e, _)| panic!("{}", crate::error_chain(&e)))
    }

    /// The start calls for `stem`.
    fn starts(&self, stem: &str) -> Vec<(String, Launch, Value)> {
        let calls = self.journal.calls().into_iter();
        calls
            .filter_map(|call| match call {
                Call::Start { host, launch, config } if launch.stem == stem => Some((host, launch, config)),
                _ => None,
            })
            .collect()
    }

    /// The journal from the first stop on.
    fn teardown(&self) -> Vec<String> {
        self.journal.short().into_iter().skip_while(|call| !call.starts_with("stop ")).collect()
    }
}

#[tokio::test]
async fn components_start_in_order_each_with_its_host_s_config() {
    let fixture = Fixture::new();
    let lifecycle = fixture.start().await;
    let expected = ["prepare root@h0:22", "prepare root@h1:22", "prepare root@h2:22", "prepare root@h3:22"]
        .into_iter()
        .chain(["prepare root@h4:22", "start control-plane", "start data-plane", "start worker-0", "start worker-1"]);
    assert_eq!(fixture.journal.short(), expected.map(String::from).collect::<Vec<_>>());
    assert_eq!((lifecycle.api(), lifecycle.proxy()), ("10.0.0.1:4002", "10.0.0.2:4003"));
    assert_eq!(lifecycle.proxies(), "10.0.0.2:4003");
    assert_eq!(*fixture.control_plane.asked.lock().unwrap(), ["10.0.0.1:4002"], "the health check asks the API");

    let (host, launch, config) = fixture.starts("control-plane").remove(0);
    assert_eq!((host.as_str(), launch.role, launch.nice), ("root@h1:22", Role::ControlPlane, 3));
    assert_eq!(config["http_listen"], "10.0.0.1:0", "ephemeral ports on its host's address");
    let (host, _, config) = fixture.starts("data-plane").remove(0);
    assert_eq!((host.as_str(), &config["control_plane"]), ("root@h2:22", &json!("10.0.0.1:4001")));
    let (host, launch, config) = fixture.starts("worker-1").remove(0);
    assert_eq!(host, "root@h4:22");
    assert_eq!((&config["advertise_host"], &config["control_plane"]), (&json!("10.0.0.4"), &json!("10.0.0.1:4001")));
    assert_eq!(config["sandbox_ports"], "30000-30099", "alone on its host, a worker has the whole range");
    assert_eq!(launch.env[0], (RUN_MARKER_VAR.to_string(), "m@4".to_string()), "the marker names the host");
    assert!(fixture.dir.path().join("platform/worker-1.yaml").is_file(), "the configs are kept here");
}

#[tokio::test]
async fn the_loader_is_given_every_data_plane_s_proxy() {
    let fixture = Fixture::new();
    let inventory = "user: root\nhosts:\n- { address: h0, roles: [loader] }\n- { address: h1, roles: [control-plane] }\n\
                     - { address: h2, roles: [data-plane] }\n- { address: h3, roles: [data-plane, worker] }\n\
                     - { address: h4, roles: [worker] }\n";
    let lifecycle = Lifecycle::start(fixture.setup_with(inventory))
        .await
        .unwrap_or_else(|(e, _)| panic!("{}", crate::error_chain(&e)));
    assert_eq!(lifecycle.proxy(), "10.0.0.2:4003", "the first data plane");
    assert_eq!(lifecycle.proxies(), "10.0.0.2:4003;10.0.0.3:4003");
}

#[tokio::test]
async fn a_component_that_does_not_start_is_named_with_its_host_and_log_and_everything_is_torn_down() {
    let fixture = Fixture::new();
    let reason = "it exited before it was ready; its log ends with: | invalid config: bad key 'colour'";
    fixture.hosts[4].answers.lock().unwrap().fail_start.insert("worker-1".into(), reason.into());
    // Killed a moment ago, it may still be dying when the stop comes.
    fixture.hosts[4].answers.lock().unwrap().stop.insert("worker-1".into(), StopState::ExitedWith("signal: 9".into()));
    let (error, report) = Lifecycle::start(fixture.setup()).await.unwrap_err();
    let message = crate::error_chain(&error);
    assert_eq!(message, format!("worker-1 on root@h4:22 did not start: {reason}"));
    assert!(fixture.control_plane.asked.lock().unwrap().is_empty(), "no health check after a failed start");
    let stops = ["stop worker-0", "stop worker-1", "stop data-plane", "stop control-plane"];
    assert_eq!(fixture.teardown()[..4], stops.map(String::from));
    assert_eq!(fixture.teardown().iter().filter(|c| c.starts_with("finish ")).count(), 5, "every host is cleaned");
    assert!(report.is_clean(), "the failed start is the error, not a surprise at the stop: {report:?}");
}

#[tokio::test]
async fn a_restart_binds_the_addresses_first_announced_and_keeps_its_own_files() {
    let fixture = Fixture::new();
    let mut lifecycle = fixture.start().await;
    lifecycle.kill("data-plane").await.unwrap();
    lifecycle.restart("data-plane").await.unwrap();
    let (host, launch, config) = fixture.starts("data-plane.1").remove(0);
    assert_eq!(host, "root@h2:22");
    assert_eq!((&config["proxy_listen"], &config["grpc_listen"]), (&json!("10.0.0.2:4003"), &json!("10.0.0.2:4004")));
    assert_eq!(config["control_plane"], "10.0.0.1:4001");
    assert_eq!((launch.component.as_str(), launch.env[0].1.as_str()), ("data-plane", "m@2"));
    assert!(fixture.dir.path().join("platform/data-plane.1.yaml").is_file());
    let first = fixture.starts("data-plane").remove(0).2;
    assert_eq!(first["proxy_listen"], "10.0.0.2:0", "the first config is kept as it was");
    lifecycle.restart("data-plane").await.unwrap();
    assert_eq!(fixture.starts("data-plane.2")[0].2["proxy_listen"], "10.0.0.2:4003", "also the second time");
}

#[tokio::test]
async fn kills_and_restarts_are_stamped_on_the_loader_s_clock() {
    let fixture = Fixture::new();
    let mut lifecycle = fixture.start().await;
    // worker-0's host (h3) reads its clock at the kill: 1 000 000 000 µs there, which is 300 µs ahead of here.
    fixture.hosts[3].answers.lock().unwrap().kill_at_ns = 1_000_000_000_000;
    let kill = serde_json::to_value(lifecycle.kill("worker-0").await.unwrap()).unwrap();
    let expected = json!({ "kind": "kill", "component": "worker-0", "role": "worker", "host": "root@h3:22",
        "unixUs": 1_000_000_000 - 300 + LOADER_OFFSET_US, "detail": "SIGKILL" });
    assert_eq!(kill, expected);
    let restart = serde_json::to_value(lifecycle.restart("worker-0").await.unwrap()).unwrap();
    assert_eq!((&restart["kind"], &restart["host"]), (&json!("restart"), &json!("root@h3:22")));
    assert_eq!(restart["unixUs"], fixed_clock() as i64 + LOADER_OFFSET_US, "ready now, here, on the loader's clock");
    let unknown = crate::error_chain(&lifecycle.kill("worker-9").await.unwrap_err());
    assert!(unknown.contains("no component 'worker-9'") && unknown.contains("there are control-plane"), "{unknown}");
}

#[tokio::test]
async fn stopping_goes_workers_first_then_sweeps_and_cleans_every_host() {
    let fixture = Fixture::new();
    let mut lifecycle = fixture.start().await;
    fixture.hosts[3].answers.lock().unwrap().survivors = vec!["4242 trace-function".into()];
    let report = lifecycle.stop().await;
    let mut expected = vec!["stop worker-0", "stop worker-1", "stop data-plane", "stop control-plane"];
    expected.extend([
        "sweep root@h0:22",
        "sweep root@h1:22",
        "sweep root@h2:22",
        "sweep root@h3:22",
        "sweep root@h4:22",
    ]);
    expected.extend(["finish root@h0:22", "finish root@h1:22", "finish root@h2:22", "finish root@h3:22"]);
    expected.push("finish root@h4:22");
    assert_eq!(fixture.teardown(), expected);
    assert_eq!(report.surviving_sandboxes, ["4242 trace-function on root@h3:22"]);
    let calls = fixture.journal.calls();
    let swept: Vec<&str> = calls
        .iter()
        .filter_map(|c| if let Call::Sweep { marker, .. } = c { Some(marker.as_str()) } else { None })
        .collect();
    assert_eq!(swept, ["m@0", "m@1", "m@2", "m@3", "m@4"], "each host is swept for its own marker");
    let fetched = calls.iter().find_map(|c| match c {
        Call::Finish { host, components } if host == "root@h2:22" => Some(components.clone()),
        _ => None,
    });
    assert_eq!(fetched, Some(vec!["data-plane".to_string()]), "each host brings back the logs of its components");
}

#[tokio::test]
async fn teardown_goes_on_after_a_failure_and_reports_what_did_not_stop_cleanly() {
    let fixture = Fixture::new();
    let mut lifecycle = fixture.start().await;
    lifecycle.kill("worker-1").await.unwrap();
    {
        let mut answers = fixture.hosts[3].answers.lock().unwrap();
        answers.fail_stop.insert("worker-0".into());
        answers.fail_finish = true;
    }
    // Killed a moment ago, it may still be dying when the stop comes.
    fixture.hosts[4].answers.lock().unwrap().stop.insert("worker-1".into(), StopState::ExitedWith("signal: 9".into()));
    fixture.hosts[2].answers.lock().unwrap().stop.insert("data-plane".into(), StopState::Killed);
    fixture.hosts[1].answers.lock().unwrap().stop.insert("control-plane".into(), StopState::Gone);
    let report = lifecycle.stop().await;
    assert_eq!(fixture.teardown().len(), 4 + 5 + 5, "every stop, sweep and clean-up was still done");
    assert_eq!(
        report.unclean,
        [
            "data-plane on root@h2:22 did not exit within 10s of SIGTERM: killed",
            "control-plane on root@h1:22 had exited before the stop"
        ],
        "worker-1 was killed on purpose"
    );
    assert_eq!(report.errors.len(), 2, "{:?}", report.errors);
    assert!(report.errors[0].starts_with("stopping worker-0 on root@h3:22: stopping: "), "{:?}", report.errors);
    assert!(report.errors[1].starts_with("collecting logs: "), "{:?}", report.errors);
}

#[tokio::test]
async fn replicas_know_each_other_before_they_start_and_the_leader_is_killed_by_role() {
    let fixture = Fixture::new();
    let inventory = "user: root\nhosts:\n- { address: h0, roles: [loader] }\n- { address: h1, roles: [control-plane] }\n\
                     - { address: h2, roles: [control-plane] }\n- { address: h3, roles: [data-plane] }\n\
                     - { address: h4, roles: [worker] }\n";
    let setup = fixture.setup_of("{ kind: dirigent, replicas: 3 }", inventory);
    let mut lifecycle = Lifecycle::start(setup).await.unwrap_or_else(|(e, _)| panic!("{}", crate::error_chain(&e)));
    // Two replicas on h1 take the default port and the next; the one on h2 the default.
    let peers = json!({ "1": "10.0.0.1:9090", "2": "10.0.0.2:9090", "3": "10.0.0.1:9091" });
    for (id, name) in [(1, "control-plane"), (2, "control-plane-1"), (3, "control-plane-2")] {
        let (_, _, config) = fixture.starts(name).remove(0);
        assert_eq!(config["replication"]["id"], id, "{name}");
        assert_eq!(config["replication"]["peers"], peers, "{name}");
        assert_eq!(config["grpc_listen"], peers[id.to_string()], "{name} listens where its peers look");
        assert_eq!(config["store"]["path"], format!("{name}.dirigent-registry.sqlite"));
    }
    let (_, _, config) = fixture.starts("worker-0").remove(0);
    assert_eq!(config["control_plane"], "10.0.0.1:9090,10.0.0.2:9090,10.0.0.1:9091", "every replica");
    assert_eq!(lifecycle.apis(), "10.0.0.1:9091;10.0.0.2:9091;10.0.0.1:9092");

    *fixture.control_plane.leader.lock().unwrap() = Some("10.0.0.2:9091".into());
    let kill = lifecycle.kill(LEADER).await.unwrap();
    assert_eq!(
        (kill.component.as_deref(), kill.detail.as_deref()),
        (Some("control-plane-1"), Some("SIGKILL (the leader)"))
    );
    let restart = lifecycle.restart(LEADER).await.unwrap();
    assert_eq!(restart.component.as_deref(), Some("control-plane-1"), "the replica killed as the leader");
    let (_, _, again) = fixture.starts("control-plane-1.1").remove(0);
    assert_eq!(again["grpc_listen"], "10.0.0.2:9090", "back where its peers look");
    *fixture.control_plane.leader.lock().unwrap() = Some("nowhere".into());
    let none = tokio::time::timeout(LEADER_WAIT * 2, lifecycle.kill(LEADER)).await.expect("the wait is bounded");
    let none = crate::error_chain(&none.unwrap_err());
    assert!(none.contains("control-plane follower") && none.contains("control-plane-2 follower"), "{none}");
    lifecycle.stop().await;
}
