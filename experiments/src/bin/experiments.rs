//! `experiments`: run an experiment spec end to end.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use experiments::binaries::Binaries;
use experiments::provision::{ProvisionOptions, provision};
use experiments::spec::{ClusterSpec, ExperimentSpec, SpecError};

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
        #[command(flatten)]
        cluster: ClusterArgs,
    },
    /// Provision the spec's cluster once with Ansible (ansible/site.yml): OS packages, binaries, service units,
    /// sysctls; running it again changes nothing.
    Provision {
        /// The experiment spec (its `cluster` names the hosts).
        spec: PathBuf,
        #[command(flatten)]
        cluster: ClusterArgs,
        /// The folder with site.yml and its roles.
        #[arg(long, default_value = "ansible")]
        playbooks: PathBuf,
        /// Folder with dirigent, trace-function and loader to install (default: the spec's platform.bin_dir, else
        /// target/release).
        #[arg(long)]
        bin_dir: Option<PathBuf>,
        /// A playbook variable, KEY=VALUE (VALUE read as YAML, e.g. faas_ports_open=true); repeatable.
        #[arg(long = "var", value_name = "KEY=VALUE")]
        vars: Vec<String>,
    },
    /// Check a spec without starting anything.
    Validate {
        /// The experiment spec.
        spec: PathBuf,
        #[command(flatten)]
        cluster: ClusterArgs,
    },
}

/// Running a spec on hosts over SSH without editing it.
#[derive(Debug, clap::Args)]
struct ClusterArgs {
    /// Run on the hosts of this inventory file (replaces the spec's `cluster` inventory).
    #[arg(long)]
    inventory: Option<PathBuf>,
    /// Check host keys against this known_hosts file (replaces the spec's `cluster.known_hosts`).
    #[arg(long)]
    known_hosts: Option<PathBuf>,
    /// Accept and record host keys not yet in known_hosts (fresh clusters).
    #[arg(long)]
    insecure_accept_new_host_keys: bool,
}

impl ClusterArgs {
    /// The spec at `path` with these overrides applied, checked again.
    fn load(&self, path: &std::path::Path) -> anyhow::Result<ExperimentSpec> {
        let mut spec = ExperimentSpec::load(path)?;
        if let Some(inventory) = &self.inventory {
            let cluster = spec.cluster.get_or_insert_with(|| ClusterSpec::from_inventory_file(inventory.clone()));
            (cluster.inventory_file, cluster.inventory) = (Some(inventory.clone()), None);
        }
        if let Some(known_hosts) = &self.known_hosts {
            let cluster = spec.cluster.as_mut().context("--known-hosts needs a cluster (--inventory)")?;
            cluster.known_hosts = Some(known_hosts.clone());
        }
        if self.insecure_accept_new_host_keys {
            let cluster =
                spec.cluster.as_mut().context("--insecure-accept-new-host-keys needs a cluster (--inventory)")?;
            cluster.insecure_accept_new_host_keys = true;
        }
        spec.validate().map_err(|source| SpecError::Invalid { path: path.into(), source })?;
        Ok(spec)
    }
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
        Command::Validate { spec, cluster } => {
            let spec = cluster.load(&spec)?;
            if let Some(cluster) = &spec.cluster {
                let inventory = cluster.inventory()?;
                println!("cluster of {} hosts", inventory.hosts.len());
            }
            println!("spec '{}' is valid: {} run(s)", spec.name, spec.rates().len());
            Ok(ExitCode::SUCCESS)
        }
        Command::Provision { spec, cluster, playbooks, bin_dir, vars } => {
            let spec = cluster.load(&spec)?;
            let cluster =
                spec.cluster.as_ref().context("provision needs a cluster: a `cluster` section or --inventory")?;
            let spec_bins = spec.platform.dirigent().and_then(|platform| platform.bin_dir.clone());
            let binaries = Binaries::locate(bin_dir.or(spec_bins).as_deref())?;
            let bin_dir = binaries.dirigent.parent().map(PathBuf::from).unwrap_or_default();
            let mut options = ProvisionOptions::new(playbooks, bin_dir);
            options.forks = cluster.parallelism;
            for var in &vars {
                let (key, value) = var.split_once('=').with_context(|| format!("--var {var}: expected KEY=VALUE"))?;
                let value: serde_json::Value =
                    contracts::yaml::parse(value).with_context(|| format!("--var {var}: the value is not YAML"))?;
                options.extra_vars.insert(key.into(), value);
            }
            let report = provision(&cluster.inventory()?, &cluster.session_options(), &options)?;
            println!(
                "provisioned {} hosts in {:.1?}: {} changes",
                report.hosts.len(),
                report.elapsed,
                report.changed()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Run { spec, output, cluster } => {
            let mut spec = cluster.load(&spec)?;
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
