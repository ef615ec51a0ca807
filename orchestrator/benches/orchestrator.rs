//! `cargo bench -p orchestrator`: the reference orchestrator's warm-path overhead and its process cold starts.
//!
//! Starts `dirigent standalone` (all roles in one process, ephemeral loopback ports) and measures:
//!
//! 1. the warm path: closed-loop `workload: empty` invocations through the data plane versus straight to the
//!    same sandboxes, at concurrency 1 (one sandbox) and 4 (four sandboxes, four client connections);
//! 2. cold starts with the process runtime: functions at zero invoked once each, one after another
//!    (latency, end to end and the `create` time the data plane reports) and all at once (cold starts/s).
//!
//! Prints a table and writes the same figures to `target/bench-orchestrator.json`. The cluster is stopped
//! (SIGTERM, which kills every sandbox) on every exit path.
//!
//! Environment: `BENCH_REQUESTS` (measured warm requests per row, default 20000), `BENCH_WARMUP` (default
//! 2000), `BENCH_COLD` (functions per cold-start phase, default 50), `BENCH_WORKERS` (default 2),
//! `BENCH_PROXY_THREADS` (the data plane's `proxy_threads`, default one per core), `BENCH_RUST_LOG`
//! (dirigent's log filter, default `warn`), `BENCH_DIRIGENT` (another `dirigent` binary to measure, for
//! comparing two builds with the same client).

mod support;

use std::path::Path;

use tokio::signal::unix::{Signal, SignalKind, signal};

use support::cluster::{Api, Dirigent};
use support::report::{self, Results};
use support::{Settings, cold, warm};

/// Warm-path concurrencies (client tasks = sandboxes).
const CONCURRENCIES: [usize; 2] = [1, 4];

const JSON_REPORT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/bench-orchestrator.json");

fn main() -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    let runtime = tokio::runtime::Runtime::new()?;
    // Installed before dirigent starts: from here on SIGINT and SIGTERM end the run through the guard's Drop.
    let mut interrupt = Interrupt::install(&runtime)?;
    let before = contracts::bench::loadavg();
    let dirigent = Dirigent::start(settings.workers)?;
    let measured = runtime.block_on(async {
        tokio::select! {
            measured = measure(&dirigent, &settings) => measured,
            signal = interrupt.recv() => Err(anyhow::anyhow!("interrupted by {signal}")),
        }
    });
    drop(runtime);
    drop(dirigent);
    let (warm, cold) = measured?;
    let results = Results { settings, loadavg: [before, contracts::bench::loadavg()], warm, cold };
    report::print(&results);
    let path = Path::new(JSON_REPORT);
    contracts::bench::publish(&results, path)?;
    Ok(())
}

/// SIGINT and SIGTERM, caught so that an interrupted run still stops the cluster.
struct Interrupt {
    interrupt: Signal,
    terminate: Signal,
}

impl Interrupt {
    fn install(runtime: &tokio::runtime::Runtime) -> anyhow::Result<Self> {
        let _context = runtime.enter();
        Ok(Self { interrupt: signal(SignalKind::interrupt())?, terminate: signal(SignalKind::terminate())? })
    }

    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }
}

async fn measure(dirigent: &Dirigent, settings: &Settings) -> anyhow::Result<(Vec<warm::WarmCase>, cold::ColdResult)> {
    let cluster = dirigent.addresses();
    let api = Api::new(&cluster.api);
    let mut cases = Vec::new();
    for concurrency in CONCURRENCIES {
        eprintln!("warm path, concurrency {concurrency} ...");
        cases.push(warm::measure(&api, cluster, settings, concurrency).await?);
    }
    eprintln!("cold starts, {} functions per phase ...", settings.cold);
    let cold = cold::measure(&api, cluster, settings.cold).await?;
    Ok((cases, cold))
}
