//! The orchestrator's role configs (YAML): their keys, defaults and validation, defined once for `dirigent`, which
//! reads them, and for `experiments`, which writes them. Every default is also in the commented example files in
//! `orchestrator/config/` (a test there checks they agree). What a setting does at run time (the placement policy,
//! the load balancer, the runtime behind a [`RuntimeKind`]) is the orchestrator's.

mod autoscaler;
mod containerd;
pub mod ports;
mod replication;
mod store;

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use autoscaler::{AutoscalerConfig, AutoscalerConfigError};
pub use containerd::{ContainerdConfig, ContainerdConfigError, OciRuntime, parse_subnet};
pub use ports::{PortRange, PortRangeError};
pub use replication::{ReplicationConfig, ReplicationConfigError};
pub use store::{RedisStoreConfig, SqliteStoreConfig, StoreConfig, StoreConfigError, Synchronous};

use crate::yaml::{self, ConfigError};

/// How the control plane's placer chooses a worker for a new sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PlacementPolicy {
    /// Uniformly random worker.
    Random,
    /// Workers in turn.
    RoundRobin,
    /// Fewest sandboxes; ties go to the most free memory, then to the lowest index.
    #[default]
    LeastLoaded,
    /// Among workers with room for the request, the one left with the largest free share.
    ResourceAware,
}

/// How the data plane picks among a function's free endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LoadBalancing {
    /// Rotate through the endpoints.
    RoundRobin,
    /// Pick uniformly at random.
    Random,
    /// Pick the endpoint with the fewest requests in flight.
    #[default]
    LeastInFlight,
}

/// Which sandbox runtime a worker uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RuntimeKind {
    /// A sandbox is a child process (the image is an executable path).
    #[default]
    Process,
    /// A sandbox is a task in the worker that answers as the workload function does but sleeps through the
    /// requested time (thousands per machine; the image is only a name).
    Simulated,
    /// A sandbox is a container created through containerd's API, in its own network namespace (the image is an
    /// OCI image reference imported into containerd).
    Containerd,
}

/// A value the types allow but a role does not; the message names the key.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvalidConfig {
    /// "`{key}` must be greater than zero"
    #[error("`{key}` must be greater than zero")]
    ZeroDuration {
        /// The key.
        key: &'static str,
    },
    /// "`{key}` is empty; give a host:port"
    #[error("`{key}` is empty; give a host:port")]
    NoAddress {
        /// The key.
        key: &'static str,
    },
    /// "`{key}` = {value:?} has an empty address; give host:port, or several separated by commas"
    #[error("`{key}` = {value:?} has an empty address; give host:port, or several separated by commas")]
    EmptyAddressInList {
        /// The key.
        key: &'static str,
        /// The value given.
        value: String,
    },
    /// "`autoscaler`: {0}"
    #[error("`autoscaler`: {0}")]
    Autoscaler(AutoscalerConfigError),
    /// "`containerd`: {0}"
    #[error("`containerd`: {0}")]
    Containerd(ContainerdConfigError),
    /// "`store`: {0}"
    #[error("`store`: {0}")]
    Store(StoreConfigError),
    /// "`replication`: {0}"
    #[error("`replication`: {0}")]
    Replication(ReplicationConfigError),
    /// "`replication` needs `store.kind: sqlite` ..."
    #[error(
        "`replication` needs `store.kind: sqlite` (a replica keeps its log and registry in `store.path`), not \
         {kind}"
    )]
    ReplicationStore {
        /// The store kind given.
        kind: &'static str,
    },
    /// "`workers` ({workers}) is more than the {ports} ports of `worker.sandbox_ports` ..."
    #[error(
        "`workers` ({workers}) is more than the {} ports of `worker.sandbox_ports` ({ports}): each worker needs ports \
         of its own; widen the range or run fewer workers",
        ports.len()
    )]
    TooFewSandboxPorts {
        /// The worker count.
        workers: u32,
        /// The range they share.
        ports: PortRange,
    },
    /// "`sandbox_addresses` = {value} with `sandbox_host` {host}: {fix}"
    #[error("`sandbox_addresses` = {value} with `sandbox_host` {host}: {fix}")]
    SandboxAddresses {
        /// The count given.
        value: u32,
        /// The first address.
        host: IpAddr,
        /// What is wrong and what to do.
        fix: String,
    },
    /// "`{section}`: {error}": a section of the standalone config.
    #[error("`{section}`: {error}")]
    In {
        /// The section's key.
        section: &'static str,
        /// What is wrong inside it.
        error: Box<InvalidConfig>,
    },
}

/// A role's config: read from YAML with defaults, then checked.
pub trait RoleConfig: DeserializeOwned + Default {
    /// Checks what the types cannot, reporting the first bad key.
    fn validate(&self) -> Result<(), InvalidConfig>;
}

