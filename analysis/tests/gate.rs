//! The gate passes on noise (the same distribution measured twice) and fails on a real regression.

mod common;

use analysis::{Metric, Options, RunAnalysis, analyze, gate};

fn run(seed: u64, scale: f64) -> (tempfile::TempDir, RunAnalysis) {
    let dir = tempfile::tempdir().unwrap();
    common::synthetic_run(dir.path(), seed, 20_000, scale, 10.0);
    let analysis = analyze(dir.path(), &Options::default()).unwrap();
    (dir, analysis)
}

#[test]
fn passes_on_noise_for_every_metric() {
    let (_a, baseline) = run(11, 1.0);
    let (_b, candidate) = run(12, 1.0);
    for metric in Metric::ALL {
        let verdict = gate(&baseline, &candidate, metric, 0.10).unwrap();
        assert!(verdict.passed, "{}", verdict.reason);
        assert!(verdict.ci_low <= verdict.ratio && verdict.ratio <= verdict.ci_high, "{}", verdict.reason);
        assert!(verdict.reason.starts_with("ok: "), "{}", verdict.reason);
    }
}

#[test]
fn fails_on_a_regression_for_every_metric() {
    let (_a, baseline) = run(11, 1.0);
    let (_b, candidate) = run(12, 2.0);
    for metric in Metric::ALL {
        let verdict = gate(&baseline, &candidate, metric, 0.10).unwrap();
        assert!(!verdict.passed, "{}", verdict.reason);
        assert!(verdict.reason.starts_with(&format!("REGRESSION: {metric}")), "{}", verdict.reason);
        assert!(!verdict.reason.contains('\n'));
    }
}

#[test]
fn a_generous_tolerance_lets_a_regression_pass_and_verdicts_are_deterministic() {
    let (_a, baseline) = run(11, 1.0);
    let (_b, candidate) = run(12, 1.3);
    let verdict = gate(&baseline, &candidate, Metric::P99SchedulingLatency, 1.0).unwrap();
    assert!(verdict.passed, "{}", verdict.reason);
    assert_eq!(verdict, gate(&baseline, &candidate, Metric::P99SchedulingLatency, 1.0).unwrap());
}

#[test]
fn a_run_without_data_is_an_error() {
    let (_a, baseline) = run(11, 1.0);
    let dir = tempfile::tempdir().unwrap();
    common::write_run(dir.path(), &[], 1, serde_json::json!({}), 1000);
    let empty = analyze(dir.path(), &Options::default()).unwrap();
    let error = gate(&baseline, &empty, Metric::P50SchedulingLatency, 0.1).unwrap_err().to_string();
    assert!(error.contains("candidate run has no data for p50_scheduling_latency"), "{error}");
}
