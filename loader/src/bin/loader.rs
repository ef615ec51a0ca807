//! `loader`: trace-driven, open-loop FaaS load generator.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use loader::schedule::{IatDistribution, MinuteWindow, ScheduleConfig, schedule_window, write_schedule};
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
    /// Replay a trace against a target and write the run folder (invocations.csv, summary.json, manifest.json).
    Run {
        /// The run's YAML config (every key and default: loader/config/example.yaml).
        #[arg(long)]
        config: PathBuf,
        /// Write the run folder here instead of the config's `output`.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Write the schedule a run would send (one CSV row per invocation, in time order); sends nothing.
    Schedule {
        /// Directory with the trace files (In-Vitro layout).
        trace_dir: PathBuf,
        #[command(flatten)]
        slice: SliceArgs,
        #[command(flatten)]
        schedule: ScheduleArgs,
        /// Where to write the schedule CSV.
        #[arg(long)]
        out: PathBuf,
    },
}

/// How the trace becomes send times.
#[derive(Debug, Args)]
struct ScheduleArgs {
    /// Seed of every random choice; the same seed, trace and settings give a byte-identical schedule.
    #[arg(long, default_value_t = ScheduleConfig::default().seed)]
    seed: u64,
    /// Inter-arrival distribution within a minute: exponential, uniform or equidistant.
    #[arg(long, default_value = "exponential", value_parser = parse_iat)]
    iat: IatDistribution,
    /// Do not shift each function's arrivals by a random offset within the minute.
    #[arg(long)]
    no_shift: bool,
    /// Trace minutes per real minute (60 replays one trace minute per second).
    #[arg(long, default_value_t = ScheduleConfig::default().compression)]
    compression: f64,
    /// Leading minutes of the slice whose invocations are marked warm-up (phase 1).
    #[arg(long, default_value_t = 0)]
    warmup_minutes: u32,
}

impl ScheduleArgs {
    fn to_config(&self) -> ScheduleConfig {
        ScheduleConfig {
            seed: self.seed,
            iat: self.iat,
            shift_within_minute: !self.no_shift,
            compression: self.compression,
            ..ScheduleConfig::default()
        }
    }
}

fn parse_iat(text: &str) -> Result<IatDistribution, String> {
    serde_json::from_value(serde_json::Value::String(text.to_owned()))
        .map_err(|_| format!("'{text}' is not one of exponential, uniform, equidistant"))
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
        Command::Run { config, output } => run_command(&config, output),
        Command::Schedule { trace_dir, slice, schedule, out } => {
            write_schedule_file(&trace_dir, &slice.to_slice(), &schedule, &out)
        }
    }
}

fn write_schedule_file(trace_dir: &Path, slice: &Slice, args: &ScheduleArgs, out: &Path) -> anyhow::Result<()> {
    let trace = read_trace(trace_dir).context("invalid trace")?;
    let sliced = trace.slice(slice).context("invalid slice")?;
    // The slice renumbers its minutes from 0; the window's origin keeps each minute's random stream that of
    // its minute of the day, so a slice schedules exactly what the whole day would for those minutes.
    let origin = u32::try_from(slice.start_minute).context("--start-minute is out of range")?;
    let window = MinuteWindow { origin, start: 0, len: None };
    let invocations = schedule_window(&sliced, &args.to_config(), args.warmup_minutes, window)?;
    let file = std::fs::File::create(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut writer = std::io::BufWriter::new(file);
    let rows = write_schedule(invocations, &mut writer).with_context(|| format!("cannot write {}", out.display()))?;
    writer.flush().with_context(|| format!("cannot write {}", out.display()))?;
    println!("wrote {rows} invocations of {} functions to {}", sliced.functions.len(), out.display());
    Ok(())
}

fn run_command(config: &Path, output: Option<PathBuf>) -> anyhow::Result<()> {
    let mut config = loader::config::RunConfig::load(config)?;
    if let Some(output) = output {
        config.output = output;
    }
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let report = runtime.block_on(async {
        let stop = loader::driver::StopSignal::new();
        let on_interrupt = stop.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("interrupted: stopping the sends, waiting for what is in flight, writing the files");
                on_interrupt.stop();
            }
        });
        loader::run::run(&config, stop).await
    })?;
    let r = &report.replay;
    println!(
        "sent {} invocations: {} ok, {} failed, {} abandoned; max send lag {} µs; {}; results in {}",
        r.sent,
        r.ok,
        r.failed,
        r.abandoned,
        r.max_send_lag_us,
        if report.trustworthy { "trustworthy" } else { "NOT trustworthy (send lag above the threshold)" },
        config.output.display()
    );
    Ok(())
}

fn validate(trace_dir: &Path, slice: &Slice) -> anyhow::Result<()> {
    let trace = read_trace(trace_dir).context("invalid trace")?;
    let sliced = trace.slice(slice).context("invalid slice")?;
    println!("trace {} is valid", trace_dir.display());
    print!("{}", TraceSummary::new(&sliced, slice.start_minute));
    Ok(())
}
