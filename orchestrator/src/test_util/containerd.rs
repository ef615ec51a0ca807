//! A recording [`ContainerdApi`] and [`SandboxNetwork`] for the containerd runtime's logic: each call is
//! journaled as text (`"prepare_snapshot s-1 on sha256:layer"`), one call can be scripted to fail, and tasks
//! run until killed or ended by the test.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use tokio::sync::watch;

use super::lock;
use super::script::Journal;
use crate::worker::runtime::containerd::api::{ApiError, ContainerdApi, NewContainer};
use crate::worker::runtime::containerd::network::{NetworkError, SandboxNetwork};
use containerd_client::types::Mount;

/// The image the fake knows: one layer with diff id `sha256:layer`, command `/trace-function`.
pub const IMAGE: &str = "example.local/trace-function:1";

/// A fake containerd that knows [`IMAGE`].
#[derive(Default)]
pub struct FakeContainerd {
    journal: Journal<String>,
    fail: Mutex<Option<&'static str>>,
    tasks: Mutex<HashMap<String, watch::Sender<Option<u32>>>>,
    containers: Mutex<Vec<String>>,
}

impl FakeContainerd {
    /// The calls so far.
    pub fn journal(&self) -> &Journal<String> {
        &self.journal
    }

    /// Makes every later call named `call` (e.g. `"start_task"`) fail.
    pub fn fail(&self, call: &'static str) {
        *lock(&self.fail) = Some(call);
    }

    /// A container record a previous worker left, labelled as `ContainerdRuntime::start` looks for.
    pub fn leave(&self, id: &str) {
        lock(&self.containers).push(id.to_owned());
    }

    /// Ends task `id` by itself (a crash) with `status`.
    pub fn end(&self, id: &str, status: u32) {
        if let Some(task) = lock(&self.tasks).get(id) {
            task.send_replace(Some(status));
        }
    }

    fn call(&self, name: &'static str, detail: impl std::fmt::Display) -> Result<(), ApiError> {
        self.journal.record(format!("{name} {detail}"));
        match *lock(&self.fail) == Some(name) {
            true => Err(ApiError { not_found: false, message: format!("{name} failed (scripted)") }),
            false => Ok(()),
        }
    }

    fn done<T: Send + 'static>(result: Result<T, ApiError>) -> BoxFuture<'static, Result<T, ApiError>> {
        futures_util::future::ready(result).boxed()
    }
}

const MANIFEST: &str = r#"{"config":{"digest":"sha256:config"}}"#;
const CONFIG: &str = r#"{"config":{"Cmd":["/trace-function"]},"rootfs":{"diff_ids":["sha256:layer"]}}"#;

