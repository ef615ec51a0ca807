//! `cargo bench -p orchestrator --bench containerd` (root; containerd, runc and the CNI plugins installed, as
//! scripts/test.sh installs them): cold starts into real containers through the whole orchestrator, next to raw
//! containerd in the same run.
//!
//! - **Raw containerd**: lease, snapshot, container, task create and start of the same image through the same
//!   gRPC API (`GrpcContainerd`), no network and no readiness: the floor a containerd-based FaaS cannot beat.
//! - **Orchestrator**: `dirigent standalone` with one containerd worker; each sample registers a new function and
//!   invokes it once through the data plane, so every sample is a cold start (request sent to response
//!   received), with the breakdown the response's Server-Timing carries.
//!
//! The two alternate sample by sample (`BENCH_PAIRS`, default 20). Then a sweep of concurrent cold starts
//! (`BENCH_CONCURRENCY`, default `1,4,8`): that many new functions invoked at once, giving achieved cold starts per
//! second and their latency. Prints the load average, each process's CPU, the ratio to raw containerd against the
//! target (p50 within 1.2x) and the breakdown table; writes `target/bench-containerd.json`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use contracts::server_timing::{self, ServerTiming};
use orchestrator::test_util::containerd_daemon::ContainerdDaemon;
use orchestrator::test_util::cpu_seconds;
use orchestrator::worker::runtime::containerd::api::{ContainerdApi, GrpcContainerd, NewContainer};
use orchestrator::worker::runtime::containerd::{image, spec};
use serde::Serialize;
use support::{Role, register, standalone_yaml};

const IMAGE: &str = "dirigent.bench/trace-function:latest";
const NAMESPACE: &str = "bench";
const JSON_REPORT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/bench-containerd.json");
/// The target: the orchestrator's cold-start p50 at most this many times raw containerd's.
const TARGET_RATIO: f64 = 1.2;

#[derive(Debug, Serialize)]
struct Report {
    pairs: usize,
    load_average: (String, String),
    raw_ms: Spread,
    orchestrator_ms: Spread,
    ratio_p50: f64,
    target_met: bool,
    breakdown_p50_ms: BTreeMap<String, f64>,
    sweep: Vec<SweepStep>,
    cpu_seconds: BTreeMap<&'static str, f64>,
}

#[derive(Debug, Serialize, Default)]
struct Spread {
    p50: f64,
    p90: f64,
    min: f64,
    max: f64,
}

