//! Warm path: closed-loop `workload: empty` invocations through the data plane versus straight to the
//! same sandboxes, at a given concurrency.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use contracts::server_timing::ColdStart;
use serde::Serialize;
use tokio::sync::Barrier;

use super::Settings;
use super::cluster::{Addresses, Api};
use super::http::{Invoker, Target};
use super::stats::Summary;

/// One path (direct or through the data plane) at one concurrency.
#[derive(Debug, Clone, Serialize)]
pub struct PathResult {
    /// Measured requests.
    pub requests: usize,
    /// Wall time of the measurement, seconds.
    pub wall_s: f64,
    /// Requests per second.
    pub requests_per_s: f64,
    /// End-to-end latency seen by the client.
    pub latency: Summary,
    /// The data plane's own `proxy;dur` (data-plane path only).
    pub server_proxy: Option<Summary>,
    /// The data plane's `queue;dur` (data-plane path only).
    pub server_queue: Option<Summary>,
    /// Requests the data plane did not mark `coldstart;desc="none"` (data-plane path only).
    pub not_warm: usize,
}

/// Both paths at one concurrency, and how they compare.
#[derive(Debug, Clone, Serialize)]
pub struct WarmCase {
    /// Client tasks, and sandboxes (`min_scale = max_scale`).
    pub concurrency: usize,
    /// Straight to the sandboxes.
    pub direct: PathResult,
    /// Through the data plane.
    pub proxy: PathResult,
    /// Data-plane throughput as a percentage of direct.
    pub throughput_pct: f64,
    /// Data-plane p50 minus direct p50, µs.
    pub overhead_p50_us: f64,
    /// Data-plane p99 minus direct p99, µs.
    pub overhead_p99_us: f64,
}

/// Deploys a function with `concurrency` sandboxes, measures both paths, deletes it.
pub async fn measure(
    api: &Api,
    cluster: &Addresses,
    settings: &Settings,
    concurrency: usize,
) -> anyhow::Result<WarmCase> {
    let name = format!("warm-c{concurrency}");
    api.register(&name, concurrency, concurrency).await?;
    let sandboxes = api.wait_ready(&name, concurrency).await?;
    let direct_targets = sandboxes.iter().map(|a| Target::direct(a)).collect::<anyhow::Result<Vec<_>>>()?;
    let proxy_targets = vec![Target::proxied(&cluster.proxy, &name)?; concurrency];
    let direct = closed_loop(direct_targets, settings).await.context("direct path")?;
    let proxy = closed_loop(proxy_targets, settings).await.context("data-plane path")?;
    api.delete(&name).await?;
    Ok(WarmCase {
        concurrency,
        throughput_pct: 100.0 * proxy.requests_per_s / direct.requests_per_s,
        overhead_p50_us: proxy.latency.p50_us - direct.latency.p50_us,
        overhead_p99_us: proxy.latency.p99_us - direct.latency.p99_us,
        direct,
        proxy,
    })
}

/// What one client task recorded.
#[derive(Default)]
struct Samples {
    latency_us: Vec<f64>,
    proxy_us: Vec<f64>,
    queue_us: Vec<f64>,
    not_warm: usize,
}

/// One task per target, each with its own connection: warm up, meet at a barrier, then send
/// `requests / targets` invocations back to back.
async fn closed_loop(targets: Vec<Target>, settings: &Settings) -> anyhow::Result<PathResult> {
    let tasks = targets.len();
    let per_task = (settings.requests / tasks).max(1);
    let warmup = settings.warmup / tasks;
    let start = Arc::new(Barrier::new(tasks + 1));
    let handles: Vec<_> = targets
        .into_iter()
        .map(|target| tokio::spawn(client_task(target, warmup, per_task, Arc::clone(&start))))
        .collect();
    start.wait().await;
    let began = Instant::now();
    let mut all = Samples::default();
    for handle in handles {
        let samples = handle.await.context("client task panicked")??;
        all.latency_us.extend(samples.latency_us);
        all.proxy_us.extend(samples.proxy_us);
        all.queue_us.extend(samples.queue_us);
        all.not_warm += samples.not_warm;
    }
    Ok(path_result(all, began.elapsed().as_secs_f64()))
}

async fn client_task(target: Target, warmup: usize, requests: usize, start: Arc<Barrier>) -> anyhow::Result<Samples> {
    let invoker = Invoker::default();
    let warmed = warm_up(&invoker, &target, warmup.max(1)).await;
    // Every task reaches the barrier, also after a failed warm-up, so the others are not left waiting.
    start.wait().await;
    warmed.context("warm-up")?;
    let mut samples = Samples { latency_us: Vec::with_capacity(requests), ..Samples::default() };
    for _ in 0..requests {
        let reply = invoker.invoke(&target).await?;
        reply.ensure_success()?;
        samples.latency_us.push(reply.latency_us);
        if let Some(timing) = reply.timing {
            samples.not_warm += usize::from(timing.cold_start_kind() != Some(ColdStart::None));
            samples.proxy_us.extend(timing.proxy_us.map(|us| us as f64));
            samples.queue_us.extend(timing.queue_us.map(|us| us as f64));
        }
    }
    Ok(samples)
}

async fn warm_up(invoker: &Invoker, target: &Target, requests: usize) -> anyhow::Result<()> {
    for _ in 0..requests {
        invoker.invoke(target).await?.ensure_success()?;
    }
    Ok(())
}

fn path_result(samples: Samples, wall_s: f64) -> PathResult {
    let requests = samples.latency_us.len();
    let server = |values: Vec<f64>| (!values.is_empty()).then(|| Summary::of(values));
    PathResult {
        requests,
        wall_s,
        requests_per_s: requests as f64 / wall_s,
        latency: Summary::of(samples.latency_us),
        server_proxy: server(samples.proxy_us),
        server_queue: server(samples.queue_us),
        not_warm: samples.not_warm,
    }
}
