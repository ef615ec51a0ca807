//! Metrics on hand-computed fixtures, a whole fixture run folder, a vHive CSV, and errors on bad input. That the
//! analysis reads the loader's own files is `loader/tests/run_folder_analysis.rs`.

mod common;

use std::path::Path;
use std::time::Duration;

use analysis::{AnalyzeError, Options, RunAnalysis, analyze};
use contracts::run_folder::INVOCATIONS_HEADER;

const START_US: u64 = 1_000_000_000;

/// One loader-format row, intended `offset_ms` after the start; `None` cells are empty.
#[allow(clippy::too_many_arguments)]
fn row(
    phase: u8,
    function: &str,
    offset_ms: u64,
    requested_us: u64,
    response_us: u64,
    actual_us: Option<u64>,
    cold: bool,
    outcome: &str,
) -> String {
    let intended = START_US + offset_ms * 1000;
    let actual = actual_us.map(|us| us.to_string()).unwrap_or_default();
    let (connection, timeout) = (outcome == "connection", outcome == "timeout");
    format!(
        "{phase},{function},min0.inv0,{sent},{requested_us},{response_us},{actual},{connection},{timeout},10,\
         {intended},100,{cold},,{outcome},,,,\n",
        sent = intended + 100
    )
}

/// The fixture every hand-computed figure below comes from.
fn fixture_csv() -> String {
    let mut text = INVOCATIONS_HEADER.join(",") + "\n";
    for line in [
        row(1, "f1", 0, 10_000, 50_000, Some(10_000), true, "ok"), // warm-up: excluded
        row(2, "f1", 1000, 10_000, 15_000, Some(10_000), false, "ok"), // sched 5 ms, slowdown 1.5
        row(2, "f1", 2000, 10_000, 40_000, Some(10_000), true, "ok"), // sched 30 ms, slowdown 4
        row(2, "f1", 3000, 10_000, 8_000, Some(7_000), false, "ok"), // sched 1 ms, slowdown 0.8 (< 1)
        row(2, "f2", 4000, 20_000, 25_000, Some(21_000), false, "ok"), // sched 4 ms, slowdown 1.25
        row(2, "f2", 5000, 20_000, 0, None, false, "connection"),
        row(2, "f2", 6000, 20_000, 20_000_000, None, false, "timeout"),
        row(2, "f3", 7000, 1_000, 2_000, None, false, "http-503"),
        row(2, "f3", 8000, 1_000, 3_000, Some(1_000), true, "ok"), // sched 2 ms, slowdown 3
    ] {
        text.push_str(&line);
    }
    text
}

fn write_fixture(dir: &Path, csv: &str, trustworthy: bool) {
    std::fs::write(dir.join("invocations.csv"), csv).unwrap();
    // A summary as the loader writes it (every key it has always written), with no runDurationS like an older one.
    let counts = serde_json::json!({"measured": 8, "ok": 5, "connectionFailed": 1, "timeout": 1, "statusError": 1,
                                    "coldStarts": 2, "warmup": 1, "warmupFailures": 0});
    let summary = serde_json::json!({
        "sendLagThresholdUs": 1000, "measuredDurationS": 8.0, "trustworthy": trustworthy,
        "overall": {"counts": counts, "failures": 3, "requestedRatePerS": 1.0, "achievedRatePerS": 1.0,
                    "okRatePerS": 0.625, "responseTimeUs": null, "schedulingLatencyUs": null,
                    "meanSchedulingLatencyUs": null, "geomeanSlowdown": null, "maxSendLagUs": 100,
                    "sendLagUs": {"count": 8, "p50": 100, "p90": 100, "p99": 100, "p999": 100, "max": 100},
                    "trustworthy": trustworthy},
        "functions": []
    });
    std::fs::write(dir.join("summary.json"), summary.to_string()).unwrap();
    let manifest = serde_json::json!({
        "loader": {"version": "0.1.0", "gitCommit": "abc123"}, "host": {"hostname": "h", "nproc": 2, "kernel": "6"},
        "startedUnixUs": START_US, "seed": 42, "config": {"workload": {"kind": "rps", "rate": 1.0}}, "events": []
    });
    std::fs::write(dir.join("manifest.json"), manifest.to_string()).unwrap();
}

fn fixture(options: &Options) -> RunAnalysis {
    let dir = tempfile::tempdir().unwrap();
    write_fixture(dir.path(), &fixture_csv(), false);
    analyze(dir.path(), options).unwrap()
}

/// HdrHistogram values at 3 significant digits are within 0.1%.
fn close(actual: f64, expected: f64) {
    assert!((actual - expected).abs() <= expected.abs() * 1e-3 + 1e-9, "{actual} is not close to {expected}");
}

