//! The orchestrator's roles on their hosts for one run: configs generated with each host's address, uploaded and
//! started in order (control plane, data planes, workers) as detached processes that survive the SSH session, with
//! their logs in the run's folder on the host; then health-checked through the control plane's API. Stopping goes
//! workers first, then looks on every host for processes that carry the run's marker and kills them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::cluster::{RemoteCluster, SHORT};
use super::script;
use crate::dirigent::config;
use crate::dirigent::local::{RUN_MARKER_VAR, StopReport, wait_healthy};
use crate::dirigent::role::{self, RoleRecord};
use crate::spec::DirigentSpec;
use crate::ssh::inventory::Role;
use crate::ssh::{Session, SshError, shell_quote};

/// How long a role may take to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// One role's process on its host.
#[derive(Debug, Clone)]
struct Component {
    /// Its name, config and starts.
    record: RoleRecord,
    /// Inventory index of its host.
    host: usize,
}

impl Component {
    /// The file name of its current start's config or log (`<name>.<ext>`, `<name>.<N>.<ext>` after N restarts).
    fn file(&self, ext: &str) -> String {
        format!("{}.{ext}", self.record.stem())
    }

    /// Its PID file on its host, in the folder of run `run_id` (one for all its starts).
    fn pid_file(&self, cluster: &RemoteCluster, run_id: &str) -> String {
        format!("{}/{}", RemoteDirigent::run_dir(cluster, self.host, run_id), self.pid_name())
    }

    /// The name of its PID file inside the run's folder.
    fn pid_name(&self) -> String {
        format!("{}.pid", self.record.name)
    }
}

/// What starting one process on a host found.
struct Started {
    addresses: Value,
}

/// Everything a blocking start on a host needs.
#[derive(Clone)]
struct Launch {
    dir: String,
    bin: String,
    marker: String,
    nice: u8,
    timeout: Duration,
}

/// The roles of one run on the cluster's hosts.
#[derive(Debug)]
pub struct RemoteDirigent {
    /// The control plane's HTTP API (`address:port`).
    pub api: String,
    /// The first data plane's proxy (`address:port`), where the loader sends.
    pub proxy: String,
    run_id: String,
    components: Vec<Component>,
    spec: DirigentSpec,
    /// Where the roles' configs are kept locally.
    local_dir: PathBuf,
}

impl RemoteDirigent {
    /// Starts the roles of run `run_id` (configs written to `local_dir` too) and returns once every worker and data
    /// plane registered. On failure everything started is stopped again and the logs fetched; the error says what
    /// failed and the report what teardown found.
    pub async fn start(
        cluster: &RemoteCluster,
        spec: &DirigentSpec,
        run_id: &str,
        local_dir: &Path,
    ) -> Result<Self, (String, StopReport)> {
        let mut platform = RemoteDirigent {
            api: String::new(),
            proxy: String::new(),
            run_id: run_id.into(),
            components: Vec::new(),
            spec: spec.clone(),
            local_dir: local_dir.to_owned(),
        };
        match platform.start_all(cluster, local_dir).await {
            Ok(()) => Ok(platform),
            Err(error) => {
                let mut report = platform.stop(cluster).await;
                report.errors.extend(platform.collect_logs(cluster, local_dir).await);
                report.errors.extend(Self::remove_run(cluster, run_id).await);
                Err((error, report))
            }
        }
    }

    /// The run's folder on host `index`.
    pub fn run_dir(cluster: &RemoteCluster, index: usize, run_id: &str) -> String {
        format!("{}/runs/{run_id}", cluster.root(index))
    }

    async fn start_all(&mut self, cluster: &RemoteCluster, local_dir: &Path) -> Result<(), String> {
        std::fs::create_dir_all(local_dir).map_err(|e| format!("cannot create {}: {e}", local_dir.display()))?;
        let run_id = &self.run_id;
        let problems = cluster
            .on_all_hosts("creating the run folder", |host| {
                format!("mkdir -p {}", shell_quote(&Self::run_dir(cluster, host, run_id)))
            })
            .await;
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }

        let spec = self.spec.clone();
        let control_plane = cluster.with_role(Role::ControlPlane)[0];
        let address = cluster.reports[control_plane].address.clone();
        let started = self
            .start_group(cluster, local_dir, "control-plane", &[control_plane], |_, _| {
                Ok(config::control_plane(&spec, &address))
            })
            .await?;
        let grpc = address_of(&started[0], "grpc")?;
        self.api = address_of(&started[0], "api")?;

        let data_planes = cluster.with_role(Role::DataPlane);
        let started = self
            .start_group(cluster, local_dir, "data-plane", &data_planes, |_, host| {
                Ok(config::data_plane(&spec, &cluster.reports[host].address, &grpc))
            })
            .await?;
        self.proxy = address_of(&started[0], "proxy")?;

        let workers = cluster.with_role(Role::Worker);
        self.start_group(cluster, local_dir, "worker", &workers, |name, host| {
            config::worker_in_slot(&spec, &cluster.reports[host].address, &grpc, name, 0, 1)
        })
        .await?;
        wait_healthy(&self.api, workers.len(), data_planes.len(), self.spec.start_timeout)
            .await
            .map_err(|e| format!("health check through the control plane at {}: {e}", self.api))
    }

    /// Starts role `role` on each of `hosts` at once, named after the role (numbered when there can be several);
    /// `make_config(name, host)` gives each one's config.
    async fn start_group(
        &mut self,
        cluster: &RemoteCluster,
        local_dir: &Path,
        role: &'static str,
        hosts: &[usize],
        make_config: impl Fn(&str, usize) -> Result<Value, String>,
    ) -> Result<Vec<Started>, String> {
        let mut group = Vec::new();
        for (index, &host) in hosts.iter().enumerate() {
            let name = role::component_name(role, index);
            let config = make_config(&name, host).map_err(|e| format!("the config of {name}: {e}"))?;
            let component = Component { record: RoleRecord::new(name, role, config), host };
            write_local(&local_dir.join(component.file("yaml")), &component.record.config)?;
            group.push(component);
        }
        let first = self.components.len();
        self.components.extend(group);
        let launches: Vec<(Component, Launch, PathBuf)> = self.components[first..]
            .iter()
            .map(|c| (c.clone(), self.launch(cluster, c.host), local_dir.join(c.file("yaml"))))
            .collect();
        let indices = launches.iter().map(|(c, _, _)| c.host).collect();
        let results = cluster
            .on_each(indices, move |host, session| {
                let (component, launch, config) =
                    launches.iter().find(|(c, _, _)| c.host == host).expect("a launch per host");
                Ok(start_on(session, component, launch, config))
            })
            .await;
        let mut started = Vec::new();
        let mut errors = Vec::new();
        for (component, result) in self.components[first..].iter_mut().zip(results) {
            match result.map_err(|e| e.to_string()).and_then(|r| r) {
                Ok(s) => {
                    component.record.announced = s.addresses.clone();
                    started.push(s);
                }
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() { Ok(started) } else { Err(errors.join("; ")) }
    }

    fn launch(&self, cluster: &RemoteCluster, host: usize) -> Launch {
        Launch {
            dir: Self::run_dir(cluster, host, &self.run_id),
            bin: cluster.bin(host),
            marker: format!("{}@{host}", self.run_id),
            nice: self.spec.nice,
            timeout: self.spec.start_timeout,
        }
    }

    /// The names of the components, in start order.
    pub fn component_names(&self) -> Vec<String> {
        self.components.iter().map(|c| c.record.name.clone()).collect()
    }

    /// Kills component `name` with SIGKILL; returns its host's inventory index and the host's clock at the kill, ns
    /// since the epoch.
    pub async fn kill(&mut self, cluster: &RemoteCluster, name: &str) -> Result<(usize, i128), String> {
        let position = self.position(name)?;
        let component = self.components[position].clone();
        let pid_file = component.pid_file(cluster, &self.run_id);
        let output = cluster
            .on(component.host, move |session| session.exec_ok(&script::kill_now(&pid_file), SHORT))
            .await
            .map_err(|e| format!("killing {name}: {e}"))?;
        let at_ns =
            output.stdout.trim().parse().map_err(|_| format!("killing {name}: no time in '{}'", output.stdout))?;
        self.components[position].record.down_on_purpose = true;
        Ok((component.host, at_ns))
    }

    /// Starts component `name` again with its config and the addresses it had (`<name>.<N>.yaml`, uploaded and
    /// kept locally); returns its host's inventory index.
    pub async fn restart(&mut self, cluster: &RemoteCluster, name: &str) -> Result<usize, String> {
        let position = self.position(name)?;
        let restart_config = self.components[position].record.restart();
        let component = self.components[position].clone();
        let config = self.local_dir.join(component.file("yaml"));
        write_local(&config, &restart_config).map_err(|e| format!("restarting {name}: {e}"))?;
        let launch = self.launch(cluster, component.host);
        let result =
            cluster.on(component.host, move |session| Ok(start_on(session, &component, &launch, &config))).await;
        result.map_err(|e| e.to_string()).and_then(|r| r).map_err(|e| format!("restarting {name}: {e}"))?;
        self.components[position].record.down_on_purpose = false;
        Ok(self.components[position].host)
    }

    fn position(&self, name: &str) -> Result<usize, String> {
        role::position(self.components.iter().map(|c| &c.record), name)
    }

    /// Stops workers, then data planes, then the control plane; then kills and reports every process left with the
    /// run's marker on any host. Never fails: what went wrong is in the report.
    pub async fn stop(&mut self, cluster: &RemoteCluster) -> StopReport {
        let mut report = StopReport::default();
        for role in ["worker", "data-plane", "control-plane"] {
            let group: Vec<Component> = self.components.iter().filter(|c| c.record.role == role).cloned().collect();
            let pid_files: Vec<(usize, String)> =
                group.iter().map(|c| (c.host, c.pid_file(cluster, &self.run_id))).collect();
            let results = cluster
                .on_each(group.iter().map(|c| c.host).collect(), move |host, session| {
                    let pid_file = &pid_files.iter().find(|(h, _)| *h == host).expect("a pid file per host").1;
                    session.exec_ok(&script::stop(pid_file, STOP_GRACE), STOP_GRACE + SHORT)
                })
                .await;
            for (component, result) in group.iter().zip(results) {
                let on = format!("{} on {}", component.record.name, cluster.name(component.host));
                match result.map(|output| output.stdout.trim().to_owned()) {
                    Ok(state) if state == "stopped" => {}
                    Ok(state) if state == "gone" && component.record.down_on_purpose => {}
                    Ok(state) if state == "gone" => report.unclean.push(format!("{on} had exited before the stop")),
                    Ok(_) => report.unclean.push(format!("{on} did not exit within {STOP_GRACE:?} of SIGTERM: killed")),
                    Err(e) => report.errors.push(format!("stopping {on}: {e}")),
                }
            }
        }
        self.sweep_survivors(cluster, &mut report).await;
        report
    }

    async fn sweep_survivors(&self, cluster: &RemoteCluster, report: &mut StopReport) {
        let hosts: Vec<usize> = (0..cluster.inventory.hosts.len()).collect();
        let run_id = self.run_id.clone();
        let results = cluster
            .on_each(hosts.clone(), move |host, session| {
                session.exec_ok(&script::kill_marked(RUN_MARKER_VAR, &format!("{run_id}@{host}")), SHORT)
            })
            .await;
        for (host, result) in hosts.into_iter().zip(results) {
            match result {
                Ok(output) => report
                    .surviving_sandboxes
                    .extend(output.stdout.lines().map(|line| format!("{line} on {}", cluster.name(host)))),
                Err(e) => report.errors.push(format!("looking for surviving processes: {e}")),
            }
        }
    }

    /// Downloads every log of the run's roles into `local_dir`; returns what could not be fetched.
    pub async fn collect_logs(&self, cluster: &RemoteCluster, local_dir: &Path) -> Vec<String> {
        let hosts: Vec<usize> = unique(self.components.iter().map(|c| c.host));
        let dirs: Vec<String> =
            (0..cluster.inventory.hosts.len()).map(|i| Self::run_dir(cluster, i, &self.run_id)).collect();
        let local = local_dir.to_owned();
        let names: Vec<(usize, String)> = self.components.iter().map(|c| (c.host, c.record.name.clone())).collect();
        let results = cluster
            .on_each(hosts, move |host, session| {
                let files = session.exec_ok(&script::list_files(&dirs[host]), SHORT)?.stdout;
                let mine: Vec<&String> = names.iter().filter(|(h, _)| *h == host).map(|(_, n)| n).collect();
                for file in
                    files.lines().filter(|f| f.ends_with(".log") && mine.iter().any(|n| f.starts_with(n.as_str())))
                {
                    session.download(&format!("{}/{file}", dirs[host]), &local.join(file))?;
                }
                Ok(())
            })
            .await;
        super::cluster::errors("collecting logs", results)
    }

    /// Removes the run's folder from every host; returns what could not be removed.
    pub async fn remove_run(cluster: &RemoteCluster, run_id: &str) -> Vec<String> {
        cluster
            .on_all_hosts("removing the run folder", |host| {
                format!("rm -rf {}", shell_quote(&Self::run_dir(cluster, host, run_id)))
            })
            .await
    }
}

/// Uploads the config, starts the component detached and waits for its ready line.
fn start_on(session: &mut Session, component: &Component, launch: &Launch, config: &Path) -> Result<Started, String> {
    let host = session.destination().to_string();
    let name = &component.record.name;
    let step = |what: &str, e: SshError| format!("{what} {name} on {host}: {e}");
    let config_file = component.file("yaml");
    session
        .upload(config, &format!("{}/{config_file}", launch.dir), 0o644)
        .map_err(|e| step("uploading the config of", e))?;
    let log = component.file("log");
    let rust_log = config::role_log_filter();
    let command: Vec<String> = vec![
        "nice".into(),
        "-n".into(),
        launch.nice.to_string(),
        format!("{}/dirigent", launch.bin),
        component.record.role.into(),
        "--config".into(),
        config_file,
    ];
    let env = [(RUN_MARKER_VAR, launch.marker.as_str()), ("RUST_LOG", rust_log.as_str())];
    let start = script::start_detached(&launch.dir, &env, &command, &log, &component.pid_name());
    let output = session.exec_ok(&start, SHORT).map_err(|e| step("starting", e))?;
    let pid: u32 = output
        .stdout
        .trim()
        .parse()
        .map_err(|_| format!("starting {name} on {host}: no PID in '{}'", output.stdout.trim()))?;
    let wait = script::wait_ready(&launch.dir, pid, &log, launch.timeout);
    let output = session.exec(&wait, launch.timeout + SHORT).map_err(|e| step("waiting for", e))?;
    if !output.success() {
        let reason: Vec<&str> = output.stderr.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        return Err(format!("{name} on {host} did not start: {}", reason.join(" | ")));
    }
    let ready: Value = serde_json::from_str(output.stdout.trim())
        .map_err(|e| format!("{name} on {host} printed a bad ready line '{}': {e}", output.stdout.trim()))?;
    Ok(Started { addresses: ready["ready"]["addresses"].clone() })
}

fn address_of(started: &Started, key: &str) -> Result<String, String> {
    started
        .addresses
        .get(key)
        .and_then(Value::as_str)
        .map(String::from)
        .ok_or_else(|| format!("the ready line announced no '{key}' address: {}", started.addresses))
}

fn write_local(path: &Path, config: &Value) -> Result<(), String> {
    config::write(path, config).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn unique(hosts: impl Iterator<Item = usize>) -> Vec<usize> {
    let mut hosts: Vec<usize> = hosts.collect();
    hosts.sort_unstable();
    hosts.dedup();
    hosts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_listed_once() {
        assert_eq!(unique([3, 1, 3, 2].into_iter()), vec![1, 2, 3]);
    }
}
