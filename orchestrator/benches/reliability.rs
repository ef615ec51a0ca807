//! `cargo bench -p orchestrator --bench reliability`: the reliability suite's scenarios, timed.
//!
//! Each round runs every scenario of `tests/support/chaos.rs` once on a fresh cluster of role processes
//! (control plane with its embedded store or three replicas of it, two data planes, two workers, a function with four sandboxes called
//! every 10 ms), rounds interleaving the scenarios. Per scenario it prints, from the SIGKILL: the time to
//! detection, to the first cold start served and to full service; for the control-plane restart also from the
//! new process's start to the first cold start; and the requests that failed next to those in flight at the
//! kill. Targets from issue 12 are checked and written to `target/bench-reliability.json`.
//!
//! Environment: `BENCH_ROUNDS` (default 3). Build in release: the figures are the orchestrator's, not the
//! debug build's.

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::time::Duration;

use serde::Serialize;
use support::chaos::{self, Report, Scenario};

const JSON_REPORT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/bench-reliability.json");

/// One scenario's figures over the rounds.
#[derive(Debug, Serialize)]
struct Row {
    scenario: &'static str,
    rounds: usize,
    detection_ms: Spread,
    first_cold_start_ms: Spread,
    full_service_ms: Spread,
    service_after_start_ms: Spread,
    failed: Vec<usize>,
    in_flight_at_kill: Vec<usize>,
    failed_after_kill: usize,
    functions_lost: usize,
    leaked_sandboxes: usize,
    verdicts: Vec<String>,
}

/// Median, min and max of one figure, ms; `None` where the scenario has no such figure.
#[derive(Debug, Serialize, Default)]
struct Spread {
    median: Option<f64>,
    min: Option<f64>,
    max: Option<f64>,
}

impl Spread {
    fn of(values: impl Iterator<Item = Option<Duration>>) -> Self {
        let mut ms: Vec<f64> = values.flatten().map(|d| d.as_secs_f64() * 1000.0).collect();
        if ms.is_empty() {
            return Self::default();
        }
        ms.sort_by(f64::total_cmp);
        Self { median: Some(ms[ms.len() / 2]), min: ms.first().copied(), max: ms.last().copied() }
    }

    fn show(&self) -> String {
        match (self.median, self.min, self.max) {
            (Some(m), Some(lo), Some(hi)) => format!("{m:.0} ({lo:.0}-{hi:.0})"),
            _ => "-".into(),
        }
    }

    fn at_most(&self, ms: f64) -> bool {
        self.max.is_some_and(|max| max <= ms)
    }
}

fn row(scenario: Scenario, reports: &[Report]) -> Row {
    let of = |f: fn(&Report) -> Option<Duration>| Spread::of(reports.iter().map(f));
    let mut row = Row {
        scenario: scenario.name(),
        rounds: reports.len(),
        detection_ms: of(|r| r.detection),
        first_cold_start_ms: of(|r| r.first_cold_start),
        full_service_ms: of(|r| r.full_service),
        service_after_start_ms: of(|r| r.service_after_start),
        failed: reports.iter().map(|r| r.failed).collect(),
        in_flight_at_kill: reports.iter().map(|r| r.in_flight_at_kill).collect(),
        failed_after_kill: reports.iter().map(|r| r.failed_after_kill.len()).sum(),
        functions_lost: reports.iter().map(|r| r.functions_lost.len()).sum(),
        leaked_sandboxes: reports.iter().map(|r| r.leaked_sandboxes).sum(),
        verdicts: Vec::new(),
    };
    let within_flight = reports.iter().all(|r| r.failed <= r.in_flight_at_kill);
    row.verdicts.push(contracts::bench::verdict(row.functions_lost == 0, "0 functions lost"));
    match scenario {
        Scenario::WorkerKill => {
            row.verdicts.push(contracts::bench::verdict(row.detection_ms.at_most(1000.0), "detection <= 1 s"));
            row.verdicts.push(contracts::bench::verdict(within_flight, "failed <= in flight at the kill"));
        }
        Scenario::DataPlaneKill => {
            row.verdicts.push(contracts::bench::verdict(within_flight, "failed <= in flight at the kill"));
        }
        Scenario::ControlPlaneRestart => {
            let met = row.service_after_start_ms.at_most(1000.0);
            row.verdicts.push(contracts::bench::verdict(met, "cold starts <= 1 s after the process starts"));
        }
        Scenario::LeaderKill => {
            let met = row.first_cold_start_ms.at_most(1000.0);
            row.verdicts.push(contracts::bench::verdict(met, "cold starts <= 1 s after the kill"));
            row.verdicts.push(contracts::bench::verdict(within_flight, "failed <= in flight at the kill"));
        }
        Scenario::FollowerKill => {
            row.verdicts.push(contracts::bench::verdict(within_flight, "failed <= in flight at the kill"));
        }
    }
    row
}

fn print(rows: &[Row], loadavg: &[String; 2]) {
    println!(
        "\nreliability under load (times from the SIGKILL, ms: median (min-max)); loadavg {} -> {}",
        loadavg[0], loadavg[1]
    );
    println!(
        "{:<42} {:>16} {:>18} {:>18} {:>18} {:>12} {:>12}",
        "scenario", "detection", "first cold start", "full service", "after restart", "failed", "in flight"
    );
    for row in rows {
        println!(
            "{:<42} {:>16} {:>18} {:>18} {:>18} {:>12} {:>12}",
            row.scenario,
            row.detection_ms.show(),
            row.first_cold_start_ms.show(),
            row.full_service_ms.show(),
            row.service_after_start_ms.show(),
            format!("{:?}", row.failed),
            format!("{:?}", row.in_flight_at_kill),
        );
        println!(
            "    lost {} · leaked {} · failed after the kill {} · {}",
            row.functions_lost,
            row.leaked_sandboxes,
            row.failed_after_kill,
            row.verdicts.join(" · ")
        );
    }
}

fn main() -> anyhow::Result<()> {
    let rounds: usize = std::env::var("BENCH_ROUNDS").ok().map(|r| r.parse()).transpose()?.unwrap_or(3);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let before = contracts::bench::loadavg();
    let mut reports: Vec<Vec<Report>> = Scenario::ALL.iter().map(|_| Vec::new()).collect();
    for round in 1..=rounds {
        for (index, scenario) in Scenario::ALL.into_iter().enumerate() {
            eprintln!("round {round}/{rounds}: {}", scenario.name());
            reports[index].push(runtime.block_on(chaos::run(scenario)));
        }
    }
    let rows: Vec<Row> = Scenario::ALL.into_iter().zip(&reports).map(|(s, r)| row(s, r)).collect();
    let loadavg = [before, contracts::bench::loadavg()];
    print(&rows, &loadavg);
    contracts::bench::publish(&serde_json::json!({ "loadavg": loadavg, "scenarios": rows }), Path::new(JSON_REPORT))?;
    Ok(())
}
