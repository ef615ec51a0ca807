//! The loader (in-process, through its library) against `dirigent standalone` (a real, separate process): a
//! compressed replay of the azure-100 sample, and a small cold-start sweep.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use contracts::api::{self, FunctionList};
use loader::config::{ColdStartWorkload, DriverConfig, RunConfig, TargetConfig, Workload};
use loader::driver::StopSignal;
use loader::schedule::ScheduleConfig;
use serde_json::Value;
use support::*;

fn loader_config(cluster: &Role, output: PathBuf) -> RunConfig {
    RunConfig {
        trace: Path::new(env!("CARGO_MANIFEST_DIR")).join("../loader/traces/azure-100"),
        target: TargetConfig::Dirigent {
            api: cluster.address("api"),
            proxy: cluster.address("proxy"),
            image: TRACE_FUNCTION.into(),
            min_scale: 0,
            max_scale: 0,
        },
        driver: DriverConfig {
            request_timeout: Duration::from_secs(20),
            drain_timeout: Duration::from_secs(20),
            ..DriverConfig::default()
        },
        output,
        ..RunConfig::default()
    }
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The rows of `invocations.csv` as header-keyed maps.
fn rows(output: &Path) -> Vec<std::collections::HashMap<String, String>> {
    let mut reader = csv::Reader::from_path(output.join("invocations.csv")).unwrap();
    let header = reader.headers().unwrap().clone();
    reader
        .records()
        .map(|r| header.iter().map(String::from).zip(r.unwrap().iter().map(String::from)).collect())
        .collect()
}

/// The names the control plane lists (`GET /v1/functions` answers `{"functions": [...]}`); anything else fails.
async fn registered_functions(api: &str) -> Vec<String> {
    let response = client().get(format!("http://{api}{}", api::FUNCTIONS_PATH)).send().await.unwrap();
    let text = response.text().await.unwrap();
    let list: FunctionList =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not a function list ({e}): {text}"));
    list.functions.into_iter().map(|f| f.spec.name).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compressed_trace_replay_records_every_invocation() {
    let cluster = Role::start("standalone", &standalone_yaml(2, ""));
    let dir = tempfile::tempdir().unwrap();
    let mut config = loader_config(&cluster, dir.path().join("run"));
    config.slice.start_minute = 600;
    config.slice.minutes = 2;
    config.slice.functions = Some(10);
    config.warmup_minutes = 1;
    // Capped so that a 2-core machine keeps up; 60x: one trace minute per second.
    config.schedule = ScheduleConfig {
        compression: 60.0,
        duration_bounds_ms: (1, 5),
        memory_bounds_mib: (1, 4),
        ..ScheduleConfig::default()
    };
    let report = loader::run::run(&config, StopSignal::new()).await.unwrap();

    let rows = rows(&config.output);
    assert!(!rows.is_empty());
    assert_eq!(report.replay.completed, rows.len() as u64);
    assert_eq!(report.replay.ok, rows.len() as u64, "every invocation succeeded: {:?}", rows.first());
    assert!(rows.iter().all(|r| r["instance"].starts_with("f-") && r["actualDuration"].parse::<u64>().unwrap() > 0));
    assert!(rows.iter().any(|r| r["coldStart"] == "true"), "the first invocations meet cold starts");
    assert!(rows.iter().any(|r| r["coldStart"] == "false"), "later ones find warm sandboxes");
    assert!(rows.iter().all(|r| !r["proxyTime"].is_empty()), "the data plane's Server-Timing is recorded");
    let summary = read_json(&config.output.join("summary.json"));
    let counts = &summary["overall"]["counts"];
    assert_eq!(counts["measured"].as_u64().unwrap() + counts["warmup"].as_u64().unwrap(), rows.len() as u64);
    assert!(read_json(&config.output.join("manifest.json"))["traceChecksum"].is_string());
    let left = registered_functions(&cluster.address("api")).await;
    assert!(left.is_empty(), "the loader deleted its functions, yet these remain: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_start_sweep_meets_a_cold_start_on_every_call() {
    // Sandboxes idle for a 1 s window are removed, well inside the sweep's 5 s cooldown.
    let cluster = Role::start("standalone", &standalone_yaml(2, "stable_window: 1s, panic_window: 200ms, tick: 200ms"));
    let dir = tempfile::tempdir().unwrap();
    let mut config = loader_config(&cluster, dir.path().join("sweep"));
    // One cold start per second over 5 functions, each called twice, 5 s apart.
    config.workload = Workload::ColdStarts(ColdStartWorkload {
        rate: 1.0,
        cooldown: Duration::from_secs(5),
        duration: Duration::from_secs(10),
        warmup: Duration::ZERO,
        runtime_ms: 5,
        memory_mib: 4,
    });
    let report = loader::run::run(&config, StopSignal::new()).await.unwrap();

    let rows = rows(&config.output);
    assert_eq!(rows.len(), 10);
    assert_eq!(report.replay.ok, 10);
    for name in (0..5).map(|i| format!("cold-{i}")) {
        assert_eq!(rows.iter().filter(|r| r["instance"] == name).count(), 2, "{name}");
    }
    assert!(
        rows.iter().all(|r| r["coldStart"] == "true"),
        "{:?}",
        rows.iter().map(|r| &r["coldStart"]).collect::<Vec<_>>()
    );
    let summary = read_json(&config.output.join("summary.json"));
    assert_eq!(summary["overall"]["counts"]["coldStarts"], 10);
}
