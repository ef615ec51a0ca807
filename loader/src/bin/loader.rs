//! `loader`: trace-driven, open-loop FaaS load generator.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use loader::config::{RunConfig, SliceConfig, Workload};
use loader::schedule::{IatDistribution, write_schedule};
use loader::trace::model::MINUTES_PER_DAY;
use loader::trace::{TraceSummary, read_trace};

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
    /// Replay a workload against a target and write the run folder (invocations.csv, summary.json, manifest.json).
    Run {
        /// The run's YAML config (every key and default: loader/config/example.yaml).
        #[arg(long)]
        config: PathBuf,
        /// Write the run folder here instead of the config's `output`.
        #[arg(long)]
        output: Option<PathBuf>,
        #[command(flatten)]
        overrides: Overrides,
    },
    /// Delete what runs of the config's target left deployed (Knative Services with the loader's label, Lambda
    /// functions with the name prefix), e.g. after an interrupted run; prints their names.
    Cleanup {
        /// The run's YAML config; only its `target` is used.
        #[arg(long)]
        config: PathBuf,
    },
    /// Package the trace function as an AWS Lambda custom runtime: a reproducible zip whose `bootstrap` is the
    /// binary (build it for the functions' architecture; Lambda takes at most 50 MiB uploaded directly).
    PackageLambda {
        /// The `trace-function` binary.
        #[arg(long)]
        binary: PathBuf,
        /// The zip to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Write the schedule a run would send (one CSV row per invocation, in time order); sends nothing.
    Schedule {
        /// Directory with the trace files (In-Vitro layout); the whole rest of the day unless --minutes.
        #[arg(required_unless_present = "config", conflicts_with = "config")]
        trace_dir: Option<PathBuf>,
        /// Take the workload from a run config instead (the schedule `loader run --config` would send).
        #[arg(long)]
        config: Option<PathBuf>,
        #[command(flatten)]
        overrides: Overrides,
        /// Where to write the schedule CSV.
        #[arg(long)]
        out: PathBuf,
    },
}

/// Command-line overrides of the run config's common keys.
#[derive(Debug, Args)]
struct Overrides {
    #[command(flatten)]
    slice: SliceArgs,
    /// Seed of every random choice (`schedule.seed`); the same seed and settings give a byte-identical schedule.
    #[arg(long)]
    seed: Option<u64>,
    /// Inter-arrival distribution within a trace minute (`schedule.iat`): exponential, uniform or equidistant.
    #[arg(long, value_parser = parse_iat)]
    iat: Option<IatDistribution>,
    /// Do not shift each function's arrivals by a random offset within the minute (`schedule.shift_within_minute`).
    #[arg(long)]
    no_shift: bool,
    /// Trace minutes per real minute (`schedule.compression`; 60 replays one trace minute per second).
    #[arg(long)]
    compression: Option<f64>,
    /// Leading trace minutes marked warm-up (`warmup_minutes`).
    #[arg(long)]
    warmup_minutes: Option<u32>,
    /// Invocations (rps) or cold starts (cold-starts) per second (`workload.rate`).
    #[arg(long)]
    rate: Option<f64>,
    /// Length of the measured phase of an rps or cold-starts workload (`workload.duration`), e.g. 30s.
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Most requests in flight at once (`driver.max_in_flight`).
    #[arg(long)]
    max_in_flight: Option<usize>,
}

impl Overrides {
    /// Applies the given flags to `config` and checks the result; the error names the flag or the key.
    fn apply(&self, config: &mut RunConfig) -> anyhow::Result<()> {
        self.slice.apply(&mut config.slice);
        let schedule = &mut config.schedule;
        schedule.seed = self.seed.unwrap_or(schedule.seed);
        schedule.iat = self.iat.unwrap_or(schedule.iat);
        schedule.shift_within_minute &= !self.no_shift;
        schedule.compression = self.compression.unwrap_or(schedule.compression);
        config.warmup_minutes = self.warmup_minutes.unwrap_or(config.warmup_minutes);
        config.driver.max_in_flight = self.max_in_flight.unwrap_or(config.driver.max_in_flight);
        self.apply_to_workload(&mut config.workload)?;
        config.validate().map_err(|message| anyhow::anyhow!("invalid settings: {message}"))
    }

    fn apply_to_workload(&self, workload: &mut Workload) -> anyhow::Result<()> {
        let (rate, duration) = match workload {
            Workload::Rps(rps) => (&mut rps.rate, &mut rps.duration),
            Workload::ColdStarts(cold) => (&mut cold.rate, &mut cold.duration),
            Workload::Trace if self.rate.is_some() || self.duration.is_some() => {
                anyhow::bail!("--rate and --duration apply to rps and cold-starts workloads; this one replays a trace")
            }
            Workload::Trace => return Ok(()),
        };
        *rate = self.rate.unwrap_or(*rate);
        *duration = self.duration.unwrap_or(*duration);
        Ok(())
    }
}

