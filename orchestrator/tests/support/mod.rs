//! Test support: real `dirigent` processes on loopback, found by the ready line they print.
#![allow(dead_code)]

pub mod chaos;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use contracts::api::{self, FunctionList, FunctionSpec, FunctionView, Health};
use contracts::ready::ReadyLine;
use contracts::server_timing::{self, ServerTiming};

/// The workload function binary.
pub const TRACE_FUNCTION: &str = env!("CARGO_BIN_EXE_trace-function");
const DIRIGENT: &str = env!("CARGO_BIN_EXE_dirigent");

/// A `dirigent` child process; SIGTERMed (then SIGKILLed) on drop.
pub struct Role {
    child: Option<Child>,
    /// Its ready line.
    pub ready: ReadyLine,
    _config: tempfile::NamedTempFile,
    /// Its working folder: what it writes there (the control plane's default store) goes with the test.
    _dir: tempfile::TempDir,
}

impl Role {
    /// Starts `dirigent ROLE --config <yaml>` and waits for its ready line.
    pub fn start(role: &str, yaml: &str) -> Role {
        let mut config = tempfile::NamedTempFile::new().unwrap();
        config.write_all(yaml.as_bytes()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut command = Command::new(DIRIGENT);
        command
            .current_dir(dir.path())
            .args([role, "--config"])
            .arg(config.path())
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        die_with_test(&mut command);
        let mut child = command.spawn().expect("start dirigent");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(ready) = ReadyLine::parse(&line) {
                    let _ = tx.send(ready);
                }
            }
        });
        let mut role_process = Role { child: Some(child), ready: ReadyLine::default(), _config: config, _dir: dir };
        role_process.ready = rx.recv_timeout(Duration::from_secs(30)).expect("dirigent printed no ready line");
        role_process
    }

    /// An address from the ready line.
    pub fn address(&self, key: &str) -> String {
        self.ready.address(key).unwrap_or_else(|| panic!("no '{key}' in {}", self.ready.to_line())).to_owned()
    }

    /// Whether it was neither stopped nor crashed.
    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// SIGTERM, and the exit status (SIGKILL after 20 s).
    pub fn stop(&mut self) -> std::process::ExitStatus {
        self.signal_and_wait(nix::sys::signal::Signal::SIGTERM)
    }

    /// SIGTERM unless it already stopped.
    pub fn stop_if_running(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
    }

    /// SIGKILL, as a crash.
    pub fn crash(&mut self) -> std::process::ExitStatus {
        self.signal_and_wait(nix::sys::signal::Signal::SIGKILL)
    }

    fn signal_and_wait(&mut self, signal: nix::sys::signal::Signal) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("already stopped");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, signal);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return child.wait().unwrap();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Role {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
    }
}

/// Even a test runner killed outright takes its `dirigent` children (and so their sandboxes) with it.
#[allow(unsafe_code)]
fn die_with_test(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: runs between fork and exec and makes one async-signal-safe syscall.
    unsafe {
        command.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL).map_err(std::io::Error::from)
        });
    }
}

/// Config for a standalone cluster on ephemeral loopback ports; `extra` is YAML merged under `control_plane:`.
pub fn standalone_yaml(workers: u32, autoscaler: &str) -> String {
    format!(
        "workers: {workers}\n\
         control_plane:\n  grpc_listen: 127.0.0.1:0\n  http_listen: 127.0.0.1:0\n  autoscaler: {{{autoscaler}}}\n\
         data_plane:\n  proxy_listen: 127.0.0.1:0\n  grpc_listen: 127.0.0.1:0\n  queue_timeout: 20s\n  report_interval: 200ms\n\
         worker:\n  listen: 127.0.0.1:0\n"
    )
}

/// A plain HTTP/1.1 client.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap()
}

/// Registers `trace-function` as `name` through the JSON API, with the spec changed by `adjust`.
pub async fn register(api: &str, name: &str, adjust: impl FnOnce(&mut FunctionSpec)) -> reqwest::Response {
    let mut spec = FunctionSpec::new(name, TRACE_FUNCTION);
    adjust(&mut spec);
    client().post(format!("http://{api}{}", api::FUNCTIONS_PATH)).json(&spec).send().await.unwrap()
}

