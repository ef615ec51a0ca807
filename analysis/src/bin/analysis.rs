//! `analysis`: reports, comparisons, sweeps and the regression gate over loader run folders.
//! Exit codes: 0 success (or the gate passed), 1 the gate found a regression, 2 bad input or an error.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use analysis::{Metric, Options, RunAnalysis, analyze, parse_regression};
use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(name = "analysis", version, about = "Metrics, plots, comparisons and a regression gate for loader runs")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Which rows count; shared by every subcommand.
#[derive(Args)]
struct Selection {
    /// Exclude rows intended within this long after the run's start, e.g. 10m (warm-up counts towards it).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "0s")]
    exclude_leading: Duration,
    /// Analyse warm-up rows (phase 1) too.
    #[arg(long)]
    include_warmup: bool,
    /// Width of a timeline window.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    window: Duration,
}

#[derive(Subcommand)]
enum Command {
    /// Analyse one run folder: report.md, report.json and plots (PNG and SVG).
    Report {
        /// The run folder (invocations.csv; summary.json and manifest.json when present).
        run_dir: PathBuf,
        /// Where to write (default: the run folder).
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        selection: Selection,
    },
    /// Compare runs: the report's plots with one curve per run, and each metric's ratio to the first run.
    Compare {
        /// Two or more run folders; the first is the reference.
        #[arg(required = true, num_args = 2..)]
        runs: Vec<PathBuf>,
        /// Legend labels, one per run, comma-separated (default: the folder names).
        #[arg(long, value_delimiter = ',')]
        labels: Vec<String>,
        /// Where to write.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        selection: Selection,
    },
    /// A sweep: end-to-end latency p50/p99 against achieved cold starts per second, one run per rate (the rate is
    /// each manifest's config `workload.rate`).
    Sweep {
        /// The runs of the sweep.
        #[arg(required = true)]
        runs: Vec<PathBuf>,
        /// Where to write.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        selection: Selection,
    },
    /// Regression gate: exit 1 when the candidate is worse than the baseline beyond --max-regression with 95%
    /// confidence (bootstrap), 0 otherwise.
    Gate {
        /// The baseline run folder.
        #[arg(long)]
        baseline: PathBuf,
        /// The candidate run folder.
        #[arg(long)]
        candidate: PathBuf,
        /// p50_scheduling_latency, p99_scheduling_latency, mean_function_scheduling_latency, p50_response_time,
        /// p99_response_time or slowdown.
        #[arg(long, default_value = "p99_scheduling_latency")]
        metric: Metric,
        /// Tolerated regression, e.g. 10% or 0.1.
        #[arg(long, value_parser = parse_regression)]
        max_regression: f64,
        #[command(flatten)]
        selection: Selection,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Report { run_dir, out, selection } => {
            let run = load(&run_dir, &selection)?;
            let files = analysis::report::write(&run, out.as_deref().unwrap_or(&run_dir))?;
            println!("{}", one_line(&run));
            print_files(&files);
        }
        Command::Compare { runs, labels, out, selection } => {
            let labels = labels_for(&runs, labels)?;
            let analyses = runs.iter().map(|dir| load(dir, &selection)).collect::<anyhow::Result<Vec<_>>>()?;
            let pairs: Vec<(String, RunAnalysis)> = labels.into_iter().zip(analyses).collect();
            print_files(&analysis::compare::write(&pairs, &out)?);
        }
        Command::Sweep { runs, out, selection } => {
            let points = runs.iter().map(|dir| sweep_point(dir, &selection)).collect::<anyhow::Result<Vec<_>>>()?;
            print_files(&analysis::sweep::write(&points, &out)?);
        }
        Command::Gate { baseline, candidate, metric, max_regression, selection } => {
            let (baseline, candidate) = (load(&baseline, &selection)?, load(&candidate, &selection)?);
            let verdict = analysis::gate(&baseline, &candidate, metric, max_regression)?;
            println!("{}", verdict.reason);
            return Ok(if verdict.passed { ExitCode::SUCCESS } else { ExitCode::from(1) });
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Analyses one run folder and warns on stderr when the loader marked it untrustworthy.
fn load(dir: &Path, selection: &Selection) -> anyhow::Result<RunAnalysis> {
    let options = Options {
        exclude_leading: selection.exclude_leading,
        include_warmup: selection.include_warmup,
        window: selection.window,
    };
    let run = analyze(dir, &options).with_context(|| format!("cannot analyse {}", dir.display()))?;
    if run.is_untrustworthy() {
        eprintln!("warning: {} is UNTRUSTWORTHY: the loader's send lag exceeded its threshold", dir.display());
    }
    Ok(run)
}

fn sweep_point(dir: &Path, selection: &Selection) -> anyhow::Result<(f64, RunAnalysis)> {
    let run = load(dir, selection)?;
    let rate = run.manifest.as_ref().and_then(|manifest| manifest.workload_rate());
    let Some(rate) = rate else {
        bail!(
            "{}: key `config.workload.rate` is missing: a sweep needs each run's requested rate (an `rps` or \
             `cold-starts` workload)",
            dir.join("manifest.json").display()
        );
    };
    Ok((rate, run))
}

/// The given labels (one per run), or the folder names (the paths as given when two names clash).
fn labels_for(runs: &[PathBuf], labels: Vec<String>) -> anyhow::Result<Vec<String>> {
    if !labels.is_empty() {
        if labels.len() != runs.len() {
            bail!("--labels has {} labels for {} runs: give one per run", labels.len(), runs.len());
        }
        return Ok(labels);
    }
    let name =
        |dir: &PathBuf| dir.file_name().map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into());
    let names: Vec<String> = runs.iter().map(name).collect();
    let unique = names.iter().collect::<std::collections::HashSet<_>>().len() == names.len();
    Ok(if unique { names } else { runs.iter().map(|dir| dir.display().to_string()).collect() })
}

fn one_line(run: &RunAnalysis) -> String {
    let latency = |metric: Metric| metric.value(run).map_or_else(|| "n/a".into(), |value| metric.format(value));
    format!(
        "{}: {} invocations analysed, scheduling latency p50 {} p99 {}, failures {:.2}%, {}",
        run.run_dir.display(),
        run.counts.analysed,
        latency(Metric::P50SchedulingLatency),
        latency(Metric::P99SchedulingLatency),
        run.shares.failure * 100.0,
        run.trust_label()
    )
}

fn print_files(files: &[PathBuf]) {
    for file in files {
        println!("wrote {}", file.display());
    }
}
