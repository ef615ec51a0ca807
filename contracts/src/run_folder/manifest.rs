//! `manifest.json`: the resolved config, seed, trace checksum, loader version, host facts, wall-clock times and
//! the events during the run: enough to rerun the experiment. The loader writes it, the experiments append
//! events, the analysis reads it. Every key is optional on reading (a run folder of another tool, or an older
//! loader, still reads) and unknown keys are ignored.

use serde::{Deserialize, Serialize};

use super::events::Event;

/// The loader build that made the run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LoaderVersion {
    /// Crate version.
    pub version: Option<String>,
    /// Git commit of its source tree.
    pub git_commit: Option<String>,
}

/// Facts about the machine a run ran on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HostFacts {
    /// `/proc/sys/kernel/hostname`.
    pub hostname: Option<String>,
    /// Cores available to the process.
    pub nproc: Option<u64>,
    /// `/proc/sys/kernel/osrelease`.
    pub kernel: Option<String>,
}

impl HostFacts {
    /// The facts of this machine (`unknown` where `/proc` does not say).
    pub fn collect() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        HostFacts {
            hostname: Some(read_trimmed("/proc/sys/kernel/hostname")),
            nproc: Some(u64::try_from(cores).unwrap_or(u64::MAX)),
            kernel: Some(read_trimmed("/proc/sys/kernel/osrelease")),
        }
    }
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path).map(|text| text.trim().to_owned()).unwrap_or_else(|_| "unknown".into())
}

/// The whole `manifest.json` document.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Manifest {
    /// Loader version and git commit.
    pub loader: LoaderVersion,
    /// The machine the loader ran on.
    pub host: HostFacts,
    /// Start, RFC 3339 UTC with microseconds.
    pub started_at: Option<String>,
    /// End, RFC 3339 UTC with microseconds.
    pub ended_at: Option<String>,
    /// Start, Unix µs: the origin of the analysis' `exclude_leading` and of its timeline.
    pub started_unix_us: Option<u64>,
    /// End, Unix µs.
    pub ended_unix_us: Option<u64>,
    /// The schedule's random seed.
    pub seed: Option<u64>,
    /// Checksum of the trace files (`null` for a synthetic workload).
    pub trace_checksum: Option<String>,
    /// The fully resolved loader config (its own type lives in the loader; here it is data to show and rerun).
    pub config: serde_json::Value,
    /// What happened during the run (e.g. injected failures), in order.
    pub events: Vec<Event>,
}

impl Manifest {
    /// The requested rate of a synthetic workload (`config.workload.rate`), if the config has one.
    pub fn workload_rate(&self) -> Option<f64> {
        self.config.pointer("/workload/rate").and_then(serde_json::Value::as_f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run_folder::EventKind;

    #[test]
    fn round_trips_with_the_loaders_key_order() {
        let manifest = Manifest {
            loader: LoaderVersion { version: Some("0.1.0".into()), git_commit: Some("abc".into()) },
            host: HostFacts::collect(),
            started_at: Some("1970-01-01T00:00:10.000000Z".into()),
            ended_at: Some("1970-01-01T00:01:10.000000Z".into()),
            started_unix_us: Some(10_000_000),
            ended_unix_us: Some(70_000_000),
            seed: Some(42),
            trace_checksum: None,
            config: serde_json::json!({"workload": {"rate": 5.0}}),
            events: vec![Event::failed(EventKind::Kill, "worker-1", "no such component")],
        };
        let text = serde_json::to_string(&manifest).unwrap();
        let keys = ["loader", "host", "startedAt", "endedAt", "startedUnixUs", "endedUnixUs", "seed", "traceChecksum"];
        let positions: Vec<usize> = keys.iter().map(|key| text.find(&format!("\"{key}\"")).unwrap()).collect();
        assert!(positions.windows(2).all(|pair| pair[0] < pair[1]), "{text}");
        assert!(text.contains("\"traceChecksum\":null"), "{text}");
        assert_eq!(serde_json::from_str::<Manifest>(&text).unwrap(), manifest);
        assert_eq!(manifest.workload_rate(), Some(5.0));
    }

    #[test]
    fn a_sparse_manifest_reads_with_unknowns() {
        let manifest: Manifest =
            serde_json::from_str(r#"{"seed": 7, "loader": {"version": "0.0.1"}, "new": 1}"#).unwrap();
        assert_eq!((manifest.seed, manifest.loader.version.as_deref()), (Some(7), Some("0.0.1")));
        assert_eq!((manifest.started_unix_us, manifest.host.nproc, manifest.events.len()), (None, None, 0));
        assert!(manifest.config.is_null() && manifest.workload_rate().is_none());
    }
}
