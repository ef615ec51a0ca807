//! Shared pieces of the orchestrator benchmark: the cluster under test, the HTTP client, statistics,
//! the two measurements and the report.

pub mod cluster;
pub mod cold;
pub mod http;
pub mod report;
pub mod stats;
pub mod warm;

use anyhow::Context;

/// What one run measures, from the environment.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Settings {
    /// Measured requests per warm-path case and path (`BENCH_REQUESTS`).
    pub requests: usize,
    /// Unmeasured requests before each warm-path measurement (`BENCH_WARMUP`).
    pub warmup: usize,
    /// Functions per cold-start phase (`BENCH_COLD`).
    pub cold: usize,
    /// Workers in the standalone cluster (`BENCH_WORKERS`).
    pub workers: usize,
}

impl Settings {
    /// Reads the `BENCH_*` variables; unset ones take their defaults.
    pub fn from_env() -> anyhow::Result<Self> {
        Ok(Self {
            requests: env_count("BENCH_REQUESTS", 20_000)?,
            warmup: env_count("BENCH_WARMUP", 2_000)?,
            cold: env_count("BENCH_COLD", 50)?,
            workers: env_count("BENCH_WORKERS", 2)?,
        })
    }
}

fn env_count(name: &str, default: usize) -> anyhow::Result<usize> {
    match std::env::var(name) {
        Ok(value) => {
            let count: usize =
                value.trim().parse().with_context(|| format!("{name}={value:?} is not a whole number"))?;
            anyhow::ensure!(count > 0, "{name} must be at least 1");
            Ok(count)
        }
        Err(std::env::VarError::NotPresent) => Ok(default),
        Err(err) => Err(err).with_context(|| format!("cannot read {name}")),
    }
}
