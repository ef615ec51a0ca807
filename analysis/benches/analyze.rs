//! Throughput of `analysis::analyze`: writes a synthetic run with the tests' run-folder writer (2M rows over 1000
//! functions by default; the analysis does not link the loader), then times the analysis and the report.
//!
//! `cargo bench -p analysis --bench analyze` (env: `ANALYSIS_BENCH_ROWS`, `ANALYSIS_BENCH_DIR` to keep the run
//! folder, `ANALYSIS_BENCH_SCALE` to multiply the scheduling latencies).

use std::path::Path;
use std::time::Instant;

use analysis::{Options, analyze};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal};
use run_folder::{Invocation, Outcome, Phase, RunInfo, RunWriter, START_US};

#[path = "../tests/common/run_folder.rs"]
mod run_folder;

const FUNCTIONS: u32 = 1000;
const SPAN_US: u64 = 600_000_000;

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|value| value.parse().ok()).unwrap_or(default)
}

fn record(rng: &mut ChaCha8Rng, latency: &LogNormal<f64>, index: u64, rows: u64, scale: f64) -> Invocation {
    let offset = index * SPAN_US / rows;
    let requested = 1_000 * rng.random_range(1..100u64);
    let scheduling = (latency.sample(rng) * scale) as u64;
    let failed = rng.random_range(0..1000) < 2;
    Invocation {
        phase: if offset < SPAN_US / 20 { Phase::Warmup } else { Phase::Measured },
        function: rng.random_range(0..FUNCTIONS),
        minute: (offset / 60_000_000) as u32,
        index_in_minute: index as u32,
        intended_unix_us: START_US + offset,
        sent_unix_us: START_US + offset + rng.random_range(20..200),
        requested_duration_us: requested,
        response_time_us: if failed { 0 } else { requested + scheduling },
        actual_duration_us: (!failed).then_some(requested),
        actual_memory_mib: Some(20),
        outcome: if failed { Outcome::ConnectionFailed } else { Outcome::Ok },
        cold_start: Some(rng.random_range(0..100) < 3),
        queue_us: Some(scheduling / 2),
        proxy_us: Some(40),
    }
}

fn write_run(dir: &Path, rows: u64, scale: f64) {
    let names = (0..FUNCTIONS).map(|index| format!("function-{index:04}")).collect();
    let mut writer = RunWriter::create(dir, names);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let latency = LogNormal::new((2_000.0f64).ln(), 1.2).expect("valid log-normal");
    for index in 0..rows {
        writer.write(&record(&mut rng, &latency, index, rows, scale));
    }
    let config = serde_json::json!({"workload": {"kind": "rps", "rate": rows as f64 / 600.0}});
    writer.finish(&RunInfo {
        measured_duration_s: 570.0,
        run_duration_s: 600.0,
        send_lag_threshold_us: 1000,
        config,
        seed: 1,
    });
}

fn peak_rss_mib() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let line = status.lines().find(|line| line.starts_with("VmHWM:")).unwrap_or("VmHWM: unknown");
    line.trim_start_matches("VmHWM:").trim().to_owned()
}

fn main() {
    let rows = env("ANALYSIS_BENCH_ROWS", 2_000_000u64);
    let scale = env("ANALYSIS_BENCH_SCALE", 1.0f64);
    let temp = tempfile::tempdir().expect("temporary folder");
    let dir = std::env::var_os("ANALYSIS_BENCH_DIR").map_or_else(|| temp.path().to_path_buf(), Into::into);
    let started = Instant::now();
    write_run(&dir, rows, scale);
    let bytes = std::fs::metadata(dir.join("invocations.csv")).map(|meta| meta.len()).unwrap_or(0);
    println!("wrote {rows} rows ({:.0} MB) in {:.1?}", bytes as f64 / 1e6, started.elapsed());
    let mut rates = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let run = analyze(&dir, &Options::default()).expect("analyze");
        let elapsed = started.elapsed();
        assert_eq!(run.counts.rows, rows);
        rates.push(rows as f64 / elapsed.as_secs_f64());
        println!(
            "analyze: {elapsed:.2?}, {:.2} M rows/s, {:.0} MB/s",
            rates.last().unwrap() / 1e6,
            bytes as f64 / 1e6 / elapsed.as_secs_f64()
        );
    }
    rates.sort_by(f64::total_cmp);
    println!(
        "analyze median: {:.2} M rows/s (best {:.2}); peak RSS {}",
        rates[1] / 1e6,
        rates[2] / 1e6,
        peak_rss_mib()
    );
    let run = analyze(&dir, &Options::default()).expect("analyze");
    let started = Instant::now();
    analysis::report::write(&run, &dir.join("report")).expect("report");
    println!("report (markdown, JSON, 4 plots as PNG and SVG): {:.2?}", started.elapsed());
}
