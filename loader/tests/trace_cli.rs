//! Runs the `loader` binary's `validate` subcommand on the bundled azure-100 sample and on broken copies of it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn sample_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("traces/azure-100")
}

fn loader(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_loader")).args(args).output().expect("loader binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A copy of the sample whose `durations.csv` has `edit` applied.
fn broken_copy(edit: impl FnOnce(String) -> String) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for file in ["invocations.csv", "durations.csv", "memory.csv"] {
        fs::copy(sample_dir().join(file), dir.path().join(file)).unwrap();
    }
    let durations = dir.path().join("durations.csv");
    fs::write(&durations, edit(fs::read_to_string(&durations).unwrap())).unwrap();
    dir
}

#[test]
fn validate_prints_the_summary_of_the_sample() {
    let output = loader(&["validate", sample_dir().to_str().unwrap()]);
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "stdout: {stdout}\nstderr: {}", text(&output.stderr));
    assert!(stdout.contains("functions:          100"), "{stdout}");
    assert!(stdout.contains("total invocations:  513418"), "{stdout}");
    assert!(stdout.contains("max 3391"), "{stdout}");
}

#[test]
fn validate_summarises_a_slice() {
    let dir = sample_dir();
    let args = ["validate", dir.to_str().unwrap(), "--start-minute", "60", "--minutes", "120", "--functions", "10"];
    let output = loader(&args);
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(stdout.contains("functions:          10\n"), "{stdout}");
    assert!(stdout.contains("minutes:            120 (minutes 60..180"), "{stdout}");
    assert!(stdout.contains("hour 01:") && stdout.contains("hour 02:") && !stdout.contains("hour 03:"), "{stdout}");
}

#[test]
fn validate_rejects_a_slice_past_the_end_of_the_day() {
    let output = loader(&["validate", sample_dir().to_str().unwrap(), "--start-minute", "1400", "--minutes", "41"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stderr).contains("error: invalid slice: minutes 1400..1441"), "{}", text(&output.stderr));
}

#[test]
fn validate_of_a_bad_cell_exits_1_naming_file_line_and_column() {
    // Line 4 of the file is the third function; its `Count` (5th field) becomes non-numeric.
    let dir = broken_copy(|text| {
        let mut lines: Vec<String> = text.lines().map(String::from).collect();
        let mut cells: Vec<&str> = lines[3].split(',').collect();
        cells[4] = "12x";
        lines[3] = cells.join(",");
        lines.join("\n") + "\n"
    });
    let output = loader(&["validate", dir.path().to_str().unwrap()]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(output.stdout.is_empty());
    assert!(stderr.starts_with("error: invalid trace: "), "{stderr}");
    assert!(stderr.contains("durations.csv:4: column `Count`: `12x`"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line, no backtrace: {stderr}");
}

#[test]
fn validate_of_a_missing_function_names_it_and_the_file() {
    let dir = broken_copy(|text| {
        let lines: Vec<&str> = text.lines().collect();
        lines.iter().enumerate().filter(|(i, _)| *i != 1).map(|(_, l)| format!("{l}\n")).collect()
    });
    let output = loader(&["validate", dir.path().to_str().unwrap()]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("function f-1779fd3337dd"), "{stderr}");
    assert!(stderr.trim_end().ends_with("durations.csv"), "{stderr}");
}

#[test]
fn validate_of_a_missing_directory_exits_1() {
    let output = loader(&["validate", "/nonexistent/trace-dir"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stderr).contains("/nonexistent/trace-dir/invocations.csv not found"));
}
