//! `manifest.json`: the resolved config, seed, trace checksum, loader version, host facts and wall-clock times —
//! enough to rerun the same experiment.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use contracts::json_file::write_pretty;
use contracts::run_folder::{Event, HostFacts, LoaderVersion, Manifest};

use crate::schedule::seed::{FNV_OFFSET, fnv1a64_extend};
use crate::trace::parse::{DURATIONS_FILE, INVOCATIONS_FILE, MEMORY_FILE};

use super::OutputError;

/// FNV-1a-64 over the trace directory's `invocations.csv`, `durations.csv` and `memory.csv`, in that order, each
/// preceded by its file name and byte length (so content cannot shift between files unnoticed); 16 hex digits.
pub fn trace_checksum(dir: &Path) -> io::Result<String> {
    let mut hash = FNV_OFFSET;
    let mut buffer = vec![0u8; 64 * 1024];
    for name in [INVOCATIONS_FILE, DURATIONS_FILE, MEMORY_FILE] {
        let path = dir.join(name);
        let mut file =
            File::open(&path).map_err(|error| io::Error::new(error.kind(), format!("{}: {error}", path.display())))?;
        let length = file.metadata()?.len();
        hash = fnv1a64_extend(hash, name.as_bytes());
        hash = fnv1a64_extend(hash, &length.to_le_bytes());
        loop {
            let read = file.read(&mut buffer)?;
            if read == 0 {
                break;
            }
            hash = fnv1a64_extend(hash, &buffer[..read]);
        }
    }
    Ok(format!("{hash:016x}"))
}

/// Formats a wall-clock time as RFC 3339 in UTC with microseconds, e.g. `2026-11-27T15:34:24.000123Z`
/// (times before 1970 are clamped to the epoch).
pub fn format_rfc3339(time: SystemTime) -> String {
    let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since_epoch.as_secs();
    let (days, second_of_day) = (seconds / 86_400, seconds % 86_400);
    // Howard Hinnant's civil_from_days, for days since 1970-01-01 (non-negative here).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60,
        since_epoch.subsec_micros()
    )
}

/// What the caller knows about the run; the rest (version, host) is gathered when writing.
#[derive(Debug, Clone)]
pub struct ManifestInputs {
    /// The fully resolved configuration.
    pub config: serde_json::Value,
    /// The schedule's random seed.
    pub seed: u64,
    /// [`trace_checksum`] of the trace directory; `None` for a synthetic workload.
    pub trace_checksum: Option<String>,
    /// When the run started.
    pub started: SystemTime,
    /// When the run ended.
    pub ended: SystemTime,
    /// Notable events (e.g. injected failures), in order.
    pub events: Vec<Event>,
}

/// The git commit of the source tree this loader was built from (`git rev-parse HEAD` run in the crate's
/// directory at run time), or `unknown` when git or the tree is not available.
pub fn git_commit() -> String {
    Command::new("git")
        .args(["-C", env!("CARGO_MANIFEST_DIR"), "rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|output| output.status.success())
        .and_then(|output| String::from_utf8(output.stdout).ok())
        .map(|commit| commit.trim().to_owned())
        .filter(|commit| !commit.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

fn unix_us(time: SystemTime) -> u64 {
    u64::try_from(time.duration_since(UNIX_EPOCH).unwrap_or_default().as_micros()).unwrap_or(u64::MAX)
}

/// Writes `manifest.json` at `path`: `loader` {version, gitCommit}, `host` {hostname, nproc, kernel},
/// `startedAt`/`endedAt` (RFC 3339 UTC) and `startedUnixUs`/`endedUnixUs`, `seed`, `traceChecksum`, `config`,
/// `events`.
pub fn write_manifest(path: &Path, inputs: &ManifestInputs) -> Result<(), OutputError> {
    let manifest = Manifest {
        loader: LoaderVersion { version: Some(env!("CARGO_PKG_VERSION").into()), git_commit: Some(git_commit()) },
        host: HostFacts::collect(),
        started_at: Some(format_rfc3339(inputs.started)),
        ended_at: Some(format_rfc3339(inputs.ended)),
        started_unix_us: Some(unix_us(inputs.started)),
        ended_unix_us: Some(unix_us(inputs.ended)),
        seed: Some(inputs.seed),
        trace_checksum: inputs.trace_checksum.clone(),
        config: inputs.config.clone(),
        events: inputs.events.clone(),
    };
    Ok(write_pretty(path, &manifest)?)
}
