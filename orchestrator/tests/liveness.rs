//! Failure detection by attachment, with the roles as separate processes on loopback: a worker or data
//! plane killed with SIGKILL is dropped when its stream closes, long before its heartbeat deadline (60 s
//! here, so only the stream explains the drop); a restarted control plane sees every peer again; while it
//! is down, the data plane keeps serving warm sandboxes. Kill-to-detection times are printed, not asserted.

mod support;

use std::time::Duration;

use contracts::api::Health;
use support::*;

/// Only a closed stream can explain a drop within the tests' patience.
const DEADLINES: &str = "worker_timeout: 60s\ndata_plane_timeout: 60s\n";
/// How long a test waits for a condition before it fails: well under the heartbeat deadlines.
const PATIENCE: Duration = Duration::from_secs(20);
/// Kills per role for the printed kill-to-detection figures.
const KILLS: usize = 5;

fn control_plane_yaml(grpc_listen: &str) -> String {
    format!("grpc_listen: {grpc_listen}\nhttp_listen: 127.0.0.1:0\n{DEADLINES}")
}

fn worker_yaml(control_plane: &str, ports: &str) -> String {
    format!("listen: 127.0.0.1:0\ncontrol_plane: {control_plane}\nsandbox_ports: {ports}\n")
}

fn data_plane_yaml(control_plane: &str) -> String {
    format!("proxy_listen: 127.0.0.1:0\ngrpc_listen: 127.0.0.1:0\ncontrol_plane: {control_plane}\n")
}

/// Polls `/health` every 2 ms (the detection times it reports are that fine) until `check` holds; the time
/// it took, or a panic after [`PATIENCE`].
async fn wait_until_health(api: &str, what: &str, check: impl Fn(&Health) -> bool) -> Duration {
    wait_for_health(api, what, (Duration::from_millis(2), PATIENCE), check).await
}

fn report(role: &str, detections: &[Duration]) {
    let millis: Vec<String> = detections.iter().map(|d| format!("{:.1}", d.as_secs_f64() * 1e3)).collect();
    let max = detections.iter().max().copied().unwrap_or_default();
    eprintln!("kill -9 of a {role} to its drop (ms): [{}], max {:.1}", millis.join(", "), max.as_secs_f64() * 1e3);
}

/// A loopback port free right now, for a control plane that must come back at the same address.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_is_dropped_when_its_stream_closes() {
    let control_plane = Role::start("control-plane", &control_plane_yaml("127.0.0.1:0"));
    let (grpc, api) = (control_plane.address("grpc"), control_plane.address("api"));
    let mut detections = Vec::new();
    for _ in 0..KILLS {
        let mut worker = Role::start("worker", &worker_yaml(&grpc, "23000-23999"));
        wait_until_health(&api, "the worker registered", |h| h.workers == 1).await;
        worker.crash();
        detections.push(wait_until_health(&api, "the killed worker dropped", |h| h.workers == 0).await);
    }
    report("worker", &detections);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_data_plane_is_dropped_when_its_stream_closes() {
    let control_plane = Role::start("control-plane", &control_plane_yaml("127.0.0.1:0"));
    let (grpc, api) = (control_plane.address("grpc"), control_plane.address("api"));
    let mut detections = Vec::new();
    for _ in 0..KILLS {
        let mut data_plane = Role::start("data-plane", &data_plane_yaml(&grpc));
        wait_until_health(&api, "the data plane registered", |h| h.data_planes == 1).await;
        data_plane.crash();
        detections.push(wait_until_health(&api, "the killed data plane dropped", |h| h.data_planes == 0).await);
    }
    report("data plane", &detections);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_sandboxes_serve_while_the_control_plane_is_down_and_a_restarted_one_sees_every_peer_again() {
    let grpc = format!("127.0.0.1:{}", free_port());
    let mut control_plane = Role::start("control-plane", &control_plane_yaml(&grpc));
    let api = control_plane.address("api");
    let mut data_plane = Role::start("data-plane", &data_plane_yaml(&grpc));
    let proxy = data_plane.address("proxy");
    let mut worker = Role::start("worker", &worker_yaml(&grpc, "24000-24999"));
    let everyone = |h: &Health| h.workers == 1 && h.data_planes == 1;
    wait_until_health(&api, "the roles registered", everyone).await;
    assert_eq!(register(&api, "warm", |s| (s.min_scale, s.max_scale) = (1, 1)).await.status(), 201);
    wait_for_function(&api, "warm", PATIENCE, "a ready sandbox", |v| v.status.ready == 1).await;
    assert_eq!(invoke(&proxy, "warm", 0).await.status(), 200);

    control_plane.crash();
    for _ in 0..3 {
        let response = invoke(&proxy, "warm", 0).await;
        assert_eq!(response.status(), 200, "a warm sandbox serves without the control plane");
        assert_eq!(cold_start_of(&response), "none");
    }

    let mut restarted = Role::start("control-plane", &control_plane_yaml(&grpc));
    let back = wait_until_health(&restarted.address("api"), "every peer attached again", everyone).await;
    eprintln!(
        "control plane restarted: every peer attached again {:.1} ms after its ready line",
        back.as_secs_f64() * 1e3
    );
    // With every peer attached, it still stops on SIGTERM (its graceful shutdown ends the attachments)
    // rather than being killed when it does not.
    assert!(restarted.stop().success(), "the control plane stopped on SIGTERM");
    assert!(worker.stop().success() && data_plane.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_worker_is_dropped_at_its_deadline_and_attaches_again_when_it_wakes() {
    use nix::sys::signal::{Signal, kill};
    // The default deadlines: the connection stays open, so only the missing heartbeats explain the drop.
    let control_plane = Role::start("control-plane", "grpc_listen: 127.0.0.1:0\nhttp_listen: 127.0.0.1:0\n");
    let (grpc, api) = (control_plane.address("grpc"), control_plane.address("api"));
    let worker = Role::start("worker", &worker_yaml(&grpc, "25000-25999"));
    wait_until_health(&api, "the worker registered", |h| h.workers == 1).await;
    let pid = nix::unistd::Pid::from_raw(i32::try_from(worker.pid()).unwrap());
    kill(pid, Signal::SIGSTOP).unwrap();
    let dropped = wait_until_health(&api, "the silent worker dropped", |h| h.workers == 0).await;
    kill(pid, Signal::SIGCONT).unwrap();
    let back = wait_until_health(&api, "the woken worker attached again", |h| h.workers == 1).await;
    eprintln!(
        "SIGSTOP of a worker to its drop: {:.1} ms (worker_timeout 1 s); SIGCONT to attached again: {:.1} ms",
        dropped.as_secs_f64() * 1e3,
        back.as_secs_f64() * 1e3
    );
}
