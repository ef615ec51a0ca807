//! `loader run --config FILE`: one YAML file for a whole run; every default is in `loader/config/example.yaml`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::schedule::{Arrivals, ScheduleConfig};

/// A whole run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    /// What to send: the trace (with `trace`, `slice`, `schedule`, `warmup_minutes`) or a synthetic load.
    pub workload: Workload,
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
            workload: Workload::Trace,
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

/// What a run sends.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Workload {
    /// Replay the trace (`trace`, `slice`, `schedule`, `warmup_minutes`).
    #[default]
    Trace,
    /// A constant rate of invocations, round-robin over `functions` warm functions.
    Rps(RpsWorkload),
    /// The Dirigent paper's cold-start sweep: `rate` cold starts per second.
    ColdStarts(ColdStartWorkload),
}

/// Constant RPS: `rate` invocations per second over `functions` functions, for `warmup` then `duration`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RpsWorkload {
    /// Invocations per second, all functions together.
    pub rate: f64,
    /// Length of the measured phase.
    #[serde(with = "humantime_serde", default = "default_synthetic_duration")]
    pub duration: Duration,
    /// Length of the leading warm-up phase (its invocations are phase 1).
    #[serde(with = "humantime_serde", default)]
    pub warmup: Duration,
    /// Functions the rate is spread over, round-robin.
    #[serde(default = "one")]
    pub functions: u32,
    /// `equidistant` or `exponential` (Poisson, seeded with `schedule.seed`).
    #[serde(default)]
    pub arrivals: Arrivals,
    /// Requested execution time of every invocation, ms.
    #[serde(default = "default_synthetic_runtime")]
    pub runtime_ms: u32,
    /// Requested memory of every invocation, MiB.
    #[serde(default = "default_synthetic_memory")]
    pub memory_mib: u32,
}

/// The cold-start sweep: each of `ceil(rate × cooldown)` functions, with scale bounds [0, 1], is called once per
/// `cooldown`, so every call is a cold start when the platform's keep-alive is shorter than the cooldown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColdStartWorkload {
    /// Cold starts per second.
    pub rate: f64,
    /// Time between two calls of the same function; must exceed the platform's keep-alive.
    #[serde(with = "humantime_serde", default = "default_cooldown")]
    pub cooldown: Duration,
    /// Length of the measured phase.
    #[serde(with = "humantime_serde", default = "default_synthetic_duration")]
    pub duration: Duration,
    /// Length of the leading warm-up phase (its invocations are phase 1).
    #[serde(with = "humantime_serde", default)]
    pub warmup: Duration,
    /// Requested execution time of every invocation, ms.
    #[serde(default = "default_synthetic_runtime")]
    pub runtime_ms: u32,
    /// Requested memory of every invocation, MiB.
    #[serde(default = "default_synthetic_memory")]
    pub memory_mib: u32,
}

fn one() -> u32 {
    1
}

fn default_synthetic_duration() -> Duration {
    Duration::from_secs(60)
}

fn default_cooldown() -> Duration {
    Duration::from_secs(120)
}

fn default_synthetic_runtime() -> u32 {
    10
}

fn default_synthetic_memory() -> u32 {
    16
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
        /// The control plane's HTTP API: one `host:port`, or one per replica `;`-separated or as a YAML list; each
        /// call goes to the replica that answered last and fails over to the others (see the dirigent target).
        #[serde(default = "default_api", deserialize_with = "one_or_many")]
        api: String,
        /// The data planes' proxies: one `host:port`, several `;`-separated (the `/registerService` reply's
        /// form) or a YAML list; every data plane the control plane lists is added at deploy.
        #[serde(default = "default_proxy", deserialize_with = "one_or_many")]
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
    /// Knative Serving: one Knative Service per function, invoked through the ingress gateway.
    Knative(crate::target::knative::KnativeConfig),
    /// AWS Lambda: one function per trace function, invoked synchronously through the Invoke API.
    Lambda(crate::target::lambda::LambdaTargetConfig),
}

