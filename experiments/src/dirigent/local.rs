//! `dirigent` on this machine: the roles as separate child processes (or one `standalone` process) on loopback,
//! started in order, health-checked through the control plane's API, and stopped with a check that no sandbox
//! survived.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::config;
use super::role::{self, RoleRecord};
use crate::process::{ComponentProcess, Launch, ProcessError, processes_with_env};
use crate::spec::{DirigentSpec, Processes};

/// The host the local cluster listens on.
const HOST: &str = "127.0.0.1";
/// Environment variable set on every role; sandboxes inherit it, which is how survivors are found.
pub const RUN_MARKER_VAR: &str = "FAAS_TOOLKIT_RUN";
/// coreutils' `nice`, which runs a command with an adjusted CPU priority.
const NICE: &str = "/usr/bin/nice";
/// How often the control plane is asked whether every role registered.
const HEALTH_POLL: Duration = Duration::from_millis(50);

/// Why the local cluster did not come up.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A role did not start.
    #[error(transparent)]
    Process(#[from] ProcessError),
    /// "the {role} config from platform.{key} is invalid: {message}".
    #[error("the {role} config from platform.{key} is invalid: {message}")]
    Config {
        /// The role.
        role: String,
        /// The spec key it came from.
        key: &'static str,
        /// What `dirigent --check` or the generator said.
        message: String,
    },
    /// "cannot write {path}: {source}".
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// "{role} announced no '{key}' address in its ready line: {addresses}".
    #[error("{role} announced no '{key}' address in its ready line: {addresses}")]
    Address {
        /// The role.
        role: String,
        /// The missing key.
        key: &'static str,
        /// What it announced.
        addresses: Value,
    },
    /// "the cluster was not healthy within {timeout:?}: {last}".
    #[error("the cluster was not healthy within {timeout:?}: {last}")]
    Unhealthy {
        /// The limit.
        timeout: Duration,
        /// The last answer or error from the control plane.
        last: String,
    },
}

/// A running local cluster.
#[derive(Debug)]
pub struct LocalDirigent {
    /// The control plane's HTTP API (`host:port`).
    pub api: String,
    /// The data plane's proxy (`host:port`).
    pub proxy: String,
    /// The roles, in start order.
    components: Vec<ComponentProcess>,
    marker: String,
    /// How each role was started, for a restart, in start order.
    roles: Vec<RoleRecord>,
    spec: DirigentSpec,
    binaries: Binaries,
    dir: PathBuf,
}

/// What stopping found.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StopReport {
    /// Roles that did not exit cleanly (killed, or a non-zero status).
    pub unclean: Vec<String>,
    /// Sandbox processes still alive after every role stopped (then killed): `PID` here, `PID COMMAND on HOST` on
    /// a cluster.
    pub surviving_sandboxes: Vec<String>,
    /// Teardown steps that failed (e.g. a host that could not be reached), so what they should have removed may
    /// still be there.
    pub errors: Vec<String>,
}

impl StopReport {
    /// Whether everything stopped and nothing survived.
    pub fn is_clean(&self) -> bool {
        self.unclean.is_empty() && self.surviving_sandboxes.is_empty() && self.errors.is_empty()
    }
}

/// The executables the local cluster needs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Binaries {
    /// `dirigent`.
    pub dirigent: PathBuf,
    /// `trace-function`, the image every function runs.
    pub trace_function: PathBuf,
    /// `loader`, when it was built beside them (a cluster run starts it on the loader host).
    pub loader: Option<PathBuf>,
}

impl Binaries {
    /// Finds both in `dir`, else beside the running executable, else in `target/release`.
    pub fn locate(dir: Option<&Path>) -> Result<Self, String> {
        let candidates: Vec<PathBuf> = match dir {
            Some(dir) => vec![dir.to_owned()],
            None => {
                let beside = std::env::current_exe().ok().and_then(|exe| exe.parent().map(Path::to_owned));
                beside.into_iter().chain([PathBuf::from("target/release")]).collect()
            }
        };
        for dir in &candidates {
            let (dirigent, trace_function) = (dir.join("dirigent"), dir.join("trace-function"));
            if dirigent.is_file() && trace_function.is_file() {
                let absolute = |p: PathBuf| std::path::absolute(&p).unwrap_or(p);
                let loader = Some(dir.join("loader")).filter(|path| path.is_file()).map(absolute);
                return Ok(Binaries { dirigent: absolute(dirigent), trace_function: absolute(trace_function), loader });
            }
        }
        let looked: Vec<String> = candidates.iter().map(|d| d.display().to_string()).collect();
        Err(format!(
            "dirigent and trace-function not found in {}; build them with `cargo build --release -p orchestrator --bins` \
             or set platform.bin_dir",
            looked.join(", ")
        ))
    }
}

