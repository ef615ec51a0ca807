//! The platform lifecycle of one run, the same on this machine and on a cluster's hosts: the components start in
//! order (control plane or its replicas, then the data planes, then the workers, each group at once), each with a
//! config generated for its host and its ready line awaited, then the control plane is asked until every worker
//! and data plane has registered. Replicas get their gRPC ports before they start, since each is told the others'
//! addresses. A failure injection kills a component (or whichever replica leads then) and restarts it on the
//! addresses it first announced, and stamps both on the loader's clock. Stopping goes workers first, then sweeps every host for processes that carry
//! the run's marker, brings the logs back and removes the run's folders. Only the hosts differ: [`host::Host`].

mod component;
#[cfg(test)]
pub(crate) mod fake;
pub mod health;
pub mod host;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use contracts::config::ControlPlaneConfig;
use contracts::run_folder::{Event, EventKind};
use futures_util::future::join_all;
use serde_json::Value;

use self::component::Component;
use self::health::{ControlPlane, HealthError};
use self::host::{Host, HostError, Launch, RUN_MARKER_VAR, StopState};
use crate::roles::config::{self, ComponentConfig, ComponentConfigError, Replica};
use crate::roles::{LEADER, Placement, Role, START_ORDER};
use crate::spec::DirigentSpec;

/// How long a component may take to exit after SIGTERM before it is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// How long a failure naming the leader waits for the replicas to agree on one (an election takes well under a
/// second; one may be running when the failure is due).
const LEADER_WAIT: Duration = Duration::from_secs(5);

/// Why a step of the lifecycle failed; every message names the component and its host.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    /// "cannot write {path}", with the cause.
    #[error("cannot write {path}")]
    Write {
        /// The file or folder on this machine.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// "cannot prepare the run on {host}", with the cause.
    #[error("cannot prepare the run on {host}")]
    Prepare {
        /// The host.
        host: String,
        /// The cause.
        source: HostError,
    },
    /// "the config of {component}", with the reason.
    #[error("the config of {component}")]
    Config {
        /// The component.
        component: String,
        /// Why it could not be made.
        source: ComponentConfigError,
    },
    /// "{component} on {host} did not start", with the host's reason (its log's last lines).
    #[error("{component} on {host} did not start")]
    NotStarted {
        /// The component.
        component: String,
        /// The host.
        host: String,
        /// Why.
        source: HostError,
    },
    /// "{component} on {host} announced no '{key}' address in its ready line: {addresses}".
    #[error("{component} on {host} announced no '{key}' address in its ready line: {addresses}")]
    Address {
        /// The component.
        component: String,
        /// The host.
        host: String,
        /// The missing key.
        key: &'static str,
        /// What it announced.
        addresses: Value,
    },
    /// "health check through the control plane at {api}", with the reason.
    #[error("health check through the control plane at {api}")]
    Unhealthy {
        /// The control plane's API.
        api: String,
        /// Why.
        source: HealthError,
    },
    /// "no component '{name}' on this platform; there are {names}".
    #[error("no component '{name}' on this platform; there are {names}")]
    Unknown {
        /// The name asked for.
        name: String,
        /// The names there are, comma-separated.
        names: String,
    },
    /// "killing {component} on {host}", with the cause.
    #[error("killing {component} on {host}")]
    Kill {
        /// The component.
        component: String,
        /// The host.
        host: String,
        /// The cause.
        source: HostError,
    },
    /// "restarting {component} on {host}", with the cause.
    #[error("restarting {component} on {host}")]
    Restart {
        /// The component.
        component: String,
        /// The host.
        host: String,
        /// The cause.
        source: HostError,
    },
    /// "no control-plane replica says it leads: {answers}".
    #[error("no control-plane replica says it leads within {LEADER_WAIT:?}: {answers}")]
    NoLeader {
        /// What each replica answered.
        answers: String,
    },
    /// "no leader was killed yet, so there is none to restart".
    #[error("no leader was killed yet, so there is none to restart; restart the replica by its name")]
    NoKilledLeader,
    /// "{component} was never started: there is no config to restart it with".
    #[error("{component} was never started: there is no config to restart it with")]
    NeverStarted {
        /// The component.
        component: String,
    },
    /// Several of the above (components of one group started at once), each with its causes, joined by "; ".
    #[error("{}", .0.iter().map(|e| crate::error_chain(e)).collect::<Vec<_>>().join("; "))]
    Several(Vec<LifecycleError>),
}

