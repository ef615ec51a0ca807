//! The hosts of a cluster and the roles each plays. Either spelled out:
//!
//! ```yaml
//! user: root                    # defaults for hosts that do not say
//! key_file: ~/.ssh/id_ed25519
//! hosts:
//!   - { address: 10.0.0.1, roles: [loader] }
//!   - { address: 10.0.0.2, port: 2222, roles: [control-plane, data-plane] }
//!   - { address: 10.0.0.3, user: ubuntu, roles: [worker] }
//! ```
//!
//! or as the Dirigent paper's node list with its default placement (node0 loader, node1 control plane, node2 data
//! plane, the rest workers): `nodes: "user@node0 user@node1 user@node2 user@node3"`.
//!
//! What the file calls a host's `roles` are its [`Duty`]s here: running the loader or one of the orchestrator's
//! roles (the word *role* in this crate means a `dirigent` subcommand, see [`crate::roles`]).

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ssh::Destination;

/// The default SSH port.
pub const DEFAULT_PORT: u16 = 22;

/// The smallest paper-style node list: a loader, a control plane, a data plane and one worker.
pub const MIN_NODES: usize = 4;

/// What a host does in an experiment (the inventory's `roles` key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Duty {
    /// Runs the loader (the load generator).
    Loader,
    /// Runs the control plane.
    ControlPlane,
    /// Runs a data plane.
    DataPlane,
    /// Runs a worker (sandboxes).
    Worker,
}

impl fmt::Display for Duty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Duty::Loader => "loader",
            Duty::ControlPlane => "control-plane",
            Duty::DataPlane => "data-plane",
            Duty::Worker => "worker",
        })
    }
}

/// One host as written in the file (defaults not yet applied).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostEntry {
    /// Host name or IP address.
    pub address: String,
    /// SSH port (default: the file's `port`, else 22).
    #[serde(default)]
    pub port: Option<u16>,
    /// Login user (default: the file's `user`).
    #[serde(default)]
    pub user: Option<String>,
    /// Private key (default: the file's `key_file`, else the ssh-agent).
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Its duties (the file's `roles`).
    #[serde(rename = "roles")]
    pub duties: Vec<Duty>,
}

/// A paper-style node list: one string (`"user@node0 user@node1"`) or a YAML list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum NodeList {
    /// Whitespace-separated `user@address[:port]` words.
    Line(String),
    /// One `user@address[:port]` per item.
    List(Vec<String>),
}

/// The inventory as written: `hosts` or `nodes`, plus defaults.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InventoryFile {
    /// Default login user.
    #[serde(default)]
    pub user: Option<String>,
    /// Default SSH port.
    #[serde(default)]
    pub port: Option<u16>,
    /// Default private key.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Hosts with explicit roles.
    #[serde(default)]
    pub hosts: Vec<HostEntry>,
    /// The paper's shortcut, with the default placement.
    #[serde(default)]
    pub nodes: Option<NodeList>,
}

/// One host, resolved and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryHost {
    /// Where to connect.
    pub destination: Destination,
    /// Private key; `None` means the ssh-agent.
    pub key_file: Option<PathBuf>,
    /// Its duties (sorted, no duplicates).
    pub duties: Vec<Duty>,
}

impl InventoryHost {
    /// Whether it has `duty`.
    pub fn has(&self, duty: Duty) -> bool {
        self.duties.contains(&duty)
    }
}

/// A checked inventory: one loader, one control plane, at least one data plane and one worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inventory {
    /// The hosts, in file order.
    pub hosts: Vec<InventoryHost>,
}

/// Why an inventory is not usable.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    /// "cannot read inventory {path}", with the cause.
    #[error("cannot read inventory {path}", path = .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// "inventory {path}", with what is wrong.
    #[error("inventory {path}", path = .path.display())]
    Invalid {
        /// The file, or the spec key of an inline inventory.
        path: PathBuf,
        /// What is wrong and where (line, key or host).
        source: InventoryInvalid,
    },
}

