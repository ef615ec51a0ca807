//! The workload function every benchmark deploys: HTTP/1.1, h2c and gRPC on one port (see `orchestrator::function`).
//!
//! Configuration comes from the environment (`HOST`, `PORT`, `RUST_LOG`), as a sandbox runtime sets it. The first
//! SIGTERM or SIGINT stops accepting and waits for in-flight invocations; a second one exits at once.

use std::future::Future;

use anyhow::Context;
use clap::Parser;
use tokio::net::TcpListener;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tracing_subscriber::EnvFilter;

/// The workload function: spins the CPU and holds memory as each invocation requests.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "HOST", default_value = "0.0.0.0")]
    host: String,
    /// Port to listen on.
    #[arg(long, env = "PORT", default_value_t = 8080)]
    port: u16,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .init();
    // One thread starts fastest; the spins run on the blocking pool, not here.
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the tokio runtime")?;
    let result = runtime.block_on(run(args));
    // Spins of abandoned requests may still be winding down; they must not delay the exit.
    runtime.shutdown_background();
    result
}

async fn run(args: Args) -> anyhow::Result<()> {
    // Packaged as a Lambda custom runtime (`bootstrap`): serve the Runtime API instead of listening.
    if let Some(api) = std::env::var("AWS_LAMBDA_RUNTIME_API").ok().filter(|api| !api.is_empty()) {
        tracing::info!(%api, "trace-function serving the Lambda Runtime API");
        orchestrator::function::lambda::run(&api).await?;
        return Ok(());
    }
    let shutdown = shutdown_signal().context("cannot install the SIGTERM/SIGINT handlers")?;
    let listener = TcpListener::bind((args.host.as_str(), args.port))
        .await
        .with_context(|| format!("cannot listen on {}:{} (set HOST and PORT)", args.host, args.port))?;
    orchestrator::function::serve(listener, shutdown).await?;
    tracing::info!("trace-function stopped");
    Ok(())
}

/// Completes on the first SIGTERM or SIGINT; a second one exits the process without waiting.
fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        let name = next_signal(&mut terminate, &mut interrupt).await;
        tracing::info!(signal = name, "shutting down after in-flight invocations (signal again to exit now)");
        tokio::spawn(async move {
            let name = next_signal(&mut terminate, &mut interrupt).await;
            tracing::warn!(signal = name, "exiting without waiting for in-flight invocations");
            std::process::exit(1);
        });
    })
}

async fn next_signal(terminate: &mut Signal, interrupt: &mut Signal) -> &'static str {
    tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = interrupt.recv() => "SIGINT",
    }
}
