//! Tests of reading a trace directory: the good case and each kind of bad input.

use std::fs;
use std::path::Path;

use tempfile::TempDir;

use super::error::TraceError;
use super::parse::{DURATIONS_FILE, INVOCATIONS_FILE, MEMORY_FILE, read_trace};

const DURATIONS_HEADER: &str = "HashOwner,HashApp,HashFunction,Average,Count,Minimum,Maximum,percentile_Average_0,\
percentile_Average_1,percentile_Average_25,percentile_Average_50,percentile_Average_75,percentile_Average_99,\
percentile_Average_100";
const MEMORY_HEADER: &str = "HashOwner,HashApp,HashFunction,SampleCount,AverageAllocatedMb,AverageAllocatedMb_pct1,\
AverageAllocatedMb_pct5,AverageAllocatedMb_pct25,AverageAllocatedMb_pct50,AverageAllocatedMb_pct75,\
AverageAllocatedMb_pct95,AverageAllocatedMb_pct99,AverageAllocatedMb_pct100";

fn minute_header() -> String {
    (1..=1440).map(|m| m.to_string()).collect::<Vec<_>>().join(",")
}

/// An invocations row for function `f` whose minute m (1-based) has `m % 3` invocations.
fn invocations_row(f: &str) -> String {
    let counts: Vec<String> = (1..=1440).map(|m| (m % 3).to_string()).collect();
    format!("o1,a1,{f},http,{}", counts.join(","))
}

fn durations_row(f: &str) -> String {
    format!("o1,a1,{f},49,2,8.0,90.0,8,8,8,8,90,90,90")
}

fn memory_row(f: &str) -> String {
    format!("o1,a1,{f},256631,1485,1293,1323,1415,1520,1540,1665,1722,1746")
}

/// The three files of a valid trace of functions `ff01` and `ff02`.
fn valid_files() -> [String; 3] {
    let functions = ["ff01", "ff02"];
    let file = |header: String, row: fn(&str) -> String| {
        let rows: Vec<String> = functions.iter().map(|f| row(f)).collect();
        format!("{header}\n{}\n", rows.join("\n"))
    };
    [
        file(format!("HashOwner,HashApp,HashFunction,Trigger,{}", minute_header()), invocations_row),
        file(DURATIONS_HEADER.to_owned(), durations_row),
        file(MEMORY_HEADER.to_owned(), memory_row),
    ]
}

fn write_trace([invocations, durations, memory]: &[String; 3]) -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join(INVOCATIONS_FILE), invocations).unwrap();
    fs::write(dir.path().join(DURATIONS_FILE), durations).unwrap();
    fs::write(dir.path().join(MEMORY_FILE), memory).unwrap();
    dir
}

/// Reads the valid trace after `edit` changed its files; returns the error and its message.
fn error_after(edit: impl FnOnce(&mut [String; 3])) -> (TraceError, String) {
    let mut files = valid_files();
    edit(&mut files);
    let dir = write_trace(&files);
    let error = read_trace(dir.path()).expect_err("trace should be rejected");
    let message = error.to_string();
    (error, message)
}

#[test]
fn reads_a_valid_trace() {
    let dir = write_trace(&valid_files());
    let trace = read_trace(dir.path()).unwrap();
    assert_eq!(trace.functions.len(), 2);
    let f = &trace.functions[1];
    // Hashes shorter than 12 characters: the name takes owner and app characters too.
    assert_eq!((f.name.as_str(), f.hash_function.as_str(), f.trigger.as_str()), ("f-ff02o1a1", "ff02", "http"));
    assert_eq!(f.invocations_per_minute.len(), 1440);
    assert_eq!(f.invocations_per_minute[..4], [1, 2, 0, 1]);
    assert_eq!(f.duration.count, 2);
    assert_eq!(f.duration.percentiles[6], 90.0);
    assert_eq!(f.memory.percentiles[0], 1293.0);
}

