//! `cargo bench -p orchestrator --bench churn`: the cold-start capacity of the bundled orchestrator with the
//! `simulated` runtime.
//!
//! A sweep of requested cold starts per second (the loader's `cold-starts` workload, through the loader library
//! in this process) from 100 upward, once with `creation_delay: 0` (the orchestrator alone) and once with 40 ms
//! (Dirigent's fake runtime), the two settings taking turns at each rate so that both meet the same machine. Each
//! step starts a fresh cluster of `dirigent` processes (a control plane with its SQLite store, a data plane,
//! `BENCH_WORKERS` workers) so that each role's CPU time can be read from `/proc/<pid>/stat` around the loader
//! run, which registers the step's `ceil(rate x cooldown)` functions, sends, and deletes them again. A setting
//! stops after its first step that misses: achieved cold starts/s under 90% of the requested, any failed
//! invocation, scheduling-latency p99 over 100 ms, or a loader run its own send-lag check marks untrustworthy.
//!
//! Environment: `BENCH_RATES` (comma-separated, default 100,250,500,1000,1500,2500,4000,10000), `BENCH_STEP`
//! (measured length of a step, default 5s), `BENCH_WARMUP` (a leading phase of each step whose invocations are
//! not measured, so that the loader's first connections are not, default 1s), `BENCH_COOLDOWN` (default 2s), `BENCH_WORKERS` (default 1),
//! `BENCH_SEND_LAG` (the loader's send-lag p99 threshold, default the loader's), `BENCH_SANDBOX_PORTS` (default
//! the worker's `sandbox_ports`; a step whose functions outnumber a worker's slice of it gets `sandbox_addresses`
//! enough for all of them). Figures also go to
//! `target/bench-churn.json`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use contracts::config::PortRange;
use contracts::run_folder::summary::RunSummary;
use loader::config::{ColdStartWorkload, DriverConfig, RunConfig, TargetConfig, Workload};
use loader::driver::{DriverOptions, StopSignal};
use orchestrator::test_util::cpu_seconds;
use serde::Serialize;
use support::Role;

const JSON_REPORT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/bench-churn.json");

/// The two creation delays compared, ms.
const DELAYS_MS: [u64; 2] = [0, 40];
/// Keep-alive well under the cooldown, so that every call of a function (not only its first) is a cold start.
const AUTOSCALER: &str = "{stable_window: 1s, panic_window: 500ms, tick: 200ms}";
/// The target: cold starts per second at a p99 scheduling latency under [`TARGET_P99_MS`].
const TARGET_RATE: f64 = 2_500.0;
const TARGET_P99_MS: f64 = 10.0;
/// Where a step counts as past the knee.
const KNEE_ACHIEVED_SHARE: f64 = 0.9;
const KNEE_P99_MS: f64 = 100.0;

#[derive(Debug, Clone, Serialize)]
struct Settings {
    rates: Vec<f64>,
    step_s: f64,
    warmup_s: f64,
    cooldown_s: f64,
    workers: u32,
    /// The sandbox ports the workers share out, one slice each.
    sandbox_ports: PortRange,
    send_lag_threshold_us: Option<u64>,
}

