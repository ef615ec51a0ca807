//! The loader on the loader host: its config and trace uploaded, started detached (a dropped SSH connection does
//! not end the measurement), its progress lines relayed while it runs, Ctrl-C passed on as SIGINT, and its run
//! folder downloaded into the local results.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use contracts::json_file::{JsonFileError, write_pretty};
use contracts::run_folder::{RunSummary, SUMMARY_JSON};
use loader::config::{RunConfig, Workload};
use loader::driver::StopSignal;

use super::{Cluster, SHORT, script};
use crate::load::LoadCounts;
use crate::ssh::{SshError, shell_quote};

/// How often the loader's log is read.
const POLL_EVERY: Duration = Duration::from_secs(1);
/// Time the loader gets beyond its schedule (deploying, draining, writing) before it is killed.
const GRACE: Duration = Duration::from_secs(300);

/// Why the load on the loader host failed; every message names the host or the file.
#[derive(Debug, thiserror::Error)]
pub enum LoaderHostError {
    /// "cannot read the trace {path}", with the cause.
    #[error("cannot read the trace {path}", path = .path.display())]
    Trace {
        /// The trace folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The config as sent could not be kept (the error names the file).
    #[error(transparent)]
    Write(#[from] JsonFileError),
    /// "{step}", with the SSH error (which names the host).
    #[error("{step}")]
    Ssh {
        /// What was being done.
        step: &'static str,
        /// The cause.
        source: Box<SshError>,
    },
    /// "starting the loader on {host}: no PID in '{answer}'".
    #[error("starting the loader on {host}: no PID in '{answer}'")]
    NoPid {
        /// The loader host.
        host: String,
        /// What it printed.
        answer: String,
    },
    /// "the loader on {host} ran {grace:?} past its schedule: killed".
    #[error("the loader on {host} ran {grace:?} past its schedule: killed")]
    Overran {
        /// The loader host.
        host: String,
        /// The time it had beyond its schedule.
        grace: Duration,
    },
    /// "the loader on {host} left no usable summary.json; its log ends with: {tail}", with why.
    #[error("the loader on {host} left no usable summary.json; its log ends with: {tail}")]
    Summary {
        /// The loader host.
        host: String,
        /// The last lines of its log.
        tail: String,
        /// What is wrong with the summary.
        source: SummaryError,
    },
}

/// Why a `summary.json` could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SummaryError {
    /// "cannot read {path}", with the cause.
    #[error("cannot read {path}", path = .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// "{path}", with what the parser said.
    #[error("{path}", path = .path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
}

/// The loader of one run on the loader host.
#[derive(Debug)]
pub struct LoaderProcess {
    /// Inventory index of the loader host.
    pub host: usize,
    dir: String,
    pid: u32,
}

impl LoaderProcess {
    /// Uploads `config` (its trace too, for a trace replay) and starts `loader run` on the loader host, writing
    /// into the run's folder there; the config as sent is kept as `local_dir/loader.yaml`.
    pub async fn start(
        cluster: &Cluster,
        config: &RunConfig,
        run_id: &str,
        local_dir: &Path,
    ) -> Result<Self, LoaderHostError> {
        let host = cluster.loader_host();
        let dir = format!("{}/load", cluster.run_dir(host, run_id));
        let mut config = config.clone();
        config.output = PathBuf::from(format!("{dir}/out"));
        let trace = trace_upload(cluster, host, &mut config)?;
        let local_config = local_dir.join("loader.yaml");
        write_pretty(&local_config, &config)?;
        let bin = cluster.bin(host);
        let remote_dir = dir.clone();
        let pid = cluster
            .on(host, move |session| {
                session.exec_ok(&format!("mkdir -p {}", shell_quote(&remote_dir)), SHORT)?;
                for (file, remote) in &trace {
                    session.upload(file, remote, 0o644)?;
                }
                session.upload(&local_config, &format!("{remote_dir}/config.yaml"), 0o644)?;
                let command = [format!("{bin}/loader"), "run".into(), "--config".into(), "config.yaml".into()];
                // Progress lines are logged at info; the loader's own default shows errors only.
                let env = [("RUST_LOG", "info")];
                session.exec_ok(&script::start_detached(&remote_dir, &env, &command, "loader.log", "loader.pid"), SHORT)
            })
            .await
            .map_err(|source| LoaderHostError::Ssh { step: "starting the loader", source: Box::new(source) })?
            .stdout;
        let pid = pid.trim().parse().map_err(|_| LoaderHostError::NoPid { host: cluster.name(host), answer: pid })?;
        Ok(LoaderProcess { host, dir, pid })
    }

