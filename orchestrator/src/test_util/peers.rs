//! Recording fakes of the role-to-role ports: workers and data planes as the control plane reaches them
//! ([`FakePeers`]), and the control plane as workers and data planes reach it ([`FakeControlPlane`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::{FutureExt, StreamExt};
use tokio::sync::mpsc;

use super::lock;
use super::script::{Journal, Recorder, Script};
use crate::net::AddressError;
use crate::peers::attach::{Attach, Outbound, ReceiverStream, Replies};
use crate::peers::{Call, DataPlanePeer, DataPlaneUplink, PeerConnector, WorkerPeer, WorkerUplink};
use crate::proto::dirigent::{
    Ack, AttachReply, AttachRequest, ColdStartRequest, CreateSandboxReply, CreateSandboxRequest, DataPlaneInfo,
    FunctionFailure, FunctionRef, FunctionSet, FunctionState, KillSandboxRequest, LoadReport, SandboxExit, SandboxInfo,
    SandboxList, WorkerHeartbeatRequest, WorkerInfo,
};

/// One call the control plane made to a worker or a data plane, with its arguments.
#[derive(Debug, Clone, PartialEq)]
pub enum PeerCall {
    /// [`WorkerPeer::create_sandbox`].
    CreateSandbox(CreateSandboxRequest),
    /// [`WorkerPeer::kill_sandbox`].
    KillSandbox(KillSandboxRequest),
    /// [`WorkerPeer::list_sandboxes`].
    ListSandboxes,
    /// [`DataPlanePeer::sync_function`].
    SyncFunction(FunctionState),
    /// [`DataPlanePeer::remove_function`].
    RemoveFunction(FunctionRef),
    /// [`DataPlanePeer::retain_functions`].
    RetainFunctions(FunctionSet),
    /// [`DataPlanePeer::fail_queued`].
    FailQueued(FunctionFailure),
}

/// A call and the address of the peer it went to.
#[derive(Debug, Clone, PartialEq)]
pub struct Sent {
    /// The peer's address, as the control plane was given it.
    pub to: String,
    /// The call.
    pub call: PeerCall,
}

/// Workers and data planes at any address, recording every call in one journal, so that a test sees the
/// order of calls across peers, and answering as scripted (by default: success).
#[derive(Debug)]
pub struct FakePeers {
    recorder: Arc<Recorder<Sent>>,
    /// Source of the fake sandboxes' ports, so that every endpoint has its own address.
    ports: Arc<AtomicU16>,
    workers: Mutex<BTreeMap<String, Arc<FakeWorker>>>,
    data_planes: Mutex<BTreeMap<String, Arc<FakeDataPlane>>>,
}

impl Default for FakePeers {
    fn default() -> Self {
        Self {
            recorder: Arc::default(),
            ports: Arc::new(AtomicU16::new(40_000)),
            workers: Mutex::default(),
            data_planes: Mutex::default(),
        }
    }
}

impl FakePeers {
    /// Fakes with an empty journal and no script.
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// Every call so far, across peers.
    pub fn journal(&self) -> &Journal<Sent> {
        &self.recorder.journal
    }

    /// How the calls are answered.
    pub fn script(&self) -> &Script<Sent> {
        &self.recorder.script
    }

    /// The fake worker at `address` (the one the control plane reaches there).
    pub fn worker_at(&self, address: &str) -> Arc<FakeWorker> {
        let mut workers = lock(&self.workers);
        let worker = workers.entry(address.to_owned()).or_insert_with(|| {
            Arc::new(FakeWorker {
                address: address.to_owned(),
                recorder: Arc::clone(&self.recorder),
                ports: Arc::clone(&self.ports),
                sandboxes: Mutex::default(),
            })
        });
        Arc::clone(worker)
    }

    /// The fake data plane at `address`.
    pub fn data_plane_at(&self, address: &str) -> Arc<FakeDataPlane> {
        let mut data_planes = lock(&self.data_planes);
        let data_plane = data_planes.entry(address.to_owned()).or_insert_with(|| {
            Arc::new(FakeDataPlane { address: address.to_owned(), recorder: Arc::clone(&self.recorder) })
        });
        Arc::clone(data_plane)
    }
}

