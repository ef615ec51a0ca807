//! A recording fake of a host and of the control plane's API for unit tests: every call a host gets goes into one
//! journal shared by the hosts of a test (so the order across hosts shows), and answers and failures are scripted.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde_json::{Value, json};
use tokio::sync::Notify;

use super::health::{ControlPlane, HealthError};
use super::host::{Host, HostError, HostId, Launch, StopState};
use crate::roles::Role;

/// One call a fake host got.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    /// `prepare` on `host`.
    Prepare { host: String },
    /// `start` on `host`: the launch and the config file's contents as the host got them.
    Start { host: String, launch: Launch, config: Value },
    /// `kill` of `component` on `host`.
    Kill { host: String, component: String },
    /// `stop` of `component` on `host`.
    Stop { host: String, component: String },
    /// `sweep` for `marker` on `host`.
    Sweep { host: String, marker: String },
    /// `finish` on `host`, bringing back the logs of `components`.
    Finish { host: String, components: Vec<String> },
}

impl Call {
    /// `"start worker-0"`, `"stop data-plane"`, ...: what a test of the order compares.
    pub fn short(&self) -> String {
        match self {
            Call::Prepare { host } => format!("prepare {host}"),
            Call::Start { launch, .. } => format!("start {}", launch.stem),
            Call::Kill { component, .. } => format!("kill {component}"),
            Call::Stop { component, .. } => format!("stop {component}"),
            Call::Sweep { host, .. } => format!("sweep {host}"),
            Call::Finish { host, .. } => format!("finish {host}"),
        }
    }
}

/// The calls of every fake host of a test, in the order they came.
#[derive(Debug, Clone, Default)]
pub struct Journal {
    calls: Arc<Mutex<Vec<Call>>>,
    changed: Arc<Notify>,
}

impl Journal {
    /// Everything so far.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    /// [`Call::short`] of everything so far.
    pub fn short(&self) -> Vec<String> {
        self.calls().iter().map(Call::short).collect()
    }

    /// Returns once a call whose [`Call::short`] is `short` has come.
    pub async fn wait_for(&self, short: &str) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.short().iter().any(|call| call == short) {
                return;
            }
            changed.await;
        }
    }

    fn record(&self, call: Call) {
        self.calls.lock().unwrap().push(call);
        self.changed.notify_waiters();
    }
}

/// What a fake host answers.
#[derive(Debug, Default)]
pub struct Answers {
    /// Starts (by stem) that fail, with the host's reason.
    pub fail_start: HashMap<String, String>,
    /// The host's clock at a kill, ns.
    pub kill_at_ns: i128,
    /// How a component's stop ends (default: [`StopState::Stopped`]).
    pub stop: HashMap<String, StopState>,
    /// Components whose stop fails (the host cannot be reached).
    pub fail_stop: HashSet<String>,
    /// What the sweep finds (`PID COMMAND`).
    pub survivors: Vec<String>,
    /// Whether bringing the logs back fails.
    pub fail_finish: bool,
}

/// A host that starts nothing and records everything.
#[derive(Debug)]
pub struct FakeHost {
    id: HostId,
    journal: Journal,
    /// What it answers; tests may change it between calls.
    pub answers: Mutex<Answers>,
}

impl FakeHost {
    /// A host named `name` at `address` whose clock is `clock_offset_us` ahead, recording into `journal`.
    pub fn new(name: &str, address: &str, clock_offset_us: i64, journal: &Journal) -> Self {
        let id = HostId { name: name.into(), address: address.into(), clock_offset_us };
        FakeHost { id, journal: journal.clone(), answers: Mutex::new(Answers::default()) }
    }

    /// What a component of `role` announces here: fixed ports on the host's address (a control plane given a
    /// gRPC port, a replica, announces it and its API on the next port).
    pub fn announced(&self, role: Role, component: &str, config: &Value) -> Value {
        let at = |port: u16| format!("{}:{port}", self.id.address);
        let grpc = config["grpc_listen"].as_str().and_then(|a| a.rsplit_once(':')?.1.parse().ok()).unwrap_or(0);
        match role {
            Role::ControlPlane if grpc != 0 => json!({ "grpc": at(grpc), "api": at(grpc + 1) }),
            Role::ControlPlane => json!({ "grpc": at(4001), "api": at(4002) }),
            Role::DataPlane => json!({ "proxy": at(4003), "grpc": at(4004) }),
            Role::Worker => json!({ "name": component }),
            Role::Standalone => json!({ "grpc": at(4001), "api": at(4002), "proxy": at(4003) }),
        }
    }

