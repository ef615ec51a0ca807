//! `experiments`: run an experiment spec end to end.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use experiments::spec::ExperimentSpec;

/// One YAML spec, one command: start the platform, run the load, collect, tear down, analyse.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run an experiment; results go to a new folder under the spec's `output`.
    Run {
        /// The experiment spec (see experiments/specs/).
        spec: PathBuf,
        /// Results under this folder instead of the spec's `output`.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Check a spec without starting anything.
    Validate {
        /// The experiment spec.
        spec: PathBuf,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,h2=warn,tower=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Validate { spec } => {
            let spec = ExperimentSpec::load(&spec)?;
            println!("spec '{}' is valid: {} run(s)", spec.name, spec.rates().len());
            Ok(ExitCode::SUCCESS)
        }
        Command::Run { spec, output } => {
            let mut spec = ExperimentSpec::load(&spec)?;
            spec.output = output.unwrap_or(spec.output);
            // Before the runtime exists, so its threads inherit it; the platform's processes are reset to normal.
            loader::driver::realtime::enter_if(spec.load.driver.realtime);
            let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
            let record = runtime.block_on(async {
                let stop = loader::driver::StopSignal::on_ctrl_c(
                    "interrupted: stopping the load, tearing the platform down, keeping what was measured",
                );
                experiments::runner::run_experiment(&spec, stop).await
            })?;
            for run in &record.runs {
                let status = match (&run.error, run.platform_stop.is_clean()) {
                    (Some(e), _) => format!("FAILED: {e}"),
                    (None, false) => format!("platform did not stop cleanly: {:?}", run.platform_stop),
                    (None, true) if run.trustworthy => "ok".into(),
                    (None, true) => "ok, but NOT trustworthy (loader send lag above its threshold)".into(),
                };
                println!("{}: sent {}, ok {}, failed {}: {status}", run.dir.display(), run.sent, run.ok, run.failed);
            }
            println!("results in {}", record.folder.display());
            Ok(if record.succeeded() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
    }
}
