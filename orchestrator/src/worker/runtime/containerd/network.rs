//! A sandbox's network: its own network namespace, joined to the worker's bridge by the CNI `bridge` plugin with
//! an address from `host-local` IPAM, so the data plane reaches it at that address.
//!
//! The namespace is made here (a thread `unshare`s and its namespace is bind-mounted under `/run/netns`, as
//! `ip netns add` does) rather than by running `ip`: it saves a process per sandbox.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use tokio::io::AsyncWriteExt;

use contracts::config::ContainerdConfig;

/// Where named network namespaces are mounted (`ip netns` finds them there too).
pub const NETNS_DIR: &str = "/run/netns";

/// Setting up or tearing down a sandbox's network failed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NetworkError(pub String);

/// Sandbox networks on one host.
pub trait SandboxNetwork: Send + Sync + 'static {
    /// The network namespace `name` will have (the runtime spec names it before it exists).
    fn namespace_path(&self, name: &str) -> PathBuf;
    /// Creates namespace `name`, joins it to the bridge and returns the sandbox's address.
    fn attach(&self, name: &str) -> BoxFuture<'_, Result<IpAddr, NetworkError>>;
    /// Releases the address and removes the veth and the namespace; what is already gone is no error.
    fn detach(&self, name: &str) -> BoxFuture<'_, Result<(), NetworkError>>;
    /// A namespace attached ahead of time (its name and address), if one is ready; taking one starts preparing
    /// the next, so a cold start does not wait for the CNI plugin.
    fn take_prepared(&self) -> Option<(String, IpAddr)>;
    /// At start: removes the prepared namespaces a dead worker left, then prepares the pool.
    fn prepare(&self) -> BoxFuture<'_, ()>;
    /// Removes the prepared namespaces, and the bridge when no sandbox uses it any more (worker shutdown).
    fn shutdown(&self) -> BoxFuture<'_, ()>;
}

/// [`SandboxNetwork`] through the CNI plugins of `cni_bin_dir`, with a pool of `network_pool` namespaces attached
/// ahead of time. Pooled namespaces are named `<namespace>-pool-<pid>-<n>`: the worker's process id tells a
/// restarted worker which ones a dead worker left.
#[derive(Clone)]
pub struct CniNetwork {
    inner: Arc<Cni>,
}

struct Cni {
    config: ContainerdConfig,
    netns_dir: PathBuf,
    pool: Mutex<VecDeque<(String, IpAddr)>>,
    /// How many pooled namespaces are being attached now.
    filling: tokio::sync::watch::Sender<usize>,
    /// Set at shutdown: no more are prepared, and one that finishes attaching is removed at once.
    closed: AtomicBool,
    next: AtomicU64,
}

impl CniNetwork {
    /// A network after `config` (subnet, bridge, plugin and lease folders, pool size).
    pub fn new(config: &ContainerdConfig) -> Self {
        let cni = Cni {
            config: config.clone(),
            netns_dir: NETNS_DIR.into(),
            pool: Mutex::default(),
            filling: tokio::sync::watch::Sender::new(0),
            closed: AtomicBool::new(false),
            next: AtomicU64::new(0),
        };
        Self { inner: Arc::new(cni) }
    }

    fn pool_prefix(&self) -> String {
        format!("{}-pool-", self.inner.config.namespace)
    }

    fn pool(&self) -> std::sync::MutexGuard<'_, VecDeque<(String, IpAddr)>> {
        self.inner.pool.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts attaching pooled namespaces until the pool (with those under way) is full.
    fn refill(&self) {
        let wanted = self.inner.config.network_pool;
        let mut started = 0;
        self.inner.filling.send_modify(|filling| {
            let have = self.pool().len() + *filling;
            started = wanted.saturating_sub(have);
            *filling += started;
        });
        if self.inner.closed.load(Ordering::SeqCst) {
            self.inner.filling.send_modify(|filling| *filling -= started);
            return;
        }
        for _ in 0..started {
            let n = self.inner.next.fetch_add(1, Ordering::Relaxed);
            let name = format!("{}{}-{n}", self.pool_prefix(), std::process::id());
            let network = self.clone();
            tokio::spawn(async move {
                match network.attach(&name).await {
                    Ok(_) if network.inner.closed.load(Ordering::SeqCst) => drop(network.detach(&name).await),
                    Ok(ip) => network.pool().push_back((name, ip)),
                    Err(err) => tracing::warn!(%err, "could not prepare a sandbox network"),
                }
                network.inner.filling.send_modify(|filling| *filling -= 1);
            });
        }
    }

