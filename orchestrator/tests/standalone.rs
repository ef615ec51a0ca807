//! `dirigent standalone` as a real process on loopback, driven through its HTTP API and proxy.

mod support;

use std::time::Duration;

use contracts::api::{self, Deleted, ErrorBody, Health};
use serde_json::Value;
use support::*;

const FAST_AUTOSCALER: &str = "stable_window: 2s, panic_window: 400ms, tick: 200ms";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_then_warm_through_both_routes_and_protocols() {
    let mut cluster = Role::start("standalone", &standalone_yaml(2, ""));
    let (api, proxy) = (cluster.address("api"), cluster.address("proxy"));

    // Dirigent's form registration answers with the data planes' addresses.
    let reply = client()
        .post(format!("http://{api}/registerService"))
        .form(&[
            ("name", "hello"),
            ("image", TRACE_FUNCTION),
            ("port_forwarding", "80"),
            ("port_forwarding", "tcp"),
            ("requested_cpu", "100"),
            ("requested_memory", "64"),
            ("scaling_upper_bound", "4"),
            ("scaling_lower_bound", "0"),
            ("cold_start_sweep", "false"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    assert_eq!(reply.text().await.unwrap(), proxy);

    let cold = invoke(&proxy, "hello", 20).await;
    assert_eq!(cold.status(), 200);
    assert_eq!(cold_start_of(&cold), "triggered");
    let timing = cold.headers()["server-timing"].to_str().unwrap().to_owned();
    assert!(
        timing.contains("create;dur=") && timing.contains("queue;dur=") && timing.contains("proxy;dur="),
        "{timing}"
    );
    let body: Value = cold.json().await.unwrap();
    assert_eq!(body["Status"], "OK");
    assert!(body["ExecutionTime"].as_u64().unwrap() >= 20_000, "the function spins at least 20 ms: {body}");
    assert_eq!(body["ColdStart"], true);
    assert_eq!(body["Function"], "hello", "the sandbox knows the name it was deployed under");

    let warm = invoke(&proxy, "hello", 0).await;
    assert_eq!(cold_start_of(&warm), "none");
    assert!(!warm.headers()["server-timing"].to_str().unwrap().contains("create;"));
    assert_eq!(warm.json::<Value>().await.unwrap()["ColdStart"], false);

    let by_path =
        client().post(format!("http://{proxy}/function/hello")).header("workload", "empty").send().await.unwrap();
    assert_eq!(by_path.status(), 200);
    assert_eq!(cold_start_of(&by_path), "none");

    let h2 = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    let over_h2 = h2.get(format!("http://{proxy}/function/hello")).send().await.unwrap();
    assert_eq!(over_h2.version(), reqwest::Version::HTTP_2);
    assert_eq!(over_h2.status(), 200);

    let view = function(&api, "hello").await;
    assert_eq!(view.status.ready, 1, "one sandbox served all sequential requests: {view:?}");
    let ids = sandbox_ids(&view);
    assert_eq!(sandbox_pids(&ids).len(), 1, "the sandbox is a live process");

    assert!(cluster.stop().success());
    assert_sandboxes_gone(&ids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_clear_and_nothing_registered_is_lost() {
    let cluster = Role::start("standalone", &standalone_yaml(1, ""));
    let (api, proxy) = (cluster.address("api"), cluster.address("proxy"));
    let http = client();

    let unknown = invoke(&proxy, "nobody", 0).await;
    assert_eq!(unknown.status(), 404);
    assert!(unknown.json::<ErrorBody>().await.unwrap().error.contains("nobody"));

    // A bare image name is found beside the dirigent binary.
    assert_eq!(register(&api, "keep", |s| s.image = "trace-function".into()).await.status(), 201);
    let duplicate = register(&api, "keep", |_| {}).await;
    assert_eq!(duplicate.status(), 409);
    assert!(duplicate.text().await.unwrap().contains("already registered"));

    let bad_number = http
        .post(format!("http://{api}/registerService"))
        .form(&[("name", "f"), ("image", "x"), ("requested_cpu", "lots")])
        .send()
        .await
        .unwrap();
    assert_eq!(bad_number.status(), 400);
    assert!(bad_number.text().await.unwrap().contains("requested_cpu"));
    let missing = http.post(format!("http://{api}/registerService")).form(&[("image", "x")]).send().await.unwrap();
    assert_eq!(missing.status(), 400);
    assert!(missing.text().await.unwrap().contains("'name'"));
    let bad_json = http.post(format!("http://{api}/v1/functions")).body("{\"name\": 3").send().await.unwrap();
    assert_eq!(bad_json.status(), 400);
    assert!(bad_json.text().await.unwrap().contains("JSON"));
    assert_eq!(http.get(format!("http://{api}/v1/functions/ghost")).send().await.unwrap().status(), 404);
    assert_eq!(http.delete(format!("http://{api}/v1/functions/ghost")).send().await.unwrap().status(), 404);

    // A function whose image cannot start fails its queued request with 503 and the reason, not a hang.
    assert_eq!(register(&api, "broken", |s| s.image = "/nonexistent/function".into()).await.status(), 201);
    let broken = invoke(&proxy, "broken", 0).await;
    assert_eq!(broken.status(), 503);
    let message = broken.json::<ErrorBody>().await.unwrap().error;
    assert!(message.contains("/nonexistent/function"), "{message}");

    let list = functions(&api).await;
    let names: Vec<&str> = list.functions.iter().map(|f| f.spec.name.as_str()).collect();
    assert_eq!(names, ["broken", "keep"], "bad requests lost nothing");
    assert_eq!(invoke(&proxy, "keep", 0).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scales_up_under_concurrent_load_then_to_zero() {
    let mut cluster = Role::start("standalone", &standalone_yaml(2, FAST_AUTOSCALER));
    let (api, proxy) = (cluster.address("api"), cluster.address("proxy"));
    assert_eq!(register(&api, "busy", |s| s.max_scale = 4).await.status(), 201);

    // Four requests at once on a concurrency-1 function: the queue and the panic window must add sandboxes.
    let load: Vec<_> = (0..4)
        .map(|_| {
            tokio::spawn({
                let proxy = proxy.clone();
                async move { invoke(&proxy, "busy", 1500).await.status() }
            })
        })
        .collect();
    let scaled =
        wait_for_function(&api, "busy", Duration::from_secs(30), "scale-up to 2+", |v| v.status.ready >= 2).await;
    let mut ids = sandbox_ids(&scaled);
    for request in load {
        assert_eq!(request.await.unwrap(), 200);
    }
    let at_peak = function(&api, "busy").await;
    ids.extend(sandbox_ids(&at_peak));
    assert!(at_peak.status.ready <= 4, "max_scale holds: {at_peak:?}");

    // No traffic for a whole stable window: back to zero, and the processes are gone.
    wait_for_function(&api, "busy", Duration::from_secs(30), "scale to zero", |v| v.status.ready == 0).await;
    assert_sandboxes_gone(&ids);

    let metrics = client().get(format!("http://{api}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("dirigent_invocations_total{function=\"busy\"} 4"), "{metrics}");
    assert!(metrics.contains("dirigent_scheduling_latency_seconds_count"), "{metrics}");
    assert!(cluster.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_drains_and_kills_and_crashed_sandboxes_are_replaced() {
    let cluster = Role::start("standalone", &standalone_yaml(1, ""));
    let (api, proxy) = (cluster.address("api"), cluster.address("proxy"));
    assert_eq!(register(&api, "victim", |_| {}).await.status(), 201);
    assert_eq!(invoke(&proxy, "victim", 0).await.status(), 200);
    let first = sandbox_ids(&function(&api, "victim").await);

    // A sandbox that dies on its own leaves the data plane; the next request cold-starts a new one.
    for pid in sandbox_pids(&first) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
    }
    wait_for_function(&api, "victim", Duration::from_secs(10), "crashed sandbox removed", |v| v.status.ready == 0)
        .await;
    // The registry drops the sandbox just before the data plane hears of it: a request in that window
    // reaches the dead address and gets 502, so wait until the data plane has caught up.
    let mut again = invoke(&proxy, "victim", 0).await;
    for _ in 0..100 {
        if again.status() != 502 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        again = invoke(&proxy, "victim", 0).await;
    }
    assert_eq!(again.status(), 200);
    assert_eq!(cold_start_of(&again), "triggered");
    let second = sandbox_ids(&function(&api, "victim").await);
    assert_ne!(first, second);

    let deleted = client().delete(format!("http://{api}{}", api::function_path("victim"))).send().await.unwrap();
    assert_eq!(deleted.status(), 200);
    assert_eq!(deleted.json::<Deleted>().await.unwrap().deleted, "victim");
    assert_sandboxes_gone(&second);
    assert_eq!(invoke(&proxy, "victim", 0).await.status(), 404);
}

/// Regression: the standalone ready wait once held the membership watch's read guard for the whole run, so the
/// first membership change after start (here a worker registering) froze the control plane.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_changes_after_start_do_not_freeze_the_control_plane() {
    use orchestrator::proto::dirigent::WorkerInfo;
    use orchestrator::proto::dirigent::control_plane_client::ControlPlaneClient;

    let cluster = Role::start("standalone", &standalone_yaml(1, ""));
    let (api, grpc) = (cluster.address("api"), cluster.address("grpc"));
    let mut control_plane = ControlPlaneClient::connect(format!("http://{grpc}")).await.unwrap();
    // Nothing listens at its address; the registration itself is what matters.
    let extra = WorkerInfo { name: "extra".into(), address: "127.0.0.1:1".into(), cpu_millis: 1000, memory_mib: 512 };
    let registered = tokio::time::timeout(Duration::from_secs(10), control_plane.register_worker(extra)).await;
    assert!(matches!(registered, Ok(Ok(_))), "the registration must answer: {registered:?}");
    let health =
        tokio::time::timeout(Duration::from_secs(10), client().get(format!("http://{api}/health")).send()).await;
    let health: Health = health.expect("the API must still answer").unwrap().json().await.unwrap();
    assert_eq!(health.workers, 2, "{health:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulated_runtime_serves_cold_and_warm_without_a_process() {
    let yaml = standalone_yaml(2, "") + "  runtime: simulated\n  creation_delay: 40ms\n";
    let mut cluster = Role::start("standalone", &yaml);
    let (api, proxy) = (cluster.address("api"), cluster.address("proxy"));
    let name = format!("simulated-{}", std::process::id());
    // The image is only a name: nothing is executed.
    assert_eq!(register(&api, &name, |s| s.image = "no-such-binary".into()).await.status(), 201);
    let cold = invoke(&proxy, &name, 30).await;
    assert_eq!(cold.status(), 200);
    assert_eq!(cold_start_of(&cold), "triggered");
    let timing = cold.headers()["server-timing"].to_str().unwrap().to_owned();
    let create = timing.split(',').find_map(|m| m.trim().strip_prefix("create;dur=")).map(|d| d.parse::<f64>());
    assert!(create.is_some_and(|d| d.is_ok_and(|ms| ms >= 40.0)), "creation takes the delay: {timing}");
    let body: Value = cold.json().await.unwrap();
    assert!(body["ExecutionTime"].as_u64().unwrap() >= 30_000, "it sleeps the requested 30 ms: {body}");
    assert_eq!((body["ColdStart"].as_bool(), body["Function"].as_str()), (Some(true), Some(name.as_str())));
    let warm = invoke(&proxy, &name, 0).await;
    assert_eq!((warm.status().as_u16(), cold_start_of(&warm)), (200, "none".to_string()));
    assert!(pids_with_env(&[format!("FUNCTION_NAME={name}")]).is_empty(), "no sandbox process was started");
    assert!(cluster.stop().success());
}