/// Reads a role's config from `path` (defaults when `None` or empty) and validates it; errors name the file.
pub fn load<T: RoleConfig>(path: Option<&Path>) -> Result<T, ConfigError> {
    let config: T = yaml::load_or_default(path)?;
    if let (Some(path), Err(error)) = (path, config.validate()) {
        return Err(ConfigError::Invalid { path: path.to_owned(), error: Box::new(error) });
    }
    Ok(config)
}

/// `Err(ZeroDuration)` for the first of `durations` that is zero.
fn above_zero(durations: &[(&'static str, Duration)]) -> Result<(), InvalidConfig> {
    match durations.iter().find(|(_, value)| value.is_zero()) {
        Some((key, _)) => Err(InvalidConfig::ZeroDuration { key }),
        None => Ok(()),
    }
}

/// Listening on every interface: the roles' default, for a separate host each.
fn any(port: u16) -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], port))
}

/// Listening on loopback only: `dirigent standalone`'s default, everything on one machine.
fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The gRPC metadata key in which a control-plane replica that is not the leader names the leader's address,
/// so that workers and data planes go there.
pub const LEADER_METADATA: &str = "dirigent-leader";

/// The addresses in a `control_plane` setting: one `host:port`, or those of its replicas separated by commas.
pub fn control_plane_addresses(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|address| !address.is_empty())
}

/// Refuses a `control_plane` setting with no address, or with an empty one among several.
fn valid_control_plane(value: &str) -> Result<(), InvalidConfig> {
    if control_plane_addresses(value).next().is_none() {
        return Err(InvalidConfig::NoAddress { key: "control_plane" });
    }
    if value.split(',').any(|address| address.trim().is_empty()) {
        return Err(InvalidConfig::EmptyAddressInList { key: "control_plane", value: value.to_owned() });
    }
    Ok(())
}

/// The control plane's gRPC address as peers on the same machine reach it by default.
fn local_control_plane() -> String {
    loopback(ports::CONTROL_PLANE_GRPC).to_string()
}

/// Control-plane settings (YAML).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlPlaneConfig {
    /// Where the gRPC service for workers and data planes listens.
    pub grpc_listen: SocketAddr,
    /// Where the user API (registration, `/metrics`) listens.
    pub http_listen: SocketAddr,
    /// Host name or address peers use when a listen address is `0.0.0.0`.
    pub advertise_host: String,
    /// Which worker gets a new sandbox.
    pub placement: PlacementPolicy,
    /// Seed of the random placement policy.
    pub placement_seed: u64,
    /// The per-function autoscaler.
    pub autoscaler: AutoscalerConfig,
    /// A worker silent this long is dropped with its sandboxes (one whose stream closes, at once); keep it
    /// several times the workers' `heartbeat_interval`.
    #[serde(with = "humantime_serde")]
    pub worker_timeout: Duration,
    /// A data plane silent this long is dropped (one whose stream closes, at once); keep it several times
    /// the data planes' `heartbeat_interval`.
    #[serde(with = "humantime_serde")]
    pub data_plane_timeout: Duration,
    /// How long a worker may take to create a ready sandbox.
    #[serde(with = "humantime_serde")]
    pub sandbox_create_timeout: Duration,
    /// Where registrations persist across restarts.
    pub store: StoreConfig,
    /// This control plane as one of several replicas of the registry (absent: the only one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replication: Option<ReplicationConfig>,
}

impl Default for ControlPlaneConfig {
    fn default() -> Self {
        Self {
            grpc_listen: any(ports::CONTROL_PLANE_GRPC),
            http_listen: any(ports::CONTROL_PLANE_HTTP),
            advertise_host: "127.0.0.1".into(),
            placement: PlacementPolicy::default(),
            placement_seed: 42,
            autoscaler: AutoscalerConfig::default(),
            worker_timeout: Duration::from_secs(1),
            data_plane_timeout: Duration::from_secs(1),
            sandbox_create_timeout: Duration::from_secs(15),
            store: StoreConfig::default(),
            replication: None,
        }
    }
}

impl RoleConfig for ControlPlaneConfig {
    fn validate(&self) -> Result<(), InvalidConfig> {
        self.autoscaler.validate().map_err(InvalidConfig::Autoscaler)?;
        self.store.validate().map_err(InvalidConfig::Store)?;
        if let Some(replication) = &self.replication {
            replication.validate().map_err(InvalidConfig::Replication)?;
            match self.store {
                StoreConfig::Sqlite(_) => {}
                StoreConfig::Redis(_) => return Err(InvalidConfig::ReplicationStore { kind: "redis" }),
                StoreConfig::Memory => return Err(InvalidConfig::ReplicationStore { kind: "memory" }),
            }
        }
        above_zero(&[
            ("worker_timeout", self.worker_timeout),
            ("data_plane_timeout", self.data_plane_timeout),
            ("sandbox_create_timeout", self.sandbox_create_timeout),
        ])
    }
}