fn default_api() -> String {
    "127.0.0.1:9091".into()
}

fn default_proxy() -> String {
    "127.0.0.1:8080".into()
}

/// Reads one address or a list of them into the `;`-separated form ([`contracts::api::ProxyAddresses`]), for
/// `target.proxy` and `target.api`.
fn one_or_many<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    match OneOrMany::deserialize(deserializer) {
        Ok(OneOrMany::One(one)) => Ok(one),
        Ok(OneOrMany::Many(many)) => Ok(contracts::api::ProxyAddresses(many).to_string()),
        Err(_) => Err(serde::de::Error::custom("expected `host:port`, `host:port;host:port` or a list of them")),
    }
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
    /// Timeout of each call to a platform's control API (the dirigent target's registrations, data-plane list and
    /// deletions).
    #[serde(with = "humantime_serde")]
    pub api_timeout: Duration,
    /// Run the loader's threads at real-time CPU priority (`SCHED_FIFO` 1) when the system permits, so that a
    /// system under test on the same cores cannot delay sends; see [`crate::driver::realtime`].
    pub realtime: bool,
}

impl Default for DriverConfig {
    fn default() -> Self {
        Self {
            max_in_flight: 10_000,
            request_timeout: Duration::from_secs(60),
            drain_timeout: Duration::from_secs(30),
            api_timeout: crate::target::dirigent::DEFAULT_API_TIMEOUT,
            realtime: true,
        }
    }
}

/// The run config is unusable: the toolkit's one config error (the file, and line, column and key or the rule).
pub use contracts::yaml::ConfigError;

impl RunConfig {
    /// Reads and checks a YAML config; YAML 1.1 words like `yes` stay strings.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let config: Self = contracts::yaml::load(path)?;
        config.validate().map_err(|message| ConfigError::Invalid { path: path.into(), error: message.into() })?;
        Ok(config)
    }

    /// Checks values the types cannot: names the key at fault.
    pub fn validate(&self) -> Result<(), String> {
        self.schedule.validate().map_err(|e| format!("schedule: {e}"))?;
        if self.driver.max_in_flight == 0 {
            return Err("driver.max_in_flight must be at least 1".into());
        }
        match &self.workload {
            Workload::Trace => self.validate_trace_keys(),
            Workload::Rps(rps) => {
                check_rate("workload.rate", rps.rate)?;
                check_phase(rps.duration, rps.memory_mib)?;
                if rps.functions == 0 {
                    return Err("workload.functions must be at least 1".into());
                }
                Ok(())
            }
            Workload::ColdStarts(cold) => {
                check_rate("workload.rate", cold.rate)?;
                check_phase(cold.duration, cold.memory_mib)?;
                let functions = cold.rate * cold.cooldown.as_secs_f64();
                if !(1.0..=f64::from(MAX_COLD_START_FUNCTIONS)).contains(&functions.ceil()) {
                    return Err(format!(
                        "workload.rate x workload.cooldown asks for {functions:.0} functions; \
                         between 1 and {MAX_COLD_START_FUNCTIONS} are supported"
                    ));
                }
                Ok(())
            }
        }
    }

    fn validate_trace_keys(&self) -> Result<(), String> {
        if self.slice.minutes == 0 {
            return Err("slice.minutes must be at least 1".into());
        }
        if self.warmup_minutes as usize >= self.slice.minutes {
            return Err(format!(
                "warmup_minutes ({}) must be below slice.minutes ({})",
                self.warmup_minutes, self.slice.minutes
            ));
        }
        Ok(())
    }
}

/// Most functions a cold-start sweep may spread over (each is deployed before the run).
pub const MAX_COLD_START_FUNCTIONS: u32 = 100_000;

fn check_rate(key: &str, rate: f64) -> Result<(), String> {
    if rate.is_finite() && rate > 0.0 {
        Ok(())
    } else {
        Err(format!("{key} must be a number of invocations per second above 0, got {rate}"))
    }
}

