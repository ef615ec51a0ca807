//! Control plane, data plane and two workers as separate OS processes talking gRPC over loopback.

mod support;

use std::time::Duration;

use contracts::api::Health;
use support::*;

/// Workers sharing a host get their own sandbox port ranges, as standalone gives its workers.
fn worker_yaml(control_plane: &str, ports: &str) -> String {
    format!("listen: 127.0.0.1:0\ncontrol_plane: {control_plane}\nheartbeat_interval: 200ms\nsandbox_ports: {ports}\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_in_separate_processes_serve_and_clean_up() {
    let control_plane =
        Role::start("control-plane", "grpc_listen: 127.0.0.1:0\nhttp_listen: 127.0.0.1:0\nworker_timeout: 2s\n");
    let (grpc, api) = (control_plane.address("grpc"), control_plane.address("api"));
    let data_plane = Role::start(
        "data-plane",
        &format!(
            "proxy_listen: 127.0.0.1:0\ngrpc_listen: 127.0.0.1:0\ncontrol_plane: {grpc}\nreport_interval: 200ms\n"
        ),
    );
    let proxy = data_plane.address("proxy");
    let mut workers = [
        Role::start("worker", &worker_yaml(&grpc, "21000-21999")),
        Role::start("worker", &worker_yaml(&grpc, "22000-22999")),
    ];

    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let health = health(&api).await;
        if health.workers == 2 && health.data_planes == 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "roles did not register: {health:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Two sandboxes from the start: least-loaded placement puts one on each worker.
    assert_eq!(register(&api, "split", |s| (s.min_scale, s.max_scale) = (2, 2)).await.status(), 201);
    let view =
        wait_for_function(&api, "split", Duration::from_secs(20), "two ready sandboxes", |v| v.status.ready == 2).await;
    let placed: std::collections::BTreeSet<&str> = view.status.sandboxes.iter().map(|s| s.worker.as_str()).collect();
    assert_eq!(placed.len(), 2, "one sandbox per worker: {view:?}");
    for _ in 0..4 {
        let response = invoke(&proxy, "split", 0).await;
        assert_eq!(response.status(), 200);
        assert_eq!(cold_start_of(&response), "none");
    }
    let ids = sandbox_ids(&view);
    assert_eq!(sandbox_pids(&ids).len(), 2);

    // A worker that dies takes its sandboxes with it (no orphans) and the control plane drops it.
    workers[0].crash();
    let workers_left = |v: &Health| v.workers == 1;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let health = health(&api).await;
        if workers_left(&health) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "dead worker not dropped: {health:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(sandbox_pids(&ids).len(), 1, "the dead worker's sandbox died with it");
    assert_eq!(invoke(&proxy, "split", 0).await.status(), 200, "the survivor still serves");

    assert!(workers[1].stop().success());
    assert_sandboxes_gone(&ids);
}