    /// The pooled namespaces of workers no longer running (their process id in the name is gone).
    fn stale_pooled(&self) -> Vec<String> {
        let prefix = self.pool_prefix();
        let names = std::fs::read_dir(&self.inner.netns_dir).into_iter().flatten().filter_map(|entry| entry.ok());
        let names = names.filter_map(|entry| entry.file_name().into_string().ok());
        names
            .filter(|name| {
                let pid = name.strip_prefix(&prefix).and_then(|rest| rest.split('-').next());
                pid.and_then(|pid| pid.parse::<u32>().ok())
                    .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
            })
            .collect()
    }

    /// The network's CNI configuration (what `bridge` reads on stdin).
    fn conf(&self) -> String {
        serde_json::json!({
            "cniVersion": "1.0.0",
            "name": self.inner.config.bridge,
            "type": "bridge",
            "bridge": self.inner.config.bridge,
            "isGateway": true,
            "ipam": {
                "type": "host-local",
                "ranges": [[{ "subnet": self.inner.config.subnet }]],
                "dataDir": self.inner.config.ipam_dir,
            },
        })
        .to_string()
    }

    /// Runs the bridge plugin with `command` (ADD or DEL) for the sandbox; its stdout on success.
    async fn plugin(&self, command: &str, name: &str) -> Result<Vec<u8>, NetworkError> {
        let plugin = self.inner.config.cni_bin_dir.join("bridge");
        let mut child = tokio::process::Command::new(&plugin)
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", name)
            .env("CNI_NETNS", self.namespace_path(name))
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", &self.inner.config.cni_bin_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|err| {
                NetworkError(format!(
                    "cannot run the CNI plugin {} ({err}): install containernetworking-plugins or set \
                     containerd.cni_bin_dir",
                    plugin.display()
                ))
            })?;
        if let Some(mut stdin) = child.stdin.take() {
            let written = stdin.write_all(self.conf().as_bytes()).await;
            drop(stdin);
            written.map_err(|err| NetworkError(format!("writing to the CNI plugin: {err}")))?;
        }
        let output =
            child.wait_with_output().await.map_err(|err| NetworkError(format!("waiting for the CNI plugin: {err}")))?;
        if output.status.success() {
            return Ok(output.stdout);
        }
        Err(NetworkError(format!(
            "CNI {command} of {name} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout).trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

impl SandboxNetwork for CniNetwork {
    fn namespace_path(&self, name: &str) -> PathBuf {
        self.inner.netns_dir.join(name)
    }

    fn attach(&self, name: &str) -> BoxFuture<'_, Result<IpAddr, NetworkError>> {
        let name = name.to_owned();
        async move {
            let path = self.namespace_path(&name);
            tokio::task::spawn_blocking(move || create_namespace(&path))
                .await
                .map_err(|err| NetworkError(format!("creating the network namespace: {err}")))??;
            let attached = match self.plugin("ADD", &name).await {
                Ok(result) => address_of(&result),
                Err(err) => Err(err),
            };
            if attached.is_err() {
                let _ = self.detach(&name).await;
            }
            attached
        }
        .boxed()
    }

    fn detach(&self, name: &str) -> BoxFuture<'_, Result<(), NetworkError>> {
        let name = name.to_owned();
        async move {
            let path = self.namespace_path(&name);
            // DEL releases the lease even when the namespace is gone (it tolerates a missing netns).
            let released = self.plugin("DEL", &name).await.map(drop);
            let removed = tokio::task::spawn_blocking(move || remove_namespace(&path))
                .await
                .map_err(|err| NetworkError(format!("removing the network namespace: {err}")))?;
            released.and(removed)
        }
        .boxed()
    }

    fn take_prepared(&self) -> Option<(String, IpAddr)> {
        let taken = self.pool().pop_front();
        self.refill();
        taken
    }

    fn prepare(&self) -> BoxFuture<'_, ()> {
        async move {
            for name in self.stale_pooled() {
                tracing::info!(netns = %name, "removing a sandbox network a previous worker prepared");
                if let Err(err) = self.detach(&name).await {
                    tracing::warn!(netns = %name, %err, "could not remove a stale sandbox network");
                }
            }
            self.refill();
        }
        .boxed()
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        async move {
            self.inner.closed.store(true, Ordering::SeqCst);
            // Those under way remove themselves; wait for them so nothing is left when this returns.
            let _ = self.inner.filling.subscribe().wait_for(|filling| *filling == 0).await;
            let pooled: Vec<String> = self.pool().drain(..).map(|(name, _)| name).collect();
            for name in pooled {
                let _ = self.detach(&name).await;
            }
            let bridge = &self.inner.config.bridge;
            let ports = std::fs::read_dir(format!("/sys/class/net/{bridge}/brif"));
            let Ok(mut ports) = ports else { return };
            if ports.next().is_some() {
                return;
            }
            let deleted = tokio::process::Command::new("ip").args(["link", "del", bridge]).status().await;
            if !matches!(deleted, Ok(status) if status.success()) {
                tracing::warn!(%bridge, ?deleted, "could not delete the sandbox bridge");
            }
        }
        .boxed()
    }
}