impl LocalDirigent {
    /// Checks every role config `spec` produces with `dirigent --check`, before anything starts or is written.
    pub async fn check(spec: &DirigentSpec, binaries: &Binaries) -> Result<(), ClusterError> {
        let dir = std::env::temp_dir();
        for (role, key, config) in role_configs(spec, "127.0.0.1:9090")? {
            let path = write_config(&dir, &format!("dirigent-check-{}-{role}", std::process::id()), &config)?;
            let mut command = tokio::process::Command::new(&binaries.dirigent);
            command.args([role_command(&role), "--config"]).arg(&path).arg("--check");
            crate::process::prepare_child(&mut command);
            let output = command
                .output()
                .await
                .map_err(|source| ClusterError::Write { path: binaries.dirigent.clone(), source })?;
            let _ = std::fs::remove_file(&path);
            if !output.status.success() {
                let message = String::from_utf8_lossy(&output.stderr).trim().replace('\n', " ");
                return Err(ClusterError::Config { role, key, message });
            }
        }
        Ok(())
    }

    /// Starts the cluster (configs and logs in `dir`) and returns once every worker and the data plane registered.
    pub async fn start(
        spec: &DirigentSpec,
        binaries: &Binaries,
        dir: &Path,
        marker: &str,
    ) -> Result<Self, ClusterError> {
        std::fs::create_dir_all(dir).map_err(|source| ClusterError::Write { path: dir.into(), source })?;
        let mut cluster = LocalDirigent {
            api: String::new(),
            proxy: String::new(),
            components: Vec::new(),
            marker: marker.into(),
            roles: Vec::new(),
            spec: spec.clone(),
            binaries: binaries.clone(),
            dir: dir.to_owned(),
        };
        let started = match spec.processes {
            Processes::Standalone => cluster.start_standalone().await,
            Processes::Roles => cluster.start_roles().await,
        };
        let healthy = match started {
            Ok(()) => wait_healthy(&cluster.api, spec.workers as usize, 1, spec.start_timeout).await,
            Err(e) => Err(e),
        };
        match healthy {
            Ok(()) => Ok(cluster),
            Err(e) => {
                cluster.stop().await;
                Err(e)
            }
        }
    }

    async fn start_standalone(&mut self) -> Result<(), ClusterError> {
        let process = self.launch("standalone", "standalone", config::standalone(&self.spec, HOST)).await?;
        self.api = required(&process, "api")?;
        self.proxy = required(&process, "proxy")?;
        self.components.push(process);
        Ok(())
    }

    async fn start_roles(&mut self) -> Result<(), ClusterError> {
        let spec = self.spec.clone();
        let config = config::control_plane(&spec, HOST);
        let control_plane = self.launch("control-plane", "control-plane", config).await?;
        let grpc = required(&control_plane, "grpc")?;
        self.api = required(&control_plane, "api")?;
        self.components.push(control_plane);
        let config = config::data_plane(&spec, HOST, &grpc);
        let data_plane = self.launch("data-plane", "data-plane", config).await?;
        self.proxy = required(&data_plane, "proxy")?;
        self.components.push(data_plane);
        for index in 0..spec.workers {
            let name = role::component_name("worker", index as usize);
            let worker = config::worker(&spec, HOST, &grpc, index).map_err(|message| ClusterError::Config {
                role: name.clone(),
                key: "worker",
                message,
            })?;
            let process = self.launch(&name, "worker", worker).await?;
            self.components.push(process);
        }
        Ok(())
    }

    async fn launch(
        &mut self,
        name: &str,
        role: &'static str,
        config: Value,
    ) -> Result<ComponentProcess, ClusterError> {
        let path = write_config(&self.dir, name, &config)?;
        let process = self.spawn_role(name, role, &path).await?;
        let mut record = RoleRecord::new(name.into(), role, config);
        record.announced = process.addresses.clone();
        self.roles.push(record);
        Ok(process)
    }

    /// Starts role `role` as `log_name` (its log is `<log_name>.log`).
    async fn spawn_role(&self, log_name: &str, role: &str, config: &Path) -> Result<ComponentProcess, ClusterError> {
        let rust_log = config::role_log_filter();
        // `nice -n N dirigent ...` execs dirigent with a lower CPU priority, which its sandboxes inherit.
        let mut args = vec!["-n".into(), self.spec.nice.to_string(), self.binaries.dirigent.display().to_string()];
        args.extend([role.into(), "--config".into(), config.display().to_string()]);
        Ok(ComponentProcess::start(Launch {
            name: log_name,
            program: Path::new(NICE),
            args,
            log_dir: &self.dir,
            env: vec![(RUN_MARKER_VAR.into(), self.marker.clone()), ("RUST_LOG".into(), rust_log)],
            ready_timeout: self.spec.start_timeout,
        })
        .await?)
    }

    /// The names of the roles' processes, in start order.
    pub fn component_names(&self) -> Vec<String> {
        self.roles.iter().map(|role| role.name.clone()).collect()
    }