#[test]
fn counts_and_shares() {
    let run = fixture(&Options::default());
    let counts = &run.counts;
    assert_eq!((counts.rows, counts.excluded_warmup, counts.excluded_leading, counts.analysed), (9, 1, 0, 8));
    assert_eq!((counts.ok, counts.connection_failures, counts.function_timeouts, counts.other_failures), (5, 1, 1, 1));
    assert_eq!((counts.cold_starts, counts.slowdown_below_one, counts.missing_execution_time), (Some(2), 1, 0));
    assert_eq!(run.shares.cold_start, Some(0.25));
    assert_eq!((run.shares.failure, run.shares.connection_failure), (3.0 / 8.0, 1.0 / 8.0));
    assert_eq!((run.shares.function_timeout, run.shares.other_failure), (1.0 / 8.0, 1.0 / 8.0));
}

#[test]
fn per_invocation_scheduling_latency() {
    let run = fixture(&Options::default());
    // Successful rows: 5, 30, 1, 4 and 2 ms.
    let latency = run.scheduling_latency_us.as_ref().unwrap();
    assert_eq!(latency.count, 5);
    close(latency.mean, 8_400.0);
    close(latency.p50, 4_000.0);
    close(latency.p90, 30_000.0);
    close(latency.max, 30_000.0);
    let response = run.response_time_us.as_ref().unwrap();
    assert_eq!(response.count, 5);
    close(response.p50, 15_000.0);
}

#[test]
fn per_function_scheduling_latency_and_slowdown() {
    let run = fixture(&Options::default());
    let f1 = &run.functions[0];
    assert_eq!((f1.name.as_str(), f1.invocations, f1.ok, f1.cold_starts, f1.slowdown_below_one), ("f1", 3, 3, 1, 1));
    close(f1.mean_scheduling_latency_us.unwrap(), 12_000.0);
    close(f1.slowdown.unwrap(), 6f64.sqrt()); // geomean(1.5, 4); the 0.8 is excluded
    let f2 = &run.functions[1];
    assert_eq!((f2.invocations, f2.ok, f2.failures), (3, 1, 2));
    close(f2.mean_scheduling_latency_us.unwrap(), 4_000.0);
    close(f2.slowdown.unwrap(), 1.25);
    let f3 = &run.functions[2];
    close(f3.mean_scheduling_latency_us.unwrap(), 2_000.0);
    close(f3.slowdown.unwrap(), 3.0);
    let over_functions = run.function_scheduling_latency_us.as_ref().unwrap();
    assert_eq!(over_functions.count, 3);
    close(over_functions.mean, 6_000.0);
    close(over_functions.p50, 4_000.0);
    close(over_functions.max, 12_000.0);
    close(run.function_slowdown.as_ref().unwrap().p50, 6f64.sqrt());
}

#[test]
fn rates_trust_and_manifest() {
    let run = fixture(&Options::default());
    // 8 rows from 1 s to 8 s: a span of 7 s plus one mean gap.
    close(run.rates.duration_s, 8.0);
    close(run.rates.achieved_per_s, 1.0);
    close(run.rates.cold_starts_per_s.unwrap(), 0.25);
    assert_eq!(run.rates.requested_per_s, Some(1.0));
    assert_eq!((run.trustworthy, run.is_untrustworthy(), run.trust_label()), (Some(false), true, "UNTRUSTWORTHY"));
    let manifest = run.manifest.as_ref().unwrap();
    assert_eq!((manifest.seed, manifest.loader.git_commit.as_deref()), (Some(42), Some("abc123")));
    assert_eq!(run.send_lag_us.as_ref().unwrap().p99, 100.0);
}

#[test]
fn timeline_windows() {
    let run = fixture(&Options { window: Duration::from_secs(5), ..Options::default() });
    let windows = &run.timeline.windows;
    assert_eq!(windows.len(), 2);
    assert_eq!((windows[0].start_s, windows[0].invocations_per_s, windows[0].ok_per_s), (0.0, 0.8, 0.8));
    assert_eq!(windows[0].cold_starts_per_s, 0.2);
    assert_eq!((windows[1].start_s, windows[1].invocations_per_s, windows[1].ok_per_s), (5.0, 0.8, 0.2));
    // Window histograms keep 2 significant digits: within 1%.
    let p99 = windows[1].p99_scheduling_latency_us.unwrap();
    assert!((2_000.0..=2_020.0).contains(&p99), "{p99}");
}

#[test]
fn leading_window_and_warmup_options() {
    let run = fixture(&Options { exclude_leading: Duration::from_millis(2500), ..Options::default() });
    assert_eq!((run.counts.excluded_leading, run.counts.analysed, run.counts.ok), (2, 6, 3));
    let run = fixture(&Options { include_warmup: true, ..Options::default() });
    assert_eq!((run.counts.excluded_warmup, run.counts.analysed, run.counts.cold_starts), (0, 9, Some(3)));
}

