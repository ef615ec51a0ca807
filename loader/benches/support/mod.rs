//! Shared pieces of the loader benchmark: settings, the target server, the machine's timer baseline, constant-rate
//! replays, the sustained-rate search, wrk, peak RSS and the report.

pub mod baseline;
pub mod cpu;
pub mod replay;
pub mod report;
pub mod rss;
pub mod search;
pub mod server;
pub mod wrk;

use anyhow::Context;
use serde::Serialize;

/// Environment variable that makes the bench binary act as a helper process instead of the benchmark.
pub const ROLE_VAR: &str = "LOADER_BENCH_ROLE";

/// What one run measures, from the environment.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    /// Open-loop rates of the send-lag table, invocations/s (`BENCH_RATES`).
    pub rates: Vec<f64>,
    /// Measured seconds per rate of the send-lag table (`BENCH_SECS`).
    pub secs: f64,
    /// Unmeasured seconds at the start of every replay: connections open, caches warm (`BENCH_WARMUP_SECS`).
    pub warmup_secs: f64,
    /// Function names the constant-rate schedule cycles through (`BENCH_FUNCTIONS`).
    pub functions: u32,
    /// Whether each record also goes through `RunStats` and the `invocations.csv` writer (`BENCH_RECORD_WORK`).
    pub record_work: bool,
    /// Send-lag p99 under which a rate counts as sustained, µs (`BENCH_LAG_THRESHOLD_US`).
    pub lag_threshold_us: u64,
    /// First rate of the sustained-rate search (`BENCH_SEARCH_START`).
    pub search_start: f64,
    /// Measured seconds per step of the search (`BENCH_SEARCH_SECS`).
    pub search_secs: f64,
    /// Tries per rate of the search; a rate keeps up if any try does (`BENCH_SEARCH_TRIES`).
    pub search_tries: usize,
    /// Bisection steps after the search has bracketed the limit (`BENCH_BISECT`).
    pub bisect: usize,
    /// Connections of the closed-loop `wrk` run (`BENCH_WRK_CONNECTIONS`).
    pub wrk_connections: usize,
    /// Seconds of the `wrk` run (`BENCH_WRK_SECS`).
    pub wrk_secs: f64,
    /// Worker threads of the target server; 1 is a current-thread runtime (`BENCH_SERVER_THREADS`).
    pub server_threads: usize,
    /// Invocations of the schedule whose peak RSS is measured (`BENCH_RSS_INVOCATIONS`).
    pub rss_invocations: u64,
    /// Invocations of the real `loader run` whose RSS is followed (`BENCH_RUN_INVOCATIONS`).
    pub run_invocations: u64,
    /// Mean rate of that run, invocations/s (`BENCH_RUN_RATE`).
    pub run_rate: f64,
    /// Which parts run: any of `lag`, `sustained`, `rss` (`BENCH_PARTS`, comma-separated).
    pub parts: Vec<String>,
}

impl Settings {
    /// Reads the `BENCH_*` variables; unset ones take their defaults.
    pub fn from_env() -> anyhow::Result<Self> {
        Ok(Self {
            rates: env_list("BENCH_RATES", &[1_000.0, 5_000.0, 20_000.0])?,
            secs: env_number("BENCH_SECS", 5.0)?,
            warmup_secs: env_number("BENCH_WARMUP_SECS", 1.0)?,
            functions: env_number("BENCH_FUNCTIONS", 100.0)? as u32,
            record_work: env_number("BENCH_RECORD_WORK", 1.0)? > 0.0,
            lag_threshold_us: env_number("BENCH_LAG_THRESHOLD_US", 1_000.0)? as u64,
            search_start: env_number("BENCH_SEARCH_START", 5_000.0)?,
            search_secs: env_number("BENCH_SEARCH_SECS", 3.0)?,
            search_tries: env_number("BENCH_SEARCH_TRIES", 2.0)? as usize,
            bisect: env_number("BENCH_BISECT", 4.0)? as usize,
            wrk_connections: env_number("BENCH_WRK_CONNECTIONS", 32.0)? as usize,
            wrk_secs: env_number("BENCH_WRK_SECS", 10.0)?,
            server_threads: env_number("BENCH_SERVER_THREADS", 1.0)? as usize,
            rss_invocations: env_number("BENCH_RSS_INVOCATIONS", 10_000_000.0)? as u64,
            run_invocations: env_number("BENCH_RUN_INVOCATIONS", 300_000.0)? as u64,
            run_rate: env_number("BENCH_RUN_RATE", 3_000.0)?,
            parts: env_words("BENCH_PARTS", &["lag", "sustained", "rss"])?,
        })
    }

    /// Whether `part` was asked for.
    pub fn runs(&self, part: &str) -> bool {
        self.parts.iter().any(|p| p == part)
    }
}

fn env_text(name: &str) -> anyhow::Result<Option<String>> {
    match std::env::var(name) {
        Ok(value) => Ok(Some(value)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(err) => Err(err).with_context(|| format!("cannot read {name}")),
    }
}

/// A non-negative number; `default` when unset.
fn env_number(name: &str, default: f64) -> anyhow::Result<f64> {
    let Some(value) = env_text(name)? else { return Ok(default) };
    let number: f64 = value.trim().parse().with_context(|| format!("{name}={value:?} is not a number"))?;
    anyhow::ensure!(number.is_finite() && number >= 0.0, "{name} must be a non-negative number, got {value:?}");
    Ok(number)
}

/// A comma-separated list of positive numbers; `default` when unset.
fn env_list(name: &str, default: &[f64]) -> anyhow::Result<Vec<f64>> {
    let Some(value) = env_text(name)? else { return Ok(default.to_vec()) };
    value
        .split(',')
        .map(|item| {
            let number: f64 = item.trim().parse().with_context(|| format!("{name}: {item:?} is not a number"))?;
            anyhow::ensure!(number.is_finite() && number > 0.0, "{name}: {item:?} must be positive");
            Ok(number)
        })
        .collect()
}

/// A comma-separated list of words; `default` when unset.
fn env_words(name: &str, default: &[&str]) -> anyhow::Result<Vec<String>> {
    let Some(value) = env_text(name)? else { return Ok(default.iter().map(|w| w.to_string()).collect()) };
    Ok(value.split(',').map(|w| w.trim().to_owned()).filter(|w| !w.is_empty()).collect())
}
