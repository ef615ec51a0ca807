//! `loader run --config FILE`: one YAML file for a whole run; every default is in `loader/config/example.yaml`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::schedule::ScheduleConfig;

/// A whole run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    /// Directory with the trace (In-Vitro layout).
    pub trace: PathBuf,
    /// Which part of the trace to replay.
    pub slice: SliceConfig,
    /// How the trace becomes send times.
    pub schedule: ScheduleConfig,
    /// Leading minutes of the slice whose invocations are warm-up (phase 1, excluded from analysis).
    pub warmup_minutes: u32,
    /// Where the invocations go.
    pub target: TargetConfig,
    /// Sending.
    pub driver: DriverConfig,
    /// The run folder (created; must not hold an earlier run's files).
    pub output: PathBuf,
    /// A run whose send-lag p99 exceeds this is marked untrustworthy.
    #[serde(with = "humantime_serde")]
    pub send_lag_threshold: Duration,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            trace: PathBuf::from("loader/traces/azure-100"),
            slice: SliceConfig::default(),
            schedule: ScheduleConfig::default(),
            warmup_minutes: 0,
            target: TargetConfig::default(),
            driver: DriverConfig::default(),
            output: PathBuf::from("results/run"),
            send_lag_threshold: Duration::from_millis(1),
        }
    }
}

/// Which part of the trace to replay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SliceConfig {
    /// First minute of the day (0-based).
    pub start_minute: usize,
    /// Minutes to replay.
    pub minutes: usize,
    /// Only this many functions (`null`: all).
    pub functions: Option<usize>,
    /// Pick `functions` by a seeded sample instead of the first N.
    pub sample_seed: Option<u64>,
}

impl Default for SliceConfig {
    fn default() -> Self {
        Self { start_minute: 0, minutes: 2, functions: None, sample_seed: None }
    }
}

/// Where invocations go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum TargetConfig {
    /// The bundled orchestrator: functions registered through its API, invoked through its data plane.
    Dirigent {
        /// The control plane's HTTP API.
        #[serde(default = "default_api")]
        api: String,
        /// The data plane's proxy.
        #[serde(default = "default_proxy")]
        proxy: String,
        /// The image every function is registered with.
        #[serde(default = "default_image")]
        image: String,
        /// Lower scaling bound per function.
        #[serde(default)]
        min_scale: u32,
        /// Upper scaling bound per function (0: the platform's default).
        #[serde(default)]
        max_scale: u32,
    },
    /// vHive's gRPC workload interface (`faas.Executor/Execute`).
    Grpc {
        /// Address with optional `{function}`, e.g. `http://127.0.0.1:50051`.
        address: String,
    },
    /// Any HTTP endpoint.
    Http {
        /// URL with optional `{function}`.
        url: String,
        /// `Host` header with optional `{function}`.
        #[serde(default)]
        host: Option<String>,
        /// Speak h2c (HTTP/2 prior knowledge) instead of HTTP/1.1.
        #[serde(default)]
        http2: bool,
    },
}

fn default_api() -> String {
    "127.0.0.1:9091".into()
}

fn default_proxy() -> String {
    "127.0.0.1:8080".into()
}

fn default_image() -> String {
    "trace-function".into()
}

impl Default for TargetConfig {
    fn default() -> Self {
        TargetConfig::Dirigent {
            api: default_api(),
            proxy: default_proxy(),
            image: default_image(),
            min_scale: 0,
            max_scale: 0,
        }
    }
}

/// Sending.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DriverConfig {
    /// Most requests in flight at once.
    pub max_in_flight: usize,
    /// Per-request timeout.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// After the schedule (or Ctrl-C), how long in-flight requests may still finish.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
}

impl Default for DriverConfig {
    fn default() -> Self {
        Self { max_in_flight: 10_000, request_timeout: Duration::from_secs(60), drain_timeout: Duration::from_secs(30) }
    }
}

/// The run config is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// the file cannot be read
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// the YAML does not fit the config (the message names line, column and key)
    #[error("invalid config {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        message: String,
    },
    /// a value is out of range
    #[error("invalid config {path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Which key, and why.
        message: String,
    },
}

impl RunConfig {
    /// Reads and checks a YAML config; YAML 1.1 words like `yes` stay strings.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        let options = serde_saphyr::options! { strict_booleans: true };
        let config: Self = serde_saphyr::from_str_with_options(&text, options)
            .map_err(|e| ConfigError::Parse { path: path.into(), message: e.to_string() })?;
        config.validate().map_err(|message| ConfigError::Invalid { path: path.into(), message })?;
        Ok(config)
    }

    /// Checks values the types cannot: names the key at fault.
    pub fn validate(&self) -> Result<(), String> {
        self.schedule.validate().map_err(|e| format!("schedule: {e}"))?;
        if self.slice.minutes == 0 {
            return Err("slice.minutes must be at least 1".into());
        }
        if self.warmup_minutes as usize >= self.slice.minutes {
            return Err(format!(
                "warmup_minutes ({}) must be below slice.minutes ({})",
                self.warmup_minutes, self.slice.minutes
            ));
        }
        if self.driver.max_in_flight == 0 {
            return Err("driver.max_in_flight must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_holds_exactly_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example.yaml");
        assert_eq!(RunConfig::load(&path).unwrap(), RunConfig::default());
    }

    #[test]
    fn errors_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.yaml");
        std::fs::write(&path, "slice:\n  minuts: 3\n").unwrap();
        let err = RunConfig::load(&path).unwrap_err().to_string();
        assert!(err.contains("minuts") && err.contains("run.yaml"), "{err}");
        std::fs::write(&path, "warmup_minutes: 5\nslice: { minutes: 2 }\n").unwrap();
        let err = RunConfig::load(&path).unwrap_err().to_string();
        assert!(err.contains("warmup_minutes"), "{err}");
        std::fs::write(&path, "target: { kind: lambda }\n").unwrap();
        assert!(RunConfig::load(&path).unwrap_err().to_string().contains("lambda"));
    }
}
