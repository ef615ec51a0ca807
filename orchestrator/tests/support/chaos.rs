//! Failure scenarios over real role processes, shared by the reliability tests and the reliability benchmark:
//! a control plane with its embedded store (or three replicas of it), two data planes and two workers on
//! loopback; a function with four sandboxes (two per worker) that a client calls every 10 ms through both data
//! planes, failing over from one that refuses the connection; then one role is killed with SIGKILL and the
//! cluster is watched until it serves fully again.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use contracts::api::Health;
use tokio_util::sync::CancellationToken;

use super::{Role, client, function, functions, pids_with_env, register};

/// Which role is killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// `kill -9` of one worker (two of the four sandboxes die with it).
    WorkerKill,
    /// `kill -9` of one of the two data planes.
    DataPlaneKill,
    /// `kill -9` of the control plane, started again 1 s later over the same store.
    ControlPlaneRestart,
    /// `kill -9` of the leader of three control-plane replicas (not restarted).
    LeaderKill,
    /// `kill -9` of a follower of three control-plane replicas (not restarted).
    FollowerKill,
}

impl Scenario {
    /// Every scenario, in the order the benchmark prints them.
    pub const ALL: [Scenario; 5] = [
        Scenario::WorkerKill,
        Scenario::DataPlaneKill,
        Scenario::ControlPlaneRestart,
        Scenario::LeaderKill,
        Scenario::FollowerKill,
    ];

    /// How many control-plane replicas its cluster has.
    fn replicas(self) -> usize {
        match self {
            Scenario::LeaderKill | Scenario::FollowerKill => 3,
            _ => 1,
        }
    }

    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::WorkerKill => "worker kill -9",
            Scenario::DataPlaneKill => "data plane kill -9",
            Scenario::ControlPlaneRestart => "control plane kill -9, restart after 1 s",
            Scenario::LeaderKill => "leader of 3 control planes kill -9",
            Scenario::FollowerKill => "follower of 3 control planes kill -9",
        }
    }
}

/// What one run of a scenario saw. Times count from the kill (the SIGKILL sent).
#[derive(Debug, Clone)]
pub struct Report {
    /// The scenario.
    pub scenario: Scenario,
    /// Until the control plane no longer listed the dead role, or another replica led (none for a restart).
    pub detection: Option<Duration>,
    /// Until a request that needed a cold start was answered 200.
    pub first_cold_start: Option<Duration>,
    /// Until the cluster was whole again: the function back at four ready sandboxes and the peers registered.
    pub full_service: Option<Duration>,
    /// For the control-plane restart: from the new process's start to the first cold start served.
    pub service_after_start: Option<Duration>,
    /// Requests sent.
    pub sent: usize,
    /// Requests that failed.
    pub failed: usize,
    /// Requests in flight when the kill was sent (sent before, answered after).
    pub in_flight_at_kill: usize,
    /// Failed requests that were sent after the killed process had exited: none may fail.
    pub failed_after_kill: Vec<String>,
    /// Requests answered 200 after the kill.
    pub succeeded_after_kill: usize,
    /// Registered functions the control plane no longer had at the end.
    pub functions_lost: Vec<String>,
    /// Sandbox processes of the test's functions alive at the end that the control plane does not list.
    pub leaked_sandboxes: usize,
}

/// The cluster: each role a `dirigent` process.
pub struct Cluster {
    /// Where the control planes keep their stores.
    dir: tempfile::TempDir,
    /// The control plane, or its replicas (replica `id` at `id - 1`).
    control_planes: Vec<Role>,
    data_planes: Vec<Role>,
    workers: Vec<Role>,
    /// A running control plane's HTTP API (a follower's forwards to the leader).
    pub api: String,
    /// Every control plane's gRPC address, by replica.
    grpcs: Vec<String>,
}

/// Control plane `id` of `grpcs` (its store in `dir`, its gRPC port fixed so that a restart is found again, and
/// every replica its peer when there are several).
fn control_plane_yaml(dir: &std::path::Path, id: usize, grpcs: &[String]) -> String {
    let mut yaml = format!(
        "grpc_listen: {}\nhttp_listen: 127.0.0.1:0\n\
         store: {{kind: sqlite, path: {}}}\nautoscaler: {{tick: 200ms}}\n",
        grpcs[id - 1],
        dir.join(format!("registry-{id}.sqlite")).display()
    );
    if grpcs.len() > 1 {
        let peers: Vec<String> = (1..).zip(grpcs).map(|(n, grpc)| format!("{n}: '{grpc}'")).collect();
        yaml += &format!("replication: {{id: {id}, peers: {{{}}}}}\n", peers.join(", "));
    }
    yaml
}

