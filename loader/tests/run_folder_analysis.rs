//! The analysis reads what the loader really writes: a run folder from the loader's own writers
//! (`InvocationsCsv`, `RunStats`, `write_summary`, `write_manifest`), analysed with `analysis::analyze`. And the
//! fixture writer the analysis' own tests use (which cannot link the loader) writes the same files.

#[path = "../../analysis/tests/common/mod.rs"]
mod fixture;

use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use analysis::{Options, analyze};
use loader::output::{InvocationsCsv, ManifestInputs, RunStats, SummaryInputs, write_manifest, write_summary};
use loader::record::{InvocationRecord, Outcome, PlatformBreakdown};
use loader::schedule::Phase;

/// When the run starts, Unix µs.
const START_US: u64 = 1_800_000_000_000_000;

/// A successful, warm, measured invocation of function `function` intended at `offset_us` after the start.
fn record(function: u32, offset_us: u64, requested_us: u64, response_us: u64, actual_us: u64) -> InvocationRecord {
    InvocationRecord {
        phase: Phase::Measured,
        function,
        minute: 0,
        index_in_minute: 0,
        intended_unix_us: START_US + offset_us,
        sent_unix_us: START_US + offset_us + 50,
        requested_duration_us: requested_us,
        requested_memory_mib: 128,
        response_time_us: response_us,
        actual_duration_us: Some(actual_us),
        actual_memory_mib: Some(10),
        outcome: Outcome::Ok,
        cold_start: Some(false),
        breakdown: PlatformBreakdown::default(),
        failovers: 0,
    }
}

/// Writes the three run files of a 60 s run into `dir` with the loader's writers; send lags are 50 µs, under the
/// 1 ms threshold.
fn write_run(dir: &Path, records: &[InvocationRecord], functions: usize, config: serde_json::Value) {
    let names: Vec<String> = (0..functions).map(|index| format!("fn-{index}")).collect();
    let mut csv = InvocationsCsv::create(&dir.join("invocations.csv"), &names).unwrap();
    let mut stats = RunStats::new(&names);
    for record in records {
        csv.write(record).unwrap();
        stats.record(record);
    }
    csv.flush().unwrap();
    let inputs = SummaryInputs {
        measured_duration_s: 60.0,
        run_duration_s: 60.0,
        scheduled_per_function: Vec::new(),
        send_lag_threshold_us: 1000,
    };
    write_summary(&dir.join("summary.json"), &stats, &inputs).unwrap();
    let started = UNIX_EPOCH + Duration::from_micros(START_US);
    let manifest = ManifestInputs {
        config,
        seed: 7,
        trace_checksum: None,
        started,
        ended: started + Duration::from_secs(60),
        events: Vec::new(),
    };
    write_manifest(&dir.join("manifest.json"), &manifest).unwrap();
}

/// HdrHistogram values at 3 significant digits are within 0.1%.
fn close(actual: f64, expected: f64) {
    assert!((actual - expected).abs() <= expected.abs() * 1e-3 + 1e-9, "{actual} is not close to {expected}");
}

#[test]
fn the_analysis_reads_the_loaders_own_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut records = vec![
        record(0, 1_000_000, 10_000, 12_000, 10_000),
        record(1, 2_000_000, 20_000, 30_000, 20_000),
        record(1, 3_000_000, 20_000, 26_000, 20_000),
    ];
    records[1].cold_start = Some(true);
    let mut failed = record(0, 4_000_000, 10_000, 0, 0);
    failed.outcome = Outcome::ConnectionFailed("refused".into());
    failed.actual_duration_us = None;
    records.push(failed);
    let mut warmup = record(0, 0, 10_000, 99_000, 10_000);
    warmup.phase = Phase::Warmup;
    records.insert(0, warmup);
    write_run(dir.path(), &records, 2, serde_json::json!({"workload": {"kind": "rps", "rate": 2.0}}));
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
    assert_eq!(run.manifest.as_ref().unwrap().started_unix_us, Some(START_US));
    // The loader's own summary comes through whole: its counts and its send-lag figures.
    let summary = run.loader_summary.as_ref().unwrap();
    assert_eq!((summary.overall.counts.measured, summary.overall.counts.warmup), (4, 1));
    assert_eq!(summary.overall.send_lag_us.as_ref().unwrap().p99, 50);
    assert_eq!(run.send_lag_us.as_ref().unwrap().p99, 50.0);
}

/// The loader's record of a fixture invocation (failure messages are not written, so any will do).
fn from_fixture(invocation: &fixture::Invocation) -> InvocationRecord {
    InvocationRecord {
        phase: if invocation.phase == fixture::Phase::Warmup { Phase::Warmup } else { Phase::Measured },
        function: invocation.function,
        minute: invocation.minute,
        index_in_minute: invocation.index_in_minute,
        intended_unix_us: invocation.intended_unix_us,
        sent_unix_us: invocation.sent_unix_us,
        requested_duration_us: invocation.requested_duration_us,
        requested_memory_mib: 128,
        response_time_us: invocation.response_time_us,
        actual_duration_us: invocation.actual_duration_us,
        actual_memory_mib: invocation.actual_memory_mib,
        outcome: match invocation.outcome {
            fixture::Outcome::Ok => Outcome::Ok,
            fixture::Outcome::ConnectionFailed => Outcome::ConnectionFailed("refused".into()),
            fixture::Outcome::Timeout => Outcome::Timeout,
            fixture::Outcome::Status(code) => Outcome::Status(code, "busy".into()),
        },
        cold_start: invocation.cold_start,
        breakdown: PlatformBreakdown {
            queue_us: invocation.queue_us,
            proxy_us: invocation.proxy_us,
            ..PlatformBreakdown::default()
        },
        failovers: 0,
    }
}

#[test]
fn the_analysis_test_fixture_writes_what_the_loader_writes() {
    let dir = tempfile::tempdir().unwrap();
    let mut invocations = fixture::synthetic_records(3, 5_000, 1.0);
    invocations[0].phase = fixture::Phase::Warmup;
    invocations[1].outcome = fixture::Outcome::Timeout;
    (invocations[2].outcome, invocations[2].actual_duration_us) = (fixture::Outcome::ConnectionFailed, None);
    (invocations[3].queue_us, invocations[3].proxy_us, invocations[3].cold_start) = (Some(7), Some(9), None);
    let config = serde_json::json!({"workload": {"kind": "rps", "rate": 2.0}});
    let (ours, theirs) = (dir.path().join("loader"), dir.path().join("fixture"));
    std::fs::create_dir_all(&ours).unwrap();
    let records: Vec<InvocationRecord> = invocations.iter().map(from_fixture).collect();
    write_run(&ours, &records, 20, config.clone());
    fixture::write_run(&theirs, &invocations, 20, config, 1000);
    for file in ["invocations.csv", "summary.json"] {
        let (loader, fixture) = (ours.join(file), theirs.join(file));
        let same = std::fs::read(&loader).unwrap() == std::fs::read(&fixture).unwrap();
        assert!(same, "{file} differs: diff {} {}", loader.display(), fixture.display());
    }
    let manifest = |dir: &Path| analyze(dir, &Options::default()).unwrap().manifest.unwrap();
    let (loader, fixture) = (manifest(&ours), manifest(&theirs));
    assert_eq!((&loader.started_at, &loader.ended_at), (&fixture.started_at, &fixture.ended_at));
    assert_eq!((loader.started_unix_us, loader.ended_unix_us), (fixture.started_unix_us, fixture.ended_unix_us));
    assert_eq!((&loader.config, loader.events.len()), (&fixture.config, 0));
}
