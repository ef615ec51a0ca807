//! The bundled orchestrator's roles as a run starts them: which `dirigent` processes (components) a run has, what
//! they are called, on which host each goes, and their configs (`config`: typed, checked when the spec is read).
//!
//! Words: a *role* is a `dirigent` subcommand (control plane, data plane, worker, or all three in one `standalone`
//! process); a *component* is one process of a run playing a role, named `control-plane`, `data-plane`,
//! `data-plane-N` or `worker-N`.

pub mod config;

use std::fmt;

use crate::cluster::inventory::{Duty, Inventory};
use crate::spec::{DirigentSpec, Processes};

/// A `dirigent` subcommand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// `dirigent control-plane`.
    ControlPlane,
    /// `dirigent data-plane`.
    DataPlane,
    /// `dirigent worker`.
    Worker,
    /// `dirigent standalone`: every role in one process.
    Standalone,
}

impl Role {
    /// The subcommand, which is also how the ready line and the manifest's events name the role.
    pub fn subcommand(self) -> &'static str {
        match self {
            Role::ControlPlane => "control-plane",
            Role::DataPlane => "data-plane",
            Role::Worker => "worker",
            Role::Standalone => "standalone",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.subcommand())
    }
}

/// `control-plane` for the first control plane and `control-plane-N` for the other replicas, likewise
/// `data-plane` and `data-plane-N`, `worker-N`, `standalone`: the same locally and on a cluster.
pub fn component_name(role: Role, index: usize) -> String {
    match (role, index) {
        (Role::Standalone, _) | (Role::ControlPlane | Role::DataPlane, 0) => role.subcommand().into(),
        _ => format!("{role}-{index}"),
    }
}

/// What a failure may name instead of a component: whichever control-plane replica leads when the failure is due.
pub const LEADER: &str = "control-plane-leader";

/// One component a run starts, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    /// Its name (see [`component_name`]).
    pub name: String,
    /// The role it plays.
    pub role: Role,
    /// The index of its host among the run's hosts.
    pub host: usize,
    /// For a worker: its slice of its host's sandbox port range, `slot` of `slots` (one per worker there); for a
    /// control-plane replica: its place among the replicas on its host (which offsets its gRPC port there).
    pub slot: u32,
    /// How many components of its role share its host.
    pub slots: u32,
}

/// The components of a run, in start order: the control plane (or the standalone process), the data planes, the
/// workers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    components: Vec<Planned>,
}

impl Placement {
    /// Everything on host 0 (this machine): one process per role with `spec.replicas` control planes (default 1)
    /// and `spec.workers` workers, or one standalone process.
    pub fn one_host(spec: &DirigentSpec) -> Self {
        if spec.processes == Processes::Standalone {
            return Placement { components: vec![Self::single(Role::Standalone, 0, 0)] };
        }
        let mut components = Self::spread(Role::ControlPlane, &vec![0; spec.replicas.unwrap_or(1) as usize]);
        components.push(Self::single(Role::DataPlane, 0, 0));
        components.extend(Self::spread(Role::Worker, &vec![0; spec.workers as usize]));
        Placement { components }
    }

    /// The inventory's placement: `replicas` control planes over the control-plane hosts in turn (default: one on
    /// each), a data plane on every data-plane host and a worker on every worker host (hosts indexed as in the
    /// inventory).
    pub fn from_inventory(inventory: &Inventory, replicas: Option<u32>) -> Self {
        let hosts = |duty| (0..inventory.hosts.len()).filter(|&i| inventory.hosts[i].has(duty)).collect::<Vec<_>>();
        let control = hosts(Duty::ControlPlane);
        let replicas = replicas.map_or(control.len(), |n| n as usize);
        let control: Vec<usize> = control.iter().copied().cycle().take(replicas).collect();
        let mut components = Self::spread(Role::ControlPlane, &control);
        components.extend(Self::spread(Role::DataPlane, &hosts(Duty::DataPlane)));
        components.extend(Self::spread(Role::Worker, &hosts(Duty::Worker)));
        Placement { components }
    }

    /// Components of `role`, the N-th on host `hosts[N]`, each with its slot among those sharing its host.
    fn spread(role: Role, hosts: &[usize]) -> Vec<Planned> {
        let on = |host: usize, before: &[usize]| before.iter().filter(|&&h| h == host).count() as u32;
        (0..hosts.len())
            .map(|index| Planned {
                name: component_name(role, index),
                role,
                host: hosts[index],
                slot: on(hosts[index], &hosts[..index]),
                slots: on(hosts[index], hosts),
            })
            .collect()
    }

