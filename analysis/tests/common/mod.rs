//! Run folders for tests, written with the fixture writer in [`run_folder`] (the schema is `contracts::run_folder`).
#![allow(dead_code)] // each test binary uses a different part

pub mod run_folder;

use std::path::Path;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal};
pub use run_folder::{Invocation, Outcome, Phase, RunInfo, RunWriter, START_US};

/// A successful, warm, measured invocation of function `function` intended at `offset_us` after the start.
pub fn record(function: u32, offset_us: u64, requested_us: u64, response_us: u64, actual_us: u64) -> Invocation {
    Invocation {
        phase: Phase::Measured,
        function,
        minute: 0,
        index_in_minute: 0,
        intended_unix_us: START_US + offset_us,
        sent_unix_us: START_US + offset_us + 50,
        requested_duration_us: requested_us,
        response_time_us: response_us,
        actual_duration_us: Some(actual_us),
        actual_memory_mib: Some(10),
        outcome: Outcome::Ok,
        cold_start: Some(false),
        queue_us: None,
        proxy_us: None,
    }
}

/// Writes `invocations.csv`, `summary.json` and `manifest.json` of a 60 s run into `dir`; `config` is the
/// manifest's config and `threshold_us` (send-lag p99) decides the trustworthy flag (send lags are 50 µs).
pub fn write_run(dir: &Path, records: &[Invocation], functions: usize, config: serde_json::Value, threshold_us: u64) {
    let names = (0..functions).map(|index| format!("fn-{index}")).collect();
    let mut writer = RunWriter::create(dir, names);
    for record in records {
        writer.write(record);
    }
    let info = RunInfo {
        measured_duration_s: 60.0,
        run_duration_s: 60.0,
        send_lag_threshold_us: threshold_us,
        config,
        seed: 7,
    };
    writer.finish(&info);
}

/// A synthetic run of `count` invocations over 20 functions and 60 s: requested 10 ms, executed as requested,
/// scheduling latency log-normal (median 5 ms × `scale`), 5% cold starts, 0.5% failures.
pub fn synthetic_records(seed: u64, count: u64, scale: f64) -> Vec<Invocation> {
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
                record.outcome = Outcome::Status(503);
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
