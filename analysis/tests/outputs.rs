//! Reports, comparisons and sweeps write their files, and the plots are real pictures with their labels.

mod common;

use std::path::Path;

use analysis::{Options, RunAnalysis, analyze};

fn synthetic(dir: &Path, seed: u64, scale: f64) -> RunAnalysis {
    common::synthetic_run(dir, seed, 5_000, scale, 10.0);
    analyze(dir, &Options::default()).unwrap()
}

/// Width and height from a PNG's IHDR chunk.
fn png_size(path: &Path) -> (u32, u32) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[1..4], b"PNG", "{} is not a PNG", path.display());
    let word = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    (word(16), word(20))
}

/// The PNG is a real picture of the expected size, and the SVG carries `label` as text.
fn assert_plot(dir: &Path, stem: &str, size: (u32, u32), label: &str) {
    let png = dir.join(format!("{stem}.png"));
    assert_eq!(png_size(&png), size, "{stem}");
    let bytes = std::fs::metadata(&png).unwrap().len();
    assert!(bytes > 20_000, "{stem}.png is only {bytes} bytes: nothing drawn?");
    let svg = std::fs::read_to_string(dir.join(format!("{stem}.svg"))).unwrap();
    assert!(svg.contains(label), "{stem}.svg lacks `{label}`");
    assert!(svg.matches("<polyline").count() + svg.matches("<path").count() > 0, "{stem}.svg has no curve");
}