impl LifecycleError {
    /// `Ok` for no errors, the error for one, [`LifecycleError::Several`] for more.
    fn from_all(mut errors: Vec<LifecycleError>) -> Result<(), LifecycleError> {
        match errors.len() {
            0 => Ok(()),
            1 => Err(errors.remove(0)),
            _ => Err(LifecycleError::Several(errors)),
        }
    }
}

/// What stopping found.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StopReport {
    /// Components that did not exit cleanly (killed, a non-zero status, or gone before the stop).
    pub unclean: Vec<String>,
    /// Processes carrying the run's marker still alive after every component stopped (then killed):
    /// `PID COMMAND on HOST`.
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

/// Microseconds since the epoch on this machine's clock.
pub type Clock = fn() -> i128;

/// This machine's clock.
pub fn system_clock() -> i128 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_micros() as i128)
}

/// Everything a run's lifecycle starts from.
#[derive(Debug)]
pub struct Setup {
    /// The platform's settings.
    pub spec: DirigentSpec,
    /// Which components go where.
    pub placement: Placement,
    /// The run's hosts, indexed as the placement indexes them.
    pub hosts: Vec<Arc<dyn Host>>,
    /// Who answers the health check.
    pub control_plane: Arc<dyn ControlPlane>,
    /// Where the components' configs and logs are kept on this machine.
    pub platform_dir: PathBuf,
    /// The run's marker; a component on host `i` carries `RUN_MARKER_VAR=<marker>@<i>`.
    pub marker: String,
    /// The loader's clock minus this machine's, µs: events are stamped on the loader's clock.
    pub loader_clock_offset_us: i64,
    /// This machine's clock, for the events stamped here.
    pub clock: Clock,
}

/// A started platform.
#[derive(Debug)]
pub struct Lifecycle {
    /// Every control plane's HTTP API (a replica's forwards to the leader's).
    apis: Vec<String>,
    proxy: String,
    components: Vec<Component>,
    setup: Setup,
    /// The replica a failure naming the leader killed last, which a restart naming the leader starts again.
    killed_leader: Option<usize>,
}

impl Lifecycle {
    /// Starts every component and returns once all are registered. On failure everything started is stopped
    /// again (logs brought back, run folders removed); the error says what failed and the report what teardown
    /// found.
    pub async fn start(setup: Setup) -> Result<Self, (LifecycleError, StopReport)> {
        let components = setup.placement.components().iter().map(|p| Component::new(p.clone(), None)).collect();
        let mut lifecycle =
            Lifecycle { apis: Vec::new(), proxy: String::new(), components, setup, killed_leader: None };
        match lifecycle.start_all().await {
            Ok(()) => Ok(lifecycle),
            Err(error) => {
                let report = lifecycle.stop().await;
                Err((error, report))
            }
        }
    }

    /// The first control plane's HTTP API (`address:port`).
    pub fn api(&self) -> &str {
        self.apis.first().map_or("", String::as_str)
    }

    /// Every control plane's HTTP API, the first first, `;`-separated: the loader's `target.api`, so it can go
    /// on with another replica when one is down.
    pub fn apis(&self) -> String {
        self.apis.join(";")
    }

    /// The first data plane's proxy (`address:port`), where the loader sends.
    pub fn proxy(&self) -> &str {
        &self.proxy
    }

    /// Every data plane's proxy, the first first, `;`-separated: the loader's `target.proxy`, so it spreads over
    /// all of them.
    pub fn proxies(&self) -> String {
        let serving = |c: &&Component| matches!(c.planned.role, Role::DataPlane | Role::Standalone);
        let proxies = self.components.iter().filter(serving).filter_map(|c| c.announced.get("proxy")?.as_str());
        proxies.map(str::to_owned).collect::<Vec<_>>().join(";")
    }

    /// The names of the components, in start order.
    pub fn component_names(&self) -> Vec<String> {
        self.components.iter().map(|c| c.name().to_owned()).collect()
    }

    async fn start_all(&mut self) -> Result<(), LifecycleError> {
        let dir = &self.setup.platform_dir;
        std::fs::create_dir_all(dir).map_err(|source| LifecycleError::Write { path: dir.clone(), source })?;
        let prepared = join_all(self.setup.hosts.iter().map(|host| host.prepare())).await;
        let errors = self.setup.hosts.iter().zip(prepared).filter_map(|(host, result)| {
            result.err().map(|source| LifecycleError::Prepare { host: host.name().into(), source })
        });
        LifecycleError::from_all(errors.collect())?;
        let mut grpc = String::new();
        let peers = self.replica_peers().await?;
        for roles in START_ORDER {
            let group: Vec<usize> = self.indices(|c| roles.contains(&c.planned.role));
            if group.is_empty() {
                continue;
            }
            for &index in &group {
                self.configure(index, &grpc, &peers)?;
            }
            self.start_group(&group).await?;
            self.learn_addresses(&group, &mut grpc)?;
        }
        let (control_plane, api) = (self.setup.control_plane.as_ref(), self.api());
        health::wait_healthy(control_plane, api, self.expected_registrations(), self.setup.spec.start_timeout)
            .await
            .map_err(|source| LifecycleError::Unhealthy { api: api.into(), source })
    }

