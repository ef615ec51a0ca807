//! The worker's glue against a fake runtime and a fake control plane: what it asks of the runtime for a
//! creation, and what it reports (registration, heartbeats, exits).

use std::collections::HashMap;
use std::net::SocketAddr;

use super::*;
use crate::proto::dirigent::{Ack, AttachRequest};
use crate::test_util::peers::{FakeControlPlane, UplinkCall};
use crate::test_util::runtime::{Behaviour, FakeRuntime, RuntimeCall};
use crate::test_util::script::{Gate, PATIENCE, Step};

fn request(id: &str, image: &str) -> CreateSandboxRequest {
    CreateSandboxRequest {
        sandbox_id: id.into(),
        function: "f".into(),
        image: image.into(),
        args: vec!["--flag".into()],
        port: 80,
        cpu_millis: 250,
        memory_mib: 128,
        env: HashMap::from([("KEY".to_owned(), "value".to_owned())]),
    }
}

fn service(runtime: &Arc<FakeRuntime>, ready_timeout: Duration) -> WorkerService {
    WorkerService { runtime: Arc::clone(runtime) as Arc<dyn SandboxRuntime>, ready_timeout }
}

/// The calls to the runtime other than `list` (heartbeats list every interval).
fn runtime_calls(runtime: &FakeRuntime) -> Vec<RuntimeCall> {
    runtime.journal().calls().into_iter().filter(|call| *call != RuntimeCall::List).collect()
}

fn info() -> WorkerInfo {
    WorkerInfo { name: "w".into(), address: "127.0.0.1:10010".into(), cpu_millis: 2000, memory_mib: 4096 }
}

#[tokio::test]
async fn a_creation_starts_the_sandbox_waits_for_it_and_answers_with_its_address() {
    let runtime = FakeRuntime::new();
    let service = service(&runtime, Duration::from_secs(10));
    let reply = service.create_sandbox(Request::new(request("f-1", "img"))).await.unwrap().into_inner();
    let spec = SandboxSpec {
        id: "f-1".into(),
        function: "f".into(),
        image: "img".into(),
        args: vec!["--flag".into()],
        env: [("KEY".to_owned(), "value".to_owned())].into(),
        cpu_millis: 250,
        memory_mib: 128,
    };
    assert_eq!(runtime_calls(&runtime), [RuntimeCall::Create(spec), RuntimeCall::WaitReady("f-1".into())]);
    let address = runtime.list()[0].address.to_string();
    assert_eq!((reply.sandbox_id.as_str(), reply.address.as_str()), ("f-1", address.as_str()));

    let listed = service.list_sandboxes(Request::new(Ack {})).await.unwrap().into_inner().sandboxes;
    let expected = SandboxInfoMsg { sandbox_id: "f-1".into(), function: "f".into(), address };
    assert_eq!(listed, [expected]);
    let kill = || service.kill_sandbox(Request::new(KillSandboxRequest { sandbox_id: "f-1".into() }));
    kill().await.unwrap();
    assert_eq!(runtime_calls(&runtime).last(), Some(&RuntimeCall::Destroy("f-1".into())));
    assert!(kill().await.is_ok(), "killing what is already gone is what the caller wanted");
}

#[tokio::test]
async fn a_sandbox_that_does_not_become_ready_is_destroyed_and_the_creation_fails() {
    let runtime = FakeRuntime::new();
    runtime.behave("hangs", Behaviour::NeverReady);
    runtime.behave("missing", Behaviour::Unstartable("no such file".into()));
    let service = service(&runtime, Duration::from_millis(50));
    let status = service.create_sandbox(Request::new(request("f-1", "hangs"))).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status}");
    let calls = runtime_calls(&runtime);
    assert_eq!(calls[1..], [RuntimeCall::WaitReady("f-1".into()), RuntimeCall::Destroy("f-1".into())]);
    assert!(runtime.list().is_empty());

    let status = service.create_sandbox(Request::new(request("f-2", "missing"))).await.unwrap_err();
    assert!(status.message().contains("no such file"), "the runtime's reason reaches the control plane: {status}");
    assert!(!runtime_calls(&runtime).contains(&RuntimeCall::WaitReady("f-2".into())), "nothing started to wait for");
}

#[tokio::test]
async fn a_sandbox_the_control_plane_gave_up_on_is_destroyed_once_ready() {
    let runtime = FakeRuntime::new();
    let gate = Gate::new();
    runtime.behave("slow", Behaviour::ReadyWhen(gate.clone()));
    let service = Arc::new(service(&runtime, Duration::from_secs(10)));
    let call = tokio::spawn({
        let service = Arc::clone(&service);
        async move { service.create_sandbox(Request::new(request("f-1", "slow"))).await.map(|_| ()) }
    });
    let waiting = |calls: &[RuntimeCall]| calls.contains(&RuntimeCall::WaitReady("f-1".into()));
    runtime.journal().wait_until("readiness awaited", waiting).await;
    call.abort();
    let _ = call.await;
    gate.open();
    let destroyed = |calls: &[RuntimeCall]| calls.contains(&RuntimeCall::Destroy("f-1".into()));
    runtime.journal().wait_until("the abandoned sandbox destroyed", destroyed).await;
    assert!(runtime.list().is_empty());
}

