//! Cold starts with the process runtime: functions at zero invoked once each, first one after another
//! (latency), then all at once (cold starts per second).

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use contracts::server_timing::ColdStart;
use serde::Serialize;
use tokio::sync::Barrier;

use super::cluster::{Addresses, Api};
use super::http::{Invoker, Reply, Target};
use super::stats::Summary;

/// One phase: `functions` functions at zero, each invoked once.
#[derive(Debug, Clone, Serialize)]
pub struct ColdPhase {
    /// Functions invoked (each once).
    pub functions: usize,
    /// Wall time from the first request to the last reply, seconds.
    pub wall_s: f64,
    /// `functions / wall_s`.
    pub cold_starts_per_s: f64,
    /// End-to-end response time of the successful invocations.
    pub latency: Summary,
    /// The data plane's `create;dur` (sandbox creation, as the worker measured it).
    pub create: Summary,
    /// The data plane's `queue;dur` (waiting for the sandbox, control-plane round trips included).
    pub queue: Summary,
    /// Successful invocations the data plane did not mark `coldstart;desc="triggered"`.
    pub not_triggered: usize,
    /// Invocations that failed.
    pub failures: usize,
    /// The first failure's message, if any.
    pub first_failure: Option<String>,
}

/// Both cold-start phases.
#[derive(Debug, Clone, Serialize)]
pub struct ColdResult {
    /// One invocation at a time.
    pub sequential: ColdPhase,
    /// All invocations at once.
    pub burst: ColdPhase,
}

/// Runs the sequential phase, then the burst phase, each on `count` freshly registered functions.
pub async fn measure(api: &Api, cluster: &Addresses, count: usize) -> anyhow::Result<ColdResult> {
    let sequential =
        phase(api, cluster, "cold-seq", count, sequential_invocations).await.context("sequential cold starts")?;
    let burst = phase(api, cluster, "cold-burst", count, burst_invocations).await.context("burst of cold starts")?;
    Ok(ColdResult { sequential, burst })
}

type Outcome = anyhow::Result<Reply>;

/// Registers `count` functions at zero, invokes them with `invoke`, deletes them.
async fn phase<F, Fut>(
    api: &Api,
    cluster: &Addresses,
    prefix: &str,
    count: usize,
    invoke: F,
) -> anyhow::Result<ColdPhase>
where
    F: FnOnce(Vec<Target>) -> Fut,
    Fut: Future<Output = anyhow::Result<(Vec<Outcome>, f64)>>,
{
    let names: Vec<String> = (0..count).map(|i| format!("{prefix}-{i}")).collect();
    for name in &names {
        api.register(name, 0, 1).await?;
    }
    let targets = names.iter().map(|n| Target::proxied(&cluster.proxy, n)).collect::<anyhow::Result<Vec<_>>>()?;
    let (outcomes, wall_s) = invoke(targets).await?;
    for name in &names {
        api.delete(name).await?;
    }
    Ok(summarise(outcomes, wall_s))
}

/// One client, one connection, one function after another.
async fn sequential_invocations(targets: Vec<Target>) -> anyhow::Result<(Vec<Outcome>, f64)> {
    let invoker = Invoker::default();
    let first = targets.first().context("no functions to invoke")?;
    invoker.connect(first).await.context("connecting to the data plane")?;
    let began = Instant::now();
    let mut outcomes = Vec::with_capacity(targets.len());
    for target in &targets {
        outcomes.push(invoker.invoke(target).await);
    }
    Ok((outcomes, began.elapsed().as_secs_f64()))
}

/// One client task per function, each connected before the start, all released at once.
async fn burst_invocations(targets: Vec<Target>) -> anyhow::Result<(Vec<Outcome>, f64)> {
    let start = Arc::new(Barrier::new(targets.len() + 1));
    let handles: Vec<_> = targets
        .into_iter()
        .map(|target| {
            let start = Arc::clone(&start);
            tokio::spawn(async move {
                let invoker = Invoker::default();
                let connected = invoker.connect(&target).await;
                start.wait().await;
                connected.context("connecting to the data plane")?;
                invoker.invoke(&target).await
            })
        })
        .collect();
    start.wait().await;
    let began = Instant::now();
    let mut outcomes = Vec::with_capacity(handles.len());
    for handle in handles {
        outcomes.push(handle.await.context("client task panicked")?);
    }
    Ok((outcomes, began.elapsed().as_secs_f64()))
}

fn summarise(outcomes: Vec<Outcome>, wall_s: f64) -> ColdPhase {
    let functions = outcomes.len();
    let (mut latency, mut create, mut queue) = (Vec::new(), Vec::new(), Vec::new());
    let (mut not_triggered, mut failures, mut first_failure) = (0, 0, None);
    for outcome in outcomes {
        match outcome.and_then(|reply| reply.ensure_success().map(|()| reply)) {
            Ok(reply) => {
                latency.push(reply.latency_us);
                let timing = reply.timing.unwrap_or_default();
                not_triggered += usize::from(timing.cold_start_kind() != Some(ColdStart::Triggered));
                create.extend(timing.create_us.map(|us| us as f64));
                queue.extend(timing.queue_us.map(|us| us as f64));
            }
            Err(err) => {
                failures += 1;
                first_failure.get_or_insert_with(|| format!("{err:#}"));
            }
        }
    }
    ColdPhase {
        functions,
        wall_s,
        cold_starts_per_s: functions as f64 / wall_s,
        latency: Summary::of(latency),
        create: Summary::of(create),
        queue: Summary::of(queue),
        not_triggered,
        failures,
        first_failure,
    }
}
