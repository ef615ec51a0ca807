//! The report: tables on stdout, each figure next to its target, and the same figures as JSON.

use contracts::bench::verdict;
use serde::Serialize;

use super::Settings;
use super::replay::{Dist, RateCase};
use super::rss::{RunRss, ScheduleRss, rss_at};
use super::search::Search;
use super::wrk::WrkResult;

/// Target from the issue: send-lag p99 at [`LAG_TARGET_RATE`], µs.
pub const LAG_P99_TARGET_US: u64 = 100;
/// The rate the send-lag target applies to, invocations/s.
pub const LAG_TARGET_RATE: f64 = 5_000.0;
/// Target from the issue: sustained open-loop rate over wrk's closed-loop rate.
pub const RATIO_TARGET: f64 = 0.5;
/// Target from the issue: peak RSS for a ten-million-invocation schedule, bytes (100 MB).
pub const RSS_TARGET_BYTES: f64 = 100e6;

/// Everything one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Results {
    /// What was asked for.
    pub settings: Settings,
    /// Online CPUs: the loader, the target server and wrk share them.
    pub cpus: usize,
    /// `/proc/loadavg` before and after: the machine is shared, so the figures need this context.
    pub loadavg: [String; 2],
    /// (1) the machine's floor: a bare sleep-then-spin thread's lateness at [`LAG_TARGET_RATE`], µs.
    pub timer_baseline: Option<Dist>,
    /// (1) send lag at fixed rates.
    pub rates: Vec<RateCase>,
    /// (2) the sustained-rate search.
    pub search: Option<Search>,
    /// (2) wrk against the same server; `None` when skipped.
    pub wrk: Option<WrkResult>,
    /// The highest send rate achieved in any replay of (1) or (2), send lag ignored: the loader's throughput ceiling.
    pub ceiling_per_s: f64,
    /// (3) peak RSS of `loader schedule`.
    pub schedule_rss: Option<ScheduleRss>,
    /// (3) RSS of a real `loader run`.
    pub run_rss: Option<RunRss>,
}

/// The highest achieved send rate over `rates` and the search's steps, per second.
pub fn ceiling(rates: &[RateCase], search: Option<&Search>) -> f64 {
    let steps = search.map_or(&[][..], |s| &s.steps[..]);
    rates.iter().chain(steps).map(|case| case.achieved_per_s).fold(0.0, f64::max)
}

/// Prints the tables.
pub fn print(results: &Results) {
    let s = &results.settings;
    println!();
    println!(
        "loader benchmark on {} CPUs; target server: separate process, {} thread(s); load average before {} / after {}",
        results.cpus, s.server_threads, results.loadavg[0], results.loadavg[1]
    );
    println!(
        "per-record work: {}",
        if s.record_work { "RunStats + invocations.csv (as a real run)" } else { "none (BENCH_RECORD_WORK=0)" }
    );
    if !results.rates.is_empty() {
        print_rates(&results.rates, results.timer_baseline, s);
    }
    if let Some(search) = &results.search {
        print_search(search, results.wrk.as_ref(), results.ceiling_per_s, s);
    }
    print_rss(results.schedule_rss.as_ref(), results.run_rss.as_ref(), s);
}

fn print_rates(cases: &[RateCase], baseline: Option<Dist>, s: &Settings) {
    println!();
    println!(
        "(1) Send lag at fixed open-loop rates: {} functions round-robin, {} s warm-up, then {} s measured",
        s.functions, s.warmup_secs, s.secs
    );
    println!(
        "(lag: send lag, resp: response time from the intended send, both µs; loader, server: CPU cores used; \
         µs/inv: loader CPU per invocation, the scheduler thread's spinning included)"
    );
    print_header(false);
    for case in cases {
        print_case(case, None);
    }
    for case in cases.iter().filter(|c| c.rate == LAG_TARGET_RATE) {
        println!(
            "send-lag p99 at {LAG_TARGET_RATE:.0}/s: {} µs [{}]",
            case.send_lag.p99_us,
            verdict(case.send_lag.p99_us < LAG_P99_TARGET_US, &format!("< {LAG_P99_TARGET_US} µs"))
        );
    }
    if let Some(floor) = baseline {
        println!(
            "machine floor: a bare thread sleeping then spinning to deadlines at {LAG_TARGET_RATE:.0}/s, sending \
             nothing, was late by p50 {} / p99 {} / max {} µs",
            floor.p50_us, floor.p99_us, floor.max_us
        );
    }
    print_failures(cases);
}

fn print_header(with_verdict: bool) {
    println!(
        "{:>8} {:>8} {:>10} {:>8} {:>8} {:>8} {:>9} {:>9} {:>6} {:>7} {:>7} {:>7}{}",
        "rate/s",
        "sent",
        "achieved",
        "lag p50",
        "lag p99",
        "lag max",
        "resp p50",
        "resp p99",
        "failed",
        "loader",
        "µs/inv",
        "server",
        if with_verdict { "  kept up" } else { "" }
    );
}

