//! `cargo bench -p orchestrator --bench store`: registering many functions at once through each registry store.
//!
//! Each round opens every store afresh (a new SQLite file, a new Redis key prefix) and applies
//! `BENCH_FUNCTIONS` (default 25,000) `SaveFunction` changes all at once, the way concurrent registrations reach
//! the control plane; the stores take turns within a round (interleaved) so that a noisy neighbour on the shared
//! machine hits them all alike. Reported per store over `BENCH_ROUNDS` (default 5): the time for all of them
//! (median, min-max), applies/s, and the CPU time of this process (and of `redis-server` for Redis).
//!
//! Needs `redis-server` on the PATH (one is started on a free loopback port, nothing persisted, and stopped at
//! the end). Writes the figures to `target/bench-store.json` too.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use contracts::api::FunctionSpec;
use contracts::config::Synchronous;
use futures_util::future::join_all;
use orchestrator::control_plane::store::{MemoryStore, RedisStore, RegistryStore, SqliteStore, StoreChange};
use orchestrator::test_util::redis::RedisServer;
use serde::Serialize;

const JSON_REPORT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/bench-store.json");

/// The stores, in the order each round runs them.
const STORES: [&str; 4] = ["sqlite normal", "sqlite full", "redis", "memory"];

#[derive(Debug, Clone, Serialize)]
struct Settings {
    functions: usize,
    rounds: usize,
}

/// One store's rounds.
#[derive(Debug, Clone, Serialize)]
struct StoreResult {
    store: &'static str,
    /// Wall time for all functions, seconds, one per round.
    seconds: Vec<f64>,
    /// CPU time of this process per round, seconds.
    cpu_seconds: Vec<f64>,
    /// CPU time of the Redis server per round, seconds (Redis only).
    server_cpu_seconds: Vec<f64>,
}

#[derive(Debug, Clone, Serialize)]
struct Results {
    settings: Settings,
    loadavg: [String; 2],
    stores: Vec<StoreResult>,
}

fn env_usize(key: &str, default: usize) -> anyhow::Result<usize> {
    match std::env::var(key) {
        Ok(value) => value.parse().map_err(|e| anyhow::anyhow!("{key}={value:?}: {e}")),
        Err(_) => Ok(default),
    }
}

fn main() -> anyhow::Result<()> {
    let settings = Settings { functions: env_usize("BENCH_FUNCTIONS", 25_000)?, rounds: env_usize("BENCH_ROUNDS", 5)? };
    let runtime = tokio::runtime::Runtime::new()?;
    let redis = RedisServer::start();
    let dir = tempfile::tempdir()?;
    let before = contracts::bench::loadavg();
    let mut stores: Vec<StoreResult> = STORES
        .iter()
        .map(|&store| StoreResult { store, seconds: vec![], cpu_seconds: vec![], server_cpu_seconds: vec![] })
        .collect();
    for round in 0..settings.rounds {
        for result in &mut stores {
            let store = open(result.store, round, dir.path(), &redis)?;
            let (cpu, server_cpu) = (
                orchestrator::test_util::cpu_seconds(std::process::id()),
                orchestrator::test_util::cpu_seconds(redis.pid()),
            );
            let elapsed = runtime.block_on(register(&*store, round, settings.functions))?;
            result.seconds.push(elapsed.as_secs_f64());
            result.cpu_seconds.push(orchestrator::test_util::cpu_seconds(std::process::id()) - cpu);
            if result.store == "redis" {
                result.server_cpu_seconds.push(orchestrator::test_util::cpu_seconds(redis.pid()) - server_cpu);
            }
            let stored = store.load()?.functions.len();
            anyhow::ensure!(
                stored == settings.functions,
                "{}: {stored} of {} stored",
                result.store,
                settings.functions
            );
        }
    }
    let results = Results { settings, loadavg: [before, contracts::bench::loadavg()], stores };
    print(&results);
    contracts::bench::publish(&results, Path::new(JSON_REPORT))?;
    Ok(())
}

fn open(store: &str, round: usize, dir: &Path, redis: &RedisServer) -> anyhow::Result<Arc<dyn RegistryStore>> {
    let file = |name: &str| dir.join(format!("{name}-{round}.sqlite"));
    Ok(match store {
        "sqlite normal" => Arc::new(SqliteStore::open(&file("normal"), Synchronous::Normal)?),
        "sqlite full" => Arc::new(SqliteStore::open(&file("full"), Synchronous::Full)?),
        "redis" => Arc::new(RedisStore::open(&redis.url(), &format!("bench-{round}:"))?),
        _ => Arc::new(MemoryStore::default()),
    })
}

/// Applies `functions` registrations at once; the time until the last is acknowledged.
async fn register(store: &dyn RegistryStore, round: usize, functions: usize) -> anyhow::Result<Duration> {
    let changes: Vec<StoreChange> = (0..functions)
        .map(|i| StoreChange::SaveFunction(FunctionSpec::new(format!("fn-{round}-{i}"), "/usr/bin/true")))
        .collect();
    let start = Instant::now();
    let results = join_all(changes.into_iter().map(|change| store.apply(change))).await;
    let elapsed = start.elapsed();
    results.into_iter().collect::<Result<Vec<()>, _>>()?;
    Ok(elapsed)
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN)
}

fn spread(values: &[f64]) -> (f64, f64) {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (min, max)
}

fn print(results: &Results) {
    let s = &results.settings;
    println!();
    println!(
        "{} concurrent SaveFunction applies per round, {} interleaved rounds; load average before {} / after {}",
        s.functions, s.rounds, results.loadavg[0], results.loadavg[1]
    );
    println!(
        "{:<14} {:>10} {:>19} {:>12} {:>21} {:>10} {:>12}",
        "store", "median s", "min-max s", "applies/s", "applies/s min-max", "cpu s", "server cpu s"
    );
    for store in &results.stores {
        let rate = |seconds: f64| s.functions as f64 / seconds;
        let (fast, slow) = spread(&store.seconds);
        let server = if store.server_cpu_seconds.is_empty() {
            "-".into()
        } else {
            format!("{:.2}", median(&store.server_cpu_seconds))
        };
        println!(
            "{:<14} {:>10.3} {:>19} {:>12.0} {:>21} {:>10.2} {:>12}",
            store.store,
            median(&store.seconds),
            format!("{fast:.3}-{slow:.3}"),
            rate(median(&store.seconds)),
            format!("{:.0}-{:.0}", rate(slow), rate(fast)),
            median(&store.cpu_seconds),
            server
        );
    }
    println!("(cpu: median CPU time of this process per round, user + system; clock ticks of 10 ms)");
}