/// What is wrong with an inventory's content; the message names the key, the host or the line.
#[derive(Debug, thiserror::Error)]
pub enum InventoryInvalid {
    /// The YAML does not fit the inventory's keys and types (the message names line, column and key).
    #[error(transparent)]
    Yaml(contracts::yaml::YamlError),
    /// "give either `hosts` (explicit roles) or `nodes` (paper placement), not both".
    #[error("give either `hosts` (explicit roles) or `nodes` (paper placement), not both")]
    HostsAndNodes,
    /// "no hosts: add `hosts` (explicit roles) or `nodes` (paper placement)".
    #[error("no hosts: add `hosts` (explicit roles) or `nodes` (paper placement)")]
    NoHosts,
    /// "give `inventory_file` or `inventory`, not both".
    #[error("give `inventory_file` or `inventory`, not both")]
    FileAndInline,
    /// "give `inventory_file` or an inline `inventory`".
    #[error("give `inventory_file` or an inline `inventory`")]
    NoSource,
    /// "host {address}:{port} is listed twice; give each host once with all its roles".
    #[error("host {address}:{port} is listed twice; give each host once with all its roles")]
    Twice {
        /// Its address.
        address: String,
        /// Its port.
        port: u16,
    },
    /// "exactly one host needs role `{duty}`, found {found}".
    #[error("exactly one host needs role `{duty}`, found {found}")]
    NotOne {
        /// The duty.
        duty: Duty,
        /// How many hosts have it.
        found: usize,
    },
    /// "at least one host needs role `{duty}`, found none".
    #[error("at least one host needs role `{duty}`, found none")]
    Nobody {
        /// The duty.
        duty: Duty,
    },
    /// "`nodes` lists {count} host(s); the paper's placement needs at least 4 (...)".
    #[error(
        "`nodes` lists {count} host(s); the paper's placement needs at least {MIN_NODES} (loader, control plane, data \
         plane, then workers)"
    )]
    TooFewNodes {
        /// How many it lists.
        count: usize,
    },
    /// "nodes[{index}] `{word}`: {problem}".
    #[error("nodes[{index}] `{word}`: {problem}")]
    Node {
        /// Its position in the list.
        index: usize,
        /// The word as written.
        word: String,
        /// What is wrong with it.
        problem: NodeProblem,
    },
    /// "{list}[{index}] ({address}): {problem}".
    #[error("{list}[{index}] ({address}): {problem}")]
    Host {
        /// `hosts` or `nodes`.
        list: &'static str,
        /// Its position in the list.
        index: usize,
        /// Its address as written.
        address: String,
        /// What is wrong with it.
        problem: HostProblem,
    },
}

/// What is wrong with a word of a `nodes` list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeProblem {
    /// "expected user@address[:port]".
    #[error("expected user@address[:port]")]
    NoUser,
    /// "port `{0}` is not a number 1-65535".
    #[error("port `{0}` is not a number 1-65535")]
    Port(String),
}

/// What is wrong with a host's entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostProblem {
    /// "`address` is empty".
    #[error("`address` is empty")]
    NoAddress,
    /// "`address` `{0}` is not a host name or IP address".
    #[error("`address` `{0}` is not a host name or IP address")]
    Address(String),
    /// "no `user` (set it on the host or at the top of the file)".
    #[error("no `user` (set it on the host or at the top of the file)")]
    NoUser,
    /// "`user` `{0}` is not a user name".
    #[error("`user` `{0}` is not a user name")]
    User(String),
    /// "`port` must be 1-65535".
    #[error("`port` must be 1-65535")]
    Port,
    /// "`roles` is empty; give at least one of loader, control-plane, data-plane, worker".
    #[error("`roles` is empty; give at least one of loader, control-plane, data-plane, worker")]
    NoDuties,
}