impl Settings {
    fn from_env() -> anyhow::Result<Self> {
        let rates = match std::env::var("BENCH_RATES") {
            Ok(list) => list
                .split(',')
                .map(|r| r.trim().parse::<f64>().with_context(|| format!("BENCH_RATES: {r:?} is not a number")))
                .collect::<anyhow::Result<Vec<f64>>>()?,
            Err(_) => vec![100.0, 250.0, 500.0, 1000.0, 1500.0, 2500.0, 4000.0, 10000.0],
        };
        anyhow::ensure!(rates.iter().all(|r| *r > 0.0), "BENCH_RATES: every rate must be above 0");
        let duration = |key: &str, default: &str| -> anyhow::Result<Duration> {
            let text = std::env::var(key).unwrap_or_else(|_| default.into());
            humantime::parse_duration(&text).with_context(|| format!("{key}={text:?} is not a duration"))
        };
        let workers: u32 = std::env::var("BENCH_WORKERS").ok().map(|w| w.parse()).transpose()?.unwrap_or(1);
        anyhow::ensure!(workers >= 1, "BENCH_WORKERS must be at least 1");
        let send_lag = std::env::var("BENCH_SEND_LAG").ok().map(|t| duration("BENCH_SEND_LAG", &t)).transpose()?;
        Ok(Self {
            rates,
            step_s: duration("BENCH_STEP", "5s")?.as_secs_f64(),
            warmup_s: duration("BENCH_WARMUP", "1s")?.as_secs_f64(),
            cooldown_s: duration("BENCH_COOLDOWN", "2s")?.as_secs_f64(),
            workers,
            sandbox_ports: match std::env::var("BENCH_SANDBOX_PORTS") {
                Ok(text) => contracts::yaml::parse(&text).with_context(|| format!("BENCH_SANDBOX_PORTS={text:?}"))?,
                Err(_) => contracts::config::WorkerConfig::default().sandbox_ports,
            },
            send_lag_threshold_us: send_lag.map(|d| d.as_micros() as u64),
        })
    }
}

/// One step: one rate, one creation delay.
#[derive(Debug, Clone, Serialize)]
struct Step {
    requested_per_s: f64,
    creation_delay_ms: u64,
    functions: u64,
    sandbox_addresses: u32,
    sent: u64,
    cold_starts: u64,
    achieved_cold_per_s: f64,
    cold_share: f64,
    scheduling_p50_ms: Option<f64>,
    scheduling_p99_ms: Option<f64>,
    failed: u64,
    send_lag_p99_ms: Option<f64>,
    trustworthy: bool,
    registrations_per_s: f64,
    /// CPU seconds over the loader run (registrations, sends, deletions) of each role, and of this process.
    cpu_control_plane_s: f64,
    cpu_data_plane_s: f64,
    cpu_workers_s: f64,
    cpu_loader_s: f64,
    wall_s: f64,
    /// Why this step is past the knee, if it is.
    missed: Vec<String>,
}

/// A fresh cluster of role processes, stopped on drop: workers first and the control plane last (field order), so
/// that no role sees its control plane go away.
struct Cluster {
    workers: Vec<Role>,
    data_plane: Role,
    control_plane: Role,
}

impl Cluster {
    async fn start(settings: &Settings, creation_delay_ms: u64, functions: u64) -> Cluster {
        let control_plane = Role::start(
            "control-plane",
            &format!("grpc_listen: 127.0.0.1:0\nhttp_listen: 127.0.0.1:0\nautoscaler: {AUTOSCALER}\n"),
        );
        let grpc = control_plane.address("grpc");
        let data_plane = Role::start(
            "data-plane",
            &format!(
                "proxy_listen: 127.0.0.1:0\ngrpc_listen: 127.0.0.1:0\ncontrol_plane: {grpc}\n\
                 report_interval: 200ms\nqueue_timeout: 20s\n"
            ),
        );
        let workers = (0..settings.workers)
            .map(|index| {
                let ports = settings.sandbox_ports.slice(settings.workers, index);
                let yaml = format!(
                    "name: worker-{index}\nlisten: 127.0.0.1:0\ncontrol_plane: {grpc}\nruntime: simulated\n\
                     creation_delay: {creation_delay_ms}ms\nsandbox_ports: {ports}\n{}",
                    sandbox_addresses_yaml(sandbox_addresses(functions, settings.workers, ports)),
                );
                Role::start("worker", &yaml)
            })
            .collect();
        let cluster = Cluster { workers, data_plane, control_plane };
        let wanted = settings.workers as usize;
        support::wait_for_health(
            &cluster.control_plane.address("api"),
            "every role registered",
            (Duration::from_millis(10), Duration::from_secs(30)),
            |h| h.workers == wanted && h.data_planes == 1,
        )
        .await;
        cluster
    }

    /// CPU seconds so far: control plane, data plane, workers together.
    fn cpu(&self) -> [f64; 3] {
        [
            cpu_seconds(self.control_plane.pid()),
            cpu_seconds(self.data_plane.pid()),
            self.workers.iter().map(|w| cpu_seconds(w.pid())).sum(),
        ]
    }
}