    fn single(role: Role, index: usize, host: usize) -> Planned {
        Planned { name: component_name(role, index), role, host, slot: 0, slots: 1 }
    }

    /// The components, in start order.
    pub fn components(&self) -> &[Planned] {
        &self.components
    }

    /// Their names, in start order (what failures can name).
    pub fn names(&self) -> Vec<String> {
        self.components.iter().map(|c| c.name.clone()).collect()
    }

    /// How many components play `role`.
    pub fn count(&self, role: Role) -> usize {
        self.components.iter().filter(|c| c.role == role).count()
    }
}

/// The groups a run starts one after the other (each group's components at once): the control plane (or the
/// standalone process) first, whose addresses the others need, then the data planes, then the workers. Stopping
/// goes the other way.
pub const START_ORDER: [&[Role]; 3] = [&[Role::ControlPlane, Role::Standalone], &[Role::DataPlane], &[Role::Worker]];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::dirigent_spec as spec;

    #[test]
    fn components_are_named_alike_everywhere() {
        assert_eq!(component_name(Role::ControlPlane, 0), "control-plane");
        assert_eq!(component_name(Role::DataPlane, 0), "data-plane");
        assert_eq!(component_name(Role::ControlPlane, 2), "control-plane-2");
        assert_eq!(component_name(Role::DataPlane, 2), "data-plane-2");
        assert_eq!(component_name(Role::Worker, 0), "worker-0");
        assert_eq!(component_name(Role::Standalone, 0), "standalone");
    }

    #[test]
    fn one_host_holds_every_worker_in_its_own_slot() {
        let placement = Placement::one_host(&spec("{ kind: dirigent, workers: 3 }"));
        assert_eq!(placement.names(), ["control-plane", "data-plane", "worker-0", "worker-1", "worker-2"]);
        let slots: Vec<(u32, u32)> = placement.components()[2..].iter().map(|c| (c.slot, c.slots)).collect();
        assert_eq!(slots, [(0, 3), (1, 3), (2, 3)]);
        assert!(placement.components().iter().all(|c| c.host == 0));
        let standalone = Placement::one_host(&spec("{ kind: dirigent, processes: standalone, workers: 3 }"));
        assert_eq!(standalone.names(), ["standalone"]);
    }

    #[test]
    fn the_inventory_places_one_component_per_duty_and_host() {
        let text = "user: r\nhosts:\n- { address: a, roles: [loader] }\n- { address: b, roles: [control-plane] }\n\
                    - { address: c, roles: [data-plane, worker] }\n- { address: d, roles: [data-plane] }\n\
                    - { address: e, roles: [worker] }\n";
        let placement = Placement::from_inventory(&Inventory::parse(text).unwrap(), None);
        let placed: Vec<(String, usize, u32, u32)> =
            placement.components().iter().map(|c| (c.name.clone(), c.host, c.slot, c.slots)).collect();
        let expected = [("control-plane", 1), ("data-plane", 2), ("data-plane-1", 3), ("worker-0", 2), ("worker-1", 4)]
            .map(|(name, host)| (name.to_string(), host, 0, 1));
        assert_eq!(placed, expected);
        assert_eq!((placement.count(Role::DataPlane), placement.count(Role::Worker)), (2, 2));
    }

    #[test]
    fn replicas_go_round_the_control_plane_hosts() {
        let text = "user: r\nhosts:\n- { address: l, roles: [loader] }\n- { address: a, roles: [control-plane, worker] }\n\
                    - { address: b, roles: [control-plane, data-plane] }\n";
        let inventory = Inventory::parse(text).unwrap();
        let placed = |replicas| {
            let placement = Placement::from_inventory(&inventory, replicas);
            let control = placement.components().iter().filter(|c| c.role == Role::ControlPlane);
            control.map(|c| (c.name.clone(), c.host, c.slot, c.slots)).collect::<Vec<_>>()
        };
        let one_each = [("control-plane", 1, 0, 1), ("control-plane-1", 2, 0, 1)];
        assert_eq!(placed(None), one_each.map(|(n, h, s, of)| (n.to_string(), h, s, of)));
        let three = [("control-plane", 1, 0, 2), ("control-plane-1", 2, 0, 1), ("control-plane-2", 1, 1, 2)];
        assert_eq!(placed(Some(3)), three.map(|(n, h, s, of)| (n.to_string(), h, s, of)));
        let local = Placement::one_host(&spec("{ kind: dirigent, replicas: 3, workers: 1 }"));
        assert_eq!(local.names(), ["control-plane", "control-plane-1", "control-plane-2", "data-plane", "worker-0"]);
    }
}
