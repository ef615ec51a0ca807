//! The spec's `cluster` (hosts over SSH instead of this machine) and `failures` (roles killed during the load).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ssh::SessionOptions;
use crate::ssh::inventory::{Inventory, InventoryError, InventoryFile};

/// Where the platform and the loader run when not on this machine: hosts over SSH, with their roles.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSpec {
    /// An inventory file (`hosts:` with roles, or the paper's `nodes:` list); relative to the working directory.
    #[serde(default)]
    pub inventory_file: Option<PathBuf>,
    /// The inventory written inline (same keys as the file).
    #[serde(default)]
    pub inventory: Option<InventoryFile>,
    /// The known_hosts file host keys are checked against (default `~/.ssh/known_hosts`).
    #[serde(default)]
    pub known_hosts: Option<PathBuf>,
    /// Accept and record the keys of hosts not yet in `known_hosts` (fresh clusters); a changed key is still refused.
    #[serde(default)]
    pub insecure_accept_new_host_keys: bool,
    /// Folder on every host for the binaries (`bin/`) and the runs (`runs/`); relative to the login user's home.
    #[serde(default = "default_remote_dir")]
    pub remote_dir: String,
    /// Keep the shipped binaries on the hosts after the experiment, so the next one ships nothing.
    #[serde(default = "yes")]
    pub keep_binaries: bool,
    /// Hosts worked on at once (preflight, shipping, teardown).
    #[serde(default = "default_parallelism")]
    pub parallelism: usize,
    /// Limit for connecting to one host.
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
}

fn default_remote_dir() -> String {
    "faas-toolkit".into()
}

fn yes() -> bool {
    true
}

fn default_parallelism() -> usize {
    16
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}

impl ClusterSpec {
    /// A cluster from an inventory file, everything else default.
    pub fn from_inventory_file(path: PathBuf) -> Self {
        ClusterSpec {
            inventory_file: Some(path),
            inventory: None,
            known_hosts: None,
            insecure_accept_new_host_keys: false,
            remote_dir: default_remote_dir(),
            keep_binaries: true,
            parallelism: default_parallelism(),
            connect_timeout: default_connect_timeout(),
        }
    }

    /// Checks what the types cannot; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        match (&self.inventory_file, &self.inventory) {
            (Some(_), Some(_)) => return Err("cluster: give `inventory_file` or `inventory`, not both".into()),
            (None, None) => return Err("cluster: give `inventory_file` or an inline `inventory`".into()),
            (None, Some(inline)) => {
                Inventory::from_file(inline.clone()).map_err(|e| format!("cluster.inventory: {e}"))?;
            }
            (Some(_), None) => {}
        }
        let safe = |c: char| c.is_ascii_alphanumeric() || "/._-".contains(c);
        if self.remote_dir.is_empty() || !self.remote_dir.chars().all(safe) || self.remote_dir.contains("..") {
            return Err(format!(
                "cluster.remote_dir '{}' must be a non-empty path of letters, digits, '/', '.', '_' or '-' without '..'",
                self.remote_dir
            ));
        }
        if self.parallelism == 0 {
            return Err("cluster.parallelism must be at least 1".into());
        }
        Ok(())
    }

    /// The inventory: read from `inventory_file`, or the inline one.
    pub fn inventory(&self) -> Result<Inventory, InventoryError> {
        match (&self.inventory_file, &self.inventory) {
            (Some(path), _) => Inventory::load(path),
            (None, Some(inline)) => Inventory::from_file(inline.clone())
                .map_err(|message| InventoryError::Invalid { path: "cluster.inventory".into(), message }),
            (None, None) => Err(InventoryError::Invalid {
                path: "cluster".into(),
                message: "no inventory_file or inventory".into(),
            }),
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
