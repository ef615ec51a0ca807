//! The part of containerd's API the runtime uses, as a trait (so the runtime's logic is tested against a
//! recording fake) and its real adapter over containerd's gRPC socket (`containerd-client`).

use std::path::Path;

use containerd_client::services::v1::container::Runtime;
use containerd_client::services::v1::snapshots::{PrepareSnapshotRequest, RemoveSnapshotRequest};
use containerd_client::services::v1::{
    Container, CreateContainerRequest, CreateTaskRequest, DeleteContainerRequest, DeleteTaskRequest, GetImageRequest,
    KillRequest, ListContainersRequest, ReadContentRequest, StartRequest, WaitRequest,
};
use containerd_client::services::v1::{CreateRequest as CreateLeaseRequest, DeleteRequest as DeleteLeaseRequest};
use containerd_client::types::Mount;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

/// A containerd call failed; the message is containerd's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// Whether the thing asked for does not exist (deleting it again is then no error).
    pub not_found: bool,
    /// What containerd said.
    pub message: String,
}

impl From<Status> for ApiError {
    fn from(status: Status) -> Self {
        Self { not_found: status.code() == Code::NotFound, message: status.message().to_owned() }
    }
}

/// A container to create: its id, image, runtime spec (JSON) and labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewContainer {
    /// The sandbox id.
    pub id: String,
    /// The image reference it runs.
    pub image: String,
    /// The OCI runtime spec, JSON.
    pub spec: Vec<u8>,
    /// The snapshot that becomes its root filesystem.
    pub snapshot: String,
    /// The lease that holds the snapshot until the container references it.
    pub lease: String,
    /// The binary the runc shim runs (runc, crun, runsc).
    pub oci_binary: String,
    /// Labels (who owns it, so a restarted worker finds what its predecessor left).
    pub labels: Vec<(String, String)>,
}

/// The containerd operations of a sandbox's life, in one namespace and snapshotter.
pub trait ContainerdApi: Send + Sync + 'static {
    /// Reads a blob of the content store (manifests and image configs).
    fn read_content(&self, digest: &str) -> BoxFuture<'_, Result<Vec<u8>, ApiError>>;
    /// The digest and media type of the manifest (or index) an image name points at.
    fn image_target(&self, image: &str) -> BoxFuture<'_, Result<(String, String), ApiError>>;
    /// Creates a lease, so the garbage collector keeps what is made under it.
    fn create_lease(&self, lease: &str) -> BoxFuture<'_, Result<(), ApiError>>;
    /// Deletes a lease.
    fn delete_lease(&self, lease: &str) -> BoxFuture<'_, Result<(), ApiError>>;
    /// Prepares a writable snapshot `key` on `parent` (an unpacked image's chain id), under `lease`.
    fn prepare_snapshot(&self, lease: &str, key: &str, parent: &str) -> BoxFuture<'_, Result<Vec<Mount>, ApiError>>;
    /// Removes a snapshot.
    fn remove_snapshot(&self, key: &str) -> BoxFuture<'_, Result<(), ApiError>>;
    /// Creates a container record.
    fn create_container(&self, container: NewContainer) -> BoxFuture<'_, Result<(), ApiError>>;
    /// Deletes a container record.
    fn delete_container(&self, id: &str) -> BoxFuture<'_, Result<(), ApiError>>;
    /// The ids of the containers carrying `label=value`.
    fn containers_labelled(&self, label: &str, value: &str) -> BoxFuture<'_, Result<Vec<String>, ApiError>>;
    /// Creates the container's task (the shim and the OCI runtime's `create`) on `rootfs`; returns its pid.
    fn create_task(&self, id: &str, rootfs: Vec<Mount>) -> BoxFuture<'_, Result<u32, ApiError>>;
    /// Starts the task's process.
    fn start_task(&self, id: &str) -> BoxFuture<'_, Result<(), ApiError>>;
    /// Returns when the task has exited, with its exit status.
    fn wait_task(&self, id: &str) -> BoxFuture<'_, Result<u32, ApiError>>;
    /// Sends SIGKILL to every process of the task.
    fn kill_task(&self, id: &str) -> BoxFuture<'_, Result<(), ApiError>>;
    /// Deletes an exited task (the shim goes with it).
    fn delete_task(&self, id: &str) -> BoxFuture<'_, Result<(), ApiError>>;
}

