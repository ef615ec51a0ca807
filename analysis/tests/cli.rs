//! The `analysis` binary: subcommands, exit codes (0 ok, 1 gate regression, 2 bad input) and messages.

mod common;

use std::path::Path;
use std::process::{Command, Output};

fn analysis(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_analysis")).args(args).output().expect("run the analysis binary")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn path(dir: &Path) -> &str {
    dir.to_str().expect("UTF-8 temporary path")
}

/// Asserts the exit code and returns (stdout, stderr).
fn expect(output: Output, code: i32) -> (String, String) {
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert_eq!(output.status.code(), Some(code), "stdout: {stdout}\nstderr: {stderr}");
    (stdout, stderr)
}

#[test]
fn report_writes_into_the_run_folder_or_out() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    common::synthetic_run(&run, 1, 2_000, 1.0, 5.0);
    let (stdout, _) = expect(analysis(&["report", path(&run)]), 0);
    assert!(stdout.contains("2000 invocations analysed"), "{stdout}");
    for file in ["report.md", "report.json", "timeline.png", "timeline.svg", "function-slowdown-cdf.png"] {
        assert!(run.join(file).exists(), "{file}");
    }
    let out = dir.path().join("out");
    expect(analysis(&["report", path(&run), "--out", path(&out), "--exclude-leading", "30s", "--window", "5s"]), 0);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(json["counts"]["excludedLeading"], 1_000);
    assert_eq!(json["timeline"]["windowS"], 5.0);
}

#[test]
fn compare_and_sweep() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    common::synthetic_run(&a, 1, 2_000, 1.0, 5.0);
    common::synthetic_run(&b, 2, 2_000, 2.0, 50.0);
    let out = dir.path().join("cmp");
    expect(analysis(&["compare", path(&a), path(&b), "--labels", "dirigent,knative", "--out", path(&out)]), 0);
    assert!(std::fs::read_to_string(out.join("compare.md")).unwrap().contains("knative"));
    let (_, stderr) = expect(analysis(&["compare", path(&a), path(&b), "--labels", "one", "--out", path(&out)]), 2);
    assert!(stderr.contains("--labels has 1 labels for 2 runs"), "{stderr}");
    expect(analysis(&["compare", path(&a), "--out", path(&out)]), 2);
    let sweep = dir.path().join("sweep");
    expect(analysis(&["sweep", path(&a), path(&b), "--out", path(&sweep)]), 0);
    let rows: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(sweep.join("sweep.json")).unwrap()).unwrap();
    assert_eq!((rows[0]["requestedRate"].as_f64(), rows[1]["requestedRate"].as_f64()), (Some(5.0), Some(50.0)));
}

#[test]
fn sweep_needs_each_runs_rate() {
    let dir = tempfile::tempdir().unwrap();
    common::write_run(dir.path(), &common::synthetic_records(1, 100, 1.0), 20, serde_json::json!({}), 1000);
    let (_, stderr) = expect(analysis(&["sweep", path(dir.path()), "--out", path(&dir.path().join("s"))]), 2);
    assert!(stderr.contains("manifest.json: key `config.workload.rate` is missing"), "{stderr}");
}

#[test]
fn gate_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let (base, noise, worse) = (dir.path().join("base"), dir.path().join("noise"), dir.path().join("worse"));
    common::synthetic_run(&base, 1, 20_000, 1.0, 5.0);
    common::synthetic_run(&noise, 2, 20_000, 1.0, 5.0);
    common::synthetic_run(&worse, 3, 20_000, 1.5, 5.0);
    let gate = |candidate: &Path, metric: &str, max: &str| {
        analysis(&[
            "gate",
            "--baseline",
            path(&base),
            "--candidate",
            path(candidate),
            "--metric",
            metric,
            "--max-regression",
            max,
        ])
    };
    let (stdout, _) = expect(gate(&noise, "p99_scheduling_latency", "10%"), 0);
    assert!(stdout.starts_with("ok: p99_scheduling_latency") && stdout.lines().count() == 1, "{stdout}");
    let (stdout, _) = expect(gate(&worse, "p99_scheduling_latency", "10%"), 1);
    assert!(stdout.starts_with("REGRESSION: p99_scheduling_latency") && stdout.lines().count() == 1, "{stdout}");
    expect(gate(&worse, "mean_function_scheduling_latency", "0.1"), 1);
    expect(gate(&worse, "p99_scheduling_latency", "100%"), 0);
    let (_, stderr) = expect(gate(&worse, "p42", "10%"), 2);
    assert!(stderr.contains("unknown metric `p42`"), "{stderr}");
    let (_, stderr) = expect(gate(&worse, "slowdown", "ten%"), 2);
    assert!(stderr.contains("cannot read `ten%` as a maximum regression"), "{stderr}");
    let (_, stderr) = expect(gate(&dir.path().join("missing"), "slowdown", "10%"), 2);
    assert!(stderr.contains("missing/invocations.csv"), "{stderr}");
}

#[test]
fn bad_input_names_the_place_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    common::synthetic_run(dir.path(), 1, 10, 1.0, 5.0);
    let csv = dir.path().join("invocations.csv");
    let original = std::fs::read_to_string(&csv).unwrap();
    let mut lines: Vec<String> = original.lines().map(str::to_owned).collect();
    lines[4] = lines[4].replacen(",false,false,", ",false,nope,", 1);
    std::fs::write(&csv, lines.join("\n") + "\n").unwrap();
    let (_, stderr) = expect(analysis(&["report", path(dir.path())]), 2);
    assert!(stderr.contains("invocations.csv:5:9: column `functionTimeout`: cannot read `nope`"), "{stderr}");
    std::fs::write(&csv, original).unwrap();
    std::fs::write(dir.path().join("manifest.json"), "{\"startedUnixUs\": \"soon\"}").unwrap();
    let (_, stderr) = expect(analysis(&["report", path(dir.path())]), 2);
    assert!(stderr.contains("manifest.json: key `startedUnixUs`"), "{stderr}");
    expect(analysis(&["report", path(dir.path()), "--exclude-leading", "ten minutes"]), 2);
}

#[test]
fn untrustworthy_runs_warn() {
    let dir = tempfile::tempdir().unwrap();
    let config = serde_json::json!({"workload": {"kind": "rps", "rate": 10.0}});
    common::write_run(dir.path(), &common::synthetic_records(1, 100, 1.0), 20, config, 10);
    let (stdout, stderr) = expect(analysis(&["report", path(dir.path())]), 0);
    assert!(stdout.contains("UNTRUSTWORTHY") && stderr.contains("UNTRUSTWORTHY"), "{stdout}\n{stderr}");
}