/// Data-plane settings (YAML).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataPlaneConfig {
    /// Name in the control plane's registry; defaults to `data-plane-<proxy port>`.
    pub name: Option<String>,
    /// Where the proxy listens (HTTP/1.1 and h2c).
    pub proxy_listen: SocketAddr,
    /// Where the gRPC service for the control plane listens.
    pub grpc_listen: SocketAddr,
    /// Host name or address peers use when a listen address is `0.0.0.0`.
    pub advertise_host: String,
    /// The control plane's gRPC address, or its replicas' separated by commas (calls follow the leader).
    pub control_plane: String,
    /// How a free sandbox is chosen.
    pub load_balancing: LoadBalancing,
    /// Threads serving proxy connections, each with its own connection pool (default: one per core; 0: the
    /// process's shared runtime serves them).
    pub proxy_threads: Option<usize>,
    /// How long a request may wait for a sandbox before it fails with 503.
    #[serde(with = "humantime_serde")]
    pub queue_timeout: Duration,
    /// How long a sandbox may take to answer a request (to its response head) before the proxy answers 504.
    #[serde(with = "humantime_serde")]
    pub upstream_timeout: Duration,
    /// How often load figures go to the control plane.
    #[serde(with = "humantime_serde")]
    pub report_interval: Duration,
    /// How often a heartbeat goes down the stream to the control plane (keep it well under the control
    /// plane's `data_plane_timeout`).
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// How long a removed sandbox may keep serving its in-flight requests (0: not at all).
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
}

impl Default for DataPlaneConfig {
    fn default() -> Self {
        Self {
            name: None,
            proxy_listen: any(ports::DATA_PLANE_PROXY),
            grpc_listen: any(ports::DATA_PLANE_GRPC),
            advertise_host: "127.0.0.1".into(),
            control_plane: local_control_plane(),
            load_balancing: LoadBalancing::default(),
            proxy_threads: None,
            queue_timeout: Duration::from_secs(30),
            upstream_timeout: Duration::from_secs(15 * 60),
            report_interval: Duration::from_secs(1),
            heartbeat_interval: Duration::from_millis(250),
            drain_timeout: Duration::from_secs(30),
        }
    }
}

impl RoleConfig for DataPlaneConfig {
    fn validate(&self) -> Result<(), InvalidConfig> {
        valid_control_plane(&self.control_plane)?;
        above_zero(&[
            ("queue_timeout", self.queue_timeout),
            ("upstream_timeout", self.upstream_timeout),
            ("report_interval", self.report_interval),
            ("heartbeat_interval", self.heartbeat_interval),
        ])
    }
}

/// Worker settings (YAML).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerConfig {
    /// Name in the control plane's registry; defaults to `worker-<address>`.
    pub name: Option<String>,
    /// Where the worker's gRPC service listens.
    pub listen: SocketAddr,
    /// Host name or address the control plane uses when `listen` is `0.0.0.0`.
    pub advertise_host: String,
    /// The control plane's gRPC address, or its replicas' separated by commas (calls follow the leader).
    pub control_plane: String,
    /// How sandboxes run.
    pub runtime: RuntimeKind,
    /// The address sandboxes listen on (data planes must reach it).
    pub sandbox_host: IpAddr,
    /// Ports for sandboxes; keep it outside the kernel's ephemeral range (`ip_local_port_range`).
    pub sandbox_ports: PortRange,
    /// Consecutive addresses from `sandbox_host` that simulated sandboxes listen on, each with all of
    /// `sandbox_ports` (more than 1 needs a loopback `sandbox_host`).
    pub sandbox_addresses: u32,
    /// How long a new sandbox may take to answer its health probe.
    #[serde(with = "humantime_serde")]
    pub ready_timeout: Duration,
    /// How often the worker tells the control plane it is alive, down its stream (keep it well under the
    /// control plane's `worker_timeout`).
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// CPU capacity offered to sandboxes, millicores (default: all cores).
    pub cpu_millis: Option<u64>,
    /// Memory capacity offered to sandboxes, MiB (default: all memory).
    pub memory_mib: Option<u64>,
    /// With `runtime: simulated`: how long a sandbox takes to be created (0 measures the orchestrator alone).
    #[serde(with = "humantime_serde")]
    pub creation_delay: Duration,
    /// With `runtime: containerd`: containerd's socket, the OCI runtime and the sandboxes' network.
    pub containerd: ContainerdConfig,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            name: None,
            listen: any(ports::WORKER_GRPC),
            advertise_host: "127.0.0.1".into(),
            control_plane: local_control_plane(),
            runtime: RuntimeKind::default(),
            sandbox_host: IpAddr::from([127, 0, 0, 1]),
            sandbox_ports: ports::SANDBOX_PORTS,
            sandbox_addresses: 1,
            ready_timeout: Duration::from_secs(10),
            heartbeat_interval: Duration::from_millis(250),
            cpu_millis: None,
            memory_mib: None,
            // Dirigent's fake runtime's delay.
            creation_delay: Duration::from_millis(40),
            containerd: ContainerdConfig::default(),
        }
    }
}