/// [`ContainerdApi`] over containerd's socket.
pub struct GrpcContainerd {
    channel: Channel,
    namespace: String,
    snapshotter: String,
}

/// The runc shim's options message (`containerd.runc.v1.Options`); only the field this runtime sets.
#[derive(Clone, PartialEq, prost::Message)]
struct RuncOptions {
    /// The OCI runtime binary.
    #[prost(string, tag = "6")]
    binary_name: String,
}

const RUNC_SHIM: &str = "io.containerd.runc.v2";
const RUNC_OPTIONS_TYPE: &str = "containerd.runc.v1.Options";
const SPEC_TYPE: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";

impl GrpcContainerd {
    /// Connects to the containerd at `socket` (a later restart of containerd is reconnected to).
    pub async fn connect(socket: &Path, namespace: &str, snapshotter: &str) -> Result<Self, ApiError> {
        let channel = containerd_client::connect(socket).await.map_err(|err| ApiError {
            not_found: false,
            message: format!("{err}: {:?}", std::error::Error::source(&err)),
        })?;
        Ok(Self { channel, namespace: namespace.to_owned(), snapshotter: snapshotter.to_owned() })
    }

    /// A request in this namespace (and, when given, under a lease).
    fn request<T>(&self, message: T, lease: Option<&str>) -> Request<T> {
        let mut request = Request::new(message);
        let metadata = request.metadata_mut();
        if let Ok(namespace) = self.namespace.parse() {
            metadata.insert("containerd-namespace", namespace);
        }
        if let Some(lease) = lease.and_then(|lease| lease.parse().ok()) {
            metadata.insert("containerd-lease", lease);
        }
        request
    }

    fn client(&self) -> containerd_client::Client {
        containerd_client::Client::from(self.channel.clone())
    }
}

