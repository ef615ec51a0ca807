//! The orchestrator's role configs for one run, typed (`contracts::config`, the types `dirigent` reads): the spec's
//! sections, checked when the spec is read, with the addresses the runner decides filled in. They are written as
//! JSON, which every YAML parser (and `dirigent --config`) reads.
//!
//! The rule for what the runner fills in, on a host with address `host`:
//! - a listen address the spec leaves at the role's default becomes `host:0` (an ephemeral port on the host's
//!   address: several components share a host, and the ready line says which port each got);
//! - `advertise_host` and a worker's `sandbox_host` left at their defaults become `host`;
//! - a worker's `name` left unset becomes its component name (`worker-N`);
//! - `control_plane` of data planes and workers is always the control planes' announced gRPC addresses
//!   (comma-separated: every replica, and they follow the leader);
//! - a control-plane replica of several listens for gRPC on the address its peers were given before it started
//!   ([`Replica`]), gets `replication` with every replica, and its SQLite file's name gets its component name in
//!   front (`control-plane-1.dirigent-registry.sqlite`): replicas on one host share a working folder;
//! - a worker gets its slice of `sandbox_ports` ([`PortRange::slice`]), one per worker on its host.
//!
//! A value the spec sets to anything but the default is kept as written.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use contracts::config::{
    ControlPlaneConfig, DataPlaneConfig, PortRange, ReplicationConfig, StandaloneConfig, StoreConfig, WorkerConfig,
};
use serde_json::Value;

use super::{Planned, Role};
use crate::spec::DirigentSpec;

/// Why a role config cannot be made for a host.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ComponentConfigError {
    /// "the host address '{host}' is not an IP address; components listen on it".
    #[error("the host address '{host}' is not an IP address; components listen on it")]
    Host {
        /// The address.
        host: String,
    },
    /// "the replica address '{address}' is not an IP address and port".
    #[error("the replica address '{address}' is not an IP address and port")]
    ReplicaAddress {
        /// The address.
        address: String,
    },
    /// "platform.worker.sandbox_ports {ports} has fewer ports than the {slots} workers".
    #[error("platform.worker.sandbox_ports {ports} has fewer ports than the {slots} workers")]
    TooFewSandboxPorts {
        /// The range.
        ports: PortRange,
        /// The workers that share it.
        slots: u32,
    },
}

/// One component's config, as `dirigent <role> --config` reads it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(untagged)]
#[expect(clippy::large_enum_variant, reason = "one per component of a run, made once: size does not matter")]
pub enum ComponentConfig {
    /// `dirigent control-plane`.
    ControlPlane(ControlPlaneConfig),
    /// `dirigent data-plane`.
    DataPlane(DataPlaneConfig),
    /// `dirigent worker`.
    Worker(WorkerConfig),
    /// `dirigent standalone`.
    Standalone(StandaloneConfig),
}

/// The roles' log filter unless `RUST_LOG` says otherwise: info, without the HTTP/2 and tower chatter.
pub fn role_log_filter() -> String {
    std::env::var("RUST_LOG").unwrap_or_else(|_| "info,h2=warn,tower=warn".into())
}

/// Writes a role config to `path` (as JSON, which `dirigent --config` reads as YAML).
pub fn write(path: &std::path::Path, config: &ComponentConfig) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(config).map_err(std::io::Error::other)?;
    std::fs::write(path, text + "\n")
}

fn ip(host: &str) -> Result<IpAddr, ComponentConfigError> {
    host.parse().map_err(|_| ComponentConfigError::Host { host: host.into() })
}

/// `address` on `host` with an ephemeral port when it is still `default`.
fn listen(address: &mut SocketAddr, default: SocketAddr, host: IpAddr) {
    if *address == default {
        *address = SocketAddr::new(host, 0);
    }
}

/// `value` becomes `host` when it is still `default`.
fn advertise(value: &mut String, default: &str, host: &str) {
    if value == default {
        *value = host.into();
    }
}

/// The control plane's config: ephemeral ports on `host` unless the spec fixes them.
pub fn control_plane(spec: &DirigentSpec, host: &str) -> Result<ControlPlaneConfig, ComponentConfigError> {
    let (address, default) = (ip(host)?, ControlPlaneConfig::default());
    let mut config = spec.control_plane.clone();
    listen(&mut config.grpc_listen, default.grpc_listen, address);
    listen(&mut config.http_listen, default.http_listen, address);
    advertise(&mut config.advertise_host, &default.advertise_host, host);
    Ok(config)
}