impl PeerConnector for FakePeers {
    fn worker(&self, address: &str) -> Result<Arc<dyn WorkerPeer>, AddressError> {
        Ok(self.worker_at(address))
    }

    fn data_plane(&self, address: &str) -> Result<Arc<dyn DataPlanePeer>, AddressError> {
        Ok(self.data_plane_at(address))
    }
}

/// A worker that holds the sandboxes it was asked to create (each at its own loopback address) until they
/// are killed, and lists them.
#[derive(Debug)]
pub struct FakeWorker {
    address: String,
    recorder: Arc<Recorder<Sent>>,
    ports: Arc<AtomicU16>,
    sandboxes: Mutex<BTreeMap<String, SandboxInfo>>,
}

impl FakeWorker {
    /// Holds a sandbox the control plane did not create here (one left from its previous run, say).
    pub fn add_sandbox(&self, sandbox_id: &str, function: &str) {
        let address = self.next_address();
        let info = SandboxInfo { sandbox_id: sandbox_id.to_owned(), function: function.to_owned(), address };
        lock(&self.sandboxes).insert(sandbox_id.to_owned(), info);
    }

    /// Forgets a sandbox without telling anyone (its exit report was lost).
    pub fn lose_sandbox(&self, sandbox_id: &str) {
        lock(&self.sandboxes).remove(sandbox_id);
    }

    /// The sandboxes it holds.
    pub fn sandboxes(&self) -> Vec<SandboxInfo> {
        lock(&self.sandboxes).values().cloned().collect()
    }

    fn next_address(&self) -> String {
        format!("127.0.0.1:{}", self.ports.fetch_add(1, Ordering::Relaxed))
    }

    async fn call(&self, call: PeerCall) -> Result<(), tonic::Status> {
        self.recorder.call(Sent { to: self.address.clone(), call }).await
    }
}

impl WorkerPeer for FakeWorker {
    fn create_sandbox(&self, request: CreateSandboxRequest) -> Call<'_, CreateSandboxReply> {
        async move {
            self.call(PeerCall::CreateSandbox(request.clone())).await?;
            self.add_sandbox(&request.sandbox_id, &request.function);
            let address = lock(&self.sandboxes)[&request.sandbox_id].address.clone();
            Ok(CreateSandboxReply {
                sandbox_id: request.sandbox_id,
                address,
                creation_micros: 1_000,
                steps: Vec::new(),
            })
        }
        .boxed()
    }

    fn kill_sandbox(&self, request: KillSandboxRequest) -> Call<'_, Ack> {
        async move {
            self.call(PeerCall::KillSandbox(request.clone())).await?;
            self.lose_sandbox(&request.sandbox_id);
            Ok(Ack {})
        }
        .boxed()
    }

    fn list_sandboxes(&self) -> Call<'_, SandboxList> {
        async move {
            self.call(PeerCall::ListSandboxes).await?;
            Ok(SandboxList { sandboxes: lock(&self.sandboxes).values().cloned().collect() })
        }
        .boxed()
    }
}

/// A data plane that records what it is told.
#[derive(Debug)]
pub struct FakeDataPlane {
    address: String,
    recorder: Arc<Recorder<Sent>>,
}

impl FakeDataPlane {
    fn call(&self, call: PeerCall) -> Call<'_, Ack> {
        async move { self.recorder.call(Sent { to: self.address.clone(), call }).await.map(|()| Ack {}) }.boxed()
    }
}

impl DataPlanePeer for FakeDataPlane {
    fn sync_function(&self, state: FunctionState) -> Call<'_, Ack> {
        self.call(PeerCall::SyncFunction(state))
    }

    fn remove_function(&self, removal: FunctionRef) -> Call<'_, Ack> {
        self.call(PeerCall::RemoveFunction(removal))
    }

    fn retain_functions(&self, set: FunctionSet) -> Call<'_, Ack> {
        self.call(PeerCall::RetainFunctions(set))
    }

    fn fail_queued(&self, failure: FunctionFailure) -> Call<'_, Ack> {
        self.call(PeerCall::FailQueued(failure))
    }
}