#[test]
fn columns_are_found_by_name_in_any_order_with_extra_columns() {
    let mut files = valid_files();
    // Move HashFunction to the end of durations.csv and add a column nobody reads.
    let reorder = |line: &str| {
        let mut cells: Vec<&str> = line.split(',').collect();
        let function = cells.remove(2);
        cells.push(function);
        cells.push("extra");
        cells.join(",")
    };
    files[1] = files[1].lines().map(|l| reorder(l) + "\n").collect();
    let dir = write_trace(&files);
    let trace = read_trace(dir.path()).unwrap();
    assert_eq!(trace.functions[0].duration.average, 49.0);
}

#[test]
fn reads_the_azure_100_sample() {
    let trace = read_trace(&Path::new(env!("CARGO_MANIFEST_DIR")).join("traces/azure-100")).unwrap();
    assert_eq!(trace.functions.len(), 100);
    assert_eq!(trace.total_invocations(), 513_418);
    assert_eq!(trace.functions[0].name, "f-1779fd3337dd");
}

#[test]
fn byte_order_marks_are_ignored() {
    let (mut files, bom) = (valid_files(), "\u{feff}");
    files.iter_mut().for_each(|f| f.insert_str(0, bom));
    let dir = write_trace(&files);
    assert_eq!(read_trace(dir.path()).unwrap().functions.len(), 2);
}

#[test]
fn missing_file_names_the_path() {
    let dir = write_trace(&valid_files());
    fs::remove_file(dir.path().join(MEMORY_FILE)).unwrap();
    let error = read_trace(dir.path()).unwrap_err();
    assert!(matches!(error, TraceError::MissingFile { .. }));
    assert!(error.to_string().contains(&dir.path().join(MEMORY_FILE).display().to_string()), "{error}");
}

#[test]
fn missing_directory_is_a_missing_file() {
    let error = read_trace(Path::new("/nonexistent/trace")).unwrap_err();
    assert!(error.to_string().contains("/nonexistent/trace/invocations.csv"), "{error}");
}

#[test]
fn empty_file_is_rejected() {
    let (error, message) = error_after(|files| files[1].clear());
    assert!(matches!(error, TraceError::EmptyFile { .. }), "{message}");
    assert!(message.contains("durations.csv is empty"), "{message}");
}

#[test]
fn header_only_invocations_has_no_functions() {
    let (error, message) = error_after(|files| files[0] = files[0].lines().next().unwrap().to_owned());
    assert!(matches!(error, TraceError::NoFunctions { .. }), "{message}");
}

#[test]
fn misnamed_column_suggests_the_close_header() {
    let (error, message) = error_after(|files| files[2] = files[2].replacen("SampleCount", "SampleCnt", 1));
    assert!(matches!(error, TraceError::MissingColumn { .. }), "{message}");
    assert!(message.contains("memory.csv: missing column `SampleCount` (found `SampleCnt`"), "{message}");
}

#[test]
fn missing_column_without_a_close_header_has_no_suggestion() {
    let (_, message) = error_after(|files| files[0] = files[0].replacen(",Trigger,", ",Zzzzzzz,", 1));
    assert!(message.ends_with("invocations.csv: missing column `Trigger`"), "{message}");
}

#[test]
fn repeated_column_is_rejected() {
    let (error, message) = error_after(|files| files[1] = files[1].replacen("Maximum", "Minimum", 1));
    assert!(matches!(error, TraceError::DuplicateColumn { .. }), "{message}");
}

#[test]
fn wrong_minute_columns_are_rejected() {
    let drop_last = |text: &str| text.lines().map(|l| l.rsplit_once(',').unwrap().0.to_owned() + "\n").collect();
    let (error, message) = error_after(|files| files[0] = drop_last(&files[0]));
    assert!(matches!(error, TraceError::MinuteColumns { .. }), "{message}");
    assert!(message.contains("found 1439 minute columns, `1440` is missing"), "{message}");
    let (_, message) = error_after(|files| files[0] = files[0].replacen(",1,2,", ",0,2,", 1));
    assert!(message.contains("found a column `0`"), "{message}");
    let (_, message) = error_after(|files| files[0] = files[0].replacen(",1,2,", ",2,2,", 1));
    assert!(message.contains("column `2` appears more than once"), "{message}");
}