    /// The gRPC address of every control-plane replica by its id (1, 2, ...), on ports chosen before any starts:
    /// the spec's port (plus the replica's slot on its host) when it sets one, else one the host finds free.
    /// Empty for a single control plane, which announces its own.
    async fn replica_peers(&self) -> Result<BTreeMap<u64, String>, LifecycleError> {
        let replicas = self.indices(|c| c.planned.role == Role::ControlPlane);
        if replicas.len() < 2 {
            return Ok(BTreeMap::new());
        }
        let (asked, default) =
            (self.setup.spec.control_plane.grpc_listen.port(), ControlPlaneConfig::default().grpc_listen.port());
        let mut peers = BTreeMap::new();
        for (id, &index) in (1..).zip(&replicas) {
            let (host, slot) = (self.host(index), self.components[index].planned.slot as u16);
            let port = match asked == default {
                true => host.port_for(default.saturating_add(slot)).await,
                false => Ok(asked.saturating_add(slot)),
            };
            let port = port.map_err(|source| LifecycleError::Prepare { host: host.name().into(), source })?;
            let ip: IpAddr = host.address().parse().map_err(|_| LifecycleError::Config {
                component: self.components[index].name().into(),
                source: ComponentConfigError::Host { host: host.address().into() },
            })?;
            peers.insert(id, SocketAddr::new(ip, port).to_string());
        }
        Ok(peers)
    }

    /// Takes what the others need from a group once it started: the control planes' gRPC addresses (into `grpc`,
    /// comma-separated) and APIs, the first data plane's proxy.
    fn learn_addresses(&mut self, group: &[usize], grpc: &mut String) -> Result<(), LifecycleError> {
        let first = group[0];
        match self.components[first].planned.role {
            Role::ControlPlane => {
                let grpcs = group.iter().map(|&index| self.address(index, "grpc")).collect::<Result<Vec<_>, _>>()?;
                *grpc = grpcs.join(",");
                self.apis = group.iter().map(|&index| self.address(index, "api")).collect::<Result<_, _>>()?;
            }
            Role::Standalone => {
                self.apis = vec![self.address(first, "api")?];
                self.proxy = self.address(first, "proxy")?;
            }
            Role::DataPlane => self.proxy = self.address(first, "proxy")?,
            Role::Worker => {}
        }
        Ok(())
    }

    /// `(workers, data planes)` that register with the control plane once everything is up.
    fn expected_registrations(&self) -> (usize, usize) {
        let placement = &self.setup.placement;
        match placement.count(Role::Standalone) {
            0 => (placement.count(Role::Worker), placement.count(Role::DataPlane)),
            // A standalone process registers its own workers and one data plane.
            _ => (self.setup.spec.workers as usize, 1),
        }
    }

    /// The indices of the components for which `keep` holds, in start order.
    fn indices(&self, keep: impl Fn(&Component) -> bool) -> Vec<usize> {
        (0..self.components.len()).filter(|&i| keep(&self.components[i])).collect()
    }

    /// Generates component `index`'s config for its host and writes it (`<name>.yaml`); a control plane is a
    /// replica of `peers` when there are several.
    fn configure(
        &mut self,
        index: usize,
        control_plane_grpc: &str,
        peers: &BTreeMap<u64, String>,
    ) -> Result<(), LifecycleError> {
        let component = &self.components[index];
        let address = self.setup.hosts[component.planned.host].address();
        let replica = match component.planned.role {
            Role::ControlPlane if !peers.is_empty() => {
                let id = self.indices(|c| c.planned.role == Role::ControlPlane).iter().position(|&i| i == index);
                id.map(|id| Replica { id: id as u64 + 1, peers })
            }
            _ => None,
        };
        let config = config::for_component(&self.setup.spec, &component.planned, address, control_plane_grpc, replica)
            .map_err(|source| LifecycleError::Config { component: component.name().into(), source })?;
        self.write_config(index, &config)?;
        self.components[index].config = Some(config);
        Ok(())
    }

