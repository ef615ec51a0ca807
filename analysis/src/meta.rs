//! The run folder's JSON files: `summary.json` (the loader's trustworthy flag and send-lag figures) and
//! `manifest.json` (config, seed, git commit, host). Both are optional, so a vHive run folder (CSV only) works.
//! Only the keys read here are checked; unknown keys are ignored so newer loaders stay readable.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::AnalyzeError;

/// Percentiles as the loader wrote them, µs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoaderPercentiles {
    /// Number of values.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest value.
    pub max: u64,
}

/// The overall part of `summary.json` that the analysis uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoaderOverall {
    /// Scheduled measured invocations per second.
    #[serde(default)]
    pub requested_rate_per_s: Option<f64>,
    /// Measured invocations sent per second.
    #[serde(default)]
    pub achieved_rate_per_s: Option<f64>,
    /// Send-lag percentiles of the measured phase, µs.
    #[serde(default)]
    pub send_lag_us: Option<LoaderPercentiles>,
    /// Largest send lag, µs.
    #[serde(default)]
    pub max_send_lag_us: Option<u64>,
}

/// What the analysis takes from the loader's `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoaderSummary {
    /// Whether the loader's send lag stayed within its threshold.
    pub trustworthy: bool,
    /// The send-lag p99 threshold, µs.
    #[serde(default)]
    pub send_lag_threshold_us: Option<u64>,
    /// Length of the measured phase, s.
    #[serde(default)]
    pub measured_duration_s: Option<f64>,
    /// Length of the whole schedule from the run start, warm-up included, s.
    #[serde(default)]
    pub run_duration_s: Option<f64>,
    /// Overall figures.
    pub overall: LoaderOverall,
}

/// The loader build that made the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LoaderVersion {
    /// Crate version.
    pub version: Option<String>,
    /// Git commit of its source tree.
    pub git_commit: Option<String>,
}

/// The machine the loader ran on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HostFacts {
    /// Host name.
    pub hostname: Option<String>,
    /// Available cores.
    pub nproc: Option<u64>,
    /// Kernel release.
    pub kernel: Option<String>,
}

/// What the analysis takes from `manifest.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ManifestSummary {
    /// Loader version and git commit.
    pub loader: LoaderVersion,
    /// Host facts.
    pub host: HostFacts,
    /// Start, RFC 3339.
    pub started_at: Option<String>,
    /// End, RFC 3339.
    pub ended_at: Option<String>,
    /// Start, Unix µs: the origin of `exclude_leading` and of the timeline.
    pub started_unix_us: Option<u64>,
    /// The schedule's seed.
    pub seed: Option<u64>,
    /// Checksum of the trace files, for a trace replay.
    pub trace_checksum: Option<String>,
    /// The resolved loader config.
    pub config: serde_json::Value,
    /// Events recorded during the run (e.g. injected failures).
    pub events: Vec<serde_json::Value>,
}

/// Config keys shown in reports, as JSON pointers into the manifest's `config`.
const CONFIG_KEYS: [&str; 12] = [
    "/workload/kind",
    "/workload/rate",
    "/workload/duration",
    "/trace",
    "/slice/start_minute",
    "/slice/minutes",
    "/slice/functions",
    "/schedule/compression",
    "/schedule/iat",
    "/warmup_minutes",
    "/target/kind",
    "/send_lag_threshold",
];

impl ManifestSummary {
    /// The config keys a report shows, as (dotted key, value) pairs, for those present.
    pub fn config_summary(&self) -> Vec<(String, String)> {
        CONFIG_KEYS
            .iter()
            .filter_map(|pointer| {
                let value = self.config.pointer(pointer)?;
                let text = value.as_str().map_or_else(|| value.to_string(), str::to_owned);
                Some((pointer[1..].replace('/', "."), text))
            })
            .collect()
    }

    /// The requested rate of a synthetic workload (`config.workload.rate`), if the config has one.
    pub fn workload_rate(&self) -> Option<f64> {
        self.config.pointer("/workload/rate").and_then(serde_json::Value::as_f64)
    }
}

/// Reads `summary.json` in `dir`, or `None` when the file does not exist.
pub fn read_summary(dir: &Path) -> Result<Option<LoaderSummary>, AnalyzeError> {
    read_optional(&dir.join("summary.json"))
}

/// Reads `manifest.json` in `dir`, or `None` when the file does not exist.
pub fn read_manifest(dir: &Path) -> Result<Option<ManifestSummary>, AnalyzeError> {
    read_optional(&dir.join("manifest.json"))
}

fn read_optional<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, AnalyzeError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(AnalyzeError::Io { path: path.to_path_buf(), source }),
    };
    let mut deserializer = serde_json::Deserializer::from_str(&text);
    // serde_path_to_error names the offending key; serde_json's own error carries the line and column.
    serde_path_to_error::deserialize(&mut deserializer).map(Some).map_err(|error| AnalyzeError::Json {
        path: path.to_path_buf(),
        key: error.path().to_string(),
        source: error.into_inner(),
    })
}