#[test]
fn report_writes_markdown_json_and_plots() {
    let dir = tempfile::tempdir().unwrap();
    let run = synthetic(&dir.path().join("run"), 1, 1.0);
    let out = dir.path().join("out");
    let files = analysis::report::write(&run, &out).unwrap();
    assert_eq!(files.len(), 2 + 8);
    assert_plot(&out, "scheduling-latency-cdf", (1200, 750), "scheduling latency (ms, log scale)");
    assert_plot(&out, "function-scheduling-latency-cdf", (1200, 750), "fraction of functions");
    assert_plot(&out, "function-slowdown-cdf", (1200, 750), "slowdown: response time / requested duration");
    assert_plot(&out, "timeline", (1200, 1260), "successful invocations/s");
    let markdown = std::fs::read_to_string(out.join("report.md")).unwrap();
    for expected in ["## Invocations", "p99.9", "scheduling latency, per invocation", "Trustworthy", "![timeline.png]"]
    {
        assert!(markdown.contains(expected), "report.md lacks `{expected}`");
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(json["counts"]["analysed"], 5_000);
    assert_eq!(json["trustworthy"], true);
    assert_eq!(json["functions"].as_array().unwrap().len(), 20);
    // Nothing was killed: no recovery, in either file.
    assert_eq!(json["recovery"], serde_json::json!([]));
    assert!(!markdown.contains("## Recovery"));
}

/// Adds failure-injection events to the run's `manifest.json`, `offset_s` after the start (`None`: no `unixUs`).
fn add_events(run_dir: &Path, events: &[(&str, &str, Option<f64>)]) {
    let path = run_dir.join("manifest.json");
    let mut manifest: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    manifest["events"] = events
        .iter()
        .map(|&(kind, component, offset_s)| {
            let mut event = serde_json::json!({"kind": kind, "component": component, "role": "worker",
                                               "host": "10.200.1.14", "detail": "SIGKILL"});
            if let Some(offset_s) = offset_s {
                event["unixUs"] = (common::START_US as f64 + offset_s * 1e6).round().into();
            }
            event
        })
        .collect();
    std::fs::write(&path, manifest.to_string()).unwrap();
}

#[test]
fn events_are_listed_in_the_report_and_marked_on_the_timeline() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("faulty");
    common::synthetic_run(&run_dir, 4, 2_000, 1.0, 10.0);
    let events = [
        ("kill", "worker-1", Some(20.0)),
        ("restart", "worker-1", Some(25.5)),
        ("note", "untimed-2", None),
        ("kill", "early-3", Some(-5.0)),
        ("kill", "late-4", Some(500.0)),
    ];
    add_events(&run_dir, &events);
    let run = analyze(&run_dir, &Options::default()).unwrap();
    let at: Vec<Option<f64>> = run.events.iter().map(|event| event.at_s).collect();
    assert_eq!(at, [Some(20.0), Some(25.5), None, Some(-5.0), Some(500.0)]);
    let out = dir.path().join("out");
    analysis::report::write(&run, &out).unwrap();
    let markdown = std::fs::read_to_string(out.join("report.md")).unwrap();
    for expected in [
        "| events | 5 (see Events) |",
        "## Events",
        "| 20.000 | kill | worker-1 | 10.200.1.14 | SIGKILL |",
        "| n/a | note | untimed-2 | 10.200.1.14 | SIGKILL |",
        "| -5.000 | kill | early-3 |",
    ] {
        assert!(markdown.contains(expected), "report.md lacks `{expected}`:\n{markdown}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!((json["events"][1]["kind"].as_str(), json["events"][1]["atS"].as_f64()), (Some("restart"), Some(25.5)));
    assert!(json["events"][2]["atS"].is_null());
    assert_plot(&out, "timeline", (1200, 1260), "kill worker-1");
    assert_recovery(&run, &json, &markdown);
    let svg = std::fs::read_to_string(out.join("timeline.svg")).unwrap();
    // Three panels, each marked; events off the axis (before the start, after the end) or untimed are not.
    assert_eq!(svg.matches("\nrestart worker-1\n").count(), 3);
    for absent in ["early-3", "late-4", "untimed-2"] {
        assert!(!svg.contains(absent), "timeline.svg shows `{absent}`");
    }
    // A comparison marks every run's events.
    let runs = [("a".to_owned(), run.clone()), ("b".to_owned(), run)];
    analysis::compare::write(&runs, &out).unwrap();
    let svg = std::fs::read_to_string(out.join("timeline.svg")).unwrap();
    assert_eq!(svg.matches("\nkill worker-1\n").count(), 6);
}

/// `(failed, first_ok_s, first_cold_ok_s, last_failure_s)` recomputed from the synthetic records (seed 4) for
/// invocations intended in `[from_s, to_s)` after the start, successes from `from_s` on.
fn expected_recovery(from_s: f64, to_s: f64) -> (u64, Option<f64>, Option<f64>, Option<f64>) {
    let (from, to) = ((from_s.max(0.0) * 1e6) as u64, (to_s * 1e6) as u64);
    let records = common::synthetic_records(4, 2_000, 1.0);
    let since = |us: u64| (us as f64 - from_s * 1e6) / 1e6;
    let offset = |record: &common::Invocation| record.intended_unix_us - common::START_US;
    let after: Vec<_> = records.iter().filter(|record| offset(record) >= from).collect();
    let failed: Vec<u64> = after
        .iter()
        .filter(|record| record.outcome != common::Outcome::Ok && offset(record) < to)
        .map(|record| offset(record))
        .collect();
    let done = |cold_only: bool| {
        let ok = after.iter().filter(|record| record.outcome == common::Outcome::Ok);
        let ok = ok.filter(|record| !cold_only || record.cold_start == Some(true));
        ok.map(|record| offset(record) + record.response_time_us).min().map(since)
    };
    (failed.len() as u64, done(false), done(true), failed.iter().max().map(|&us| since(us)))
}

/// The kills' recovery in `report.json` and `report.md`: by time, each window ending at the next kill.
fn assert_recovery(run: &RunAnalysis, json: &serde_json::Value, markdown: &str) {
    let recovery = json["recovery"].as_array().unwrap();
    let kills: Vec<_> = recovery.iter().map(|kill| (kill["component"].as_str(), kill["atS"].as_f64())).collect();
    assert_eq!(kills, [(Some("early-3"), Some(-5.0)), (Some("worker-1"), Some(20.0)), (Some("late-4"), Some(500.0))]);
    let round = |s: Option<f64>| s.map(|s| (s * 1e6).round() / 1e6);
    for (kill, (from_s, to_s)) in run.recovery.iter().zip([(-5.0, 20.0), (20.0, 500.0), (500.0, f64::INFINITY)]) {
        let (failed, first_ok, first_cold_ok, last_failure) = expected_recovery(from_s, to_s);
        let actual = (kill.failed, round(kill.first_ok_s), round(kill.first_cold_ok_s), round(kill.last_failure_s));
        assert_eq!(actual, (failed, round(first_ok), round(first_cold_ok), round(last_failure)), "{kill:?}");
    }
    assert!(run.recovery[1].failed > 0, "the synthetic run has failures after 20 s");
    assert_eq!(json["recovery"][2]["firstOkS"], serde_json::Value::Null);
    assert!(markdown.contains("## Recovery"), "{markdown}");
    assert!(markdown.contains("| 500.000 | late-4 | SIGKILL | 0 | — | — | — |"), "{markdown}");
    let events_at = markdown.find("## Events").unwrap();
    assert!(markdown.find("## Recovery").unwrap() > events_at, "Recovery comes after Events");
}

#[test]
fn untrustworthy_runs_are_flagged_in_every_output() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("lagging");
    let config = serde_json::json!({"workload": {"kind": "rps", "rate": 10.0}});
    // A 10 µs threshold under the records' 50 µs send lag: the loader marks the run untrustworthy.
    common::write_run(&run_dir, &common::synthetic_records(3, 2_000, 1.0), 20, config, 10);
    let run = analyze(&run_dir, &Options::default()).unwrap();
    assert!(run.is_untrustworthy());
    let out = dir.path().join("out");
    analysis::report::write(&run, &out).unwrap();
    assert!(std::fs::read_to_string(out.join("report.md")).unwrap().contains("**UNTRUSTWORTHY RUN**"));
    assert!(std::fs::read_to_string(out.join("scheduling-latency-cdf.svg")).unwrap().contains("[UNTRUSTWORTHY]"));
    let runs = [("lagging".to_owned(), run.clone()), ("again".to_owned(), run.clone())];
    analysis::compare::write(&runs, &out).unwrap();
    assert!(std::fs::read_to_string(out.join("compare.md")).unwrap().contains("UNTRUSTWORTHY runs**: lagging, again"));
    analysis::sweep::write(&[(10.0, run)], &out).unwrap();
    assert!(std::fs::read_to_string(out.join("sweep.md")).unwrap().contains("**UNTRUSTWORTHY**"));
    assert!(std::fs::read_to_string(out.join("sweep.svg")).unwrap().contains("1 untrustworthy runs"));
}

#[test]
fn compare_draws_one_curve_per_run_and_a_ratio_table() {
    let dir = tempfile::tempdir().unwrap();
    let fast = synthetic(&dir.path().join("fast"), 1, 1.0);
    let slow = synthetic(&dir.path().join("slow"), 2, 2.0);
    let out = dir.path().join("cmp");
    let runs = [("dirigent".to_owned(), fast), ("knative".to_owned(), slow)];
    let files = analysis::compare::write(&runs, &out).unwrap();
    assert_eq!(files.len(), 2 + 8);
    assert_plot(&out, "scheduling-latency-cdf", (1200, 750), "knative");
    assert_plot(&out, "timeline", (1200, 1260), "dirigent");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("compare.json")).unwrap()).unwrap();
    let p99 = json["metrics"].as_array().unwrap().iter().find(|m| m["metric"] == "p99_scheduling_latency").unwrap();
    assert_eq!(p99["ratios"][0], 1.0);
    let ratio = p99["ratios"][1].as_f64().unwrap();
    assert!((1.7..2.3).contains(&ratio), "{ratio}");
    let markdown = std::fs::read_to_string(out.join("compare.md")).unwrap();
    assert!(markdown.contains("| metric | dirigent | knative |"), "{markdown}");
}

#[test]
fn sweep_plots_latency_against_cold_starts() {
    let dir = tempfile::tempdir().unwrap();
    let points: Vec<(f64, RunAnalysis)> = [(1.0, 1.0), (10.0, 1.5), (50.0, 3.0)]
        .iter()
        .enumerate()
        .map(|(index, &(rate, scale))| (rate, synthetic(&dir.path().join(format!("r{index}")), index as u64, scale)))
        .collect();
    let out = dir.path().join("sweep");
    analysis::sweep::write(&points, &out).unwrap();
    assert_plot(&out, "sweep", (1200, 750), "achieved cold starts per second");
    let rows: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("sweep.json")).unwrap()).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 3);
    assert!(std::fs::read_to_string(out.join("sweep.md")).unwrap().contains("3 of 3 runs plotted"));
}

#[test]
fn empty_inputs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    assert!(analysis::compare::write(&[], dir.path()).is_err());
    assert!(analysis::sweep::write(&[], dir.path()).is_err());
}