/// Addresses each worker needs so that every function can hold its one sandbox at once: the most a step asks.
fn sandbox_addresses(functions: u64, workers: u32, ports: PortRange) -> u32 {
    let per_worker = functions.div_ceil(u64::from(workers));
    u32::try_from(per_worker.div_ceil(u64::from(ports.len()))).unwrap_or(u32::MAX).max(1)
}

/// The worker config line for `addresses` sandbox addresses (none for one, the default).
fn sandbox_addresses_yaml(addresses: u32) -> String {
    if addresses > 1 { format!("sandbox_addresses: {addresses}\n") } else { String::new() }
}

fn unix_us(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

fn loader_config(settings: &Settings, cluster: &Cluster, rate: f64, output: &Path) -> RunConfig {
    let mut config = RunConfig {
        workload: Workload::ColdStarts(ColdStartWorkload {
            rate,
            cooldown: Duration::from_secs_f64(settings.cooldown_s),
            duration: Duration::from_secs_f64(settings.step_s),
            warmup: Duration::from_secs_f64(settings.warmup_s),
            runtime_ms: 10,
            memory_mib: 16,
        }),
        target: TargetConfig::Dirigent {
            api: cluster.control_plane.address("api"),
            proxy: cluster.data_plane.address("proxy"),
            // The simulated runtime runs no image; the name only shows in the registry.
            image: "simulated:churn".into(),
            min_scale: 0,
            max_scale: 0,
        },
        driver: DriverConfig {
            request_timeout: Duration::from_secs(20),
            drain_timeout: Duration::from_secs(20),
            ..DriverConfig::default()
        },
        output: output.to_owned(),
        ..RunConfig::default()
    };
    if let Some(us) = settings.send_lag_threshold_us {
        config.send_lag_threshold = Duration::from_micros(us);
    }
    config
}

fn step(
    runtime: &tokio::runtime::Runtime,
    settings: &Settings,
    rate: f64,
    creation_delay_ms: u64,
) -> anyhow::Result<Step> {
    let functions = (rate * settings.cooldown_s).ceil() as u64;
    // Started from the main thread, which is not real-time, so that the roles do not inherit the loader's priority.
    let cluster = runtime.block_on(Cluster::start(settings, creation_delay_ms, functions));
    let dir = tempfile::tempdir()?;
    let config = loader_config(settings, &cluster, rate, &dir.path().join("run"));
    // Preparing is pure computation; timed apart so that the registrations' share of the lead-up is known.
    let prepared = Instant::now();
    drop(loader::workload::prepare(&config)?);
    let prepare_s = prepared.elapsed().as_secs_f64();

    let (roles_before, loader_before) = (cluster.cpu(), cpu_seconds(std::process::id()));
    let (called, began) = (SystemTime::now(), Instant::now());
    // On a runtime thread, so that the scheduler and writer threads the loader starts inherit its real-time policy.
    let run = config.clone();
    let report = runtime
        .block_on(runtime.spawn(async move { loader::run::run(&run, StopSignal::new()).await }))?
        .context("loader run")?;
    let wall_s = began.elapsed().as_secs_f64();
    let (roles_after, loader_after) = (cluster.cpu(), cpu_seconds(std::process::id()));
    drop(cluster);

    // Until offset 0 of the schedule the loader prepares, registers every function and lists the data planes.
    let lead_us = report.replay.start_unix_us.saturating_sub(unix_us(called));
    let start_delay_s = DriverOptions::default().start_delay.as_secs_f64();
    let registration_s = (lead_us as f64 / 1e6 - start_delay_s - prepare_s).max(1e-6);

    let text = std::fs::read_to_string(config.output.join("summary.json")).context("reading summary.json")?;
    let summary: RunSummary = serde_json::from_str(&text).context("parsing summary.json")?;
    let overall = &summary.overall;
    let ms = |us: u64| us as f64 / 1000.0;
    let scheduling = overall.scheduling_latency_us.as_ref();
    let mut step = Step {
        requested_per_s: rate,
        creation_delay_ms,
        functions,
        sandbox_addresses: sandbox_addresses(
            functions,
            settings.workers,
            settings.sandbox_ports.slice(settings.workers, 0),
        ),
        sent: overall.counts.measured,
        cold_starts: overall.counts.cold_starts,
        achieved_cold_per_s: overall.counts.cold_starts as f64 / summary.measured_duration_s,
        cold_share: overall.counts.cold_starts as f64 / overall.counts.measured.max(1) as f64,
        scheduling_p50_ms: scheduling.map(|p| ms(p.p50)),
        scheduling_p99_ms: scheduling.map(|p| ms(p.p99)),
        // Invocations still unanswered when the drain ran out have no record, so they count as failed too.
        failed: overall.failures + report.replay.abandoned,
        send_lag_p99_ms: overall.send_lag_us.as_ref().map(|p| ms(p.p99)),
        trustworthy: summary.trustworthy,
        registrations_per_s: functions as f64 / registration_s,
        cpu_control_plane_s: roles_after[0] - roles_before[0],
        cpu_data_plane_s: roles_after[1] - roles_before[1],
        cpu_workers_s: roles_after[2] - roles_before[2],
        cpu_loader_s: loader_after - loader_before,
        wall_s,
        missed: Vec::new(),
    };
    step.missed = knee_reasons(&step);
    Ok(step)
}

/// Why a step is past the knee; empty when it kept up.
fn knee_reasons(step: &Step) -> Vec<String> {
    let mut reasons = Vec::new();
    if step.achieved_cold_per_s < KNEE_ACHIEVED_SHARE * step.requested_per_s {
        reasons.push(format!("achieved under {:.0}% of requested", KNEE_ACHIEVED_SHARE * 100.0));
    }
    if step.failed > 0 {
        reasons.push(format!("{} failed", step.failed));
    }
    if step.scheduling_p99_ms.is_none_or(|p99| p99 > KNEE_P99_MS) {
        reasons.push(format!("scheduling p99 over {KNEE_P99_MS} ms"));
    }
    if !step.trustworthy {
        reasons.push("send lag over the loader's threshold".into());
    }
    reasons
}

fn header() {
    println!(
        "{:>7} {:>6} {:>7} {:>4} {:>10} {:>6} {:>8} {:>8} {:>6} {:>9} {:>8} {:>6} {:>6} {:>6} {:>6} {:>6}  verdict",
        "req/s",
        "delay",
        "fns",
        "addr",
        "cold/s",
        "cold%",
        "p50 ms",
        "p99 ms",
        "failed",
        "lag p99",
        "reg/s",
        "cpu cp",
        "cpu dp",
        "cpu w",
        "cpu ld",
        "wall",
    );
}

fn row(step: &Step) {
    let opt = |v: Option<f64>| v.map_or_else(|| "-".into(), |v| format!("{v:.2}"));
    println!(
        "{:>7.0} {:>4}ms {:>7} {:>4} {:>10.1} {:>5.1}% {:>8} {:>8} {:>6} {:>9} {:>8.0} {:>6.2} {:>6.2} {:>6.2} {:>6.2} {:>5.1}s  {}",
        step.requested_per_s,
        step.creation_delay_ms,
        step.functions,
        step.sandbox_addresses,
        step.achieved_cold_per_s,
        step.cold_share * 100.0,
        opt(step.scheduling_p50_ms),
        opt(step.scheduling_p99_ms),
        step.failed,
        opt(step.send_lag_p99_ms),
        step.registrations_per_s,
        step.cpu_control_plane_s,
        step.cpu_data_plane_s,
        step.cpu_workers_s,
        step.cpu_loader_s,
        step.wall_s,
        if step.missed.is_empty() { "kept up".into() } else { format!("knee: {}", step.missed.join(", ")) },
    );
}

/// The highest rate a setting kept up with, and the first it did not.
#[derive(Debug, Clone, Serialize)]
struct Knee {
    creation_delay_ms: u64,
    last_kept_up_per_s: Option<f64>,
    first_missed_per_s: Option<f64>,
}

fn knee(steps: &[Step], creation_delay_ms: u64) -> Knee {
    let of_setting = || steps.iter().filter(move |s| s.creation_delay_ms == creation_delay_ms);
    Knee {
        creation_delay_ms,
        last_kept_up_per_s: of_setting().filter(|s| s.missed.is_empty()).map(|s| s.requested_per_s).reduce(f64::max),
        first_missed_per_s: of_setting().find(|s| !s.missed.is_empty()).map(|s| s.requested_per_s),
    }
}

/// Whether a step reached the target: the rate achieved at a p99 scheduling latency under 10 ms.
fn meets_target(step: &Step) -> bool {
    step.failed == 0
        && step.trustworthy
        && step.achieved_cold_per_s >= TARGET_RATE
        && step.scheduling_p99_ms.is_some_and(|p99| p99 < TARGET_P99_MS)
}

#[derive(Debug, Serialize)]
struct Results {
    settings: Settings,
    loadavg: [String; 2],
    steps: Vec<Step>,
    knees: Vec<Knee>,
    /// Per creation delay, in [`DELAYS_MS`] order.
    target_met: Vec<bool>,
}

fn main() -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    // As the loader binary does: the loader's threads run as soon as they wake, so send lag is the platform's doing.
    let realtime =
        std::thread::spawn(loader::driver::realtime::enter).join().map_err(|_| anyhow::anyhow!("panicked"))?;
    if let Err(err) = &realtime {
        eprintln!("warning: no real-time priority for the loader ({err}); send lag may grow under CPU contention");
    }
    let realtime = realtime.is_ok();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .on_thread_start(move || {
            if realtime {
                let _ = loader::driver::realtime::enter();
            }
        })
        .build()?;
    let before = contracts::bench::loadavg();
    println!(
        "churn: cold-starts workload, {} s per step after {} s of warm-up, cooldown {} s, 10 ms runtime, {} worker(s), simulated runtime, \
         loader at real-time priority: {realtime}; load average at start {before}",
        settings.step_s, settings.warmup_s, settings.cooldown_s, settings.workers
    );
    header();
    let mut steps: Vec<Step> = Vec::new();
    let mut stopped = [false; DELAYS_MS.len()];
    for &rate in &settings.rates {
        for (index, &delay) in DELAYS_MS.iter().enumerate() {
            if stopped[index] {
                continue;
            }
            eprintln!("step: {rate}/s, creation_delay {delay} ms ...");
            let step = self::step(&runtime, &settings, rate, delay)?;
            row(&step);
            stopped[index] = !step.missed.is_empty();
            steps.push(step);
        }
        if stopped.iter().all(|s| *s) {
            break;
        }
    }
    let after = contracts::bench::loadavg();
    let knees: Vec<Knee> = DELAYS_MS.iter().map(|&d| knee(&steps, d)).collect();
    let target_met: Vec<bool> =
        DELAYS_MS.iter().map(|&d| steps.iter().any(|s| s.creation_delay_ms == d && meets_target(s))).collect();
    println!("\nload average at start {before}, at end {after}");
    println!(
        "(fns: functions registered; addr: sandbox addresses per worker; cold/s: measured cold starts per second; p50, \
         p99: scheduling latency; lag p99: the loader's send lag, ms; reg/s: registrations per second; cpu: seconds \
         of user + system time over the step's loader run (registrations, sends, deletions) of the control plane, the \
         data plane, the workers and this process, which is the loader; wall: that run's length)"
    );
    for knee in &knees {
        let show = |r: Option<f64>| r.map_or_else(|| "none".into(), |r| format!("{r:.0}/s"));
        println!(
            "creation_delay {} ms: kept up to {}, knee at {}",
            knee.creation_delay_ms,
            show(knee.last_kept_up_per_s),
            show(knee.first_missed_per_s)
        );
    }
    let target = format!(">= {TARGET_RATE:.0} cold starts/s with p99 scheduling latency < {TARGET_P99_MS} ms");
    for (delay, met) in DELAYS_MS.iter().zip(&target_met) {
        // Scheduling latency holds the creation delay, so with 40 ms the target cannot be met by construction.
        println!("creation_delay {delay} ms: {}", contracts::bench::verdict(*met, &target));
    }
    let results = Results { settings, loadavg: [before, after], steps, knees, target_met };
    contracts::bench::publish(&results, Path::new(JSON_REPORT))?;
    Ok(())
}
