//! The spec's `cluster` (hosts over SSH instead of this machine) and `failures` (roles killed during the load).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::SpecInvalid;
use crate::cluster::inventory::{Inventory, InventoryError, InventoryFile, InventoryInvalid};
use crate::ssh::SessionOptions;

/// Where the platform and the loader run when not on this machine: hosts over SSH, with their roles.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterSpec {
    /// An inventory file (`hosts:` with roles, or the paper's `nodes:` list); relative to the working directory.
    pub inventory_file: Option<PathBuf>,
    /// The inventory written inline (same keys as the file).
    pub inventory: Option<InventoryFile>,
    /// The known_hosts file host keys are checked against (default `~/.ssh/known_hosts`).
    pub known_hosts: Option<PathBuf>,
    /// Accept and record the keys of hosts not yet in `known_hosts` (fresh clusters); a changed key is still refused.
    pub insecure_accept_new_host_keys: bool,
    /// Folder on every host for the binaries (`bin/`) and the runs (`runs/`); relative to the login user's home.
    pub remote_dir: String,
    /// Keep the shipped binaries on the hosts after the experiment, so the next one ships nothing.
    pub keep_binaries: bool,
    /// Hosts worked on at once (preflight, shipping, teardown).
    pub parallelism: usize,
    /// Limit for connecting to one host.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
}

impl Default for ClusterSpec {
    /// No inventory; `faas-toolkit` in the home folder, binaries kept, 16 hosts at once, 10 s to connect.
    fn default() -> Self {
        ClusterSpec {
            inventory_file: None,
            inventory: None,
            known_hosts: None,
            insecure_accept_new_host_keys: false,
            remote_dir: "faas-toolkit".into(),
            keep_binaries: true,
            parallelism: 16,
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// Where the inventory comes from.
enum Source<'a> {
    File(&'a Path),
    Inline(&'a InventoryFile),
}

impl ClusterSpec {
    /// A cluster from an inventory file, everything else default.
    pub fn from_inventory_file(path: PathBuf) -> Self {
        ClusterSpec { inventory_file: Some(path), ..ClusterSpec::default() }
    }

    /// Checks what the types cannot (an inline inventory fully, a file only once it is read); the message names the
    /// key.
    pub fn validate(&self) -> Result<(), SpecInvalid> {
        let source = self.source().map_err(|source| SpecInvalid::Inventory { key: "cluster", source })?;
        if let Source::Inline(inline) = source {
            Inventory::from_file(inline.clone())
                .map_err(|source| SpecInvalid::Inventory { key: "cluster.inventory", source })?;
        }
        let safe = |c: char| c.is_ascii_alphanumeric() || "/._-".contains(c);
        if self.remote_dir.is_empty() || !self.remote_dir.chars().all(safe) || self.remote_dir.contains("..") {
            return Err(SpecInvalid::Rule(format!(
                "cluster.remote_dir '{}' must be a non-empty path of letters, digits, '/', '.', '_' or '-' without '..'",
                self.remote_dir
            )));
        }
        if self.parallelism == 0 {
            return Err(SpecInvalid::Rule("cluster.parallelism must be at least 1".into()));
        }
        Ok(())
    }

    /// The inventory: read from `inventory_file`, or the inline one.
    pub fn inventory(&self) -> Result<Inventory, InventoryError> {
        let source = self.source().map_err(|source| InventoryError::Invalid { path: "cluster".into(), source })?;
        match source {
            Source::File(path) => Inventory::load(path),
            Source::Inline(inline) => Inventory::from_file(inline.clone())
                .map_err(|source| InventoryError::Invalid { path: "cluster.inventory".into(), source }),
        }
    }

    /// Exactly one of `inventory_file` and `inventory`.
    fn source(&self) -> Result<Source<'_>, InventoryInvalid> {
        match (&self.inventory_file, &self.inventory) {
            (Some(path), None) => Ok(Source::File(path)),
            (None, Some(inline)) => Ok(Source::Inline(inline)),
            (Some(_), Some(_)) => Err(InventoryInvalid::FileAndInline),
            (None, None) => Err(InventoryInvalid::NoSource),
        }
    }

    /// The SSH options for every host (a host's own key file still wins).
    pub fn session_options(&self) -> SessionOptions {
        let defaults = SessionOptions::default();
        SessionOptions {
            known_hosts: self.known_hosts.clone().unwrap_or(defaults.known_hosts),
            insecure_accept_new_host_keys: self.insecure_accept_new_host_keys,
            connect_timeout: self.connect_timeout,
            ..defaults
        }
    }
}

/// A failure injected during the load: a role's process killed with SIGKILL, optionally started again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailureSpec {
    /// When, counted from the loader's start.
    #[serde(with = "humantime_serde")]
    pub at: Duration,
    /// The component: `control-plane`, `data-plane` (`data-plane-N` for the N-th of several) or `worker-N`.
    pub kill: String,
    /// Start it again this long after the kill (with its config as before); never, when absent.
    #[serde(default, with = "humantime_serde")]
    pub restart_after: Option<Duration>,
}