/// The first IPv4 address of a CNI result (`ips[].address`, `a.b.c.d/len`).
fn address_of(result: &[u8]) -> Result<IpAddr, NetworkError> {
    let parsed: serde_json::Value = serde_json::from_slice(result)
        .map_err(|err| NetworkError(format!("the CNI plugin's result is not JSON: {err}")))?;
    let addresses = parsed["ips"].as_array().into_iter().flatten();
    let address = addresses
        .filter_map(|ip| ip["address"].as_str())
        .find_map(|cidr| cidr.split('/').next()?.parse::<Ipv4Addr>().ok());
    address.map(IpAddr::V4).ok_or_else(|| {
        NetworkError(format!("the CNI plugin gave no IPv4 address: {}", String::from_utf8_lossy(result)))
    })
}

/// Creates a network namespace bound at `path`: a new thread (its network namespace changes for good, so it
/// must not be a pool thread) unshares and the namespace is bind-mounted, which keeps it after the thread ends.
fn create_namespace(path: &Path) -> Result<(), NetworkError> {
    let fail = |what: &str, err: &dyn std::fmt::Display| NetworkError(format!("{what} {}: {err}", path.display()));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|err| fail("creating the folder of", &err))?;
    }
    std::fs::File::create(path).map_err(|err| fail("creating", &err))?;
    let target = path.to_path_buf();
    let bound = std::thread::spawn(move || -> nix::Result<()> {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)?;
        let flags = nix::mount::MsFlags::MS_BIND;
        nix::mount::mount(Some("/proc/thread-self/ns/net"), &target, None::<&str>, flags, None::<&str>)
    })
    .join();
    match bound {
        Ok(Ok(())) => Ok(()),
        Ok(Err(errno)) => {
            let _ = std::fs::remove_file(path);
            Err(fail("making a network namespace at (needs root)", &errno))
        }
        Err(_) => {
            let _ = std::fs::remove_file(path);
            Err(fail("making a network namespace at", &"the thread panicked"))
        }
    }
}

/// Unmounts and removes a namespace made by [`create_namespace`]; a missing one is no error.
fn remove_namespace(path: &Path) -> Result<(), NetworkError> {
    match nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::ENOENT | nix::errno::Errno::EINVAL) => {}
        Err(errno) => return Err(NetworkError(format!("unmounting {}: {errno}", path.display()))),
    }
    match std::fs::remove_file(path) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
            Err(NetworkError(format!("removing {}: {err}", path.display())))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_address_of_a_cni_result() {
        let result = br#"{"cniVersion":"1.0.0","interfaces":[{"name":"eth0"}],"ips":[{"interface":2,"address":"10.240.0.7/24","gateway":"10.240.0.1"}]}"#;
        assert_eq!(address_of(result).unwrap(), IpAddr::from([10, 240, 0, 7]));
        assert!(address_of(br#"{"ips":[]}"#).unwrap_err().to_string().contains("no IPv4 address"));
        assert!(address_of(b"oops").unwrap_err().to_string().contains("not JSON"));
    }

    #[test]
    fn the_cni_conf_names_bridge_subnet_and_lease_folder() {
        let network = CniNetwork::new(&ContainerdConfig::default());
        let conf: serde_json::Value = serde_json::from_str(&network.conf()).unwrap();
        assert_eq!(conf["bridge"], "dirigent0");
        assert_eq!(conf["ipam"]["ranges"][0][0]["subnet"], "10.240.0.0/24");
        assert_eq!(conf["ipam"]["dataDir"], "/var/lib/dirigent/cni");
    }
}