    /// Kills role process `name` with SIGKILL (a failure injection).
    pub fn kill(&mut self, name: &str) -> Result<(), String> {
        let position = role::position(self.roles.iter(), name)?;
        let process = self.components.iter().find(|c| c.name == name);
        let pid = process.and_then(ComponentProcess::pid).ok_or_else(|| format!("{name} is not running"))?;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL)
            .map_err(|e| format!("killing {name} (PID {pid}): {e}"))?;
        self.roles[position].down_on_purpose = true;
        Ok(())
    }

    /// Starts role process `name` again with its config and the addresses it had (its config and log are
    /// `<name>.<N>.yaml` and `<name>.<N>.log` for the N-th restart).
    pub async fn restart(&mut self, name: &str) -> Result<(), String> {
        let position = role::position(self.roles.iter(), name)?;
        let config = self.roles[position].restart();
        let (stem, role) = (self.roles[position].stem(), self.roles[position].role);
        let restarted = async {
            let path = write_config(&self.dir, &stem, &config)?;
            self.spawn_role(&stem, role, &path).await
        };
        let mut process = restarted.await.map_err(|e| format!("restarting {name}: {e}"))?;
        process.name = name.into();
        // The killed process's entry is replaced; its exit was reaped by nobody yet and needs no stop.
        if let Some(old) = self.components.iter().position(|c| c.name == name) {
            self.components[old] = process;
        }
        self.roles[position].down_on_purpose = false;
        Ok(())
    }

    /// The process ids of the roles.
    pub fn pids(&self) -> Vec<u32> {
        self.components.iter().filter_map(ComponentProcess::pid).collect()
    }

    /// Stops workers first (they remove their sandboxes), then the data plane, then the control plane; then kills
    /// and reports any sandbox process that survived.
    pub async fn stop(&mut self) -> StopReport {
        let mut report = StopReport::default();
        while let Some(component) = self.components.pop() {
            let expected_down = self.roles.iter().any(|r| r.name == component.name && r.down_on_purpose);
            if let Some(note) = component.stop().await
                && !expected_down
            {
                report.unclean.push(note);
            }
        }
        let marker = format!("{RUN_MARKER_VAR}={}", self.marker);
        for pid in processes_with_env(&marker) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
            report.surviving_sandboxes.push(pid.to_string());
        }
        report
    }
}

/// `(role, spec key, config)` of every role process `spec` starts, with `control_plane_grpc` filled in.
fn role_configs(
    spec: &DirigentSpec,
    control_plane_grpc: &str,
) -> Result<Vec<(String, &'static str, Value)>, ClusterError> {
    if spec.processes == Processes::Standalone {
        return Ok(vec![("standalone".into(), "control_plane, data_plane or worker", config::standalone(spec, HOST))]);
    }
    let worker = config::worker(spec, HOST, control_plane_grpc, 0).map_err(|message| ClusterError::Config {
        role: "worker".into(),
        key: "worker",
        message,
    })?;
    Ok(vec![
        ("control-plane".into(), "control_plane", config::control_plane(spec, HOST)),
        ("data-plane".into(), "data_plane", config::data_plane(spec, HOST, control_plane_grpc)),
        ("worker".into(), "worker", worker),
    ])
}

fn role_command(role: &str) -> &str {
    match role {
        "standalone" | "control-plane" | "data-plane" => role,
        _ => "worker",
    }
}

fn write_config(dir: &Path, name: &str, config: &Value) -> Result<PathBuf, ClusterError> {
    let path = dir.join(format!("{name}.yaml"));
    config::write(&path, config).map_err(|source| ClusterError::Write { path: path.clone(), source })?;
    Ok(path)
}

fn required(process: &ComponentProcess, key: &'static str) -> Result<String, ClusterError> {
    process.address(key).ok_or_else(|| ClusterError::Address {
        role: process.name.clone(),
        key,
        addresses: process.addresses.clone(),
    })
}

/// Polls the control plane until `workers` workers and `data_planes` data planes have registered.
pub(crate) async fn wait_healthy(
    api: &str,
    workers: usize,
    data_planes: usize,
    timeout: Duration,
) -> Result<(), ClusterError> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().unwrap_or_default();
    let deadline = Instant::now() + timeout;
    loop {
        let last = match registered(&client, api).await {
            Ok((w, d)) if w >= workers && d >= data_planes => return Ok(()),
            Ok((w, d)) => format!("{w} of {workers} workers and {d} of {data_planes} data planes registered"),
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            return Err(ClusterError::Unhealthy { timeout, last });
        }
        tokio::time::sleep(HEALTH_POLL).await;
    }
}

/// `(workers, data planes)` registered with the control plane at `api`.
async fn registered(client: &reqwest::Client, api: &str) -> Result<(usize, usize), String> {
    let count = |path: &'static str, key: &'static str| {
        let url = format!("http://{api}{path}");
        async move {
            let body: Value = client
                .get(&url)
                .send()
                .await
                .and_then(|r| r.error_for_status())
                .map_err(|e| format!("{url}: {e}"))?
                .json()
                .await
                .map_err(|e| format!("{url}: {e}"))?;
            Ok::<_, String>(body[key].as_array().map_or(0, Vec::len))
        }
    };
    Ok((count("/v1/workers", "workers").await?, count("/v1/data-planes", "data_planes").await?))
}