impl ContainerdApi for FakeContainerd {
    fn read_content(&self, digest: &str) -> BoxFuture<'_, Result<Vec<u8>, ApiError>> {
        let blob = match digest {
            "sha256:manifest" => Ok(MANIFEST.as_bytes().to_vec()),
            "sha256:config" => Ok(CONFIG.as_bytes().to_vec()),
            other => Err(ApiError { not_found: true, message: format!("no content {other}") }),
        };
        Self::done(self.call("read_content", digest).and(blob))
    }

    fn image_target(&self, image: &str) -> BoxFuture<'_, Result<(String, String), ApiError>> {
        let target = match image == IMAGE {
            true => Ok(("sha256:manifest".to_owned(), "application/vnd.oci.image.manifest.v1+json".to_owned())),
            false => Err(ApiError { not_found: true, message: format!("image {image}: not found") }),
        };
        Self::done(self.call("image_target", image).and(target))
    }

    fn create_lease(&self, lease: &str) -> BoxFuture<'_, Result<(), ApiError>> {
        Self::done(self.call("create_lease", lease))
    }

    fn delete_lease(&self, lease: &str) -> BoxFuture<'_, Result<(), ApiError>> {
        Self::done(self.call("delete_lease", lease))
    }

    fn prepare_snapshot(&self, lease: &str, key: &str, parent: &str) -> BoxFuture<'_, Result<Vec<Mount>, ApiError>> {
        Self::done(self.call("prepare_snapshot", format!("{key} on {parent} under {lease}")).map(|()| Vec::new()))
    }

    fn remove_snapshot(&self, key: &str) -> BoxFuture<'_, Result<(), ApiError>> {
        Self::done(self.call("remove_snapshot", key))
    }

    fn create_container(&self, container: NewContainer) -> BoxFuture<'_, Result<(), ApiError>> {
        let labels: Vec<String> = container.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let detail = format!("{} {} {}", container.id, container.oci_binary, labels.join(","));
        Self::done(self.call("create_container", detail))
    }

    fn delete_container(&self, id: &str) -> BoxFuture<'_, Result<(), ApiError>> {
        Self::done(self.call("delete_container", id))
    }

    fn containers_labelled(&self, label: &str, value: &str) -> BoxFuture<'_, Result<Vec<String>, ApiError>> {
        let left = lock(&self.containers).clone();
        Self::done(self.call("containers_labelled", format!("{label}={value}")).map(|()| left))
    }

    fn create_task(&self, id: &str, _rootfs: Vec<Mount>) -> BoxFuture<'_, Result<u32, ApiError>> {
        let created = self.call("create_task", id);
        if created.is_ok() {
            lock(&self.tasks).insert(id.to_owned(), watch::Sender::new(None));
        }
        Self::done(created.map(|()| 4242))
    }

    fn start_task(&self, id: &str) -> BoxFuture<'_, Result<(), ApiError>> {
        Self::done(self.call("start_task", id))
    }

    fn wait_task(&self, id: &str) -> BoxFuture<'_, Result<u32, ApiError>> {
        let task = lock(&self.tasks).get(id).map(watch::Sender::subscribe);
        async move {
            let mut task = task.ok_or_else(|| ApiError { not_found: true, message: "no task".into() })?;
            let status = task.wait_for(Option::is_some).await.map(|s| s.unwrap_or_default());
            status.map_err(|_| ApiError { not_found: true, message: "the task is gone".into() })
        }
        .boxed()
    }

    fn kill_task(&self, id: &str) -> BoxFuture<'_, Result<(), ApiError>> {
        let called = self.call("kill_task", id);
        self.end(id, 137);
        Self::done(called)
    }

    fn delete_task(&self, id: &str) -> BoxFuture<'_, Result<(), ApiError>> {
        let called = self.call("delete_task", id);
        lock(&self.tasks).remove(id);
        Self::done(called)
    }
}

/// A fake network that hands out 10.0.0.1, 10.0.0.2, ... and journals attach, detach, take and prepare by
/// namespace name; its pool holds what [`FakeNetwork::pool`] put there.
#[derive(Default)]
pub struct FakeNetwork {
    journal: Journal<String>,
    next: AtomicU8,
    pool: Mutex<Vec<(String, IpAddr)>>,
}

impl FakeNetwork {
    /// The calls so far.
    pub fn journal(&self) -> &Journal<String> {
        &self.journal
    }

    /// Puts a prepared namespace in the pool.
    pub fn pool(&self, name: &str, ip: IpAddr) {
        lock(&self.pool).push((name.to_owned(), ip));
    }
}

impl SandboxNetwork for FakeNetwork {
    fn namespace_path(&self, name: &str) -> PathBuf {
        PathBuf::from("/run/netns").join(name)
    }

    fn attach(&self, name: &str) -> BoxFuture<'_, Result<IpAddr, NetworkError>> {
        self.journal.record(format!("attach {name}"));
        let last = self.next.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
        futures_util::future::ready(Ok(IpAddr::from([10, 0, 0, last]))).boxed()
    }

    fn detach(&self, name: &str) -> BoxFuture<'_, Result<(), NetworkError>> {
        self.journal.record(format!("detach {name}"));
        futures_util::future::ready(Ok(())).boxed()
    }

    fn take_prepared(&self) -> Option<(String, IpAddr)> {
        let taken = lock(&self.pool).pop();
        self.journal.record(format!("take {}", taken.as_ref().map_or("none", |(name, _)| name.as_str())));
        taken
    }

    fn prepare(&self) -> BoxFuture<'_, ()> {
        self.journal.record("prepare".to_owned());
        futures_util::future::ready(()).boxed()
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        self.journal.record("shutdown".to_owned());
        futures_util::future::ready(()).boxed()
    }
}
