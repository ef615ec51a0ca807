//! `worker.containerd`: where the `containerd` runtime finds containerd, which OCI runtime it asks for, and the
//! CNI network its sandboxes join.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The OCI runtime containerd's runc shim drives (its `BinaryName`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OciRuntime {
    /// runc, containerd's default.
    #[default]
    Runc,
    /// crun, a drop-in replacement written in C.
    Crun,
    /// gVisor's runsc (a user-space kernel).
    Runsc,
}

impl OciRuntime {
    /// The binary the shim runs.
    pub fn binary(self) -> &'static str {
        match self {
            Self::Runc => "runc",
            Self::Crun => "crun",
            Self::Runsc => "runsc",
        }
    }
}

/// Settings of the `containerd` runtime (YAML, under `worker.containerd`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContainerdConfig {
    /// containerd's gRPC socket.
    pub socket: PathBuf,
    /// The containerd namespace sandboxes live in (images must be imported into it).
    pub namespace: String,
    /// The snapshotter that prepares root filesystems.
    pub snapshotter: String,
    /// The OCI runtime the shim drives.
    pub oci_runtime: OciRuntime,
    /// Where the CNI plugins (`bridge`, `host-local`) are.
    pub cni_bin_dir: PathBuf,
    /// The sandboxes' subnet, `a.b.c.d/len`; on a cluster every worker needs its own (routed per worker).
    pub subnet: String,
    /// The Linux bridge sandboxes' veths join (the bridge holds the subnet's first address as gateway).
    pub bridge: String,
    /// Where IP leases (host-local IPAM) are kept; workers sharing a subnet must share it.
    pub ipam_dir: PathBuf,
    /// The port the function listens on inside its sandbox (given to it as `PORT`).
    pub sandbox_port: u16,
    /// Network namespaces kept attached ahead of time, so a cold start does not wait for the CNI plugin (0: none).
    pub network_pool: usize,
}

impl Default for ContainerdConfig {
    fn default() -> Self {
        Self {
            socket: "/run/containerd/containerd.sock".into(),
            namespace: "dirigent".into(),
            snapshotter: "overlayfs".into(),
            oci_runtime: OciRuntime::default(),
            cni_bin_dir: "/usr/lib/cni".into(),
            subnet: "10.240.0.0/24".into(),
            bridge: "dirigent0".into(),
            ipam_dir: "/var/lib/dirigent/cni".into(),
            sandbox_port: 8080,
            network_pool: 4,
        }
    }
}

/// A `worker.containerd` value the types allow but the runtime cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContainerdConfigError {
    /// the subnet is not `a.b.c.d/len`
    #[error("`subnet` = {0:?} is not an IPv4 subnet like 10.240.0.0/24 (prefix length 8 to 30)")]
    Subnet(String),
    /// the bridge name is not a Linux interface name
    #[error("`bridge` = {0:?} is not an interface name: 1 to 15 characters, no '/', ':' or whitespace")]
    Bridge(String),
    /// the namespace is empty
    #[error("`namespace` is empty; give a containerd namespace such as dirigent")]
    Namespace,
    /// the sandbox port is 0
    #[error("`sandbox_port` must be a port from 1 to 65535")]
    SandboxPort,
    /// the pool is larger than the subnet can address
    #[error("`network_pool` = {0} is more than 1024; a pool that large holds addresses no sandbox uses")]
    NetworkPool(usize),
}

impl ContainerdConfig {
    /// Checks the subnet, bridge name, namespace and port.
    pub fn validate(&self) -> Result<(), ContainerdConfigError> {
        if parse_subnet(&self.subnet).is_none() {
            return Err(ContainerdConfigError::Subnet(self.subnet.clone()));
        }
        let bad_char = |c: char| c == '/' || c == ':' || c.is_whitespace();
        if self.bridge.is_empty() || self.bridge.len() > 15 || self.bridge.chars().any(bad_char) {
            return Err(ContainerdConfigError::Bridge(self.bridge.clone()));
        }
        if self.namespace.trim().is_empty() {
            return Err(ContainerdConfigError::Namespace);
        }
        if self.sandbox_port == 0 {
            return Err(ContainerdConfigError::SandboxPort);
        }
        if self.network_pool > 1024 {
            return Err(ContainerdConfigError::NetworkPool(self.network_pool));
        }
        Ok(())
    }
}

/// `a.b.c.d/len` as its address and prefix length, for prefixes that leave room for a gateway and sandboxes.
pub fn parse_subnet(text: &str) -> Option<(Ipv4Addr, u8)> {
    let (address, prefix) = text.trim().split_once('/')?;
    let prefix: u8 = prefix.parse().ok()?;
    let address: Ipv4Addr = address.parse().ok()?;
    (8..=30).contains(&prefix).then_some((address, prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_valid_and_bad_values_name_their_key() {
        assert_eq!(ContainerdConfig::default().validate(), Ok(()));
        let with = |edit: fn(&mut ContainerdConfig)| {
            let mut config = ContainerdConfig::default();
            edit(&mut config);
            config.validate().unwrap_err().to_string()
        };
        assert!(with(|c| c.subnet = "10.0.0.0/31".into()).contains("`subnet`"));
        assert!(with(|c| c.subnet = "10.0.0/24".into()).contains("`subnet`"));
        assert!(with(|c| c.bridge = "a-very-long-bridge-name".into()).contains("`bridge`"));
        assert!(with(|c| c.namespace = " ".into()).contains("`namespace`"));
        assert!(with(|c| c.sandbox_port = 0).contains("`sandbox_port`"));
    }
}
