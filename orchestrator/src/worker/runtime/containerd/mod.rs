//! The `containerd` runtime: a sandbox is a container created through containerd's API, in its own network
//! namespace on the worker's CNI bridge, limited to its function's CPU and memory requests.
//!
//! Creation is the steps Dirigent's breakdown names, each timed: `image` (look the image up, cached),
//! `snapshot` (a writable snapshot on the unpacked image, under a lease), `container` (the container record),
//! `network` (namespace, veth, address: taken from a pool attached ahead of time, else set up at the same time as
//! the three before), `task` (the shim and the OCI runtime's create) and `start`. Everything
//! a sandbox holds is labelled with the runtime's owner, so a worker that restarts after a crash removes what
//! its predecessor left (containers, tasks, snapshots, leases, namespaces, addresses).

pub mod api;
pub mod archive;
pub mod image;
pub mod network;
pub mod spec;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use tokio::sync::{broadcast, watch};

use self::api::{ApiError, ContainerdApi, NewContainer};
use self::image::ImageConfig;
use self::network::SandboxNetwork;
use super::{RuntimeError, SandboxExited, SandboxInfo, SandboxRuntime, SandboxSpec, Steps, readiness};
use containerd_client::types::Mount;
use contracts::config::ContainerdConfig;

/// The label naming the worker that made a container.
pub const OWNER_LABEL: &str = "dirigent.owner";

struct Entry {
    info: SandboxInfo,
    steps: Steps,
    /// Its network namespace (its own, or one taken from the pool).
    netns: String,
    destroying: Arc<AtomicBool>,
    /// `Some(reason)` once the task has exited.
    exited: watch::Receiver<Option<String>>,
}

/// Runs sandboxes as containers.
pub struct ContainerdRuntime {
    inner: Arc<Inner>,
}

struct Inner {
    api: Arc<dyn ContainerdApi>,
    network: Arc<dyn SandboxNetwork>,
    config: ContainerdConfig,
    owner: String,
    images: Mutex<HashMap<String, ImageConfig>>,
    sandboxes: Mutex<HashMap<String, Entry>>,
    exits: broadcast::Sender<SandboxExited>,
}