fn print_case(case: &RateCase, kept_up: Option<bool>) {
    let mark = match kept_up {
        Some(true) => "  yes",
        Some(false) if case.aborted => "  no (stopped: lag > 1 s)",
        Some(false) => "  no",
        None if case.aborted => "  (stopped: lag > 1 s)",
        None => "",
    };
    println!(
        "{:>8.0} {:>8} {:>10.0} {:>8} {:>8} {:>8} {:>9} {:>9} {:>6} {:>7.2} {:>7.1} {:>7.2}{mark}",
        case.rate,
        case.sent,
        case.achieved_per_s,
        case.send_lag.p50_us,
        case.send_lag.p99_us,
        case.send_lag.max_us,
        case.response.p50_us,
        case.response.p99_us,
        case.failed,
        case.cpu.loader_cores,
        case.cpu.loader_us_per_invocation,
        case.cpu.server_cores,
    );
}

fn print_failures(cases: &[RateCase]) {
    for case in cases {
        if let Some(failure) = &case.first_failure {
            println!("  at {:.0}/s: {} failed; first: {failure}", case.rate, case.failed);
        }
    }
}

fn print_search(search: &Search, wrk: Option<&WrkResult>, ceiling: f64, s: &Settings) {
    println!();
    println!(
        "(2) Highest sustained open-loop rate: {} s per step after {} s warm-up, up to {} tries per rate; kept up = \
         send-lag p99 < {} µs, nothing failed",
        s.search_secs, s.warmup_secs, s.search_tries, s.lag_threshold_us
    );
    print_header(true);
    for case in &search.steps {
        print_case(case, Some(case.kept_up(s.lag_threshold_us)));
    }
    print_failures(&search.steps);
    let sustained = search.sustained.unwrap_or(0.0);
    match search.sustained {
        Some(rate) => println!("sustained open-loop rate: {rate:.0}/s"),
        None => println!("sustained open-loop rate: none (no rate down to 100/s kept up; see the machine floor above)"),
    }
    println!("throughput ceiling (highest achieved send rate of any replay above, send lag ignored): {ceiling:.0}/s");
    match wrk {
        Some(wrk) => {
            println!(
                "{} (closed loop, same server): {:.0} requests/s, latency p50 {} p99 {}; wrk {:.2} cores, server {:.2}",
                wrk.command, wrk.requests_per_s, wrk.latency_p50, wrk.latency_p99, wrk.wrk_cores, wrk.server_cores
            );
            for line in &wrk.errors {
                println!("  wrk: {line}");
            }
            let ratio = sustained / wrk.requests_per_s;
            println!(
                "loader sustained / wrk: {ratio:.3} [{}]; throughput ceiling / wrk: {:.3}",
                verdict(ratio >= RATIO_TARGET, &format!(">= {RATIO_TARGET}")),
                ceiling / wrk.requests_per_s
            );
        }
        None => println!("wrk: skipped (not available), so no ratio"),
    }
}

fn print_rss(schedule: Option<&ScheduleRss>, run: Option<&RunRss>, s: &Settings) {
    if schedule.is_none() && run.is_none() {
        return;
    }
    println!();
    println!("(3) Peak RSS of the loader binary (ru_maxrss of the child process)");
    if let Some(sched) = schedule {
        let t = &sched.trace;
        let bytes = sched.probed.max_rss_kb as f64 * 1024.0;
        println!(
            "loader schedule, whole day to /dev/null: {} invocations of {} functions (azure-100 x {}): peak {} in \
             {:.1} s [{}]",
            t.invocations,
            t.functions,
            t.copies,
            megabytes(sched.probed.max_rss_kb),
            sched.probed.wall_s,
            verdict(bytes < RSS_TARGET_BYTES, "< 100 MB")
        );
    }
    if let Some(run) = run {
        let at = |f: f64| rss_at(&run.probed, f).map_or_else(|| "-".into(), megabytes);
        println!(
            "loader run, http target: {} invocations over {} trace minutes at ~{:.0}/s (compression {:.1}): peak {} \
             in {:.1} s",
            run.invocations,
            run.minutes,
            s.run_rate,
            run.compression,
            megabytes(run.probed.max_rss_kb),
            run.probed.wall_s
        );
        println!(
            "  RSS at 10/25/50/75/95% of its wall time: {} / {} / {} / {} / {}",
            at(0.10),
            at(0.25),
            at(0.50),
            at(0.75),
            at(0.95)
        );
        println!(
            "  its summary.json: {} measured, {} failed, achieved {:.0}/s, send-lag p99 {} µs",
            run.measured, run.failures, run.achieved_per_s, run.send_lag_p99_us
        );
    }
}

/// KiB as decimal megabytes, the unit.
fn megabytes(kb: u64) -> String {
    format!("{:.1} MB", kb as f64 * 1024.0 / 1e6)
}