impl Inventory {
    /// Reads and checks an inventory YAML file.
    pub fn load(path: &Path) -> Result<Self, InventoryError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| InventoryError::Read { path: path.into(), source })?;
        Self::parse(&text).map_err(|source| InventoryError::Invalid { path: path.into(), source })
    }

    /// Parses and checks inventory YAML.
    pub fn parse(text: &str) -> Result<Self, InventoryInvalid> {
        let file: InventoryFile = contracts::yaml::parse(text).map_err(InventoryInvalid::Yaml)?;
        Self::from_file(file)
    }

    /// Applies defaults and checks the duties.
    pub fn from_file(file: InventoryFile) -> Result<Self, InventoryInvalid> {
        let defaults = Defaults { user: file.user.as_deref(), port: file.port, key_file: file.key_file.as_deref() };
        let hosts = match (file.hosts.is_empty(), file.nodes) {
            (false, Some(_)) => return Err(InventoryInvalid::HostsAndNodes),
            (true, None) => return Err(InventoryInvalid::NoHosts),
            (true, Some(NodeList::Line(line))) => {
                paper_placement(&line.split_whitespace().collect::<Vec<_>>(), &defaults)?
            }
            (true, Some(NodeList::List(list))) => {
                paper_placement(&list.iter().map(String::as_str).collect::<Vec<_>>(), &defaults)?
            }
            (false, None) => file
                .hosts
                .iter()
                .enumerate()
                .map(|(i, entry)| resolve("hosts", i, entry, &defaults))
                .collect::<Result<_, _>>()?,
        };
        let inventory = Inventory { hosts };
        inventory.check()?;
        Ok(inventory)
    }

    /// The paper's shortcut: `user@node0 user@node1 ...` with node0 loader, node1 control plane, node2 data plane
    /// and the rest workers; `key_file` for all (`None`: the agent).
    pub fn from_node_list(list: &str, key_file: Option<&Path>) -> Result<Self, InventoryInvalid> {
        let defaults = Defaults { user: None, port: None, key_file };
        let inventory = Inventory { hosts: paper_placement(&list.split_whitespace().collect::<Vec<_>>(), &defaults)? };
        inventory.check()?;
        Ok(inventory)
    }

    /// The hosts with `duty`, in file order.
    pub fn with_duty(&self, duty: Duty) -> impl Iterator<Item = &InventoryHost> {
        self.hosts.iter().filter(move |host| host.has(duty))
    }

    fn check(&self) -> Result<(), InventoryInvalid> {
        let mut seen = HashSet::new();
        for host in &self.hosts {
            let (address, port) = (&host.destination.address, host.destination.port);
            if !seen.insert((address, port)) {
                return Err(InventoryInvalid::Twice { address: address.clone(), port });
            }
        }
        let count = |duty| self.with_duty(duty).count();
        if count(Duty::Loader) != 1 {
            return Err(InventoryInvalid::NotOne { duty: Duty::Loader, found: count(Duty::Loader) });
        }
        // Several control-plane hosts hold the replicas (`platform.replicas`, one on each by default).
        for duty in [Duty::ControlPlane, Duty::DataPlane, Duty::Worker] {
            if count(duty) == 0 {
                return Err(InventoryInvalid::Nobody { duty });
            }
        }
        Ok(())
    }
}

struct Defaults<'a> {
    user: Option<&'a str>,
    port: Option<u16>,
    key_file: Option<&'a Path>,
}

/// Entry `index` of the list `list` (`hosts` or `nodes`, which error messages name) with the defaults applied.
fn resolve(
    list: &'static str,
    index: usize,
    entry: &HostEntry,
    defaults: &Defaults,
) -> Result<InventoryHost, InventoryInvalid> {
    let invalid = |problem| InventoryInvalid::Host { list, index, address: entry.address.clone(), problem };
    check_address(&entry.address).map_err(invalid)?;
    let user = entry.user.as_deref().or(defaults.user).ok_or_else(|| invalid(HostProblem::NoUser))?;
    check_user(user).map_err(invalid)?;
    let port = entry.port.or(defaults.port).unwrap_or(DEFAULT_PORT);
    if port == 0 {
        return Err(invalid(HostProblem::Port));
    }
    if entry.duties.is_empty() {
        return Err(invalid(HostProblem::NoDuties));
    }
    let mut duties = entry.duties.clone();
    duties.sort();
    duties.dedup();
    let key_file = entry.key_file.clone().or_else(|| defaults.key_file.map(Path::to_path_buf));
    Ok(InventoryHost {
        destination: Destination { user: user.into(), address: entry.address.clone(), port },
        key_file,
        duties,
    })
}