#[test]
fn reads_a_whole_run_folder() {
    let dir = tempfile::tempdir().unwrap();
    let mut records = vec![
        common::record(0, 1_000_000, 10_000, 12_000, 10_000),
        common::record(1, 2_000_000, 20_000, 30_000, 20_000),
        common::record(1, 3_000_000, 20_000, 26_000, 20_000),
    ];
    records[1].cold_start = Some(true);
    let mut failed = common::record(0, 4_000_000, 10_000, 0, 0);
    failed.outcome = common::Outcome::ConnectionFailed;
    failed.actual_duration_us = None;
    records.push(failed);
    let mut warmup = common::record(0, 0, 10_000, 99_000, 10_000);
    warmup.phase = common::Phase::Warmup;
    records.insert(0, warmup);
    common::write_run(dir.path(), &records, 2, serde_json::json!({"workload": {"kind": "rps", "rate": 2.0}}), 1000);
    let run = analyze(dir.path(), &Options::default()).unwrap();
    assert_eq!((run.counts.analysed, run.counts.ok, run.counts.connection_failures), (4, 3, 1));
    assert_eq!((run.counts.excluded_warmup, run.counts.cold_starts), (1, Some(1)));
    assert_eq!(run.trustworthy, Some(true));
    let names: Vec<&str> = run.functions.iter().map(|function| function.name.as_str()).collect();
    assert_eq!(names, ["fn-0", "fn-1"]);
    close(run.functions[0].mean_scheduling_latency_us.unwrap(), 2_000.0);
    close(run.functions[1].mean_scheduling_latency_us.unwrap(), 8_000.0);
    close(run.functions[1].slowdown.unwrap(), (1.5f64 * 1.3).sqrt());
    assert_eq!(run.manifest.as_ref().unwrap().workload_rate(), Some(2.0));
    assert_eq!(run.manifest.as_ref().unwrap().started_unix_us, Some(common::START_US));
}

#[test]
fn reads_a_vhive_csv_without_json_files() {
    let dir = tempfile::tempdir().unwrap();
    let csv = "phase,instance,invocationID,startTime,requestedDuration,responseTime,actualDuration,\
               actualMemoryUsage,memoryAllocationTimeout,connectionTimeout,functionTimeout\n\
               2,fa,min0.inv0,1000000,10000,14000,10000,5,false,false,false\n\
               2,fa,min0.inv1,2000000,10000,0,0,0,false,true,false\n\
               2,fb,min0.inv2,3000000,10000,30000,10000,5,false,false,false\n";
    std::fs::write(dir.path().join("invocations.csv"), csv).unwrap();
    let run = analyze(dir.path(), &Options::default()).unwrap();
    assert_eq!((run.counts.analysed, run.counts.ok, run.counts.connection_failures), (3, 2, 1));
    assert_eq!((run.counts.cold_starts, run.shares.cold_start, run.trustworthy), (None, None, None));
    close(run.scheduling_latency_us.as_ref().unwrap().max, 20_000.0);
    assert_eq!(run.trust_label(), "trustworthiness unknown");
}

fn error_for(csv: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("invocations.csv"), csv).unwrap();
    analyze(dir.path(), &Options::default()).unwrap_err().to_string()
}

#[test]
fn bad_csv_names_file_line_and_column() {
    let header = INVOCATIONS_HEADER.join(",");
    let good = row(2, "f", 0, 1, 2, Some(1), false, "ok");
    let bad = good.replacen(",2,1,", ",2,-1,", 1); // responseTime 2, actualDuration -1
    let error = error_for(&format!("{header}\n{good}{bad}"));
    assert!(error.contains("invocations.csv:3:7: column `actualDuration`: cannot read `-1`"), "{error}");
    let error = error_for("instance,startTime\nf,1\n");
    assert!(error.contains("invocations.csv:1: missing column `requestedDuration`"), "{error}");
    let error = error_for(&format!("{header}\n{good}2,f,short\n"));
    assert!(error.contains("line: 3"), "{error}");
    let cold = good.replace(",false,,ok,", ",maybe,,ok,");
    let error = error_for(&format!("{header}\n{cold}"));
    assert!(error.contains(":2:13: column `coldStart`: cannot read `maybe` as true or false"), "{error}");
}

#[test]
fn bad_json_names_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    write_fixture(dir.path(), &fixture_csv(), true);
    std::fs::write(dir.path().join("summary.json"), "{\n \"trustworthy\": true,\n \"overall\": {\"sendLagUs\": 5}\n}")
        .unwrap();
    let error = analyze(dir.path(), &Options::default()).unwrap_err();
    assert!(matches!(error, AnalyzeError::Json { .. }));
    let text = error.to_string();
    assert!(text.contains("summary.json: key `overall.sendLagUs`"), "{text}");
    assert!(text.contains("line 3"), "{text}");
}

#[test]
fn missing_csv_and_bad_options_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let error = analyze(dir.path(), &Options::default()).unwrap_err().to_string();
    assert!(error.contains("invocations.csv"), "{error}");
    let options = Options { window: Duration::ZERO, ..Options::default() };
    assert!(matches!(analyze(dir.path(), &options), Err(AnalyzeError::Options(_))));
}

#[test]
fn options_come_from_yaml() {
    let options: Options = serde_saphyr::from_str("exclude_leading: 10m\ninclude_warmup: true\n").unwrap();
    assert_eq!(options.exclude_leading, Duration::from_secs(600));
    assert_eq!((options.include_warmup, options.window), (true, Duration::from_secs(10)));
    assert!(serde_saphyr::from_str::<Options>("windw: 5s\n").is_err());
}
