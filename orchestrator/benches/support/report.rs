//! The report: a table on stdout and the same figures as JSON.

use contracts::bench::verdict;
use serde::Serialize;

use super::Settings;
use super::cold::{ColdPhase, ColdResult};
use super::stats::Summary;
use super::warm::{PathResult, WarmCase};

/// Target from the issue: data-plane overhead at p50, µs.
pub const OVERHEAD_P50_TARGET_US: f64 = 100.0;
/// Target from the issue: data-plane throughput as a percentage of direct.
pub const THROUGHPUT_TARGET_PCT: f64 = 60.0;
/// Target from the issue: process cold start at p50, µs.
pub const COLD_START_P50_TARGET_US: f64 = 5_000.0;

/// Everything one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Results {
    /// What was asked for.
    pub settings: Settings,
    /// `/proc/loadavg` before and after: the machine is shared, so the figures need this context.
    pub loadavg: [String; 2],
    /// Warm path, one entry per concurrency.
    pub warm: Vec<WarmCase>,
    /// Cold starts.
    pub cold: ColdResult,
}

/// Prints the tables.
pub fn print(results: &Results) {
    let s = &results.settings;
    println!();
    println!(
        "dirigent standalone, {} workers, process runtime; load average before {} / after {}",
        s.workers, results.loadavg[0], results.loadavg[1]
    );
    print_warm(&results.warm, s);
    print_cold(&results.cold, s.cold);
}

fn print_warm(cases: &[WarmCase], settings: &Settings) {
    println!();
    println!(
        "Warm path: workload=empty, closed loop, {} requests per row after {} warm-up, keep-alive HTTP/1.1",
        settings.requests, settings.warmup
    );
    println!(
        "{:<12} {:>4} {:>12} {:>9} {:>9} {:>9} {:>16} {:>16}",
        "path", "conc", "requests/s", "p50 µs", "p99 µs", "mean µs", "dp proxy p50/p99", "dp queue p50/p99"
    );
    for case in cases {
        print_path("direct", case.concurrency, &case.direct);
        print_path("data plane", case.concurrency, &case.proxy);
    }
    println!();
    for case in cases {
        let dp = case.proxy.server_proxy.unwrap_or_default();
        println!(
            "c={}: throughput {:.1}% of direct [{}], overhead p50 {:+.0} µs [{}], p99 {:+.0} µs; data plane's own proxy;dur p50 {:.0} µs",
            case.concurrency,
            case.throughput_pct,
            verdict(case.throughput_pct >= THROUGHPUT_TARGET_PCT, &format!(">= {THROUGHPUT_TARGET_PCT}%")),
            case.overhead_p50_us,
            verdict(case.overhead_p50_us < OVERHEAD_P50_TARGET_US, &format!("< {OVERHEAD_P50_TARGET_US} µs")),
            case.overhead_p99_us,
            dp.p50_us,
        );
        if case.proxy.not_warm > 0 {
            println!("  warning: {} measured requests were not served warm (coldstart != none)", case.proxy.not_warm);
        }
    }
}

fn print_path(label: &str, concurrency: usize, path: &PathResult) {
    let pair = |s: Option<Summary>| s.map_or_else(|| "-".to_owned(), p50_p99);
    println!(
        "{label:<12} {concurrency:>4} {:>12.0} {:>9.0} {:>9.0} {:>9.0} {:>16} {:>16}",
        path.requests_per_s,
        path.latency.p50_us,
        path.latency.p99_us,
        path.latency.mean_us,
        pair(path.server_proxy),
        pair(path.server_queue),
    );
}

fn print_cold(cold: &ColdResult, count: usize) {
    println!();
    println!(
        "Cold starts: {count} functions at zero per phase, each invoked once through the data plane (workload=empty); µs"
    );
    println!(
        "{:<11} {:>9} {:>10} {:>15} {:>15} {:>15} {:>9} {:>7}",
        "phase", "wall ms", "starts/s", "e2e p50/p99", "create p50/p99", "queue p50/p99", "!trigger", "failed"
    );
    print_phase("sequential", &cold.sequential);
    print_phase("burst", &cold.burst);
    println!();
    let seq = &cold.sequential;
    println!(
        "process cold start p50: end-to-end {:.0} µs [{}], create {:.0} µs [{}]; burst: {:.1} cold starts/s",
        seq.latency.p50_us,
        verdict(seq.latency.p50_us < COLD_START_P50_TARGET_US, "< 5 ms"),
        seq.create.p50_us,
        verdict(seq.create.p50_us < COLD_START_P50_TARGET_US, "< 5 ms"),
        cold.burst.cold_starts_per_s,
    );
    for (label, phase) in [("sequential", seq), ("burst", &cold.burst)] {
        if let Some(failure) = &phase.first_failure {
            println!("  {label}: {} invocations failed; first: {failure}", phase.failures);
        }
    }
}

fn print_phase(label: &str, phase: &ColdPhase) {
    println!(
        "{label:<11} {:>9.1} {:>10.1} {:>15} {:>15} {:>15} {:>9} {:>7}",
        phase.wall_s * 1e3,
        phase.cold_starts_per_s,
        p50_p99(phase.latency),
        p50_p99(phase.create),
        p50_p99(phase.queue),
        phase.not_triggered,
        phase.failures,
    );
}

/// `p50/p99` in µs.
fn p50_p99(summary: Summary) -> String {
    format!("{:.0}/{:.0}", summary.p50_us, summary.p99_us)
}