fn paper_placement(words: &[&str], defaults: &Defaults) -> Result<Vec<InventoryHost>, InventoryInvalid> {
    if words.len() < MIN_NODES {
        return Err(InventoryInvalid::TooFewNodes { count: words.len() });
    }
    words
        .iter()
        .enumerate()
        .map(|(index, word)| {
            let duty = match index {
                0 => Duty::Loader,
                1 => Duty::ControlPlane,
                2 => Duty::DataPlane,
                _ => Duty::Worker,
            };
            let entry = parse_node(word, defaults).map_err(|problem| InventoryInvalid::Node {
                index,
                word: (*word).into(),
                problem,
            })?;
            resolve("nodes", index, &HostEntry { duties: vec![duty], ..entry }, defaults)
        })
        .collect()
}

/// `user@address`, `user@address:port`, or a bare address when a default user exists.
fn parse_node(word: &str, defaults: &Defaults) -> Result<HostEntry, NodeProblem> {
    let (user, rest) = match word.split_once('@') {
        Some((user, rest)) => (Some(user.to_string()), rest),
        None if defaults.user.is_some() => (None, word),
        None => return Err(NodeProblem::NoUser),
    };
    let (address, port) = match rest.rsplit_once(':') {
        Some((address, port)) if !address.contains(':') => {
            (address, Some(port.parse::<u16>().map_err(|_| NodeProblem::Port(port.into()))?))
        }
        _ => (rest, None),
    };
    Ok(HostEntry { address: address.into(), port, user, key_file: None, duties: Vec::new() })
}

fn check_address(address: &str) -> Result<(), HostProblem> {
    if address.is_empty() {
        Err(HostProblem::NoAddress)
    } else if address.chars().any(|c| c.is_whitespace() || c == '@' || c == '/') {
        Err(HostProblem::Address(address.into()))
    } else {
        Ok(())
    }
}

