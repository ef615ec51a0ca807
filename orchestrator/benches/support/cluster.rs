//! The cluster under test: a `dirigent standalone` child process, stopped on drop, and its HTTP API.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use contracts::api::{self, FunctionSpec, FunctionView};
use contracts::ready::ReadyLine;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// How long `dirigent` may take to print its ready line.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `dirigent` may take to stop after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// How often, and how many times, the API is polled for ready sandboxes.
const POLL_INTERVAL: Duration = Duration::from_millis(10);
const POLL_ATTEMPTS: u32 = 3_000;

/// Where the started cluster listens (from the `addresses` of its ready line).
#[derive(Debug, Clone)]
pub struct Addresses {
    /// The control plane's HTTP API.
    pub api: String,
    /// The data plane's proxy.
    pub proxy: String,
}

impl Addresses {
    /// The addresses a standalone's ready line announces, if it has both.
    fn announced(ready: &ReadyLine) -> Option<Self> {
        Some(Self { api: ready.address("api")?.to_owned(), proxy: ready.address("proxy")?.to_owned() })
    }
}

/// A running `dirigent standalone`; dropping it sends SIGTERM and waits (SIGKILL after [`STOP_TIMEOUT`]).
pub struct Dirigent {
    child: Child,
    addresses: Addresses,
    _config_dir: tempfile::TempDir,
}

impl Dirigent {
    /// Starts `dirigent standalone` with `workers` workers on ephemeral loopback ports and waits for its ready line.
    pub fn start(workers: usize) -> anyhow::Result<Self> {
        let config_dir = tempfile::tempdir().context("creating a config directory")?;
        let config = config_dir.path().join("standalone.yaml");
        std::fs::write(&config, standalone_config(workers)).context("writing the dirigent config")?;
        // Another build of dirigent (an A/B comparison of two commits) with the same client and settings.
        let binary = std::env::var_os("BENCH_DIRIGENT").unwrap_or_else(|| env!("CARGO_BIN_EXE_dirigent").into());
        let mut child = Command::new(binary)
            // Its working folder holds its registry store: each run starts empty.
            .current_dir(config_dir.path())
            .arg("standalone")
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", std::env::var("BENCH_RUST_LOG").unwrap_or_else(|_| "warn".into()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting dirigent standalone")?;
        let stdout = child.stdout.take().context("dirigent's stdout")?;
        let placeholder = Addresses { api: String::new(), proxy: String::new() };
        // From here on, every exit path stops the child.
        let mut dirigent = Self { child, addresses: placeholder, _config_dir: config_dir };
        dirigent.addresses = wait_ready_line(stdout)?;
        Ok(dirigent)
    }

    /// Where the cluster listens.
    pub fn addresses(&self) -> &Addresses {
        &self.addresses
    }

    fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Ok(Some(_)) | Err(_) => return,
            }
        }
        eprintln!("dirigent did not stop within {STOP_TIMEOUT:?} of SIGTERM; killing it");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Dirigent {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The standalone config; `BENCH_PROXY_THREADS` sets the data plane's `proxy_threads` (0: the shared runtime).
fn standalone_config(workers: usize) -> String {
    let proxy_threads = std::env::var("BENCH_PROXY_THREADS").unwrap_or_else(|_| "null".to_owned());
    format!(
        "workers: {workers}\n\
         control_plane: {{ grpc_listen: \"127.0.0.1:0\", http_listen: \"127.0.0.1:0\" }}\n\
         data_plane: {{ proxy_listen: \"127.0.0.1:0\", grpc_listen: \"127.0.0.1:0\", proxy_threads: {proxy_threads} }}\n\
         worker: {{ listen: \"127.0.0.1:0\" }}\n"
    )
}

/// Reads stdout on a thread (which keeps draining it afterwards) until the ready line or [`STARTUP_TIMEOUT`].
fn wait_ready_line(stdout: std::process::ChildStdout) -> anyhow::Result<Addresses> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if let Some(addresses) = ReadyLine::parse(&line).as_ref().and_then(Addresses::announced) {
                let _ = tx.send(addresses);
            }
        }
    });
    match rx.recv_timeout(STARTUP_TIMEOUT) {
        Ok(addresses) => Ok(addresses),
        Err(mpsc::RecvTimeoutError::Timeout) => {
            bail!("dirigent printed no ready line within {STARTUP_TIMEOUT:?}")
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            bail!("dirigent exited before it was ready (see its stderr above)")
        }
    }
}

/// The control plane's JSON API.
pub struct Api {
    client: reqwest::Client,
    base: String,
    image: String,
}

impl Api {
    /// The API at `address`; functions run the `trace-function` binary.
    pub fn new(address: &str) -> Self {
        Self {
            client: reqwest::Client::new(),
            base: format!("http://{address}{}", api::FUNCTIONS_PATH),
            image: env!("CARGO_BIN_EXE_trace-function").to_owned(),
        }
    }

    /// Registers `name` with the given scale bounds.
    pub async fn register(&self, name: &str, min_scale: usize, max_scale: usize) -> anyhow::Result<()> {
        let mut spec = FunctionSpec::new(name, self.image.clone());
        (spec.min_scale, spec.max_scale) = (u32::try_from(min_scale)?, u32::try_from(max_scale)?);
        let response = self.client.post(&self.base).json(&spec).send().await.context("POST /v1/functions")?;
        ensure_status(response, reqwest::StatusCode::CREATED, &format!("registering {name}")).await
    }

    /// Deletes `name` (its sandboxes are killed).
    pub async fn delete(&self, name: &str) -> anyhow::Result<()> {
        let response = self.client.delete(format!("{}/{name}", self.base)).send().await?;
        ensure_status(response, reqwest::StatusCode::OK, &format!("deleting {name}")).await
    }

    /// The function's view.
    pub async fn function(&self, name: &str) -> anyhow::Result<FunctionView> {
        let response = self.client.get(format!("{}/{name}", self.base)).send().await?;
        let response = response.error_for_status().with_context(|| format!("GET /v1/functions/{name}"))?;
        Ok(response.json().await?)
    }

    /// Polls until `name` has `count` ready sandboxes (bounded); returns their addresses.
    pub async fn wait_ready(&self, name: &str, count: usize) -> anyhow::Result<Vec<String>> {
        let mut last = None;
        for _ in 0..POLL_ATTEMPTS {
            let view = self.function(name).await?;
            let addresses: Vec<String> = view.status.sandboxes.iter().map(|s| s.address.clone()).collect();
            if view.status.ready as usize == count && addresses.len() == count {
                return Ok(addresses);
            }
            last = Some(view.status);
            tokio::time::sleep(POLL_INTERVAL).await;
        }
        bail!(
            "{name} did not reach {count} ready sandboxes within {:?}; last status: {:?}",
            POLL_INTERVAL * POLL_ATTEMPTS,
            last
        )
    }
}

async fn ensure_status(response: reqwest::Response, expected: reqwest::StatusCode, what: &str) -> anyhow::Result<()> {
    let status = response.status();
    if status != expected {
        let body = response.text().await.unwrap_or_default();
        bail!("{what}: the API answered {status} (expected {expected}): {body}");
    }
    Ok(())
}