    fn failure(step: &'static str) -> HostError {
        HostError::Answer { step, answer: "connection reset".into() }
    }
}

impl Host for FakeHost {
    fn id(&self) -> &HostId {
        &self.id
    }

    fn prepare(&self) -> BoxFuture<'_, Result<(), HostError>> {
        self.journal.record(Call::Prepare { host: self.id.name.clone() });
        Box::pin(async { Ok(()) })
    }

    fn start<'a>(&'a self, launch: &'a Launch) -> BoxFuture<'a, Result<Value, HostError>> {
        let config = std::fs::read_to_string(&launch.config).expect("the config is written before the start");
        let config: Value = serde_json::from_str(&config).expect("configs are JSON");
        let announced = self.announced(launch.role, &launch.component, &config);
        self.journal.record(Call::Start { host: self.id.name.clone(), launch: launch.clone(), config });
        let failure = self.answers.lock().unwrap().fail_start.get(&launch.stem).cloned();
        Box::pin(async move {
            match failure {
                Some(reason) => Err(HostError::NotReady { reason }),
                None => Ok(announced),
            }
        })
    }

    fn kill<'a>(&'a self, component: &'a str) -> BoxFuture<'a, Result<i128, HostError>> {
        self.journal.record(Call::Kill { host: self.id.name.clone(), component: component.into() });
        let at = self.answers.lock().unwrap().kill_at_ns;
        Box::pin(async move { Ok(at) })
    }

    fn stop<'a>(&'a self, component: &'a str, _grace: Duration) -> BoxFuture<'a, Result<StopState, HostError>> {
        self.journal.record(Call::Stop { host: self.id.name.clone(), component: component.into() });
        let answers = self.answers.lock().unwrap();
        let result = match answers.fail_stop.contains(component) {
            true => Err(Self::failure("stopping")),
            false => Ok(answers.stop.get(component).cloned().unwrap_or(StopState::Stopped)),
        };
        Box::pin(async move { result })
    }

    fn sweep<'a>(&'a self, marker: &'a str) -> BoxFuture<'a, Result<Vec<String>, HostError>> {
        self.journal.record(Call::Sweep { host: self.id.name.clone(), marker: marker.into() });
        let survivors = self.answers.lock().unwrap().survivors.clone();
        Box::pin(async move { Ok(survivors) })
    }

    fn finish<'a>(&'a self, components: &'a [String], _into: &'a Path) -> BoxFuture<'a, Vec<HostError>> {
        self.journal.record(Call::Finish { host: self.id.name.clone(), components: components.to_vec() });
        let failed = self.answers.lock().unwrap().fail_finish;
        Box::pin(async move { if failed { vec![Self::failure("collecting logs")] } else { Vec::new() } })
    }
}

/// A control plane at which everything has registered at once; records the APIs it was asked at.
#[derive(Debug, Default)]
pub struct FakeControlPlane {
    /// The APIs asked, in order.
    pub asked: Mutex<Vec<String>>,
    /// The API of the leader; every other answers `follower` (none set: every one leads).
    pub leader: Mutex<Option<String>>,
}

impl ControlPlane for FakeControlPlane {
    fn registered<'a>(&'a self, api: &'a str) -> BoxFuture<'a, Result<(usize, usize), HealthError>> {
        self.asked.lock().unwrap().push(api.into());
        Box::pin(async { Ok((usize::MAX, usize::MAX)) })
    }

    fn role<'a>(&'a self, api: &'a str) -> BoxFuture<'a, Result<String, HealthError>> {
        self.asked.lock().unwrap().push(api.into());
        let leads = self.leader.lock().unwrap().as_deref().is_none_or(|leader| leader == api);
        Box::pin(async move { Ok(if leads { "leader" } else { "follower" }.into()) })
    }
}