#[tokio::test]
async fn an_exit_is_reported_to_the_control_plane_and_tried_again_when_the_report_fails() {
    let (runtime, control_plane) = (FakeRuntime::new(), FakeControlPlane::new());
    let is_exit = |call: &UplinkCall| matches!(call, UplinkCall::ReportSandboxExit(_));
    control_plane.script().push(is_exit, Step::fail(Status::unavailable("the control plane restarts")));
    let shutdown = CancellationToken::new();
    let reporting = tokio::spawn(report_exits(
        Arc::clone(&control_plane) as Arc<dyn WorkerUplink>,
        "w".into(),
        Arc::clone(&runtime) as Arc<dyn SandboxRuntime>,
        shutdown.clone(),
    ));
    while !runtime.has_exit_listeners() {
        tokio::task::yield_now().await;
    }
    runtime.create(contract_spec("f-1")).await.unwrap();
    assert!(runtime.exit("f-1", "signal: 9 (SIGKILL)"));
    let calls = control_plane
        .journal()
        .wait_until("the exit reported twice", |calls| calls.iter().filter(|call| is_exit(call)).count() == 2)
        .await;
    let exit = SandboxExit {
        worker: "w".into(),
        sandbox_id: "f-1".into(),
        function: "contract".into(),
        reason: "signal: 9 (SIGKILL)".into(),
    };
    assert_eq!(calls, [UplinkCall::ReportSandboxExit(exit.clone()), UplinkCall::ReportSandboxExit(exit)]);
    shutdown.cancel();
    reporting.await.unwrap();
}

fn contract_spec(id: &str) -> SandboxSpec {
    crate::test_util::contract::spec(id, "img", &[])
}

#[tokio::test]
async fn heartbeats_on_the_attachment_count_the_sandboxes_and_a_forgotten_worker_attaches_again() {
    let (runtime, control_plane) = (FakeRuntime::new(), FakeControlPlane::new());
    for id in ["f-1", "f-2"] {
        runtime.create(contract_spec(id)).await.unwrap();
    }
    let message = |call: &UplinkCall| match call {
        UplinkCall::Attach(AttachRequest { message }) => message.clone(),
        _ => None,
    };
    let is_registration = move |call: &UplinkCall| matches!(message(call), Some(attach_request::Message::Worker(_)));
    let is_heartbeat = move |call: &UplinkCall| matches!(message(call), Some(attach_request::Message::Heartbeat(_)));
    control_plane.script().push(is_registration, Step::fail(Status::unavailable("not up yet")));
    control_plane.script().push(is_heartbeat, Step::fail(Status::not_found("worker w is not registered")));
    let shutdown = CancellationToken::new();
    let beating = tokio::spawn(heartbeat(
        Arc::clone(&control_plane) as Arc<dyn WorkerUplink>,
        info(),
        Arc::clone(&runtime) as Arc<dyn SandboxRuntime>,
        Duration::from_millis(20),
        shutdown.clone(),
    ));
    let calls = control_plane
        .journal()
        .wait_until("two heartbeats", |calls| calls.iter().filter(|call| is_heartbeat(call)).count() == 2);
    let calls = calls.await;
    let attach = |message| UplinkCall::Attach(AttachRequest { message: Some(message) });
    let beat = attach(attach_request::Message::Heartbeat(Heartbeat { sandboxes: 2 }));
    let register = attach(attach_request::Message::Worker(info()));
    assert_eq!(calls, [register.clone(), register.clone(), beat.clone(), register, beat]);
    shutdown.cancel();
    beating.await.unwrap();
}

#[tokio::test]
async fn serving_reports_to_the_control_plane_and_shutdown_destroys_every_sandbox() {
    let (runtime, control_plane) = (FakeRuntime::new(), FakeControlPlane::new());
    let config = WorkerConfig {
        name: Some("w".into()),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..WorkerConfig::default()
    };
    let worker = Worker::bind_with(
        config,
        Arc::clone(&runtime) as Arc<dyn SandboxRuntime>,
        Arc::clone(&control_plane) as Arc<dyn WorkerUplink>,
    )
    .await
    .unwrap();
    let shutdown = CancellationToken::new();
    let serving = tokio::spawn(worker.serve(shutdown.clone()));
    control_plane
        .journal()
        .wait_until("registered", |calls| {
            matches!(
                calls.first(),
                Some(UplinkCall::Attach(AttachRequest { message: Some(attach_request::Message::Worker(info)) }))
                    if info.name == "w"
            )
        })
        .await;
    runtime.create(contract_spec("f-1")).await.unwrap();
    shutdown.cancel();
    serving.await.unwrap().unwrap();
    assert_eq!(runtime_calls(&runtime).last(), Some(&RuntimeCall::Shutdown));
    assert!(runtime.list().is_empty(), "no sandbox outlives its worker");
}

#[tokio::test]
async fn a_panic_in_the_heartbeats_stops_the_worker_with_the_reason() {
    let (runtime, control_plane) = (FakeRuntime::new(), FakeControlPlane::new());
    let config = WorkerConfig {
        name: Some("w".into()),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        heartbeat_interval: Duration::from_millis(10),
        ..WorkerConfig::default()
    };
    let uplink = Arc::clone(&control_plane) as Arc<dyn WorkerUplink>;
    let worker = Worker::bind_with(config, Arc::clone(&runtime) as Arc<dyn SandboxRuntime>, uplink).await.unwrap();
    runtime.panic_on_list();
    let shutdown = CancellationToken::new();
    let stopped = tokio::time::timeout(PATIENCE, worker.serve(shutdown.clone())).await.expect("the worker stops");
    let err = stopped.expect_err("a worker without heartbeats must not keep serving").to_string();
    assert!(err.contains("the worker's attachment and heartbeats stopped unexpectedly (panicked: "), "{err}");
    assert!(shutdown.is_cancelled());
    assert_eq!(runtime_calls(&runtime).last(), Some(&RuntimeCall::Shutdown), "its sandboxes are destroyed");
}