fn data_plane_yaml(index: usize, grpc: &str) -> String {
    format!(
        "name: data-plane-{index}\nproxy_listen: 127.0.0.1:0\ngrpc_listen: 127.0.0.1:0\ncontrol_plane: {grpc}\n\
         report_interval: 200ms\nqueue_timeout: 30s\n"
    )
}

fn worker_yaml(index: usize, grpc: &str) -> String {
    // Workers sharing a host get their own sandbox port ranges.
    let first = 23000 + index * 1000;
    format!(
        "name: worker-{index}\nlisten: 127.0.0.1:0\ncontrol_plane: {grpc}\nsandbox_ports: {first}-{}\n",
        first + 999
    )
}

/// A free loopback port, for the control plane's gRPC address that its peers find again after a restart.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Cluster {
    /// Starts every role with one control plane and waits until all have registered.
    pub async fn start() -> Cluster {
        Self::with_replicas(1).await
    }

    /// Starts every role with `replicas` control planes and waits until all have registered with the leader.
    pub async fn with_replicas(replicas: usize) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let grpcs: Vec<String> = (0..replicas).map(|_| format!("127.0.0.1:{}", free_port())).collect();
        let control_planes: Vec<Role> = (1..=replicas)
            .map(|id| Role::start("control-plane", &control_plane_yaml(dir.path(), id, &grpcs)))
            .collect();
        let api = control_planes[0].address("api");
        let peers = grpcs.join(",");
        let data_planes = (1..=2).map(|i| Role::start("data-plane", &data_plane_yaml(i, &peers))).collect();
        let workers = (1..=2).map(|i| Role::start("worker", &worker_yaml(i, &peers))).collect();
        let mut cluster = Cluster { dir, control_planes, data_planes, workers, api, grpcs };
        cluster.wait_health("every role registered", |h| h.workers == 2 && h.data_planes == 2).await;
        cluster.api = cluster.control_planes[cluster.leader().await].address("api");
        cluster
    }

    /// The data planes' proxies still running.
    pub fn proxies(&self) -> Vec<String> {
        self.data_planes.iter().map(|d| d.address("proxy")).collect()
    }

    /// Polls the leader's `/health` every 10 ms until `check` holds (panics after 60 s, naming `what`); an API
    /// that does not answer (the control plane is restarting) or a replica that does not lead counts as not yet.
    pub async fn wait_health(&self, what: &str, check: impl Fn(&Health) -> bool) -> Duration {
        let apis: Vec<String> = self.control_planes.iter().filter(|c| c.running()).map(|c| c.address("api")).collect();
        let leads = |h: &Health| h.role == "leader" && check(h);
        let started = Instant::now();
        loop {
            for api in &apis {
                let within = (Duration::from_millis(10), Duration::from_secs(60).saturating_sub(started.elapsed()));
                if apis.len() == 1 {
                    return super::wait_for_health(api, what, within, &leads).await;
                }
                if super::try_health(api).await.as_ref().is_some_and(&leads) {
                    return started.elapsed();
                }
            }
            assert!(started.elapsed() < Duration::from_secs(60), "{what}: not reached within 60 s");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The replica that says it leads (panics after 60 s).
    async fn leader(&self) -> usize {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            for (index, replica) in self.control_planes.iter().enumerate().filter(|(_, c)| c.running()) {
                if super::try_health(&replica.address("api")).await.is_some_and(|h| h.role == "leader") {
                    return index;
                }
            }
            assert!(Instant::now() < deadline, "no control-plane replica leads");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Kills the scenario's role with SIGKILL; returns when it sent the signal and when the process was gone.
    async fn kill(&mut self, scenario: Scenario) -> (Instant, Instant) {
        let leader = match scenario {
            Scenario::LeaderKill | Scenario::FollowerKill => self.leader().await,
            _ => 0,
        };
        let replicas = self.control_planes.len();
        let sent = Instant::now();
        match scenario {
            Scenario::WorkerKill => self.workers[0].crash(),
            Scenario::DataPlaneKill => self.data_planes[0].crash(),
            Scenario::ControlPlaneRestart | Scenario::LeaderKill => self.control_planes[leader].crash(),
            Scenario::FollowerKill => self.control_planes[(leader + 1) % replicas].crash(),
        };
        let killed = Instant::now();
        if let Some(running) = self.control_planes.iter().find(|c| c.running()) {
            self.api = running.address("api");
        }
        (sent, killed)
    }

    /// Starts the (only) control plane again on the same store and gRPC address; returns when the process
    /// started.
    fn restart_control_plane(&mut self) -> Instant {
        let started = Instant::now();
        self.control_planes[0] = Role::start("control-plane", &control_plane_yaml(self.dir.path(), 1, &self.grpcs));
        self.api = self.control_planes[0].address("api");
        started
    }

    /// Stops every role (workers first, so their sandboxes go with them).
    pub fn stop(&mut self) {
        for role in self.workers.iter_mut().chain(&mut self.data_planes).chain(&mut self.control_planes) {
            role.stop_if_running();
        }
    }
}

/// One request of the load.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// When it was sent.
    pub sent: Instant,
    /// When it was answered or failed.
    pub done: Instant,
    /// Why it failed, if it did.
    pub error: Option<String>,
}

/// An open-loop client: one request every `every`, spread over the data planes, failing over from one whose
/// connection is refused (the request provably was not sent) to the next.
pub struct Load {
    outcomes: Arc<Mutex<Vec<Outcome>>>,
    stop: CancellationToken,
    sender: tokio::task::JoinHandle<()>,
}

impl Load {
    /// Starts calling `function` through `proxies`.
    pub fn start(proxies: Vec<String>, function: String, every: Duration) -> Load {
        let outcomes = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let (outcomes_, stop_) = (Arc::clone(&outcomes), stop.clone());
        let sender = tokio::spawn(async move {
            let http = client();
            let mut ticks = tokio::time::interval(every);
            let mut next = 0usize;
            let mut in_flight = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    () = stop_.cancelled() => break,
                }
                next = next.wrapping_add(1);
                let (http, proxies, function, outcomes) =
                    (http.clone(), proxies.clone(), function.clone(), Arc::clone(&outcomes_));
                in_flight.spawn(async move {
                    let sent = Instant::now();
                    let error = call(&http, &proxies, next, &function).await.err();
                    outcomes.lock().unwrap().push(Outcome { sent, done: Instant::now(), error });
                });
                while in_flight.try_join_next().is_some() {}
            }
            while in_flight.join_next().await.is_some() {}
        });
        Load { outcomes, stop, sender }
    }

    /// Waits until `count` requests have succeeded (panics after 60 s): by then every data plane has the
    /// endpoints and the client's connections are open.
    pub async fn until_succeeded(&self, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.outcomes.lock().unwrap().iter().filter(|o| o.error.is_none()).count() < count {
            assert!(Instant::now() < deadline, "the load did not reach {count} successes within 60 s");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops sending, waits for the requests in flight and returns every outcome.
    pub async fn stop(self) -> Vec<Outcome> {
        self.stop.cancel();
        let _ = self.sender.await;
        std::mem::take(&mut *self.outcomes.lock().unwrap())
    }
}

/// One invocation: the data plane `first` points at, then the others while connections are refused.
async fn call(http: &reqwest::Client, proxies: &[String], first: usize, function: &str) -> Result<(), String> {
    let mut refused = Vec::new();
    for k in 0..proxies.len() {
        let proxy = &proxies[(first + k) % proxies.len()];
        let request = http
            .get(format!("http://{proxy}/"))
            .header("Host", function)
            .header(contracts::workload::REQUESTED_CPU, "2")
            .timeout(Duration::from_secs(30));
        match request.send().await {
            Ok(response) if response.status().is_success() => return Ok(()),
            Ok(response) => {
                let status = response.status();
                return Err(format!("{proxy}: {status} {}", response.text().await.unwrap_or_default()));
            }
            Err(err) if err.is_connect() => refused.push(format!("{proxy}: {err}")),
            Err(err) => return Err(format!("{proxy}: {err:?}")),
        }
    }
    Err(format!("every data plane refused: {}", refused.join("; ")))
}

/// Sends one request that needs a cold start (to a function at zero) and waits up to 60 s for its answer;
/// returns when it was answered 200, trying the data planes in turn.
async fn cold_start(proxies: &[String], function: &str) -> Option<Instant> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let http = client();
    while Instant::now() < deadline {
        if call(&http, proxies, 0, function).await.is_ok() {
            return Some(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

/// Registers as a client of replicas must: a 503 says no leader is confirmed (an election, which a freshly
/// started cluster under load can hold again just after its first), so it asks again every 100 ms for up to 30 s.
/// The status of the last answer.
pub async fn register_led(api: &str, name: &str, adjust: impl Fn(&mut contracts::api::FunctionSpec)) -> u16 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = register(api, name, &adjust).await.status().as_u16();
        if status != 503 || Instant::now() > deadline {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs one scenario from a fresh cluster; every process it started is gone when it returns.
pub async fn run(scenario: Scenario) -> Report {
    let mut cluster = Cluster::with_replicas(scenario.replicas()).await;
    let tag = format!("{}-{}", std::process::id(), scenario as u8);
    let (warm, probe) = (format!("warm-{tag}"), format!("probe-{tag}"));
    assert_eq!(register_led(&cluster.api, &warm, |s| (s.min_scale, s.max_scale) = (4, 4)).await, 201);
    // At zero until after the kill: its first request needs a cold start.
    assert_eq!(register_led(&cluster.api, &probe, |_| ()).await, 201);
    let ready = |n: u32| move |h: &contracts::api::FunctionView| h.status.ready == n;
    super::wait_for_function(&cluster.api, &warm, Duration::from_secs(30), "four sandboxes", ready(4)).await;

    let load = Load::start(cluster.proxies(), warm.clone(), Duration::from_millis(10));
    // Steady state first: a few rounds over every data plane.
    load.until_succeeded(10 * cluster.proxies().len()).await;
    let (kill_sent, killed) = cluster.kill(scenario).await;
    let proxies = match scenario {
        Scenario::DataPlaneKill => cluster.proxies()[1..].to_vec(),
        _ => cluster.proxies(),
    };
    let cold = tokio::spawn({
        let (proxies, probe) = (proxies.clone(), probe.clone());
        async move { cold_start(&proxies, &probe).await }
    });
    let mut report = Report {
        scenario,
        detection: None,
        first_cold_start: None,
        full_service: None,
        service_after_start: None,
        sent: 0,
        failed: 0,
        in_flight_at_kill: 0,
        failed_after_kill: Vec::new(),
        succeeded_after_kill: 0,
        functions_lost: Vec::new(),
        leaked_sandboxes: 0,
    };
    let mut restarted = None;
    match scenario {
        Scenario::WorkerKill => {
            cluster.wait_health("the dead worker dropped", |h| h.workers == 1).await;
            report.detection = Some(kill_sent.elapsed());
        }
        Scenario::DataPlaneKill => {
            cluster.wait_health("the dead data plane dropped", |h| h.data_planes == 1).await;
            report.detection = Some(kill_sent.elapsed());
        }
        Scenario::ControlPlaneRestart => {
            tokio::time::sleep(Duration::from_secs(1)).await;
            restarted = Some(cluster.restart_control_plane());
            cluster.wait_health("every peer back", |h| h.workers == 2 && h.data_planes == 2).await;
        }
        Scenario::LeaderKill => {
            cluster.wait_health("another replica leads", |_| true).await;
            report.detection = Some(kill_sent.elapsed());
            cluster.wait_health("every peer at the new leader", |h| h.workers == 2 && h.data_planes == 2).await;
            // A follower may not have heard from the new leader yet (it would answer 503): ask the leader.
            cluster.api = cluster.control_planes[cluster.leader().await].address("api");
        }
        Scenario::FollowerKill => {
            cluster.wait_health("every peer still registered", |h| h.workers == 2 && h.data_planes == 2).await;
        }
    }
    let cold_at = cold.await.unwrap();
    report.first_cold_start = cold_at.map(|at| at - kill_sent);
    report.service_after_start = restarted.zip(cold_at).map(|(started, at)| at.saturating_duration_since(started));
    super::wait_for_function(&cluster.api, &warm, Duration::from_secs(60), "four sandboxes again", ready(4)).await;
    report.full_service = Some(kill_sent.elapsed());
    // Some more load on the healed cluster.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let outcomes = load.stop().await;

    report.sent = outcomes.len();
    report.failed = outcomes.iter().filter(|o| o.error.is_some()).count();
    report.in_flight_at_kill = outcomes.iter().filter(|o| o.sent < kill_sent && o.done > kill_sent).count();
    report.failed_after_kill = outcomes.iter().filter(|o| o.sent > killed).filter_map(|o| o.error.clone()).collect();
    report.succeeded_after_kill = outcomes.iter().filter(|o| o.sent > killed && o.error.is_none()).count();
    let registered = functions(&cluster.api).await.functions;
    report.functions_lost =
        [&warm, &probe].into_iter().filter(|name| !registered.iter().any(|f| &f.spec.name == *name)).cloned().collect();
    report.leaked_sandboxes = leaked(&cluster.api, &[&warm, &probe]).await;
    cluster.stop();
    report
}

/// Live sandbox processes of `names` that the control plane does not list.
async fn leaked(api: &str, names: &[&str]) -> usize {
    let mut leaked = 0;
    for name in names {
        let listed: Vec<String> = function(api, name).await.status.sandboxes.into_iter().map(|s| s.id).collect();
        let live = pids_with_env(&[format!("FUNCTION_NAME={name}")]);
        let listed_live = super::sandbox_pids(&listed).len();
        leaked += live.len().saturating_sub(listed_live);
    }
    leaked
}