impl RoleConfig for WorkerConfig {
    fn validate(&self) -> Result<(), InvalidConfig> {
        valid_control_plane(&self.control_plane)?;
        self.containerd.validate().map_err(InvalidConfig::Containerd)?;
        valid_sandbox_addresses(self.sandbox_host, self.sandbox_addresses)?;
        if self.sandbox_addresses > 1 && self.runtime != RuntimeKind::Simulated {
            return Err(InvalidConfig::SandboxAddresses {
                value: self.sandbox_addresses,
                host: self.sandbox_host,
                fix: "only `runtime: simulated` spreads sandboxes over several addresses; give 1, or more workers"
                    .into(),
            });
        }
        above_zero(&[("ready_timeout", self.ready_timeout), ("heartbeat_interval", self.heartbeat_interval)])
    }
}

/// `sandbox_addresses` consecutive addresses from `host` must exist and all reach this machine: on Linux every
/// address of 127.0.0.0/8 is loopback, and no other range is.
fn valid_sandbox_addresses(host: IpAddr, addresses: u32) -> Result<(), InvalidConfig> {
    let invalid = |fix: String| Err(InvalidConfig::SandboxAddresses { value: addresses, host, fix });
    if addresses == 0 {
        return invalid("sandboxes need at least one address; give 1 (the default) or more".into());
    }
    if addresses == 1 {
        return Ok(());
    }
    let IpAddr::V4(v4) = host else {
        return invalid("several addresses need an IPv4 loopback `sandbox_host` (127.x.y.z); give 1".into());
    };
    if !v4.is_loopback() {
        return invalid(
            "several addresses are only all on this machine on loopback; give a `sandbox_host` in 127.0.0.0/8, or 1 \
             and more workers"
                .into(),
        );
    }
    let room = u32::from(std::net::Ipv4Addr::new(127, 255, 255, 255)) - u32::from(v4) + 1;
    if addresses > room {
        return invalid(format!("that runs past 127.255.255.255; give at most {room}, or a lower `sandbox_host`"));
    }
    Ok(())
}

/// `dirigent standalone`: one control plane, one data plane and `workers` workers in one process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StandaloneConfig {
    /// How many workers to run.
    pub workers: u32,
    /// The control plane.
    pub control_plane: ControlPlaneConfig,
    /// The data plane (its `control_plane` address is filled in).
    pub data_plane: DataPlaneConfig,
    /// Template for every worker; worker `i` listens on the template's port + `i` (or an ephemeral port), with
    /// slice `i` of the sandbox ports.
    pub worker: WorkerConfig,
}

impl Default for StandaloneConfig {
    /// Every role on loopback, two workers.
    fn default() -> Self {
        let control_plane = ControlPlaneConfig {
            grpc_listen: loopback(ports::CONTROL_PLANE_GRPC),
            http_listen: loopback(ports::CONTROL_PLANE_HTTP),
            ..ControlPlaneConfig::default()
        };
        let data_plane = DataPlaneConfig {
            proxy_listen: loopback(ports::DATA_PLANE_PROXY),
            grpc_listen: loopback(ports::DATA_PLANE_GRPC),
            ..DataPlaneConfig::default()
        };
        let worker = WorkerConfig { listen: loopback(ports::WORKER_GRPC), ..WorkerConfig::default() };
        Self { workers: 2, control_plane, data_plane, worker }
    }
}

impl RoleConfig for StandaloneConfig {
    fn validate(&self) -> Result<(), InvalidConfig> {
        let within = |section, result: Result<(), InvalidConfig>| {
            result.map_err(|error| InvalidConfig::In { section, error: Box::new(error) })
        };
        within("control_plane", self.control_plane.validate())?;
        within("data_plane", self.data_plane.validate())?;
        within("worker", self.worker.validate())?;
        if self.workers > self.worker.sandbox_ports.len() {
            return Err(InvalidConfig::TooFewSandboxPorts { workers: self.workers, ports: self.worker.sandbox_ports });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
