//! Run folders for tests, written with the loader's own writers (so the tests follow its schema).
#![allow(dead_code)] // each test binary uses a different part

use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use loader::output::{InvocationsCsv, ManifestInputs, RunStats, SummaryInputs, write_manifest, write_summary};
use loader::record::{InvocationRecord, Outcome, PlatformBreakdown};
use loader::schedule::Phase;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal};

/// When every synthetic run starts, Unix µs.
pub const START_US: u64 = 1_800_000_000_000_000;

/// A successful, warm, measured invocation of function `function` intended at `offset_us` after the start.
pub fn record(function: u32, offset_us: u64, requested_us: u64, response_us: u64, actual_us: u64) -> InvocationRecord {
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
    }
}

/// Writes `invocations.csv`, `summary.json` and `manifest.json` into `dir` with the loader's writers; `config` is
/// the manifest's config and `threshold_us` (send-lag p99) decides the trustworthy flag (send lags are 50 µs).
pub fn write_run(
    dir: &Path,
    records: &[InvocationRecord],
    functions: usize,
    config: serde_json::Value,
    threshold_us: u64,
) {
    std::fs::create_dir_all(dir).unwrap();
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
        send_lag_threshold_us: threshold_us,
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

/// A synthetic run of `count` invocations over 20 functions and 60 s: requested 10 ms, executed as requested,
/// scheduling latency log-normal (median 5 ms × `scale`), 5% cold starts, 0.5% failures.
pub fn synthetic_records(seed: u64, count: u64, scale: f64) -> Vec<InvocationRecord> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let latency = LogNormal::new((5_000.0f64).ln(), 1.0).unwrap();
    (0..count)
        .map(|index| {
            let function = rng.random_range(0..20u32);
            let offset = index * 60_000_000 / count;
            let scheduling = (latency.sample(&mut rng) * scale) as u64;
            let mut record = record(function, offset, 10_000, 10_000 + scheduling, 10_000);
            record.cold_start = Some(rng.random_range(0..100) < 5);
            if rng.random_range(0..1000) < 5 {
                record.outcome = Outcome::Status(503, "busy".into());
                record.actual_duration_us = None;
            }
            record
        })
        .collect()
}

/// Writes a synthetic run (see [`synthetic_records`]) with a trustworthy summary and a cold-start workload
/// config of `rate` per second.
pub fn synthetic_run(dir: &Path, seed: u64, count: u64, scale: f64, rate: f64) {
    let config = serde_json::json!({"workload": {"kind": "cold-starts", "rate": rate}, "target": {"kind": "http"}});
    write_run(dir, &synthetic_records(seed, count, scale), 20, config, 1_000);
}
