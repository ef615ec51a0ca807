//! One run on a fake site: fake hosts for the platform, a fake load, and what the run's entry and manifest say.

use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use serde_json::json;
use tokio::sync::oneshot;

use super::*;
use crate::cluster::inventory::Inventory;
use crate::lifecycle::fake::{FakeControlPlane, FakeHost, Journal};
use crate::lifecycle::health::ControlPlane;
use crate::lifecycle::host::Host;
use crate::roles::Placement;

/// Host 0 the loader, 1 the control plane, 2 the data plane, 3 and 4 the workers.
const INVENTORY: &str = "nodes: 'root@h0 root@h1 root@h2 root@h3 root@h4'\n";

/// A site of five fake hosts whose load records its config and, when asked, lasts until a given call came.
struct FakeSite {
    journal: Journal,
    hosts: Vec<Arc<FakeHost>>,
    control_plane: Arc<FakeControlPlane>,
    /// The configs the loader got.
    loads: Mutex<Vec<RunConfig>>,
    /// The load ends once the journal shows this call (e.g. the restart a failure injects).
    lasts_until: Option<&'static str>,
    /// Whether the load writes a manifest, as the loader does.
    writes_manifest: bool,
}

impl FakeSite {
    fn new() -> FakeSite {
        let journal = Journal::default();
        let hosts = (0..5)
            .map(|k| Arc::new(FakeHost::new(&format!("root@h{k}:22"), &format!("10.0.0.{k}"), 0, &journal)))
            .collect();
        FakeSite {
            journal,
            hosts,
            control_plane: Arc::default(),
            loads: Mutex::default(),
            lasts_until: None,
            writes_manifest: true,
        }
    }
}

impl Site for FakeSite {
    fn hosts(&self, _run: &RunPlace<'_>, _binaries: &Binaries) -> Vec<Arc<dyn Host>> {
        self.hosts.iter().map(|host| Arc::clone(host) as Arc<dyn Host>).collect()
    }

    fn placement(&self, _spec: &crate::spec::DirigentSpec) -> Placement {
        Placement::from_inventory(&Inventory::parse(INVENTORY).unwrap(), None)
    }

    fn loader_clock_offset_us(&self) -> i64 {
        0
    }

    fn image(&self, _binaries: &Binaries) -> String {
        "fake-image".into()
    }

    fn control_plane(&self) -> Arc<dyn ControlPlane> {
        Arc::clone(&self.control_plane) as Arc<dyn ControlPlane>
    }

    fn load<'a>(
        &'a self,
        run: &'a RunPlace<'a>,
        config: &'a RunConfig,
        _stop: StopSignal,
        started: oneshot::Sender<tokio::time::Instant>,
    ) -> BoxFuture<'a, Result<LoadCounts, LoadError>> {
        self.loads.lock().unwrap().push(config.clone());
        let _ = started.send(tokio::time::Instant::now());
        Box::pin(async move {
            if let Some(call) = self.lasts_until {
                self.journal.wait_for(call).await;
            }
            if self.writes_manifest {
                std::fs::write(run.dir.join("manifest.json"), r#"{"seed": 1, "events": []}"#).unwrap();
            }
            Ok(LoadCounts { sent: 10, ok: 9, failed: 1, trustworthy: true })
        })
    }
}

fn spec(extra: &str) -> ExperimentSpec {
    ExperimentSpec::parse(&format!("name: t\nplatform: {{ kind: dirigent }}\n{extra}")).unwrap()
}

fn binaries() -> Binaries {
    Binaries { dirigent: "/fake/dirigent".into(), trace_function: "/fake/trace-function".into(), loader: None }
}

/// Executes one run of `spec` on `site` in `dir`.
async fn execute(spec: &ExperimentSpec, site: &FakeSite, dir: &Path) -> RunEntry {
    std::fs::create_dir_all(dir).unwrap();
    let binaries = binaries();
    let place = RunPlace { dir, run_id: "t-run", expected: Duration::from_secs(1) };
    let run = Run { spec, rate: None, binaries: Some(&binaries), site, place };
    run.execute(StopSignal::new()).await
}

const FAILURE: &str = "failures: [ { at: 1ms, kill: worker-1, restart_after: 1ms } ]\n";