fn parse_iat(text: &str) -> Result<IatDistribution, String> {
    serde_json::from_value(serde_json::Value::String(text.to_owned()))
        .map_err(|_| format!("'{text}' is not one of exponential, uniform, equidistant"))
}

/// Which part of the trace to use.
#[derive(Debug, Args)]
struct SliceArgs {
    /// First minute of the day to use, 0-based (`slice.start_minute`).
    #[arg(long)]
    start_minute: Option<usize>,
    /// Minutes to use (`slice.minutes`).
    #[arg(long)]
    minutes: Option<usize>,
    /// Use only this many functions: the first N, or a seeded sample with --sample-seed (`slice.functions`).
    #[arg(long)]
    functions: Option<usize>,
    /// Pick the --functions by a seeded sample instead of taking the first N (`slice.sample_seed`).
    #[arg(long, requires = "functions")]
    sample_seed: Option<u64>,
}

impl SliceArgs {
    fn apply(&self, slice: &mut SliceConfig) {
        slice.start_minute = self.start_minute.unwrap_or(slice.start_minute);
        slice.minutes = self.minutes.unwrap_or(slice.minutes);
        if self.functions.is_some() {
            (slice.functions, slice.sample_seed) = (self.functions, self.sample_seed);
        }
    }

    /// The whole rest of the day from the start minute unless `--minutes` says otherwise.
    fn whole_day(&self) -> SliceConfig {
        let start_minute = self.start_minute.unwrap_or(0);
        let mut slice = SliceConfig {
            start_minute,
            minutes: MINUTES_PER_DAY.saturating_sub(start_minute),
            ..SliceConfig::default()
        };
        self.apply(&mut slice);
        slice
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
        Command::Validate { trace_dir, slice } => validate(&trace_dir, &slice.whole_day()),
        Command::Run { config, output, overrides } => {
            let mut config = RunConfig::load(&config)?;
            config.output = output.unwrap_or(config.output);
            overrides.apply(&mut config)?;
            run_command(&config)
        }
        Command::Cleanup { config } => {
            let config = RunConfig::load(&config)?;
            let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
            let removed = runtime.block_on(loader::target::cleanup::cleanup(&config.target))?;
            for name in &removed {
                println!("deleted {name}");
            }
            println!("{} left-over functions deleted", removed.len());
            Ok(())
        }
        Command::PackageLambda { binary, out } => {
            loader::target::lambda::package::write_zip(&binary, &out)?;
            let size = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
            println!("wrote {} ({:.1} MiB, bootstrap = {})", out.display(), size as f64 / 1048576.0, binary.display());
            Ok(())
        }
        Command::Schedule { trace_dir, config, overrides, out } => {
            let mut config = match (config, trace_dir) {
                (Some(path), _) => RunConfig::load(&path)?,
                (None, trace) => RunConfig {
                    trace: trace.unwrap_or_default(),
                    slice: overrides.slice.whole_day(),
                    ..RunConfig::default()
                },
            };
            overrides.apply(&mut config)?;
            write_schedule_file(&config, &out)
        }
    }
}

fn write_schedule_file(config: &RunConfig, out: &Path) -> anyhow::Result<()> {
    let workload = loader::workload::prepare(config)?;
    let file = std::fs::File::create(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut writer = std::io::BufWriter::new(file);
    let rows =
        write_schedule(workload.schedule, &mut writer).with_context(|| format!("cannot write {}", out.display()))?;
    writer.flush().with_context(|| format!("cannot write {}", out.display()))?;
    println!("wrote {rows} invocations of {} functions to {}", workload.names.len(), out.display());
    Ok(())
}

fn run_command(config: &RunConfig) -> anyhow::Result<()> {
    // Before the runtime exists, so that its threads and the scheduler thread inherit the policy.
    loader::driver::realtime::enter_if(config.driver.realtime);
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let report = runtime.block_on(async {
        let stop = loader::driver::StopSignal::on_ctrl_c(
            "interrupted: stopping the sends, waiting for what is in flight, writing the files",
        );
        loader::run::run(config, stop).await
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

fn validate(trace_dir: &Path, slice: &SliceConfig) -> anyhow::Result<()> {
    let config = RunConfig { slice: slice.clone(), ..RunConfig::default() };
    let slice = loader::workload::slice_of(&config);
    let trace = read_trace(trace_dir).context("invalid trace")?;
    let sliced = trace.slice(&slice).context("invalid slice")?;
    println!("trace {} is valid", trace_dir.display());
    print!("{}", TraceSummary::new(&sliced, slice.start_minute));
    Ok(())
}
