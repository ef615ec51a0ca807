//! `cargo bench -p orchestrator --bench replication`: how long the replicated registry is without a leader.
//!
//! Each round starts three replicas afresh (loopback gRPC, an SQLite file each, the default timings: heartbeat
//! 50 ms, election timeout 150-300 ms), commits one change, then stops the leader (its Raft node, then its gRPC
//! server) and times, from just before the stop: the survivors agreeing on a new leader (seen on openraft's
//! metrics), and the new leader's first committed change. Reported over `BENCH_ROUNDS` (default 10): median and
//! min-max. Then, once, `BENCH_WRITES` (default 25,000) `SaveFunction` changes at once on a fresh leader, the way
//! concurrent registrations reach it, timed until the last is committed. Also written to
//! `target/bench-replication.json`.

use std::path::Path;
use std::time::{Duration, Instant};

use contracts::api::FunctionSpec;
use orchestrator::control_plane::store::{RegistryStore, StoreChange};
use orchestrator::test_util::replicas::Replicas;
use serde::Serialize;

const JSON_REPORT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/bench-replication.json");

/// One round, milliseconds from just before the leader's stop.
#[derive(Debug, Clone, Copy, Serialize)]
struct Round {
    /// Stopping the leader took this long (its node, then its server).
    stopped_ms: f64,
    /// Every survivor named the same new leader, which leads.
    elected_ms: f64,
    /// The new leader committed a change.
    committed_ms: f64,
}

#[derive(Debug, Serialize)]
struct Results {
    rounds: Vec<Round>,
    /// Changes applied at once on the leader.
    writes: usize,
    /// The time until the last was committed, seconds.
    writes_seconds: f64,
    loadavg: [String; 2],
}

fn main() -> anyhow::Result<()> {
    let rounds: usize = std::env::var("BENCH_ROUNDS").map_or(Ok(10), |value| value.parse())?;
    let writes: usize = std::env::var("BENCH_WRITES").map_or(Ok(25_000), |value| value.parse())?;
    let runtime = tokio::runtime::Runtime::new()?;
    let before = contracts::bench::loadavg();
    let mut measured = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let dir = tempfile::tempdir()?;
        measured.push(runtime.block_on(failover(round, dir.path()))?);
    }
    let dir = tempfile::tempdir()?;
    let writes_seconds = runtime.block_on(concurrent_writes(writes, dir.path()))?.as_secs_f64();
    let results = Results { rounds: measured, writes, writes_seconds, loadavg: [before, contracts::bench::loadavg()] };
    print(&results);
    contracts::bench::publish(&results, Path::new(JSON_REPORT))?;
    Ok(())
}

fn save(name: String) -> StoreChange {
    StoreChange::SaveFunction(FunctionSpec::new(name, "/usr/bin/true"))
}

async fn failover(round: usize, dir: &Path) -> anyhow::Result<Round> {
    let mut replicas = Replicas::start(3, dir).await;
    let leader = replicas.leader().await;
    replicas.store(leader).write(save(format!("before-{round}"))).await?;
    let start = Instant::now();
    replicas.stop(leader).await;
    let stopped = start.elapsed();
    let (elected, committed) = loop {
        let new = replicas.leader().await;
        let elected = start.elapsed();
        // A leader agreed on may still lose its term before the write lands; then the survivors elect again.
        if replicas.store(new).write(save(format!("after-{round}"))).await.is_ok() {
            break (elected, start.elapsed());
        }
    };
    replicas.stop_all().await;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    Ok(Round { stopped_ms: ms(stopped), elected_ms: ms(elected), committed_ms: ms(committed) })
}

/// `writes` changes at once on the leader of three fresh replicas; the time until the last is committed.
async fn concurrent_writes(writes: usize, dir: &Path) -> anyhow::Result<Duration> {
    let mut replicas = Replicas::start(3, dir).await;
    let leader = replicas.store(replicas.leader().await).clone();
    let start = Instant::now();
    let written = futures_util::future::join_all((0..writes).map(|i| leader.write(save(format!("fn-{i}"))))).await;
    let elapsed = start.elapsed();
    written.into_iter().collect::<Result<Vec<u64>, _>>()?;
    anyhow::ensure!(leader.load()?.functions.len() == writes, "not every change is in the leader's registry");
    replicas.stop_all().await;
    Ok(elapsed)
}

fn median_and_range(values: impl Iterator<Item = f64>) -> (f64, f64, f64) {
    let mut sorted: Vec<f64> = values.collect();
    sorted.sort_by(f64::total_cmp);
    // The lower median for an even count: a round that happened, not an average of two.
    let median = sorted.get((sorted.len().max(1) - 1) / 2).copied().unwrap_or(f64::NAN);
    (median, sorted.first().copied().unwrap_or(f64::NAN), sorted.last().copied().unwrap_or(f64::NAN))
}

/// One figure of a round.
type Field = fn(&Round) -> f64;

fn print(results: &Results) {
    println!();
    println!(
        "leader stopped -> new leader, {} rounds of 3 replicas; load average before {} / after {}",
        results.rounds.len(),
        results.loadavg[0],
        results.loadavg[1]
    );
    println!("{:<34} {:>10} {:>16}", "from just before the leader's stop", "median ms", "min-max ms");
    let rows: [(&str, Field); 3] = [
        ("leader stopped", |r| r.stopped_ms),
        ("survivors agree on a new leader", |r| r.elected_ms),
        ("new leader's first committed write", |r| r.committed_ms),
    ];
    for (label, value) in rows {
        let (median, min, max) = median_and_range(results.rounds.iter().map(value));
        println!("{label:<34} {median:>10.1} {:>16}", format!("{min:.1}-{max:.1}"));
    }
    let each: Vec<String> = results.rounds.iter().map(|r| format!("{:.0}", r.committed_ms)).collect();
    println!("first committed write per round, ms: {}", each.join(" "));
    let rate = results.writes as f64 / results.writes_seconds;
    println!(
        "{} SaveFunction changes at once on the leader: all committed in {:.2} s ({rate:.0}/s)",
        results.writes, results.writes_seconds
    );
}
