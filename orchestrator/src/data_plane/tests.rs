//! The data plane's glue against fakes: the proxy's queue-and-serve path with a recording cold-start
//! requester and the control plane's pushes through the gRPC handler (no sockets), and what the data
//! plane tells the control plane.

use std::time::Instant;

use http_body_util::BodyExt;

use super::balancer::LoadBalancing;
use super::endpoints::ColdStart;
use super::*;
use crate::proto::dirigent::{AttachRequest, Endpoint};
use crate::test_util::cold_starts::FakeColdStarts;
use crate::test_util::peers::{FakeControlPlane, UplinkCall};
use crate::test_util::script::Step;

const LONG: Duration = Duration::from_secs(10);

/// A proxy and the gRPC handler the control plane pushes to, over one table.
struct Proxied {
    proxy: Arc<Proxy>,
    service: DataPlaneService,
    cold_starts: Arc<FakeColdStarts>,
    table: Arc<FunctionTable>,
}

impl Proxied {
    fn new() -> Self {
        let table = Arc::new(FunctionTable::new(LoadBalancing::LeastInFlight));
        let cold_starts = Arc::new(FakeColdStarts::default());
        let requester = Arc::clone(&cold_starts) as Arc<dyn ColdStartRequester>;
        let proxy = Arc::new(Proxy::new(Arc::clone(&table), requester, LONG, LONG));
        let service = DataPlaneService { table: Arc::clone(&table), drain_timeout: LONG };
        Self { proxy, service, cold_starts, table }
    }

    /// Pushes `function`'s state as the control plane does.
    async fn push(&self, function: &str, generation: u64, endpoints: &[(&str, u16)]) {
        let endpoints = endpoints
            .iter()
            .map(|(id, port)| Endpoint {
                sandbox_id: (*id).into(),
                address: format!("127.0.0.1:{port}"),
                creation_micros: 2_000,
                steps: Vec::new(),
            })
            .collect();
        let state =
            FunctionState { name: function.into(), container_concurrency: 1, endpoints, generation, incarnation: 1 };
        self.service.sync_function(Request::new(state)).await.unwrap();
    }

    /// Admits a request for `function` in the background.
    fn request(
        &self,
        function: &str,
    ) -> tokio::task::JoinHandle<Result<endpoints::Grant, http::Response<proxy::ProxyBody>>> {
        let proxy = Arc::clone(&self.proxy);
        let request = http::Request::builder().uri("/").header(http::header::HOST, function).body(()).unwrap();
        tokio::spawn(async move { proxy.admit(&request, Instant::now()).await.map(|admitted| admitted.grant) })
    }

    /// Returns once `count` requests for `function` wait in its queue.
    async fn queued(&self, function: &str, count: u32) {
        let entry = self.table.get(function).unwrap();
        while entry.take_load().1 < count {
            tokio::task::yield_now().await;
        }
    }
}

async fn body(response: http::Response<proxy::ProxyBody>) -> String {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::test]
async fn a_request_at_zero_queues_asks_for_one_cold_start_and_is_served_by_the_pushed_sandbox() {
    let proxied = Proxied::new();
    proxied.push("f", 1, &[]).await;
    let (first, second) = (proxied.request("f"), proxied.request("f"));
    proxied.queued("f", 2).await;
    assert_eq!(proxied.cold_starts.journal().calls(), ["f"], "the function at zero is cold-started once");
    proxied.push("f", 2, &[("f-1", 31_001), ("f-2", 31_002)]).await;
    let (first, second) = (first.await.unwrap().unwrap(), second.await.unwrap().unwrap());
    assert_eq!((first.cold_start, second.cold_start), (ColdStart::Triggered, ColdStart::Waited));
    let mut served: Vec<String> =
        [&first, &second].iter().map(|grant| grant.lease.endpoint().address.to_string()).collect();
    served.sort();
    assert_eq!(served, ["127.0.0.1:31001", "127.0.0.1:31002"], "each waiter got one of the pushed sandboxes");
    assert_eq!(proxied.cold_starts.journal().calls(), ["f"], "no cold start once sandboxes exist");
}

#[tokio::test]
async fn a_failed_cold_start_answers_the_queued_request_with_the_reason() {
    let proxied = Proxied::new();
    proxied.push("g", 1, &[]).await;
    let waiting = proxied.request("g");
    proxied.queued("g", 1).await;
    assert_eq!(proxied.cold_starts.journal().calls(), ["g"]);
    let failure = FunctionFailure { name: "g".into(), message: "no worker has room".into() };
    proxied.service.fail_queued(Request::new(failure)).await.unwrap();
    let answer = waiting.await.unwrap().expect_err("the request must not wait for a sandbox that will not come");
    assert_eq!(answer.status(), http::StatusCode::SERVICE_UNAVAILABLE);
    assert!(body(answer).await.contains("no worker has room"), "the control plane's reason reaches the client");
    assert_eq!(proxied.table.get("g").unwrap().counters.take().failures, 1);
}