impl ContainerdRuntime {
    /// A runtime over `api` and `network`, whose containers are labelled `owner`; first removes every sandbox
    /// a previous runtime of the same owner left behind.
    pub async fn start(
        api: Arc<dyn ContainerdApi>,
        network: Arc<dyn SandboxNetwork>,
        config: ContainerdConfig,
        owner: &str,
    ) -> Result<Self, ApiError> {
        let inner = Inner {
            api,
            network,
            config,
            owner: owner.to_owned(),
            images: Mutex::default(),
            sandboxes: Mutex::default(),
            exits: broadcast::channel(1024).0,
        };
        let left = inner.api.containers_labelled(OWNER_LABEL, owner).await?;
        for id in &left {
            tracing::info!(sandbox = %id, owner, "removing a sandbox a previous worker left");
            // A pooled namespace it used goes with the dead worker's pool in `prepare`.
            inner.release(id, true, &inner.netns(id)).await;
        }
        inner.network.prepare().await;
        Ok(Self { inner: Arc::new(inner) })
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.sandboxes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The network namespace's name (and CNI container id): unique on the host, across containerd namespaces.
    fn netns(&self, id: &str) -> String {
        format!("{}-{id}", self.config.namespace)
    }

    fn lease(id: &str) -> String {
        format!("dirigent-sandbox-{id}")
    }

    async fn image(&self, image: &str) -> Result<ImageConfig, String> {
        let cached = self.images.lock().unwrap_or_else(|e| e.into_inner()).get(image).cloned();
        if let Some(config) = cached {
            return Ok(config);
        }
        let config = image::resolve(self.api.as_ref(), image, &self.config.namespace).await?;
        self.images.lock().unwrap_or_else(|e| e.into_inner()).insert(image.to_owned(), config.clone());
        Ok(config)
    }

    /// Creates, times and starts the sandbox; on failure removes what the finished steps made.
    async fn create(self: &Arc<Self>, spec: SandboxSpec) -> Result<SandboxInfo, RuntimeError> {
        if self.lock().contains_key(&spec.id) {
            return Err(RuntimeError::Duplicate(spec.id));
        }
        let mut steps = Steps::new();
        let mut netns = self.netns(&spec.id);
        let made = self.make(&spec, &mut steps, &mut netns).await;
        let address = match made {
            Ok(address) => address,
            Err(message) => {
                self.release(&spec.id, false, &netns).await;
                return Err(RuntimeError::Start {
                    id: spec.id.clone(),
                    image: spec.image.clone(),
                    source: std::io::Error::other(message),
                });
            }
        };
        let info = SandboxInfo { id: spec.id.clone(), function: spec.function.clone(), address };
        let destroying = Arc::new(AtomicBool::new(false));
        let (exited_tx, exited) = watch::channel(None);
        let entry = Entry { info: info.clone(), steps, netns, destroying: Arc::clone(&destroying), exited };
        self.lock().insert(spec.id.clone(), entry);
        let inner = Arc::clone(self);
        let watched = info.clone();
        tokio::spawn(async move { inner.watch(watched, destroying, exited_tx).await });
        Ok(info)
    }

    /// The creation steps; the error names the step, and `netns` ends as the namespace the sandbox got. A
    /// namespace from the pool costs nothing; without one, the network is set up while image, snapshot and
    /// container are (it does not depend on them, and CNI's plugin takes about as long as the three together).
    async fn make(&self, spec: &SandboxSpec, steps: &mut Steps, netns: &mut String) -> Result<SocketAddr, String> {
        let took = Instant::now();
        let (storage, (attached, network_took)) = match self.network.take_prepared() {
            Some((name, ip)) => {
                *netns = name;
                let network_took = took.elapsed();
                (self.storage(spec, steps, &self.network.namespace_path(netns)).await, (Ok(ip), network_took))
            }
            None => {
                let path = self.network.namespace_path(netns);
                let network = async {
                    let attached = self.network.attach(netns).await.map_err(|err| err.to_string());
                    (attached, took.elapsed())
                };
                tokio::join!(self.storage(spec, steps, &path), network)
            }
        };
        steps.push(("network", network_took));
        let (mounts, ip) = (storage?, attached?);
        let failed = |what: &str, err: ApiError| format!("{what}: {err}");
        let mut clock = Instant::now();
        self.api.create_task(&spec.id, mounts).await.map_err(|err| failed("creating the task", err))?;
        steps.push(("task", clock.elapsed()));
        clock = Instant::now();
        self.api.start_task(&spec.id).await.map_err(|err| failed("starting the task", err))?;
        steps.push(("start", clock.elapsed()));
        Ok(SocketAddr::new(ip, self.config.sandbox_port))
    }

    /// The image, a snapshot on it and the container record, timed; returns the snapshot's mounts.
    async fn storage(&self, spec: &SandboxSpec, steps: &mut Steps, netns: &Path) -> Result<Vec<Mount>, String> {
        let mut clock = Instant::now();
        let mut step = |name: &'static str| {
            let now = Instant::now();
            steps.push((name, now - clock));
            clock = now;
        };
        let image = self.image(&spec.image).await?;
        step("image");
        let lease = Self::lease(&spec.id);
        let failed = |what: &str, err: ApiError| format!("{what}: {err}");
        self.api.create_lease(&lease).await.map_err(|err| failed("creating a lease", err))?;
        let mounts = self
            .api
            .prepare_snapshot(&lease, &spec.id, &image.chain_id)
            .await
            .map_err(|err| failed("preparing the snapshot (is the image unpacked for this snapshotter?)", err))?;
        step("snapshot");
        let runtime_spec = spec::runtime_spec(&image, spec, self.config.sandbox_port, netns, &self.config.namespace);
        let container = NewContainer {
            id: spec.id.clone(),
            image: spec.image.clone(),
            spec: runtime_spec.to_string().into_bytes(),
            snapshot: spec.id.clone(),
            lease,
            oci_binary: self.config.oci_runtime.binary().to_owned(),
            labels: vec![(OWNER_LABEL.to_owned(), self.owner.clone())],
        };
        self.api.create_container(container).await.map_err(|err| failed("creating the container", err))?;
        step("container");
        Ok(mounts)
    }

    /// Waits for the task to end; an end nobody asked for is reported as an exit, after the sandbox's
    /// resources are released.
    async fn watch(&self, info: SandboxInfo, destroying: Arc<AtomicBool>, exited: watch::Sender<Option<String>>) {
        let reason = match self.api.wait_task(&info.id).await {
            Ok(status) => format!("exit status {status}"),
            Err(err) => format!("waiting for the task failed: {err}"),
        };
        let _ = exited.send(Some(reason.clone()));
        if destroying.load(Ordering::SeqCst) {
            return;
        }
        let netns = self.lock().remove(&info.id).map(|entry| entry.netns).unwrap_or_else(|| self.netns(&info.id));
        self.release(&info.id, true, &netns).await;
        let _ = self.exits.send(SandboxExited { id: info.id, function: info.function, reason });
    }