#[tokio::test]
async fn a_run_starts_the_platform_loads_it_injects_the_failures_and_stops_it() {
    let mut site = FakeSite::new();
    site.lasts_until = Some("start worker-1.1");
    let dir = tempfile::tempdir().unwrap();
    let entry = execute(&spec(FAILURE), &site, dir.path()).await;
    assert!(entry.error.is_none(), "{entry:?}");
    assert_eq!((entry.sent, entry.ok, entry.failed, entry.trustworthy), (10, 9, 1, true));
    assert!(entry.platform_stop.is_clean(), "{:?}", entry.platform_stop);

    let config = site.loads.lock().unwrap().remove(0);
    let target = TargetConfig::Dirigent {
        api: "10.0.0.1:4002".into(),
        proxy: "10.0.0.2:4003".into(),
        image: "fake-image".into(),
        min_scale: 0,
        max_scale: 0,
    };
    assert_eq!((config.target, config.output), (target, dir.path().to_owned()), "aimed at the started platform");

    let events: Vec<serde_json::Value> = entry.events.iter().map(|e| serde_json::to_value(e).unwrap()).collect();
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["kill", "restart"]);
    assert!(events.iter().all(|e| e["component"] == "worker-1" && e["host"] == "root@h4:22"), "{entry:?}");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["events"], json!(entry.events), "the manifest holds the events");
    assert_eq!(manifest["seed"], 1, "and keeps what the loader wrote");

    let calls = site.journal.short();
    let after_load: Vec<&str> = calls.iter().skip_while(|c| *c != "kill worker-1").map(String::as_str).collect();
    assert_eq!(after_load[..3], ["kill worker-1", "start worker-1.1", "stop worker-0"], "stopped after the load");
    assert_eq!(after_load.iter().filter(|c| c.starts_with("sweep ")).count(), 5, "{calls:?}");
    let marker = format!("t-{}@4", dir.path().display());
    let worker = site.journal.calls().into_iter().find_map(|call| match call {
        crate::lifecycle::fake::Call::Start { launch, .. } if launch.stem == "worker-1" => Some(launch),
        _ => None,
    });
    assert_eq!(worker.unwrap().env[0].1, marker, "the run's marker: the spec's name, the run's folder, the host");
}

#[tokio::test]
async fn a_platform_that_does_not_start_fails_the_run_before_any_load_and_is_torn_down() {
    let site = FakeSite::new();
    let reason = "it exited before it was ready; its log ends with: | address in use";
    site.hosts[2].answers.lock().unwrap().fail_start.insert("data-plane".into(), reason.into());
    let dir = tempfile::tempdir().unwrap();
    let entry = execute(&spec(FAILURE), &site, dir.path()).await;
    let expected = format!("starting the platform: data-plane on root@h2:22 did not start: {reason}");
    assert_eq!(entry.error.as_deref(), Some(expected.as_str()));
    assert!(site.loads.lock().unwrap().is_empty(), "no load on a platform that is not up");
    assert!(entry.events.is_empty());
    let calls = site.journal.short();
    assert!(!calls.iter().any(|c| c.starts_with("start worker")), "the workers never started: {calls:?}");
    let teardown: Vec<&str> = calls.iter().skip_while(|c| !c.starts_with("stop ")).map(String::as_str).collect();
    assert_eq!(teardown[..2], ["stop data-plane", "stop control-plane"], "{calls:?}");
    assert_eq!(teardown.iter().filter(|c| c.starts_with("finish ")).count(), 5, "{calls:?}");
}

#[tokio::test]
async fn teardown_problems_are_reported_and_what_was_measured_is_kept() {
    let mut site = FakeSite::new();
    site.lasts_until = Some("start worker-1.1");
    site.writes_manifest = false;
    site.hosts[3].answers.lock().unwrap().fail_finish = true;
    let dir = tempfile::tempdir().unwrap();
    let entry = execute(&spec(FAILURE), &site, dir.path()).await;
    assert_eq!((entry.sent, entry.ok), (10, 9), "the counts are kept");
    assert_eq!(entry.platform_stop.errors, ["collecting logs: unexpected answer 'connection reset'"]);
    assert_eq!(site.journal.short().iter().filter(|c| c.starts_with("finish ")).count(), 5, "every host cleaned");
    let error = entry.error.unwrap();
    assert!(error.starts_with("cannot read") && error.contains("manifest.json"), "{error}");
    assert_eq!(entry.events.len(), 2, "the events stay in experiment.json");
}

#[tokio::test]
async fn failures_that_name_no_component_end_the_experiment_before_any_folder_exists() {
    let site = FakeSite::new();
    let dir = tempfile::tempdir().unwrap();
    let mut spec = spec("failures: [ { at: 1s, kill: worker-7 } ]\n");
    spec.output = dir.path().join("results");
    let experiment = Experiment { spec: &spec, binaries: None, cluster_hosts: Vec::new(), cluster_setup_s: 0.0 };
    let error = experiment.runs(&site, &[Duration::from_secs(1)], &StopSignal::new()).await.unwrap_err();
    let error = crate::error_chain(&error);
    assert!(error.contains("failures[0].kill") && error.contains("worker-7") && error.contains("worker-1"), "{error}");
    assert!(!spec.output.exists(), "nothing was written");
    assert!(site.journal.calls().is_empty(), "nothing was started");
}
