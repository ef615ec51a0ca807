//! Peak RSS of the real `loader` binary: `loader schedule` over a trace of about ten million invocations, and a real
//! `loader run` against the target server, followed over time to show that memory does not grow with the run.
//!
//! No sample trace reaches ten million invocations (azure-100 has 513,418 a day), so the trace is the in-repo
//! azure-100 replicated: each copy's functions get a prefix on their hashes, hence their own names and random
//! streams. Each measurement runs under a probe (the bench binary re-executed with [`ROLE_VAR`] set) whose only child
//! is the loader, so `getrusage(RUSAGE_CHILDREN)` gives exactly the loader's peak RSS.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use contracts::run_folder::{RunSummary, SUMMARY_JSON};
use nix::sys::resource::{UsageWho, getrusage};
use serde::{Deserialize, Serialize};

use super::ROLE_VAR;

/// The probe role's name.
pub const ROLE: &str = "rss-probe";
/// The trace that is replicated (relative to the loader crate).
const SOURCE_TRACE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/traces/azure-100");
/// The trace files, each replicated row by row.
const TRACE_FILES: [&str; 3] = ["invocations.csv", "durations.csv", "memory.csv"];
/// How often the probe reads the loader's resident set size.
const SAMPLE_INTERVAL: Duration = Duration::from_millis(100);

/// What the probe reports about one loader process.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Probed {
    /// Peak resident set size (`ru_maxrss`), KiB.
    pub max_rss_kb: u64,
    /// Wall time, s.
    pub wall_s: f64,
    /// Exit code (-1: killed by a signal).
    pub exit_code: i32,
    /// `(seconds since start, VmRSS KiB)` every [`SAMPLE_INTERVAL`].
    pub samples: Vec<(f64, u64)>,
}

/// The probe role: runs `args[1..]` with stdout and stderr into files under `args[0]`, samples its RSS, waits, and
/// prints a [`Probed`] as one JSON line.
pub fn probe(args: &[String]) -> anyhow::Result<()> {
    let [log_dir, program, rest @ ..] = args else { anyhow::bail!("usage: <log dir> <program> [args...]") };
    let log = |name: &str| std::fs::File::create(Path::new(log_dir).join(name));
    let started = Instant::now();
    let mut child = Command::new(program)
        .args(rest)
        .stdin(Stdio::null())
        .stdout(log("stdout.txt")?)
        .stderr(log("stderr.txt")?)
        .spawn()
        .with_context(|| format!("starting {program}"))?;
    let mut samples = Vec::new();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if let Some(kb) = vm_rss_kb(child.id()) {
            samples.push((started.elapsed().as_secs_f64(), kb));
        }
        std::thread::sleep(SAMPLE_INTERVAL);
    };
    let usage = getrusage(UsageWho::RUSAGE_CHILDREN)?;
    let probed = Probed {
        max_rss_kb: u64::try_from(usage.max_rss()).unwrap_or(0),
        wall_s: started.elapsed().as_secs_f64(),
        exit_code: status.code().unwrap_or(-1),
        samples,
    };
    println!("{}", serde_json::to_string(&probed)?);
    Ok(())
}

fn vm_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find_map(|line| line.strip_prefix("VmRSS:"))?;
    line.split_whitespace().next()?.parse().ok()
}

/// Runs `program args` under the probe, with its output kept in `log_dir`; fails with its stderr if it fails.
fn run_probed(program: &Path, args: &[String], log_dir: &Path) -> anyhow::Result<Probed> {
    let output = Command::new(std::env::current_exe()?)
        .env(ROLE_VAR, ROLE)
        .arg(log_dir)
        .arg(program)
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .context("running the RSS probe")?;
    let text = String::from_utf8_lossy(&output.stdout);
    let probed: Probed = serde_json::from_str(text.trim()).with_context(|| format!("probe said: {text}"))?;
    if probed.exit_code != 0 {
        let stderr = std::fs::read_to_string(log_dir.join("stderr.txt")).unwrap_or_default();
        anyhow::bail!("{} {} exited with {}:\n{stderr}", program.display(), args.join(" "), probed.exit_code);
    }
    Ok(probed)
}

/// The replicated trace.
#[derive(Debug, Clone, Serialize)]
pub struct Replicated {
    /// Where it is.
    #[serde(skip)]
    pub dir: PathBuf,
    /// How many copies of azure-100.
    pub copies: u64,
    /// Functions in it.
    pub functions: u64,
    /// Invocations over the whole day.
    pub invocations: u64,
    /// Invocations per minute of the day.
    #[serde(skip)]
    pub per_minute: Vec<u64>,
}

/// Writes azure-100 replicated into `dir` often enough to hold at least `invocations` invocations a day.
pub fn replicate(dir: &Path, invocations: u64) -> anyhow::Result<Replicated> {
    let source = Path::new(SOURCE_TRACE);
    let trace = loader::trace::read_trace(source).context("reading azure-100")?;
    let mut per_minute = vec![0u64; loader::trace::model::MINUTES_PER_DAY];
    for function in &trace.functions {
        for (total, &count) in per_minute.iter_mut().zip(&function.invocations_per_minute) {
            *total += u64::from(count);
        }
    }
    let day: u64 = per_minute.iter().sum();
    let copies = invocations.div_ceil(day.max(1)).max(1);
    for file in TRACE_FILES {
        replicate_file(&source.join(file), &dir.join(file), copies)?;
    }
    Ok(Replicated {
        dir: dir.to_owned(),
        copies,
        functions: trace.functions.len() as u64 * copies,
        invocations: day * copies,
        per_minute: per_minute.iter().map(|n| n * copies).collect(),
    })
}