    /// Removes whatever of sandbox `id` exists, newest first; `kill` first kills its task. Failures are
    /// logged: a release is also the clean-up after a failed creation, where some parts were never made.
    async fn release(&self, id: &str, kill: bool, netns: &str) {
        if kill && self.api.kill_task(id).await.is_ok() {
            // A task is deleted only once it has stopped; a shim that never reports the exit is not waited for.
            let _ = tokio::time::timeout(KILL_PATIENCE, self.api.wait_task(id)).await;
        }
        let results = [
            ("task", self.api.delete_task(id).await),
            ("container", self.api.delete_container(id).await),
            ("snapshot", self.api.remove_snapshot(id).await),
            ("lease", self.api.delete_lease(&Self::lease(id)).await),
        ];
        for (what, result) in results {
            match result {
                Err(err) if !err.not_found => {
                    tracing::warn!(sandbox = %id, %err, "could not delete the sandbox's {what}")
                }
                _ => {}
            }
        }
        // runc removes the cgroup on delete, but not always after a kill of a task whose worker had died.
        remove_cgroup_parent(&format!("{}/{id}", self.config.namespace));
        if let Err(err) = self.network.detach(netns).await {
            tracing::warn!(sandbox = %id, %err, "could not remove the sandbox's network");
        }
    }

    async fn ready(&self, sandbox: &SandboxInfo, timeout: Duration) -> Result<(), RuntimeError> {
        let exited = match self.lock().get(&sandbox.id) {
            Some(entry) => entry.exited.clone(),
            None => return Err(RuntimeError::Unknown(sandbox.id.clone())),
        };
        readiness::ready_unless_ended(sandbox, timeout, exited).await
    }

    async fn destroy(&self, id: &str) -> Result<(), RuntimeError> {
        let (mut exited, netns) = {
            let sandboxes = self.lock();
            let entry = sandboxes.get(id).ok_or_else(|| RuntimeError::Unknown(id.to_owned()))?;
            entry.destroying.store(true, Ordering::SeqCst);
            (entry.exited.clone(), entry.netns.clone())
        };
        if let Err(err) = self.api.kill_task(id).await.or_else(|err| if err.not_found { Ok(()) } else { Err(err) }) {
            return Err(RuntimeError::Kill { id: id.to_owned(), source: std::io::Error::other(err.message) });
        }
        let _ = exited.wait_for(Option::is_some).await;
        self.release(id, false, &netns).await;
        self.lock().remove(id);
        Ok(())
    }
}

impl SandboxRuntime for ContainerdRuntime {
    fn create(&self, spec: SandboxSpec) -> BoxFuture<'_, Result<SandboxInfo, RuntimeError>> {
        async move { self.inner.create(spec).await }.boxed()
    }

    fn wait_ready(&self, sandbox: &SandboxInfo, timeout: Duration) -> BoxFuture<'_, Result<(), RuntimeError>> {
        let sandbox = sandbox.clone();
        async move { self.inner.ready(&sandbox, timeout).await }.boxed()
    }

    fn destroy(&self, id: &str) -> BoxFuture<'_, Result<(), RuntimeError>> {
        let id = id.to_owned();
        async move { self.inner.destroy(&id).await }.boxed()
    }

    fn list(&self) -> Vec<SandboxInfo> {
        self.inner.lock().values().map(|entry| entry.info.clone()).collect()
    }

    fn exits(&self) -> broadcast::Receiver<SandboxExited> {
        self.inner.exits.subscribe()
    }

    fn creation_steps(&self, id: &str) -> Steps {
        self.inner.lock().get(id).map(|entry| entry.steps.clone()).unwrap_or_default()
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        async move {
            let ids: Vec<String> = self.inner.lock().keys().cloned().collect();
            futures_util::future::join_all(ids.iter().map(|id| self.inner.destroy(id))).await;
            self.inner.network.shutdown().await;
            remove_cgroup_parent(&self.inner.config.namespace);
        }
        .boxed()
    }
}

/// Removes the (empty) cgroup folder `parent` (a sandbox's, or the parent of the sandboxes' `cgroupsPath`), under
/// every v1 controller and in the v2 tree; a folder still in use is not empty and stays.
pub fn remove_cgroup_parent(parent: &str) {
    let controllers = std::fs::read_dir(CGROUP_ROOT).into_iter().flatten().filter_map(|entry| entry.ok());
    let candidates = controllers.map(|controller| controller.path().join(parent));
    for folder in candidates.chain([std::path::Path::new(CGROUP_ROOT).join(parent)]) {
        let _ = std::fs::remove_dir(folder);
    }
}

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// How long a killed task's exit is waited for before its deletion is tried anyway.
const KILL_PATIENCE: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests;