impl Spread {
    fn of(mut ms: Vec<f64>) -> Self {
        if ms.is_empty() {
            return Self::default();
        }
        ms.sort_by(f64::total_cmp);
        let at = |q: f64| ms[((q * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1];
        Self { p50: at(0.5), p90: at(0.9), min: ms[0], max: ms[ms.len() - 1] }
    }
}

#[derive(Debug, Serialize)]
struct SweepStep {
    concurrent: usize,
    cold_starts_per_s: f64,
    latency_ms: Spread,
    failed: usize,
}

/// One raw creation: what containerd costs without the orchestrator. Removed again, untimed.
async fn raw_cold_start(api: &GrpcContainerd, image: &image::ImageConfig, n: usize) -> anyhow::Result<Duration> {
    let id = format!("raw-{n}");
    let lease = format!("raw-lease-{n}");
    let mut sandbox = orchestrator::test_util::contract::spec(&id, IMAGE, &[]);
    sandbox.env.insert("RUST_LOG".into(), "warn".into());
    let mut runtime_spec = spec::runtime_spec(image, &sandbox, 8080, Path::new("/unused"), NAMESPACE);
    // A network namespace of runc's own making: raw containerd has no CNI.
    runtime_spec["linux"]["namespaces"][4] = serde_json::json!({ "type": "network" });
    let started = Instant::now();
    api.create_lease(&lease).await?;
    let mounts = api.prepare_snapshot(&lease, &id, &image.chain_id).await?;
    let container = NewContainer {
        id: id.clone(),
        image: IMAGE.into(),
        spec: runtime_spec.to_string().into_bytes(),
        snapshot: id.clone(),
        lease: lease.clone(),
        oci_binary: "runc".into(),
        labels: vec![],
    };
    api.create_container(container).await?;
    api.create_task(&id, mounts).await?;
    api.start_task(&id).await?;
    let took = started.elapsed();
    api.kill_task(&id).await?;
    api.wait_task(&id).await?;
    api.delete_task(&id).await?;
    api.delete_container(&id).await?;
    api.remove_snapshot(&id).await?;
    api.delete_lease(&lease).await?;
    orchestrator::worker::runtime::containerd::remove_cgroup_parent(&format!("{NAMESPACE}/{id}"));
    Ok(took)
}

/// One cold start through the orchestrator: a new function, invoked once; its latency and Server-Timing.
async fn orchestrated_cold_start(api: &str, proxy: &str, name: &str) -> anyhow::Result<(Duration, ServerTiming)> {
    let registered = register(api, name, |s| s.image = IMAGE.into()).await;
    anyhow::ensure!(registered.status() == 201, "registering {name}: {}", registered.status());
    let started = Instant::now();
    let reply = support::invoke(proxy, name, 0).await;
    let took = started.elapsed();
    anyhow::ensure!(reply.status() == 200, "invoking {name}: {}", reply.status());
    let header = reply.headers().get(server_timing::HEADER).and_then(|h| h.to_str().ok()).unwrap_or("").to_owned();
    Ok((took, ServerTiming::parse(&header)))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let pairs: usize = std::env::var("BENCH_PAIRS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let levels: Vec<usize> = std::env::var("BENCH_CONCURRENCY")
        .unwrap_or_else(|_| "1,4,8".into())
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .collect();
    let load_before = contracts::bench::loadavg();
    let daemon = ContainerdDaemon::start();
    daemon.import_binary(NAMESPACE, IMAGE, Path::new(support::TRACE_FUNCTION));
    let raw = Arc::new(GrpcContainerd::connect(daemon.socket(), NAMESPACE, "overlayfs").await?);
    let image = image::resolve(raw.as_ref(), IMAGE, NAMESPACE).await.map_err(anyhow::Error::msg)?;
    let ipam = tempfile::tempdir()?;
    let yaml = standalone_yaml(1, "")
        + &format!(
            "  name: bench-worker\n  cpu_millis: 1000000\n  memory_mib: 1000000\n  runtime: containerd\n  containerd:\n    socket: {}\n    namespace: {NAMESPACE}\n    \
             subnet: 10.243.0.0/22\n    bridge: dirigent-bench\n    ipam_dir: {}\n",
            daemon.socket().display(),
            ipam.path().display()
        );
    let mut cluster = Role::start("standalone", &yaml);
    let (api, proxy) = (cluster.address("api"), cluster.address("proxy"));
    let cpu_start = (cpu_seconds(cluster.pid()), cpu_seconds(daemon.pid()), cpu_seconds(std::process::id()));

    let (mut raw_ms, mut ours_ms) = (Vec::new(), Vec::new());
    let mut steps: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    // One of each first, unmeasured: the image cache and the first shim start are not what is compared.
    raw_cold_start(&raw, &image, usize::MAX).await?;
    orchestrated_cold_start(&api, &proxy, "warmup").await?;
    for n in 0..pairs {
        raw_ms.push(raw_cold_start(&raw, &image, n).await?.as_secs_f64() * 1e3);
        let (took, timing) = orchestrated_cold_start(&api, &proxy, &format!("pair-{n}")).await?;
        ours_ms.push(took.as_secs_f64() * 1e3);
        for (step, us) in timing.create_steps.iter().chain(timing.create_us.map(|c| ("create".to_owned(), c)).iter()) {
            steps.entry(step.clone()).or_default().push(*us as f64 / 1e3);
        }
    }

    let mut sweep = Vec::new();
    for (level, &concurrent) in levels.iter().enumerate() {
        let started = Instant::now();
        let calls = (0..concurrent).map(|i| {
            let (api, proxy) = (api.clone(), proxy.clone());
            async move { orchestrated_cold_start(&api, &proxy, &format!("sweep-{level}-{i}")).await }
        });
        let results = futures_util::future::join_all(calls).await;
        let wall = started.elapsed().as_secs_f64();
        let latencies: Vec<f64> = results.iter().flatten().map(|(took, _)| took.as_secs_f64() * 1e3).collect();
        let failed = results.iter().filter(|r| r.is_err()).count();
        sweep.push(SweepStep {
            concurrent,
            cold_starts_per_s: latencies.len() as f64 / wall,
            latency_ms: Spread::of(latencies),
            failed,
        });
    }
    let cpu = BTreeMap::from([
        ("dirigent", cpu_seconds(cluster.pid()) - cpu_start.0),
        ("containerd", cpu_seconds(daemon.pid()) - cpu_start.1),
        ("bench (raw client and HTTP client)", cpu_seconds(std::process::id()) - cpu_start.2),
    ]);
    anyhow::ensure!(cluster.stop().success(), "dirigent did not stop cleanly");

    let (raw_ms, ours_ms) = (Spread::of(raw_ms), Spread::of(ours_ms));
    let ratio_p50 = ours_ms.p50 / raw_ms.p50;
    let report = Report {
        pairs,
        load_average: (load_before, contracts::bench::loadavg()),
        ratio_p50,
        target_met: ratio_p50 <= TARGET_RATIO,
        breakdown_p50_ms: steps.into_iter().map(|(step, ms)| (step, Spread::of(ms).p50)).collect(),
        raw_ms,
        orchestrator_ms: ours_ms,
        sweep,
        cpu_seconds: cpu,
    };
    print(&report);
    contracts::bench::publish(&report, Path::new(JSON_REPORT))?;
    Ok(())
}

fn print(report: &Report) {
    println!(
        "containerd cold starts, {} interleaved pairs; load average {} -> {}",
        report.pairs, report.load_average.0, report.load_average.1
    );
    println!("| path | p50 ms | p90 ms | min | max |\n|---|---|---|---|---|");
    for (path, s) in [
        ("raw containerd (create+start)", &report.raw_ms),
        ("orchestrator cold start (end to end)", &report.orchestrator_ms),
    ] {
        println!("| {path} | {:.1} | {:.1} | {:.1} | {:.1} |", s.p50, s.p90, s.min, s.max);
    }
    let verdict = contracts::bench::verdict(report.target_met, &format!("p50 ratio <= {TARGET_RATIO}x"));
    println!("ratio of p50s: {:.2}x ({verdict})", report.ratio_p50);
    println!("\nbreakdown (Server-Timing, p50 ms)\n| step | p50 ms |\n|---|---|");
    for (step, ms) in &report.breakdown_p50_ms {
        println!("| {step} | {ms:.2} |");
    }
    println!(
        "\nconcurrent cold starts\n| at once | cold starts/s | p50 ms | p90 ms | max ms | failed |\n|---|---|---|---|---|---|"
    );
    for step in &report.sweep {
        let s = &step.latency_ms;
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.1} | {} |",
            step.concurrent, step.cold_starts_per_s, s.p50, s.p90, s.max, step.failed
        );
    }
    println!("\nCPU seconds over the run");
    for (process, seconds) in &report.cpu_seconds {
        println!("  {process}: {seconds:.2}");
    }
}