/// A function's view.
pub async fn function(api: &str, name: &str) -> FunctionView {
    client().get(format!("http://{api}{}", api::function_path(name))).send().await.unwrap().json().await.unwrap()
}

/// Every registered function (`GET /v1/functions`).
pub async fn functions(api: &str) -> FunctionList {
    client().get(format!("http://{api}{}", api::FUNCTIONS_PATH)).send().await.unwrap().json().await.unwrap()
}

/// What the control plane has registered (`GET /health`).
pub async fn health(api: &str) -> Health {
    client().get(format!("http://{api}{}", api::HEALTH_PATH)).send().await.unwrap().json().await.unwrap()
}

/// What the control plane at `api` says of itself (`GET /health`), `None` when it does not answer.
pub async fn try_health(api: &str) -> Option<Health> {
    let answered = async { client().get(format!("http://{api}{}", api::HEALTH_PATH)).send().await?.json().await };
    answered.await.ok()
}

/// Polls `/health` `every` so often until `check` holds and returns how long that took; panics after
/// `within`, naming `what`. An API that does not answer (the control plane is restarting) counts as not yet.
pub async fn wait_for_health(
    api: &str,
    what: &str,
    (every, within): (Duration, Duration),
    check: impl Fn(&Health) -> bool,
) -> Duration {
    let started = Instant::now();
    loop {
        let health = try_health(api).await;
        if health.as_ref().is_some_and(&check) {
            return started.elapsed();
        }
        assert!(started.elapsed() < within, "{what}: not reached within {within:?}; last {health:?}");
        tokio::time::sleep(every).await;
    }
}

/// Polls `check` on the function's view until it holds, or panics after `within`.
pub async fn wait_for_function(
    api: &str,
    name: &str,
    within: Duration,
    what: &str,
    check: impl Fn(&FunctionView) -> bool,
) -> FunctionView {
    let deadline = Instant::now() + within;
    loop {
        let view = function(api, name).await;
        if check(&view) {
            return view;
        }
        assert!(Instant::now() < deadline, "{what}: not reached within {within:?}; last view {view:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Invokes `name` through the data plane by Host header.
pub async fn invoke(proxy: &str, name: &str, cpu_ms: u64) -> reqwest::Response {
    client()
        .get(format!("http://{proxy}/"))
        .header("Host", name)
        .header(contracts::workload::REQUESTED_CPU, cpu_ms.to_string())
        .send()
        .await
        .unwrap()
}

/// The `coldstart` description in a response's Server-Timing header.
pub fn cold_start_of(response: &reqwest::Response) -> String {
    let header = response.headers().get(server_timing::HEADER).expect("Server-Timing header").to_str().unwrap();
    ServerTiming::parse(header).cold_start.expect("coldstart metric")
}

/// Process ids of live sandboxes whose SANDBOX_ID is in `ids`.
pub fn sandbox_pids(ids: &[String]) -> Vec<u32> {
    let wanted: Vec<String> = ids.iter().map(|id| format!("SANDBOX_ID={id}")).collect();
    live_pids(|environ| environ.iter().any(|var| wanted.iter().any(|w| *var == w.as_bytes())))
}

/// Process ids of live processes whose environment has every `NAME=value` of `vars`.
pub fn pids_with_env(vars: &[String]) -> Vec<u32> {
    live_pids(|environ| vars.iter().all(|wanted| environ.contains(&wanted.as_bytes())))
}

/// Process ids of live (not zombie) processes whose environment, as `NAME=value` entries, passes `matches`.
fn live_pids(matches: impl Fn(&[&[u8]]) -> bool) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else { continue };
        let is_zombie = std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "));
        let vars: Vec<&[u8]> = environ.split(|b| *b == 0).collect();
        if matches(&vars) && !is_zombie {
            found.push(pid);
        }
    }
    found
}

/// Sandbox ids in a function view.
pub fn sandbox_ids(view: &FunctionView) -> Vec<String> {
    view.status.sandboxes.iter().map(|s| s.id.clone()).collect()
}

/// Waits until none of the sandboxes is alive, or panics.
pub fn assert_sandboxes_gone(ids: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let alive = sandbox_pids(ids);
        if alive.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "sandbox processes survived: {alive:?} for {ids:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