    /// Writes `config` as component `index`'s current start's config (`<stem>.yaml`).
    fn write_config(&self, index: usize, config: &ComponentConfig) -> Result<(), LifecycleError> {
        let path = self.config_path(index);
        config::write(&path, config).map_err(|source| LifecycleError::Write { path, source })
    }

    fn config_path(&self, index: usize) -> PathBuf {
        self.setup.platform_dir.join(format!("{}.yaml", self.components[index].stem()))
    }

    /// Starts the components at `group` at once; each one's announced addresses are kept.
    async fn start_group(&mut self, group: &[usize]) -> Result<(), LifecycleError> {
        let results = {
            let launches: Vec<(usize, Launch)> = group.iter().map(|&index| (index, self.launch(index))).collect();
            join_all(launches.iter().map(|(index, launch)| self.host(*index).start(launch))).await
        };
        let mut errors = Vec::new();
        for (&index, result) in group.iter().zip(results) {
            self.components[index].launched = true;
            match result {
                Ok(addresses) => self.components[index].announced = addresses,
                Err(source) => {
                    // Its failure is the run's error; its absence at the stop is none.
                    self.components[index].down_on_purpose = true;
                    let (component, host) = self.who(index);
                    errors.push(LifecycleError::NotStarted { component, host, source });
                }
            }
        }
        LifecycleError::from_all(errors)
    }

    /// How component `index`'s current start is launched.
    fn launch(&self, index: usize) -> Launch {
        let component = &self.components[index];
        let marker = format!("{}@{}", self.setup.marker, component.planned.host);
        Launch {
            component: component.name().into(),
            stem: component.stem(),
            role: component.planned.role,
            config: self.config_path(index),
            env: vec![(RUN_MARKER_VAR.into(), marker), ("RUST_LOG".into(), config::role_log_filter())],
            nice: self.setup.spec.nice,
            ready_timeout: self.setup.spec.start_timeout,
        }
    }

    fn host(&self, index: usize) -> &Arc<dyn Host> {
        &self.setup.hosts[self.components[index].planned.host]
    }

    /// `(component, host)` names of component `index`.
    fn who(&self, index: usize) -> (String, String) {
        (self.components[index].name().into(), self.host(index).name().into())
    }

    /// The address `key` that component `index` announced.
    fn address(&self, index: usize, key: &'static str) -> Result<String, LifecycleError> {
        let announced = &self.components[index].announced;
        announced.get(key).and_then(Value::as_str).map(String::from).ok_or_else(|| {
            let (component, host) = self.who(index);
            LifecycleError::Address { component, host, key, addresses: announced.clone() }
        })
    }

    fn position(&self, name: &str) -> Result<usize, LifecycleError> {
        self.components
            .iter()
            .position(|c| c.name() == name)
            .ok_or_else(|| LifecycleError::Unknown { name: name.into(), names: self.component_names().join(", ") })
    }