/// Copies the header, then every row `copies` times with `r<copy>` in front of its three hashes.
fn replicate_file(source: &Path, target: &Path, copies: u64) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(source).with_context(|| format!("reading {}", source.display()))?;
    let mut lines = text.lines();
    let mut out = BufWriter::new(std::fs::File::create(target)?);
    writeln!(out, "{}", lines.next().unwrap_or_default())?;
    let rows: Vec<&str> = lines.filter(|line| !line.trim().is_empty()).collect();
    for copy in 0..copies {
        for row in &rows {
            let mut cells = row.splitn(4, ',');
            let (owner, app, function) = (cells.next(), cells.next(), cells.next());
            let rest = cells.next().unwrap_or_default();
            let [owner, app, function] = [owner, app, function].map(Option::unwrap_or_default);
            writeln!(out, "r{copy}{owner},r{copy}{app},r{copy}{function},{rest}")?;
        }
    }
    out.flush()?;
    Ok(())
}

/// Peak RSS of `loader schedule` over the whole replicated day.
#[derive(Debug, Clone, Serialize)]
pub struct ScheduleRss {
    /// The trace it scheduled.
    pub trace: Replicated,
    /// What the probe saw.
    pub probed: Probed,
}

/// Runs `loader schedule <trace> --out /dev/null` (the whole day) under the probe.
pub fn measure_schedule(loader: &Path, trace: &Replicated, scratch: &Path) -> anyhow::Result<ScheduleRss> {
    let args = vec!["schedule".into(), trace.dir.display().to_string(), "--out".into(), "/dev/null".into()];
    let log_dir = scratch.join("schedule-logs");
    std::fs::create_dir_all(&log_dir)?;
    let probed = run_probed(loader, &args, &log_dir)?;
    Ok(ScheduleRss { trace: trace.clone(), probed })
}

/// RSS of a real `loader run` against the target server.
#[derive(Debug, Clone, Serialize)]
pub struct RunRss {
    /// Trace minutes replayed (from minute 0 of the replicated trace).
    pub minutes: usize,
    /// Invocations scheduled.
    pub invocations: u64,
    /// The schedule's compression, chosen for the requested mean rate.
    pub compression: f64,
    /// What the probe saw.
    pub probed: Probed,
    /// From the run's `summary.json`: measured invocations, failures, send-lag p99 and achieved rate.
    pub measured: u64,
    /// See `measured`.
    pub failures: u64,
    /// See `measured`.
    pub send_lag_p99_us: u64,
    /// See `measured`.
    pub achieved_per_s: f64,
}

/// Runs `loader run` over the first minutes of `trace` holding about `invocations`, compressed to `rate` per second.
pub fn measure_run(
    loader: &Path,
    trace: &Replicated,
    address: &str,
    invocations: u64,
    rate: f64,
    scratch: &Path,
) -> anyhow::Result<RunRss> {
    let (minutes, count) = minutes_for(&trace.per_minute, invocations);
    let compression = minutes as f64 * 60.0 * rate / count.max(1) as f64;
    let output = scratch.join("run");
    let config = scratch.join("run.yaml");
    std::fs::write(&config, run_config(&trace.dir, minutes, compression, address, &output))?;
    let log_dir = scratch.join("run-logs");
    std::fs::create_dir_all(&log_dir)?;
    let args = vec!["run".into(), "--config".into(), config.display().to_string()];
    let probed = run_probed(loader, &args, &log_dir)?;
    let summary: RunSummary = serde_json::from_slice(&std::fs::read(output.join(SUMMARY_JSON))?)?;
    let overall = summary.overall;
    Ok(RunRss {
        minutes,
        invocations: count,
        compression,
        probed,
        measured: overall.counts.measured,
        failures: overall.failures,
        send_lag_p99_us: overall.send_lag_us.map_or(0, |lag| lag.p99),
        achieved_per_s: overall.achieved_rate_per_s,
    })
}

/// The fewest leading minutes holding at least `invocations`, and how many they hold.
fn minutes_for(per_minute: &[u64], invocations: u64) -> (usize, u64) {
    let mut total = 0;
    for (i, count) in per_minute.iter().enumerate() {
        total += count;
        if total >= invocations {
            return (i + 1, total);
        }
    }
    (per_minute.len(), total)
}

fn run_config(trace: &Path, minutes: usize, compression: f64, address: &str, output: &Path) -> String {
    format!(
        "trace: {trace}\n\
         slice: {{ start_minute: 0, minutes: {minutes} }}\n\
         schedule: {{ compression: {compression} }}\n\
         target: {{ kind: http, url: \"http://{address}/function/{{function}}\" }}\n\
         driver: {{ request_timeout: 10s, drain_timeout: 10s }}\n\
         output: {output}\n",
        trace = trace.display(),
        output = output.display(),
    )
}

/// The RSS the probe read at `fraction` of the run's wall time (the last sample at or before it), KiB.
pub fn rss_at(probed: &Probed, fraction: f64) -> Option<u64> {
    let at = probed.wall_s * fraction;
    probed.samples.iter().take_while(|(t, _)| *t <= at).last().map(|&(_, kb)| kb)
}