/// A control plane as one of several replicas: its id and every replica's gRPC address (id -> `host:port`, its
/// own included), chosen before any starts because each must know the others'.
#[derive(Debug, Clone, Copy)]
pub struct Replica<'a> {
    /// Its id, a key of `peers`.
    pub id: u64,
    /// Every replica.
    pub peers: &'a BTreeMap<u64, String>,
}

/// Control-plane replica `replica` named `name` on `host`: the control plane's config listening for gRPC on its
/// peer address, with `replication` and a SQLite file of its own.
pub fn replica(
    spec: &DirigentSpec,
    host: &str,
    name: &str,
    replica: Replica<'_>,
) -> Result<ControlPlaneConfig, ComponentConfigError> {
    let mut config = control_plane(spec, host)?;
    let address = replica.peers.get(&replica.id).map_or("", String::as_str);
    config.grpc_listen =
        address.parse().map_err(|_| ComponentConfigError::ReplicaAddress { address: address.into() })?;
    config.replication = Some(ReplicationConfig::new(replica.id, replica.peers.clone()));
    if let StoreConfig::Sqlite(sqlite) = &mut config.store {
        let file = sqlite.path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
        sqlite.path.set_file_name(format!("{name}.{file}"));
    }
    Ok(config)
}

/// The data plane's config, pointed at the control plane's gRPC address.
pub fn data_plane(
    spec: &DirigentSpec,
    host: &str,
    control_plane_grpc: &str,
) -> Result<DataPlaneConfig, ComponentConfigError> {
    let (address, default) = (ip(host)?, DataPlaneConfig::default());
    let mut config = spec.data_plane.clone();
    listen(&mut config.proxy_listen, default.proxy_listen, address);
    listen(&mut config.grpc_listen, default.grpc_listen, address);
    advertise(&mut config.advertise_host, &default.advertise_host, host);
    config.control_plane = control_plane_grpc.into();
    Ok(config)
}

/// The spec's worker section with its addresses on `host` (its name, ports and control plane aside).
fn worker_on(spec: &DirigentSpec, host: &str) -> Result<WorkerConfig, ComponentConfigError> {
    let (address, default) = (ip(host)?, WorkerConfig::default());
    let mut config = spec.worker.clone();
    listen(&mut config.listen, default.listen, address);
    advertise(&mut config.advertise_host, &default.advertise_host, host);
    if config.sandbox_host == default.sandbox_host {
        config.sandbox_host = address;
    }
    Ok(config)
}

/// The config of component `planned` on a host with address `host`, pointed at the control planes' gRPC
/// addresses; a control plane that is one of several replicas is `replica`.
pub fn for_component(
    spec: &DirigentSpec,
    planned: &Planned,
    host: &str,
    control_plane_grpc: &str,
    replica: Option<Replica<'_>>,
) -> Result<ComponentConfig, ComponentConfigError> {
    Ok(match planned.role {
        Role::ControlPlane => ComponentConfig::ControlPlane(match replica {
            Some(replica) => self::replica(spec, host, &planned.name, replica)?,
            None => control_plane(spec, host)?,
        }),
        Role::DataPlane => ComponentConfig::DataPlane(data_plane(spec, host, control_plane_grpc)?),
        Role::Worker => ComponentConfig::Worker(worker_in_slot(
            spec,
            host,
            control_plane_grpc,
            &planned.name,
            planned.slot,
            planned.slots,
        )?),
        Role::Standalone => ComponentConfig::Standalone(standalone(spec, host)?),
    })
}

/// Worker `index` of the spec's workers on one host: its own slice of the sandbox port range, so workers on one
/// host never collide.
pub fn worker(
    spec: &DirigentSpec,
    host: &str,
    control_plane_grpc: &str,
    index: u32,
) -> Result<WorkerConfig, ComponentConfigError> {
    worker_in_slot(spec, host, control_plane_grpc, &format!("worker-{index}"), index, spec.workers)
}

/// Worker `name` using slice `slot` of `slots` of the sandbox port range (a worker alone on its host: 0 of 1).
pub fn worker_in_slot(
    spec: &DirigentSpec,
    host: &str,
    control_plane_grpc: &str,
    name: &str,
    slot: u32,
    slots: u32,
) -> Result<WorkerConfig, ComponentConfigError> {
    let mut config = worker_on(spec, host)?;
    let ports = config.sandbox_ports;
    if slots > ports.len() {
        return Err(ComponentConfigError::TooFewSandboxPorts { ports, slots });
    }
    config.sandbox_ports = ports.slice(slots, slot);
    config.name = Some(config.name.unwrap_or_else(|| name.into()));
    config.control_plane = control_plane_grpc.into();
    Ok(config)
}