#[test]
fn non_numeric_cell_names_file_line_column_and_value() {
    let (error, message) = error_after(|files| files[1] = files[1].replace("o1,a1,ff02,49,2,", "o1,a1,ff02,49,two,"));
    assert!(matches!(error, TraceError::InvalidNumber { line: 3, .. }), "{message}");
    assert!(message.contains("durations.csv:3: column `Count`: `two` is not a non-negative integer"), "{message}");
}

#[test]
fn negative_and_non_finite_cells_are_rejected() {
    let (_, message) = error_after(|files| files[0] = files[0].replace("o1,a1,ff01,http,1,", "o1,a1,ff01,http,-1,"));
    assert!(message.contains("invocations.csv:2: column `1`: `-1` is not a non-negative integer"), "{message}");
    let (_, message) = error_after(|files| files[2] = files[2].replace(",1485,", ",-3.5,"));
    assert!(message.contains("memory.csv:2: column `AverageAllocatedMb`: `-3.5` is not a non-negative number"));
    let (_, message) = error_after(|files| files[1] = files[1].replace(",8.0,", ",NaN,"));
    assert!(message.contains("column `Minimum`: `NaN`"), "{message}");
}

#[test]
fn empty_or_malformed_hash_is_rejected() {
    let (error, message) = error_after(|files| files[0] = files[0].replace("o1,a1,ff02,", "o1,,ff02,"));
    assert!(matches!(error, TraceError::InvalidHash { line: 3, .. }), "{message}");
    assert!(message.contains("column `HashApp`"), "{message}");
}

#[test]
fn truncated_row_is_rejected_with_its_line() {
    let (error, message) = error_after(|files| files[0].truncate(files[0].len() - 2000));
    assert!(matches!(error, TraceError::RowLength { line: 3, expected: 1444, .. }), "{message}");
    let (_, message) = error_after(|files| files[2].push_str("o1,a1\n"));
    assert!(message.contains("memory.csv:4: row has 2 fields, the header has 13"), "{message}");
}

#[test]
fn duplicate_function_row_is_rejected() {
    let (error, message) = error_after(|files| files[0].push_str(&(invocations_row("ff01") + "\n")));
    assert!(matches!(error, TraceError::DuplicateFunction { line: 4, first_line: 2, .. }), "{message}");
    let (_, message) = error_after(|files| files[1].push_str(&(durations_row("ff02") + "\n")));
    assert!(
        message.contains("durations.csv:4: duplicate function HashFunction ff02, owner o1, app a1, first on line 3"),
        "{message}"
    );
}

#[test]
fn function_missing_from_durations_or_memory_is_named() {
    let (error, message) = error_after(|files| files[1] = files[1].replace(&(durations_row("ff02") + "\n"), ""));
    assert!(matches!(error, TraceError::MissingFunction { line: 3, .. }), "{message}");
    assert!(message.contains("function f-ff02o1a1 (HashFunction ff02, owner o1, app a1)"), "{message}");
    assert!(message.ends_with("durations.csv"), "{message}");
    let (_, message) = error_after(|files| files[2] = files[2].replace("o1,a1,ff01,", "o2,a1,ff01,"));
    assert!(message.contains("function f-ff01o1a1") && message.ends_with("memory.csv"), "{message}");
}

#[test]
fn extra_functions_in_durations_and_memory_are_ignored() {
    let dir = write_trace(&valid_files().map(|mut f| {
        if !f.starts_with("HashOwner,HashApp,HashFunction,Trigger") {
            let extra = if f.contains("SampleCount") { memory_row("ff99") } else { durations_row("ff99") };
            f.push_str(&(extra + "\n"));
        }
        f
    }));
    assert_eq!(read_trace(dir.path()).unwrap().functions.len(), 2);
}

#[test]
fn invalid_utf8_and_binary_input_do_not_panic() {
    let dir = write_trace(&valid_files());
    fs::write(dir.path().join(DURATIONS_FILE), b"\xff\xfe\x00garbage\n\x00,\x01\n").unwrap();
    assert!(read_trace(dir.path()).is_err());
    fs::write(dir.path().join(DURATIONS_FILE), b"\"unterminated\n").unwrap();
    assert!(read_trace(dir.path()).is_err());
}
