//! `loader`: trace-driven, open-loop FaaS load generator.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use loader::trace::model::MINUTES_PER_DAY;
use loader::trace::{FunctionSelection, Slice, TraceSummary, read_trace};

/// Trace-driven, open-loop FaaS load generator.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a trace directory (invocations.csv, durations.csv, memory.csv) and print a summary; sends nothing.
    Validate {
        /// Directory with the trace files (In-Vitro layout).
        trace_dir: PathBuf,
        #[command(flatten)]
        slice: SliceArgs,
    },
}

/// Which part of the trace to use.
#[derive(Debug, Args)]
struct SliceArgs {
    /// First minute of the day to use (0-based).
    #[arg(long, default_value_t = 0)]
    start_minute: usize,
    /// Minutes to use [default: the rest of the day].
    #[arg(long)]
    minutes: Option<usize>,
    /// Use only this many functions: the first N, or a seeded sample with --sample-seed.
    #[arg(long)]
    functions: Option<usize>,
    /// Pick the --functions by a seeded sample instead of taking the first N.
    #[arg(long, requires = "functions")]
    sample_seed: Option<u64>,
}

impl SliceArgs {
    fn to_slice(&self) -> Slice {
        let functions = match (self.functions, self.sample_seed) {
            (None, _) => FunctionSelection::All,
            (Some(count), None) => FunctionSelection::First(count),
            (Some(count), Some(seed)) => FunctionSelection::Sample { count, seed },
        };
        let minutes = self.minutes.unwrap_or_else(|| MINUTES_PER_DAY.saturating_sub(self.start_minute));
        Slice { start_minute: self.start_minute, minutes, functions }
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Validate { trace_dir, slice } => validate(&trace_dir, &slice.to_slice()),
    }
}

fn validate(trace_dir: &std::path::Path, slice: &Slice) -> anyhow::Result<()> {
    let trace = read_trace(trace_dir).context("invalid trace")?;
    let sliced = trace.slice(slice).context("invalid slice")?;
    println!("trace {} is valid", trace_dir.display());
    print!("{}", TraceSummary::new(&sliced, slice.start_minute));
    Ok(())
}