    /// Relays the loader's output until it exits; `stop` sends it SIGINT once (it then stops sending, drains and
    /// writes its files); after `expected` plus a grace period it is killed.
    pub async fn wait(&self, cluster: &Cluster, stop: &StopSignal, expected: Duration) -> Result<(), LoaderHostError> {
        let deadline = Instant::now() + expected + GRACE;
        let (mut offset, mut interrupted, mut partial) = (0u64, false, Vec::new());
        let log = format!("{}/loader.log", self.dir);
        loop {
            if stop.is_stopped() && !interrupted {
                interrupted = true;
                self.signal(cluster, "INT").await?;
            }
            if Instant::now() >= deadline {
                self.signal(cluster, "KILL").await?;
                return Err(LoaderHostError::Overran { host: cluster.name(self.host), grace: GRACE });
            }
            let (pid, path) = (self.pid, log.clone());
            // Bytes, not text: the offset counts the log's bytes, which decoding would change for invalid UTF-8.
            let output = cluster
                .on(self.host, move |session| session.exec_ok_bytes(&script::poll_log(pid, &path, offset), SHORT))
                .await
                .map_err(|source| LoaderHostError::Ssh { step: "following the loader", source: Box::new(source) })?;
            let (state, bytes) = match output.iter().position(|&b| b == b'\n') {
                Some(end) => (&output[..end], &output[end + 1..]),
                None => (output.as_slice(), &[][..]),
            };
            offset += bytes.len() as u64;
            partial.extend_from_slice(bytes);
            relay(&mut partial, &cluster.name(self.host));
            if state == b"exited" {
                return Ok(());
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }

    async fn signal(&self, cluster: &Cluster, signal: &'static str) -> Result<(), LoaderHostError> {
        let pid = self.pid;
        let step = if signal == "INT" { "sending SIGINT to the loader" } else { "sending SIGKILL to the loader" };
        cluster
            .on(self.host, move |session| session.exec_ok(&script::signal(pid, signal), SHORT))
            .await
            .map(drop)
            .map_err(|source| LoaderHostError::Ssh { step, source: Box::new(source) })
    }

    /// Downloads the loader's run folder and its log into `local_dir` and reads the counts of its summary.
    pub async fn collect(&self, cluster: &Cluster, local_dir: &Path) -> Result<LoadCounts, LoaderHostError> {
        let (dir, local) = (self.dir.clone(), local_dir.to_owned());
        let fetched = cluster
            .on(self.host, move |session| {
                session.download(&format!("{dir}/loader.log"), &local.join("loader.log"))?;
                let out = format!("{dir}/out");
                let files = session.exec_ok(&script::list_files(&out), SHORT)?.stdout;
                for file in files.lines() {
                    session.download(&format!("{out}/{file}"), &local.join(file))?;
                }
                Ok::<_, SshError>(())
            })
            .await;
        fetched.map_err(|source| LoaderHostError::Ssh {
            step: "collecting the loader's results",
            source: Box::new(source),
        })?;
        counts(local_dir).map_err(|source| LoaderHostError::Summary {
            host: cluster.name(self.host),
            tail: crate::local::log_tail(&local_dir.join("loader.log")),
            source,
        })
    }
}

/// For a trace replay: the trace's files and where they go on the loader host (a folder shared by the runs, so
/// unchanged files are not sent again); `config.trace` is pointed there.
fn trace_upload(
    cluster: &Cluster,
    host: usize,
    config: &mut RunConfig,
) -> Result<Vec<(PathBuf, String)>, LoaderHostError> {
    if !matches!(config.workload, Workload::Trace) {
        return Ok(Vec::new());
    }
    let name = config.trace.file_name().map_or_else(|| "trace".into(), |n| n.to_string_lossy().into_owned());
    let remote = format!("{}/traces/{name}", cluster.root(host));
    let entries = std::fs::read_dir(&config.trace)
        .map_err(|source| LoaderHostError::Trace { path: config.trace.clone(), source })?;
    let mut files = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_file() {
            let file = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            files.push((path, format!("{remote}/{file}")));
        }
    }
    config.trace = PathBuf::from(remote);
    Ok(files)
}

/// Logs the complete lines of `partial` and keeps the unfinished rest (lines are decoded whole, so a character
/// split across two polls comes out intact).
fn relay(partial: &mut Vec<u8>, host: &str) {
    while let Some(end) = partial.iter().position(|&b| b == b'\n') {
        let line: Vec<u8> = partial.drain(..=end).collect();
        let line = String::from_utf8_lossy(&line);
        if !line.trim().is_empty() {
            eprintln!("[loader on {host}] {}", line.trim_end());
        }
    }
}

/// The counts of the `summary.json` in `dir`.
fn counts(dir: &Path) -> Result<LoadCounts, SummaryError> {
    let path = dir.join(SUMMARY_JSON);
    let text = std::fs::read_to_string(&path).map_err(|source| SummaryError::Read { path: path.clone(), source })?;
    let summary: RunSummary = serde_json::from_str(&text).map_err(|source| SummaryError::Parse { path, source })?;
    let counts = &summary.overall.counts;
    let sent = counts.sent();
    let failed = summary.overall.failures + counts.warmup_failures;
    Ok(LoadCounts { sent, ok: sent.saturating_sub(failed), failed, trustworthy: summary.trustworthy })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_come_from_the_summary() {
        let dir = tempfile::tempdir().unwrap();
        // A summary as the loader writes it: the contract type requires every key it has always written.
        let summary = |counts: &str| {
            format!(
                r#"{{"sendLagThresholdUs": 100, "measuredDurationS": 1.0, "trustworthy": true, "functions": [],
                   "overall": {{"failures": 2, "counts": {counts}, "requestedRatePerS": null,
                   "achievedRatePerS": 10.0, "okRatePerS": 8.0, "responseTimeUs": null, "schedulingLatencyUs": null,
                   "meanSchedulingLatencyUs": null, "geomeanSlowdown": null, "sendLagUs": null, "maxSendLagUs": 0,
                   "trustworthy": true}}}}"#
            )
        };
        let measured = r#"{"measured": 10, "ok": 8, "connectionFailed": 0, "timeout": 0, "statusError": 2,
                         "coldStarts": 0"#;
        let whole = summary(&format!(r#"{measured}, "warmup": 5, "warmupFailures": 1}}"#));
        std::fs::write(dir.path().join("summary.json"), whole).unwrap();
        assert_eq!(counts(dir.path()).unwrap(), LoadCounts { sent: 15, ok: 12, failed: 3, trustworthy: true });
        assert!(crate::error_chain(&counts(&dir.path().join("none")).unwrap_err()).contains("summary.json"));
        let partial = summary(&format!("{measured}}}"));
        std::fs::write(dir.path().join("summary.json"), partial).unwrap();
        let error = crate::error_chain(&counts(dir.path()).unwrap_err());
        assert!(error.contains("summary.json") && error.contains("warmup"), "{error}");
    }

    #[test]
    fn only_complete_lines_are_relayed() {
        let mut partial = b"one\ntw".to_vec();
        relay(&mut partial, "h");
        assert_eq!(partial, b"tw");
    }

    #[test]
    fn a_config_sent_as_json_reads_back_as_the_same_loader_config() {
        let config = RunConfig::default();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("loader.yaml");
        std::fs::write(&path, serde_json::to_string_pretty(&config).unwrap()).unwrap();
        let back = RunConfig::load(&path).unwrap();
        assert_eq!(back, config);
    }
}
