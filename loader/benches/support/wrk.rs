//! The closed-loop reference: `wrk` (the Debian package) against the same target server in the same run. Installed
//! with apt-get when missing and we are root; otherwise its figure is skipped with a message.

use std::os::fd::AsFd as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::Context;
use serde::Serialize;

use super::cpu::{children_cpu_us, process_cpu_us};

/// What `wrk` reached.
#[derive(Debug, Clone, Serialize)]
pub struct WrkResult {
    /// The command line run.
    pub command: String,
    /// Its `Requests/sec`.
    pub requests_per_s: f64,
    /// Its latency p50 and p99, as it prints them.
    pub latency_p50: String,
    /// See `latency_p50`.
    pub latency_p99: String,
    /// Its error lines (`Non-2xx`, `Socket errors`), if any.
    pub errors: Vec<String>,
    /// CPU `wrk` used, in cores.
    pub wrk_cores: f64,
    /// CPU the target server used meanwhile, in cores.
    pub server_cores: f64,
}

/// Finds `wrk` on `PATH`, installing the Debian package first if it is missing and we can; `None` (with the reason
/// printed) if it cannot be had.
pub fn find_or_install() -> Option<PathBuf> {
    if let Some(path) = on_path("wrk") {
        return Some(path);
    }
    if !nix::unistd::geteuid().is_root() || on_path("apt-get").is_none() {
        eprintln!("wrk is not on PATH and cannot be installed here (needs root and apt-get): skipping the wrk figure");
        return None;
    }
    eprintln!("wrk is not on PATH: installing the Debian package (apt-get install -y wrk) ...");
    if !apt_get(&["install", "-y", "wrk"]) {
        eprintln!("apt-get install failed: running apt-get update, then installing again ...");
        let _ = apt_get(&["update"]);
        let _ = apt_get(&["install", "-y", "wrk"]);
    }
    let found = on_path("wrk");
    if found.is_none() {
        eprintln!("wrk could not be installed: skipping the wrk figure");
    }
    found
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|candidate| candidate.is_file())
}

/// Runs apt-get non-interactively with its output on our stderr; whether it succeeded.
fn apt_get(args: &[&str]) -> bool {
    Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdout(Stdio::from(std::io::stderr().as_fd().try_clone_to_owned().expect("stderr is open")))
        .status()
        .is_ok_and(|status| status.success())
}

/// Runs `wrk -t1 -c<connections> -d<secs>s --latency <url>` and parses what it reached.
pub fn run(wrk: &Path, url: &str, connections: usize, secs: f64, server_pid: u32) -> anyhow::Result<WrkResult> {
    let duration = format!("{}s", secs.ceil().max(1.0) as u64);
    let args = ["-t1".to_owned(), format!("-c{connections}"), format!("-d{duration}"), "--latency".into(), url.into()];
    let command = format!("wrk {}", args.join(" "));
    let (started, wrk_cpu, server_cpu) = (Instant::now(), children_cpu_us(), process_cpu_us(server_pid));
    let output = Command::new(wrk).args(&args).output().with_context(|| format!("running {command}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(
        output.status.success(),
        "{command} failed ({}): {}{}",
        output.status,
        text,
        String::from_utf8_lossy(&output.stderr)
    );
    let requests_per_s = field(&text, "Requests/sec:")
        .and_then(|value| value.parse().ok())
        .with_context(|| format!("no Requests/sec in wrk's output:\n{text}"))?;
    let wall_us = started.elapsed().as_secs_f64() * 1e6;
    Ok(WrkResult {
        command,
        requests_per_s,
        latency_p50: field(&text, "50%").unwrap_or_default(),
        latency_p99: field(&text, "99%").unwrap_or_default(),
        errors: text
            .lines()
            .filter(|line| line.contains("Non-2xx") || line.contains("Socket errors"))
            .map(|line| line.trim().to_owned())
            .collect(),
        wrk_cores: children_cpu_us().saturating_sub(wrk_cpu) as f64 / wall_us,
        server_cores: process_cpu_us(server_pid).saturating_sub(server_cpu) as f64 / wall_us,
    })
}

/// The first whitespace-separated word after `label` on the line that starts with it.
fn field(text: &str, label: &str) -> Option<String> {
    text.lines()
        .find_map(|line| line.trim().strip_prefix(label))
        .and_then(|rest| rest.split_whitespace().next())
        .map(str::to_owned)
}