/// `dirigent standalone`'s config: the three sections with ephemeral ports, and the worker count (the process
/// slices the sandbox ports and names the workers itself).
pub fn standalone(spec: &DirigentSpec, host: &str) -> Result<StandaloneConfig, ComponentConfigError> {
    let control_plane = control_plane(spec, host)?;
    // The data plane's control plane is filled in by the process itself.
    let data_plane =
        DataPlaneConfig { control_plane: spec.data_plane.control_plane.clone(), ..data_plane(spec, host, "")? };
    Ok(StandaloneConfig { workers: spec.workers, control_plane, data_plane, worker: worker_on(spec, host)? })
}

impl ComponentConfig {
    /// This config with the ports a `role` process announced (`{"grpc": ..., "api": ...}`) in its listen
    /// addresses, so a restart binds the ports its peers and the loader already know instead of new ephemeral ones.
    pub fn pinned(&self, announced: &Value) -> ComponentConfig {
        let mut config = self.clone();
        let pin = |address: &mut SocketAddr, key: &str| {
            if let Some(port) = announced_port(announced, key) {
                address.set_port(port);
            }
        };
        match &mut config {
            ComponentConfig::ControlPlane(c) => {
                pin(&mut c.grpc_listen, "grpc");
                pin(&mut c.http_listen, "api");
            }
            ComponentConfig::DataPlane(d) => {
                pin(&mut d.proxy_listen, "proxy");
                pin(&mut d.grpc_listen, "grpc");
            }
            ComponentConfig::Standalone(s) => {
                pin(&mut s.control_plane.grpc_listen, "grpc");
                pin(&mut s.control_plane.http_listen, "api");
                pin(&mut s.data_plane.proxy_listen, "proxy");
            }
            // Workers register anew: nothing to pin.
            ComponentConfig::Worker(_) => {}
        }
        config
    }
}

/// The port of address `key` of a ready line's addresses (`host:port`).
fn announced_port(announced: &Value, key: &str) -> Option<u16> {
    let address = announced.get(key)?.as_str()?;
    address.rsplit_once(':')?.1.parse().ok()
}

#[cfg(test)]
mod tests {
    use contracts::config::{LoadBalancing, PlacementPolicy};
    use serde_json::json;

    use super::*;
    use crate::spec::dirigent_spec as spec;

    fn at(address: &str) -> SocketAddr {
        address.parse().unwrap()
    }

    #[test]
    fn user_keys_stay_and_addresses_are_filled_in() {
        let d = spec("{ kind: dirigent, control_plane: { placement: random, http_listen: 127.0.0.1:9091 } }");
        let cp = control_plane(&d, "127.0.0.1").unwrap();
        let expected = ControlPlaneConfig {
            placement: PlacementPolicy::Random,
            http_listen: at("127.0.0.1:9091"),
            grpc_listen: at("127.0.0.1:0"),
            advertise_host: "127.0.0.1".into(),
            ..ControlPlaneConfig::default()
        };
        assert_eq!(cp, expected);
        let d = spec("{ kind: dirigent, data_plane: { control_plane: 'ignored:1', load_balancing: random } }");
        let dp = data_plane(&d, "127.0.0.1", "127.0.0.1:5000").unwrap();
        assert_eq!(dp.control_plane, "127.0.0.1:5000");
        assert_eq!(dp.load_balancing, LoadBalancing::Random);
        assert!(control_plane(&d, "node-1").unwrap_err().to_string().contains("node-1"));
    }

    #[test]
    fn a_replica_listens_where_its_peers_look_and_keeps_its_own_file() {
        let d = spec("{ kind: dirigent, replicas: 3, control_plane: { placement: random } }");
        let peers: BTreeMap<u64, String> = (1..=3).map(|id| (id, format!("10.0.0.{id}:700{id}"))).collect();
        let cp = replica(&d, "10.0.0.2", "control-plane-1", Replica { id: 2, peers: &peers }).unwrap();
        assert_eq!((cp.grpc_listen, cp.http_listen), (at("10.0.0.2:7002"), at("10.0.0.2:0")));
        assert_eq!(cp.replication, Some(ReplicationConfig::new(2, peers.clone())));
        let StoreConfig::Sqlite(sqlite) = &cp.store else { panic!("sqlite") };
        assert_eq!(sqlite.path, std::path::PathBuf::from("control-plane-1.dirigent-registry.sqlite"));
        assert_eq!(cp.placement, PlacementPolicy::Random);
        let err = replica(&d, "10.0.0.2", "control-plane-1", Replica { id: 4, peers: &peers }).unwrap_err();
        assert!(err.to_string().contains("replica address"), "{err}");
    }