impl ContainerdApi for GrpcContainerd {
    fn read_content(&self, digest: &str) -> BoxFuture<'_, Result<Vec<u8>, ApiError>> {
        let request = self.request(ReadContentRequest { digest: digest.to_owned(), offset: 0, size: 0 }, None);
        async move {
            let mut stream = self.client().content().read(request).await?.into_inner();
            let mut blob = Vec::new();
            while let Some(part) = stream.message().await? {
                blob.extend_from_slice(&part.data);
            }
            Ok(blob)
        }
        .boxed()
    }

    fn image_target(&self, image: &str) -> BoxFuture<'_, Result<(String, String), ApiError>> {
        let request = self.request(GetImageRequest { name: image.to_owned() }, None);
        async move {
            let image = self.client().images().get(request).await?.into_inner().image;
            let target = image.and_then(|image| image.target);
            let target =
                target.ok_or_else(|| ApiError { not_found: true, message: "the image has no target".into() })?;
            Ok((target.digest, target.media_type))
        }
        .boxed()
    }

    fn create_lease(&self, lease: &str) -> BoxFuture<'_, Result<(), ApiError>> {
        let request = self.request(CreateLeaseRequest { id: lease.to_owned(), labels: Default::default() }, None);
        async move { self.client().leases().create(request).await.map(drop).map_err(ApiError::from) }.boxed()
    }

    fn delete_lease(&self, lease: &str) -> BoxFuture<'_, Result<(), ApiError>> {
        let request = self.request(DeleteLeaseRequest { id: lease.to_owned(), sync: false }, None);
        async move { self.client().leases().delete(request).await.map(drop).map_err(ApiError::from) }.boxed()
    }

    fn prepare_snapshot(&self, lease: &str, key: &str, parent: &str) -> BoxFuture<'_, Result<Vec<Mount>, ApiError>> {
        let message = PrepareSnapshotRequest {
            snapshotter: self.snapshotter.clone(),
            key: key.to_owned(),
            parent: parent.to_owned(),
            labels: Default::default(),
        };
        let request = self.request(message, Some(lease));
        async move { Ok(self.client().snapshots().prepare(request).await?.into_inner().mounts) }.boxed()
    }

    fn remove_snapshot(&self, key: &str) -> BoxFuture<'_, Result<(), ApiError>> {
        let message = RemoveSnapshotRequest { snapshotter: self.snapshotter.clone(), key: key.to_owned() };
        let request = self.request(message, None);
        async move { self.client().snapshots().remove(request).await.map(drop).map_err(ApiError::from) }.boxed()
    }

    fn create_container(&self, container: NewContainer) -> BoxFuture<'_, Result<(), ApiError>> {
        let options = RuncOptions { binary_name: container.oci_binary.clone() };
        let options =
            prost_types::Any { type_url: RUNC_OPTIONS_TYPE.into(), value: prost::Message::encode_to_vec(&options) };
        let record = Container {
            id: container.id,
            labels: container.labels.into_iter().collect(),
            image: container.image,
            runtime: Some(Runtime { name: RUNC_SHIM.into(), options: Some(options) }),
            spec: Some(prost_types::Any { type_url: SPEC_TYPE.into(), value: container.spec }),
            snapshotter: self.snapshotter.clone(),
            snapshot_key: container.snapshot,
            ..Container::default()
        };
        let request = self.request(CreateContainerRequest { container: Some(record) }, Some(&container.lease));
        async move { self.client().containers().create(request).await.map(drop).map_err(ApiError::from) }.boxed()
    }

    fn delete_container(&self, id: &str) -> BoxFuture<'_, Result<(), ApiError>> {
        let request = self.request(DeleteContainerRequest { id: id.to_owned() }, None);
        async move { self.client().containers().delete(request).await.map(drop).map_err(ApiError::from) }.boxed()
    }

    fn containers_labelled(&self, label: &str, value: &str) -> BoxFuture<'_, Result<Vec<String>, ApiError>> {
        let filter = format!("labels.\"{label}\"==\"{value}\"");
        let request = self.request(ListContainersRequest { filters: vec![filter] }, None);
        async move {
            let containers = self.client().containers().list(request).await?.into_inner().containers;
            Ok(containers.into_iter().map(|container| container.id).collect())
        }
        .boxed()
    }

    fn create_task(&self, id: &str, rootfs: Vec<Mount>) -> BoxFuture<'_, Result<u32, ApiError>> {
        let message = CreateTaskRequest { container_id: id.to_owned(), rootfs, ..CreateTaskRequest::default() };
        let request = self.request(message, None);
        async move { Ok(self.client().tasks().create(request).await?.into_inner().pid) }.boxed()
    }

    fn start_task(&self, id: &str) -> BoxFuture<'_, Result<(), ApiError>> {
        let request = self.request(StartRequest { container_id: id.to_owned(), exec_id: String::new() }, None);
        async move { self.client().tasks().start(request).await.map(drop).map_err(ApiError::from) }.boxed()
    }

    fn wait_task(&self, id: &str) -> BoxFuture<'_, Result<u32, ApiError>> {
        let request = self.request(WaitRequest { container_id: id.to_owned(), exec_id: String::new() }, None);
        async move { Ok(self.client().tasks().wait(request).await?.into_inner().exit_status) }.boxed()
    }

    fn kill_task(&self, id: &str) -> BoxFuture<'_, Result<(), ApiError>> {
        let message = KillRequest {
            container_id: id.to_owned(),
            exec_id: String::new(),
            signal: nix::sys::signal::Signal::SIGKILL as u32,
            all: true,
        };
        let request = self.request(message, None);
        async move { self.client().tasks().kill(request).await.map(drop).map_err(ApiError::from) }.boxed()
    }

    fn delete_task(&self, id: &str) -> BoxFuture<'_, Result<(), ApiError>> {
        let request = self.request(DeleteTaskRequest { container_id: id.to_owned() }, None);
        async move { self.client().tasks().delete(request).await.map(drop).map_err(ApiError::from) }.boxed()
    }
}