fn check_phase(duration: Duration, memory_mib: u32) -> Result<(), String> {
    if duration.is_zero() {
        return Err("workload.duration must be above 0".into());
    }
    if memory_mib == 0 {
        return Err("workload.memory_mib must be at least 1".into());
    }
    Ok(())
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
    fn the_dirigent_proxy_is_one_address_or_several() {
        let proxy = |yaml: &str| match contracts::yaml::parse::<TargetConfig>(yaml) {
            Ok(TargetConfig::Dirigent { proxy, .. }) => Ok(proxy),
            Ok(other) => panic!("not dirigent: {other:?}"),
            Err(e) => Err(e.to_string()),
        };
        assert_eq!(proxy("{kind: dirigent, proxy: 'a:1'}").unwrap(), "a:1");
        assert_eq!(proxy("{kind: dirigent, proxy: 'a:1;b:2'}").unwrap(), "a:1;b:2");
        assert_eq!(proxy("{kind: dirigent, proxy: ['a:1', 'b:2']}").unwrap(), "a:1;b:2");
        assert_eq!(proxy("{kind: dirigent}").unwrap(), "127.0.0.1:8080");
        let error = proxy("{kind: dirigent, proxy: {a: 1}}").unwrap_err();
        assert!(error.contains("a list of them"), "{error}");
    }

    #[test]
    fn the_dirigent_api_is_one_address_or_several() {
        let api = |yaml: &str| match contracts::yaml::parse::<TargetConfig>(yaml) {
            Ok(TargetConfig::Dirigent { api, .. }) => Ok(api),
            Ok(other) => panic!("not dirigent: {other:?}"),
            Err(e) => Err(e.to_string()),
        };
        assert_eq!(api("{kind: dirigent, api: 'a:1'}").unwrap(), "a:1");
        assert_eq!(api("{kind: dirigent, api: 'a:1;b:2'}").unwrap(), "a:1;b:2");
        assert_eq!(api("{kind: dirigent, api: ['a:1', 'b:2', 'c:3']}").unwrap(), "a:1;b:2;c:3");
        assert_eq!(api("{kind: dirigent}").unwrap(), "127.0.0.1:9091");
        let error = api("{kind: dirigent, api: {a: 1}}").unwrap_err();
        assert!(error.contains("a list of them"), "{error}");
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

    #[test]
    fn synthetic_workloads_parse_with_defaults_and_check_their_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.yaml");
        std::fs::write(&path, "workload: { kind: rps, rate: 250, arrivals: exponential }\n").unwrap();
        let Workload::Rps(rps) = RunConfig::load(&path).unwrap().workload else { panic!("not rps") };
        assert_eq!((rps.rate, rps.functions, rps.arrivals), (250.0, 1, Arrivals::Exponential));
        assert_eq!((rps.duration, rps.runtime_ms, rps.memory_mib), (Duration::from_secs(60), 10, 16));
        std::fs::write(&path, "workload: { kind: cold-starts, rate: 5, cooldown: 90s }\n").unwrap();
        let Workload::ColdStarts(cold) = RunConfig::load(&path).unwrap().workload else { panic!("not cold") };
        assert_eq!((cold.rate, cold.cooldown), (5.0, Duration::from_secs(90)));
        for (yaml, key) in [
            ("workload: { kind: rps, rate: 5, functionz: 2 }", "functionz"),
            ("workload: { kind: rps }", "rate"),
            ("workload: { kind: rps, rate: 0 }", "workload.rate"),
            ("workload: { kind: rps, rate: 5, functions: 0 }", "workload.functions"),
            ("workload: { kind: rps, rate: 5, duration: 0s }", "workload.duration"),
            ("workload: { kind: cold-starts, rate: 1000, cooldown: 1h }", "workload.cooldown"),
            ("workload: { kind: poisson }", "poisson"),
        ] {
            std::fs::write(&path, format!("{yaml}\n")).unwrap();
            let err = RunConfig::load(&path).unwrap_err().to_string();
            assert!(err.contains(key), "{yaml}: {err}");
        }
    }
}