    #[test]
    fn workers_split_the_sandbox_port_range() {
        let d = spec("{ kind: dirigent, workers: 3, worker: { sandbox_ports: 30000-30299, runtime: process } }");
        let ports: Vec<String> =
            (0..3).map(|i| worker(&d, "127.0.0.1", "cp:1", i).unwrap().sandbox_ports.to_string()).collect();
        assert_eq!(ports, ["30000-30099", "30100-30199", "30200-30299"]);
        let one = worker(&d, "10.0.0.3", "cp:1", 1).unwrap();
        assert_eq!((one.name.as_deref(), one.control_plane.as_str()), (Some("worker-1"), "cp:1"));
        assert_eq!(
            (one.listen, one.sandbox_host, one.advertise_host.as_str()),
            (at("10.0.0.3:0"), ip("10.0.0.3").unwrap(), "10.0.0.3")
        );
        let d = spec("{ kind: dirigent, workers: 2, worker: { sandbox_ports: 30000-30001 } }");
        let err = worker_in_slot(&d, "127.0.0.1", "cp:1", "worker-0", 0, 3).unwrap_err();
        assert!(err.to_string().contains("sandbox_ports"), "{err}");
    }

    #[test]
    fn a_restart_config_binds_the_announced_addresses() {
        let d = spec("{ kind: dirigent, control_plane: { placement: random } }");
        let announced = json!({ "grpc": "10.0.0.1:4001", "api": "10.0.0.1:4002", "proxy": "10.0.0.1:4003" });
        let ComponentConfig::ControlPlane(cp) =
            ComponentConfig::ControlPlane(control_plane(&d, "10.0.0.1").unwrap()).pinned(&announced)
        else {
            panic!("not a control plane")
        };
        assert_eq!((cp.grpc_listen, cp.http_listen), (at("10.0.0.1:4001"), at("10.0.0.1:4002")));
        assert_eq!(cp.placement, PlacementPolicy::Random);
        let dp = ComponentConfig::DataPlane(data_plane(&d, "10.0.0.1", "cp:1").unwrap());
        let ComponentConfig::DataPlane(dp) = dp.pinned(&json!({ "proxy": "10.0.0.1:4003" })) else { panic!() };
        assert_eq!((dp.proxy_listen, dp.grpc_listen), (at("10.0.0.1:4003"), at("10.0.0.1:0")));
        let s = ComponentConfig::Standalone(standalone(&d, "10.0.0.1").unwrap());
        let ComponentConfig::Standalone(s) = s.pinned(&announced) else { panic!() };
        assert_eq!(s.control_plane.http_listen, at("10.0.0.1:4002"));
        assert_eq!(s.data_plane.proxy_listen, at("10.0.0.1:4003"));
        let w = ComponentConfig::Worker(worker(&d, "10.0.0.1", "cp:1", 0).unwrap());
        assert_eq!(w.pinned(&json!({ "name": "worker-0" })), w, "workers register anew: nothing to pin");
    }

    #[test]
    fn standalone_holds_every_section() {
        let d = spec("{ kind: dirigent, processes: standalone, workers: 4 }");
        let s = standalone(&d, "127.0.0.1").unwrap();
        assert_eq!(s.workers, 4);
        assert_eq!(s.worker.listen, at("127.0.0.1:0"));
        assert_eq!(s.data_plane.proxy_listen, at("127.0.0.1:0"));
        assert_eq!(s.worker.name, None, "the process names its workers");
    }

    #[test]
    fn written_configs_read_back_as_dirigent_reads_them() {
        let d = spec("{ kind: dirigent, worker: { sandbox_ports: 30000-30099 }, data_plane: { queue_timeout: 2s } }");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        let dp = data_plane(&d, "127.0.0.1", "127.0.0.1:4001").unwrap();
        write(&path, &ComponentConfig::DataPlane(dp.clone())).unwrap();
        assert_eq!(contracts::config::load::<DataPlaneConfig>(Some(&path)).unwrap(), dp);
        let w = worker(&d, "127.0.0.1", "127.0.0.1:4001", 1).unwrap();
        write(&path, &ComponentConfig::Worker(w.clone())).unwrap();
        assert_eq!(contracts::config::load::<WorkerConfig>(Some(&path)).unwrap(), w);
        let s = standalone(&d, "127.0.0.1").unwrap();
        write(&path, &ComponentConfig::Standalone(s.clone())).unwrap();
        assert_eq!(contracts::config::load::<StandaloneConfig>(Some(&path)).unwrap(), s);
    }
}