fn check_user(user: &str) -> Result<(), HostProblem> {
    if user.is_empty() || user.chars().any(|c| c.is_whitespace() || c == '@' || c == ':') {
        Err(HostProblem::User(user.into()))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_paper_list_gets_the_default_placement() {
        let inventory = Inventory::from_node_list("u@node0 u@node1 u@node2 u@node3 u@node4", None).unwrap();
        let roles: Vec<_> = inventory.hosts.iter().map(|h| h.duties.clone()).collect();
        assert_eq!(
            roles,
            [
                vec![Duty::Loader],
                vec![Duty::ControlPlane],
                vec![Duty::DataPlane],
                vec![Duty::Worker],
                vec![Duty::Worker]
            ]
        );
        assert_eq!(inventory.hosts[0].destination.to_string(), "u@node0:22");
        assert_eq!(inventory.with_duty(Duty::Worker).count(), 2);
    }

    #[test]
    fn a_short_paper_list_is_refused() {
        let error = Inventory::from_node_list("u@a u@b u@c", None).unwrap_err().to_string();
        assert!(error.contains("lists 3 host(s)") && error.contains("at least 4"), "{error}");
    }

    #[test]
    fn node_words_may_carry_a_port_and_need_a_user() {
        let inventory = Inventory::from_node_list("u@a:2222 u@b u@c u@d", Some(Path::new("/k"))).unwrap();
        assert_eq!(inventory.hosts[0].destination.port, 2222);
        assert_eq!(inventory.hosts[0].key_file.as_deref(), Some(Path::new("/k")));
        let error = Inventory::from_node_list("a u@b u@c u@d", None).unwrap_err().to_string();
        assert!(error.contains("nodes[0] `a`") && error.contains("user@address"), "{error}");
        let error = Inventory::from_node_list("u@a:x u@b u@c u@d", None).unwrap_err().to_string();
        assert!(error.contains("port `x`"), "{error}");
    }

    #[test]
    fn nodes_in_yaml_as_a_line_or_a_list() {
        let line = Inventory::parse("nodes: \"root@n0 root@n1 root@n2 root@n3\"\nkey_file: /k\n").unwrap();
        let list = Inventory::parse("user: root\nkey_file: /k\nnodes: [n0, n1, n2, n3]\n").unwrap();
        assert_eq!(line, list);
        assert_eq!(list.hosts[3].destination.to_string(), "root@n3:22");
    }

    #[test]
    fn explicit_hosts_with_defaults() {
        let text = "user: root\nport: 2200\nkey_file: /k\nhosts:\n\
                    - { address: a, roles: [loader] }\n\
                    - { address: b, port: 22, user: ubuntu, key_file: /other, roles: [data-plane, control-plane] }\n\
                    - { address: c, roles: [worker, worker] }\n";
        let inventory = Inventory::parse(text).unwrap();
        assert_eq!(inventory.hosts[0].destination.to_string(), "root@a:2200");
        assert_eq!(inventory.hosts[1].destination.to_string(), "ubuntu@b:22");
        assert_eq!(inventory.hosts[1].key_file.as_deref(), Some(Path::new("/other")));
        assert_eq!(inventory.hosts[1].duties, [Duty::ControlPlane, Duty::DataPlane]);
        assert_eq!(inventory.hosts[2].duties, [Duty::Worker]);
        assert_eq!(inventory.hosts[2].key_file.as_deref(), Some(Path::new("/k")));
    }

    #[test]
    fn unknown_keys_and_roles_are_refused() {
        let error = Inventory::parse("user: root\nhosts:\n- { address: a, roles: [loader], colour: red }\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("colour"), "{error}");
        let error =
            Inventory::parse("user: root\nhosts:\n- { address: a, roles: [scheduler] }\n").unwrap_err().to_string();
        assert!(error.contains("scheduler"), "{error}");
        let error = Inventory::parse("users: root\nnodes: [a, b, c, d]\n").unwrap_err().to_string();
        assert!(error.contains("users"), "{error}");
    }

    #[test]
    fn validation_names_the_host_and_key() {
        let error = Inventory::parse("hosts:\n- { address: a, roles: [loader] }\n").unwrap_err().to_string();
        assert!(error.contains("hosts[0] (a)") && error.contains("`user`"), "{error}");
        let error = Inventory::parse("user: r\nhosts:\n- { address: a, roles: [] }\n").unwrap_err().to_string();
        assert!(error.contains("hosts[0] (a)") && error.contains("`roles`"), "{error}");
        let error =
            Inventory::parse("user: r\nhosts:\n- { address: 'a b', roles: [worker] }\n").unwrap_err().to_string();
        assert!(error.contains("`address`"), "{error}");
        let error =
            Inventory::parse("user: r\nhosts:\n- { address: a, port: 0, roles: [worker] }\n").unwrap_err().to_string();
        assert!(error.contains("`port`"), "{error}");
    }

    #[test]
    fn role_counts_are_checked() {
        let all = "user: r\nhosts:\n- { address: a, roles: [loader, control-plane, data-plane, worker] }\n";
        assert_eq!(Inventory::parse(all).unwrap().hosts.len(), 1);
        let two_loaders = "user: r\nhosts:\n- { address: a, roles: [loader, control-plane, data-plane, worker] }\n\
                           - { address: b, roles: [loader] }\n";
        let error = Inventory::parse(two_loaders).unwrap_err().to_string();
        assert!(error.contains("exactly one host needs role `loader`, found 2"), "{error}");
        let no_worker = "user: r\nhosts:\n- { address: a, roles: [loader, control-plane, data-plane] }\n";
        let error = Inventory::parse(no_worker).unwrap_err().to_string();
        assert!(error.contains("role `worker`"), "{error}");
        let twice = "user: r\nhosts:\n- { address: a, roles: [loader, control-plane, data-plane, worker] }\n\
                     - { address: a, roles: [worker] }\n";
        assert!(Inventory::parse(twice).unwrap_err().to_string().contains("listed twice"));
    }

    #[test]
    fn hosts_and_nodes_together_or_neither_are_refused() {
        let both = "user: r\nnodes: [a, b, c, d]\nhosts:\n- { address: e, roles: [worker] }\n";
        assert!(Inventory::parse(both).unwrap_err().to_string().contains("not both"));
        assert!(Inventory::parse("user: r\n").unwrap_err().to_string().contains("no hosts"));
    }

    #[test]
    fn inventory_files_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inventory.yaml");
        std::fs::write(&path, "nodes: [a]\nuser: r\n").unwrap();
        let error = crate::error_chain(&Inventory::load(&path).unwrap_err());
        assert!(error.contains("inventory.yaml") && error.contains("at least 4"), "{error}");
    }
}