/// One call a worker or a data plane made to the control plane, with its arguments.
#[derive(Debug, Clone, PartialEq)]
pub enum UplinkCall {
    /// [`WorkerUplink::register_worker`].
    RegisterWorker(WorkerInfo),
    /// [`WorkerUplink::worker_heartbeat`].
    WorkerHeartbeat(WorkerHeartbeatRequest),
    /// [`WorkerUplink::report_sandbox_exit`].
    ReportSandboxExit(SandboxExit),
    /// [`DataPlaneUplink::register_data_plane`].
    RegisterDataPlane(DataPlaneInfo),
    /// [`DataPlaneUplink::report_load`].
    ReportLoad(LoadReport),
    /// [`DataPlaneUplink::request_cold_start`].
    RequestColdStart(ColdStartRequest),
    /// One message on an [`Attach`]ment: the registration first, then heartbeats.
    Attach(AttachRequest),
}

/// A control plane that records what workers and data planes tell it and answers as scripted (by default:
/// success). On an attachment, a failure scripted for the registration refuses the attachment, and one
/// scripted for a heartbeat ends it with that status (as a control plane that forgot the peer, or died).
#[derive(Debug, Default)]
pub struct FakeControlPlane {
    recorder: Arc<Recorder<UplinkCall>>,
}

impl FakeControlPlane {
    /// A fake with an empty journal and no script.
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// Every call so far.
    pub fn journal(&self) -> &Journal<UplinkCall> {
        &self.recorder.journal
    }

    /// How the calls are answered.
    pub fn script(&self) -> &Script<UplinkCall> {
        &self.recorder.script
    }

    fn call(&self, call: UplinkCall) -> Call<'_, Ack> {
        async move { self.recorder.call(call).await.map(|()| Ack {}) }.boxed()
    }
}

impl Attach for FakeControlPlane {
    fn attach(&self, mut messages: Outbound) -> Call<'_, Replies> {
        async move {
            let Some(registration) = messages.next().await else {
                return Err(tonic::Status::invalid_argument("the attachment ended before its registration"));
            };
            self.recorder.call(UplinkCall::Attach(registration)).await?;
            let (replies, outbound) = mpsc::channel(16);
            let _ = replies.try_send(Ok(AttachReply { registration: 1 }));
            let recorder = Arc::clone(&self.recorder);
            tokio::spawn(async move {
                while let Some(message) = messages.next().await {
                    let answer = recorder.call(UplinkCall::Attach(message)).await;
                    let ended = answer.is_err();
                    if replies.send(answer.map(|()| AttachReply { registration: 1 })).await.is_err() || ended {
                        return;
                    }
                }
            });
            Ok(ReceiverStream(outbound).boxed())
        }
        .boxed()
    }
}

impl WorkerUplink for FakeControlPlane {
    fn register_worker(&self, info: WorkerInfo) -> Call<'_, Ack> {
        self.call(UplinkCall::RegisterWorker(info))
    }

    fn worker_heartbeat(&self, heartbeat: WorkerHeartbeatRequest) -> Call<'_, Ack> {
        self.call(UplinkCall::WorkerHeartbeat(heartbeat))
    }

    fn report_sandbox_exit(&self, exit: SandboxExit) -> Call<'_, Ack> {
        self.call(UplinkCall::ReportSandboxExit(exit))
    }
}

impl DataPlaneUplink for FakeControlPlane {
    fn register_data_plane(&self, info: DataPlaneInfo) -> Call<'_, Ack> {
        self.call(UplinkCall::RegisterDataPlane(info))
    }

    fn report_load(&self, report: LoadReport) -> Call<'_, Ack> {
        self.call(UplinkCall::ReportLoad(report))
    }

    fn request_cold_start(&self, request: ColdStartRequest) -> Call<'_, Ack> {
        self.call(UplinkCall::RequestColdStart(request))
    }
}