    /// The control-plane replica that says it leads, asked until one does (within [`LEADER_WAIT`]).
    async fn leader(&self) -> Result<usize, LifecycleError> {
        let replicas = self.indices(|c| c.planned.role == Role::ControlPlane && c.launched && !c.down_on_purpose);
        let deadline = tokio::time::Instant::now() + LEADER_WAIT;
        loop {
            let mut answers = Vec::new();
            for &index in &replicas {
                let api = self.address(index, "api")?;
                match self.setup.control_plane.role(&api).await {
                    Ok(role) if role == "leader" => return Ok(index),
                    Ok(role) => answers.push(format!("{} {role}", self.components[index].name())),
                    Err(e) => answers.push(format!("{}: {}", self.components[index].name(), crate::error_chain(&e))),
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(LifecycleError::NoLeader { answers: answers.join(", ") });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills component `name` with SIGKILL (a failure injection), or the replica that leads when `name` is
    /// [`LEADER`]; returns the event for the manifest (naming the component killed), stamped with the host's time
    /// of the kill moved onto the loader's clock.
    pub async fn kill(&mut self, name: &str) -> Result<Event, LifecycleError> {
        let name_asked = name;
        let (index, detail) = match name {
            LEADER => (self.leader().await?, "SIGKILL (the leader)"),
            _ => (self.position(name)?, "SIGKILL"),
        };
        let name = self.components[index].name().to_owned();
        let name = name.as_str();
        let host = self.host(index);
        let at_ns = host.kill(name).await.map_err(|source| {
            let (component, host) = self.who(index);
            LifecycleError::Kill { component, host, source }
        })?;
        let runner_us = at_ns / 1000 - i128::from(host.clock_offset_us());
        let at_us = self.on_loader_clock(runner_us);
        let event = crate::events::event(EventKind::Kill, name, host.name(), at_us, Some(detail));
        self.components[index].down_on_purpose = true;
        if name_asked == LEADER {
            self.killed_leader = Some(index);
        }
        Ok(event)
    }

    /// Starts component `name` (for [`LEADER`], the replica killed as the leader) again with its config and the
    /// addresses it first announced (`<name>.<N>.yaml` and `<name>.<N>.log` for the N-th restart); returns the
    /// event for the manifest, stamped when it was ready.
    pub async fn restart(&mut self, name: &str) -> Result<Event, LifecycleError> {
        let index = match name {
            LEADER => self.killed_leader.ok_or(LifecycleError::NoKilledLeader)?,
            _ => self.position(name)?,
        };
        let name = self.components[index].name().to_owned();
        let name = name.as_str();
        let Some(config) = self.components[index].restart() else {
            return Err(LifecycleError::NeverStarted { component: name.into() });
        };
        self.write_config(index, &config)?;
        let launch = self.launch(index);
        let host = self.host(index);
        host.start(&launch).await.map_err(|source| {
            let (component, host) = self.who(index);
            LifecycleError::Restart { component, host, source }
        })?;
        let at_us = self.on_loader_clock((self.setup.clock)());
        let event = crate::events::event(EventKind::Restart, name, host.name(), at_us, None);
        self.components[index].down_on_purpose = false;
        Ok(event)
    }

    fn on_loader_clock(&self, runner_us: i128) -> i128 {
        runner_us + i128::from(self.setup.loader_clock_offset_us)
    }

    /// Stops the workers, then the data planes, then the control plane (each group at once); then kills and
    /// reports every process left with the run's marker on any host, brings the logs back and removes the run's
    /// folders. Never fails: what went wrong is in the report.
    pub async fn stop(&mut self) -> StopReport {
        let mut report = StopReport::default();
        for roles in START_ORDER.iter().rev() {
            let group = self.indices(|c| c.launched && roles.contains(&c.planned.role));
            let results =
                join_all(group.iter().map(|&index| self.host(index).stop(self.components[index].name(), STOP_GRACE)))
                    .await;
            for (&index, result) in group.iter().zip(results) {
                self.note_stop(index, result, &mut report);
                self.components[index].launched = false;
            }
        }
        self.sweep(&mut report).await;
        self.finish(&mut report).await;
        report
    }

    fn note_stop(&self, index: usize, result: Result<StopState, HostError>, report: &mut StopReport) {
        let (component, host) = self.who(index);
        let on = format!("{component} on {host}");
        match result {
            // Killed on purpose (or never started): whatever is left of it, no surprise; it may still be dying.
            Ok(_) if self.components[index].down_on_purpose => {}
            Ok(StopState::Stopped) => {}
            Ok(StopState::Gone) => report.unclean.push(format!("{on} had exited before the stop")),
            Ok(StopState::ExitedWith(status)) => report.unclean.push(format!("{on} exited with {status} on SIGTERM")),
            Ok(StopState::Killed) => {
                report.unclean.push(format!("{on} did not exit within {STOP_GRACE:?} of SIGTERM: killed"));
            }
            Err(e) => report.errors.push(format!("stopping {on}: {}", crate::error_chain(&e))),
        }
    }

    async fn sweep(&self, report: &mut StopReport) {
        let markers: Vec<String> = (0..self.setup.hosts.len()).map(|i| format!("{}@{i}", self.setup.marker)).collect();
        let results = join_all(self.setup.hosts.iter().zip(&markers).map(|(host, marker)| host.sweep(marker))).await;
        for (host, result) in self.setup.hosts.iter().zip(results) {
            match result {
                Ok(left) => {
                    report.surviving_sandboxes.extend(left.into_iter().map(|p| format!("{p} on {}", host.name())))
                }
                Err(e) => report.errors.push(crate::error_chain(&e)),
            }
        }
    }

    async fn finish(&self, report: &mut StopReport) {
        let names: Vec<Vec<String>> = (0..self.setup.hosts.len())
            .map(|host| self.components.iter().filter(|c| c.planned.host == host).map(|c| c.name().into()).collect())
            .collect();
        let into = &self.setup.platform_dir;
        let results = join_all(self.setup.hosts.iter().zip(&names).map(|(host, names)| host.finish(names, into))).await;
        report.errors.extend(results.into_iter().flatten().map(|e| crate::error_chain(&e)));
    }
}

#[cfg(test)]
mod tests;
