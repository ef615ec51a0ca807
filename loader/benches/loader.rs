//! `cargo bench -p loader --bench loader`: the loader's own limits against a trivial local HTTP target.
//!
//! Starts a minimal hyper server (this binary re-executed as a separate process; it answers 200 with a tiny JSON
//! body) and measures, with the loader library's real driver and HTTP target:
//!
//! 1. send lag (actual minus intended send time) p50/p99/max at fixed open-loop rates (1k, 5k and 20k/s), next to
//!    the machine's floor: how late a bare thread that sleeps and spins like the driver's scheduler wakes up;
//! 2. the highest open-loop rate the loader sustains (send-lag p99 under 1 ms, nothing failed), found by doubling
//!    then bisecting, next to what `wrk -t1` reaches closed-loop against the same server in the same run;
//! 3. peak RSS of the real `loader` binary: `loader schedule` over a trace of ten million invocations, and a real
//!    `loader run` against the server, with its RSS followed over time.
//!
//! Every record goes through the per-record work a real run does (`RunStats` and the `invocations.csv` writer into a
//! temporary file) unless `BENCH_RECORD_WORK=0`. The machine's cores are shared by the loader, the server and `wrk`.
//! Prints tables and writes the same figures to `target/bench-loader.json`.
//!
//! Environment: `BENCH_RATES` (default `1000,5000,20000`), `BENCH_SECS` (measured seconds per rate, 5),
//! `BENCH_WARMUP_SECS` (unmeasured lead of every replay, 1), `BENCH_FUNCTIONS` (100), `BENCH_RECORD_WORK` (1),
//! `BENCH_LAG_THRESHOLD_US` (1000), `BENCH_SEARCH_START` (5000/s), `BENCH_SEARCH_SECS` (3), `BENCH_SEARCH_TRIES`
//! (2), `BENCH_BISECT` (4), `BENCH_WRK_CONNECTIONS` (32), `BENCH_WRK_SECS` (10), `BENCH_SERVER_THREADS` (1),
//! `BENCH_RSS_INVOCATIONS` (10000000), `BENCH_RUN_INVOCATIONS` (300000), `BENCH_RUN_RATE` (3000/s), `BENCH_PARTS`
//! (`lag,sustained,rss`).

mod support;

use std::path::Path;

use support::replay::{Bench, Dist, RateCase};
use support::report::{self, LAG_TARGET_RATE, Results};
use support::rss::{self, RunRss, ScheduleRss};
use support::server::{self, ServerProcess};
use support::{ROLE_VAR, Settings, baseline, search, wrk};

const JSON_REPORT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/bench-loader.json");
/// The loader binary Cargo built for this bench (benches get their package's binaries' paths).
const LOADER_BIN: &str = env!("CARGO_BIN_EXE_loader");

fn main() -> anyhow::Result<()> {
    match std::env::var(ROLE_VAR).as_deref() {
        Ok(server::ROLE) => return server::serve(Settings::from_env()?.server_threads),
        Ok(rss::ROLE) => return rss::probe(&std::env::args().skip(1).collect::<Vec<_>>()),
        _ => {}
    }
    let settings = Settings::from_env()?;
    let before = contracts::bench::loadavg();
    let server = ServerProcess::start(settings.server_threads)?;
    let runtime = tokio::runtime::Runtime::new()?;
    let bench = Bench {
        runtime: &runtime,
        address: server.address().to_owned(),
        server_pid: server.pid(),
        settings: &settings,
    };
    let (timer_baseline, rates) = if settings.runs("lag") { measure_rates(&bench)? } else { (None, Vec::new()) };
    let (search, wrk) = if settings.runs("sustained") { measure_sustained(&bench)? } else { (None, None) };
    let (schedule_rss, run_rss) = if settings.runs("rss") { measure_rss(&bench)? } else { (None, None) };
    drop(runtime);
    drop(server);
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let ceiling_per_s = report::ceiling(&rates, search.as_ref());
    let loadavg = [before, contracts::bench::loadavg()];
    let results =
        Results { settings, cpus, loadavg, timer_baseline, rates, search, wrk, ceiling_per_s, schedule_rss, run_rss };
    report::print(&results);
    let path = Path::new(JSON_REPORT);
    contracts::bench::publish(&results, path)?;
    Ok(())
}

fn measure_rates(bench: &Bench<'_>) -> anyhow::Result<(Option<Dist>, Vec<RateCase>)> {
    let settings = bench.settings;
    eprintln!("machine floor: bare timer thread at {LAG_TARGET_RATE:.0}/s for {} s ...", settings.secs);
    let floor = baseline::measure(LAG_TARGET_RATE, settings.secs)?;
    let mut cases = Vec::new();
    for &rate in &settings.rates {
        eprintln!("send lag at {rate:.0}/s for {} s ...", settings.secs);
        cases.push(bench.run_rate(rate, settings.secs)?);
    }
    Ok((Some(floor), cases))
}

fn measure_sustained(bench: &Bench<'_>) -> anyhow::Result<(Option<search::Search>, Option<wrk::WrkResult>)> {
    let settings = bench.settings;
    eprintln!("searching the highest sustained open-loop rate from {:.0}/s ...", settings.search_start);
    let found = search::run(bench)?;
    let Some(path) = wrk::find_or_install() else { return Ok((Some(found), None)) };
    eprintln!("wrk closed loop, {} connections, {} s ...", settings.wrk_connections, settings.wrk_secs);
    let url = format!("http://{}/function/fn-0", bench.address);
    let result = wrk::run(&path, &url, settings.wrk_connections, settings.wrk_secs, bench.server_pid)?;
    Ok((Some(found), Some(result)))
}

fn measure_rss(bench: &Bench<'_>) -> anyhow::Result<(Option<ScheduleRss>, Option<RunRss>)> {
    let settings = bench.settings;
    let scratch = tempfile::tempdir()?;
    let trace_dir = scratch.path().join("trace");
    std::fs::create_dir_all(&trace_dir)?;
    let trace = rss::replicate(&trace_dir, settings.rss_invocations)?;
    let loader = Path::new(LOADER_BIN);
    eprintln!("peak RSS of loader schedule over {} invocations ...", trace.invocations);
    let schedule = rss::measure_schedule(loader, &trace, scratch.path())?;
    eprintln!("RSS of loader run, {} invocations at {:.0}/s ...", settings.run_invocations, settings.run_rate);
    let run =
        rss::measure_run(loader, &trace, &bench.address, settings.run_invocations, settings.run_rate, scratch.path())?;
    Ok((Some(schedule), Some(run)))
}