#[tokio::test]
async fn cold_start_requests_reach_the_control_plane_with_the_data_plane_name() {
    let control_plane = FakeControlPlane::new();
    let shutdown = CancellationToken::new();
    let uplink = Arc::clone(&control_plane) as Arc<dyn DataPlaneUplink>;
    let (requester, _task) = spawn_cold_start_requester(uplink, "dp-1".into(), shutdown.clone());
    requester.request("f");
    let asked = UplinkCall::RequestColdStart(ColdStartRequest { function: "f".into(), data_plane: "dp-1".into() });
    control_plane.journal().wait_until("the cold start asked for", |calls| calls == [asked.clone()]).await;
    shutdown.cancel();
}

#[tokio::test]
async fn the_reporter_attaches_keeps_unsent_counts_and_attaches_again_when_forgotten() {
    let control_plane = FakeControlPlane::new();
    let is_report = |call: &UplinkCall| matches!(call, UplinkCall::ReportLoad(_));
    for step in [
        Step::fail(Status::unavailable("the control plane restarts")),
        Step::answer(),
        Step::fail(Status::not_found("data plane dp-1 is not registered")),
    ] {
        control_plane.script().push(is_report, step);
    }
    let table = Arc::new(FunctionTable::new(LoadBalancing::LeastInFlight));
    table.sync("f", Version::default(), 1, Vec::new(), LONG).await;
    table.get("f").unwrap().counters.record_invocation(Duration::from_millis(1), false);
    let info = DataPlaneInfo { name: "dp-1".into(), grpc_address: "dp:8081".into(), proxy_address: "dp:8080".into() };
    let reporter = Reporter {
        client: Arc::clone(&control_plane) as Arc<dyn DataPlaneUplink>,
        table,
        info: info.clone(),
        interval: Duration::from_millis(10),
        heartbeat_interval: Duration::from_secs(3600),
        cold_starts: Arc::new(FakeColdStarts::default()),
    };
    let shutdown = CancellationToken::new();
    let reporting = tokio::spawn(reporter.run(shutdown.clone()));
    let registered_twice = |calls: &[UplinkCall]| calls.iter().filter(|call| !is_report(call)).count() >= 2;
    let mut calls = control_plane.journal().wait_until("registered again", registered_twice).await;
    shutdown.cancel();
    reporting.await.unwrap();
    // Up to the second registration: the reports of the new attachment may have begun meanwhile.
    let second = calls.iter().enumerate().filter(|(_, call)| !is_report(call)).nth(1).map(|(at, _)| at).unwrap();
    calls.truncate(second + 1);
    let invocations: Vec<u64> = calls
        .iter()
        .filter_map(|call| match call {
            UplinkCall::ReportLoad(report) => Some(report.functions.iter().map(|load| load.invocations).sum()),
            _ => None,
        })
        .collect();
    assert_eq!(invocations, [1, 1, 0], "a failed report's counts go into the next one, and only once");
    let registration = UplinkCall::Attach(AttachRequest { message: Some(attach_request::Message::DataPlane(info)) });
    assert_eq!(calls.first(), Some(&registration));
    assert_eq!(calls.last(), Some(&registration));
}

#[tokio::test]
async fn a_data_plane_that_attaches_again_asks_again_for_cold_starts_of_queued_functions() {
    let (proxied, control_plane) = (Proxied::new(), FakeControlPlane::new());
    for function in ["queued", "idle"] {
        proxied.push(function, 1, &[]).await;
    }
    let waiting = proxied.request("queued");
    proxied.queued("queued", 1).await;
    assert_eq!(proxied.cold_starts.journal().calls(), ["queued"], "the proxy's own request");
    // The control plane dies under the attachment at the first heartbeat: the cold start may be lost.
    let is_heartbeat = |call: &UplinkCall| {
        matches!(call, UplinkCall::Attach(AttachRequest { message: Some(attach_request::Message::Heartbeat(_)) }))
    };
    control_plane.script().push(is_heartbeat, Step::fail(Status::unavailable("the control plane died")));
    let reporter = Reporter {
        client: Arc::clone(&control_plane) as Arc<dyn DataPlaneUplink>,
        table: Arc::clone(&proxied.table),
        info: DataPlaneInfo { name: "dp-1".into(), grpc_address: "dp:8081".into(), proxy_address: "dp:8080".into() },
        interval: Duration::from_secs(3600),
        heartbeat_interval: Duration::from_millis(10),
        cold_starts: Arc::clone(&proxied.cold_starts) as Arc<dyn ColdStartRequester>,
    };
    let shutdown = CancellationToken::new();
    let reporting = tokio::spawn(reporter.run(shutdown.clone()));
    let is_registration = |call: &UplinkCall| {
        matches!(call, UplinkCall::Attach(AttachRequest { message: Some(attach_request::Message::DataPlane(_)) }))
    };
    control_plane
        .journal()
        .wait_until("attached again", |calls| calls.iter().filter(|call| is_registration(call)).count() == 2)
        .await;
    let asked = proxied.cold_starts.journal().wait_until("asked on each attachment", |calls| calls.len() == 3).await;
    assert_eq!(asked, ["queued", "queued", "queued"], "only the function with a queued request, once per attachment");
    shutdown.cancel();
    reporting.await.unwrap();
    waiting.abort();
}
