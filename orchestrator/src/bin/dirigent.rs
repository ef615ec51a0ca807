//! `dirigent`: the orchestrator's roles, separately or all in one process.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use contracts::ready::ReadyLine;
use orchestrator::config::{self, ControlPlaneConfig, DataPlaneConfig, RoleConfig, StandaloneConfig, WorkerConfig};
use orchestrator::control_plane::ControlPlane;
use orchestrator::data_plane::DataPlane;
use orchestrator::standalone::Standalone;
use orchestrator::worker::Worker;
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// A reference FaaS orchestrator after Dirigent (SOSP'24).
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    role: Role,
    /// Only check the config (keys, values) and exit: 0 when the role would start with it.
    #[arg(long, global = true)]
    check: bool,
}

#[derive(Subcommand)]
enum Role {
    /// Control plane, data plane and workers in one process (the embedded default).
    Standalone {
        /// YAML config (see orchestrator/config/standalone.yaml); defaults work without one.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Number of workers (overrides the config).
        #[arg(long)]
        workers: Option<u32>,
    },
    /// The control plane: registry, autoscaler, placement, sandbox lifecycle.
    ControlPlane {
        /// YAML config.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// The data plane: the invocation proxy.
    DataPlane {
        /// YAML config.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// A worker: the node agent running sandboxes.
    Worker {
        /// YAML config.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Writes the OCI image archive of `trace-function` for the containerd runtime (import it with
    /// `ctr -n dirigent images import FILE`).
    Image {
        /// Where to write the archive.
        #[arg(long, default_value = "trace-function.oci.tar")]
        out: PathBuf,
        /// The image's name.
        #[arg(long, default_value = TRACE_FUNCTION_IMAGE)]
        name: String,
        /// The binary to package (default: `trace-function` beside this `dirigent`).
        #[arg(long)]
        binary: Option<PathBuf>,
    },
}

/// The name `dirigent image` gives the trace-function image, and the one experiments and tests register.
const TRACE_FUNCTION_IMAGE: &str = orchestrator::worker::runtime::containerd::archive::TRACE_FUNCTION_IMAGE;

/// `dirigent image`: the binary and the libraries it loads, one reproducible layer.
fn write_image(out: &std::path::Path, name: &str, binary: Option<PathBuf>) -> anyhow::Result<()> {
    use orchestrator::worker::runtime::containerd::archive;
    let binary = match binary {
        Some(binary) => binary,
        None => std::env::current_exe()?.with_file_name("trace-function"),
    };
    let files = archive::with_libraries(&binary).with_context(|| format!("reading {}", binary.display()))?;
    let command = [files[0].path.clone()];
    let built = archive::write(out, name, &files, &command).with_context(|| format!("writing {}", out.display()))?;
    println!(
        "{}",
        json!({ "image": built.name, "manifest": built.manifest, "files": built.files, "archive": out.display().to_string() })
    );
    Ok(())
}

/// One JSON line on stdout once a role serves, so scripts and tests wait on it instead of sleeping.
fn announce_ready<'a>(role: &str, addresses: impl IntoIterator<Item = (&'a str, &'a str)>) {
    println!("{}", ReadyLine::new(role, addresses).to_line());
}

/// `--check`: the config parsed and passed its role's validation (`config::load` runs both).
fn config_ok() -> anyhow::Result<()> {
    println!("{}", json!({ "config": "ok" }));
    Ok(())
}

fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(err) => {
                tracing::error!(%err, "cannot listen for SIGTERM");
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutting down");
        trigger.cancel();
    });
    token
}

fn main() -> std::process::ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            // The cause chain on one line; a backtrace helps nobody fix a config file.
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    // openraft narrates every vote and replication step at info; its warnings and errors still show.
    let default = "info,h2=warn,tower=warn,openraft=warn";
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default.into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let shutdown = shutdown_on_signal();
    match cli.role {
        Role::Standalone { config, workers } => {
            let mut config: StandaloneConfig = config::load(config.as_deref())?;
            if let Some(workers) = workers {
                config.workers = workers;
                // The override is checked like the file (workers against sandbox ports).
                config.validate().context("invalid config (with --workers)")?;
            }
            if cli.check {
                return config_ok();
            }
            let cluster = Standalone::bind(config).await.context("starting dirigent standalone")?;
            let addresses = cluster.addresses();
            let announced = [("api", addresses.api.as_str()), ("grpc", &addresses.grpc), ("proxy", &addresses.proxy)];
            cluster.serve(shutdown, || announce_ready("standalone", announced)).await?;
        }
        Role::ControlPlane { config } => {
            let config: ControlPlaneConfig = config::load(config.as_deref())?;
            if cli.check {
                return config_ok();
            }
            let control_plane = ControlPlane::bind(config).await.context("starting the control plane")?;
            announce_ready(
                "control-plane",
                [("grpc", control_plane.grpc_address()), ("api", control_plane.http_address())],
            );
            control_plane.serve(shutdown).await?;
        }
        Role::DataPlane { config } => {
            let config: DataPlaneConfig = config::load(config.as_deref())?;
            if cli.check {
                return config_ok();
            }
            let data_plane = DataPlane::bind(config).await.context("starting the data plane")?;
            announce_ready("data-plane", [("proxy", data_plane.proxy_address()), ("grpc", data_plane.grpc_address())]);
            data_plane.serve(shutdown).await?;
        }
        Role::Worker { config } => {
            let config: WorkerConfig = config::load(config.as_deref())?;
            if cli.check {
                return config_ok();
            }
            let worker = Worker::bind(config).await.context("starting the worker")?;
            announce_ready("worker", [("name", worker.name())]);
            worker.serve(shutdown).await?;
        }
        Role::Image { out, name, binary } => write_image(&out, &name, binary)?,
    }
    Ok(())
}
