//! One run end to end: prepare the workload (trace replay or a synthetic load), deploy on the target, replay the schedule, stream every
//! record to `invocations.csv`, then write `summary.json` and `manifest.json`, and tear down.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use contracts::api::ProxyAddresses;

use crate::config::{RunConfig, TargetConfig};
use crate::driver::{DriverOptions, ReplayStats, StopSignal, replay};
use crate::output::{InvocationsCsv, ManifestInputs, RunStats, SummaryInputs, write_manifest, write_summary};
use crate::progress::Progress;
use crate::record::InvocationRecord;
use crate::target::Target;
use crate::target::dirigent::{DirigentConfig, DirigentTarget};
use crate::target::grpc::{GrpcTarget, GrpcTargetConfig};
use crate::target::http::{HttpTarget, HttpTargetConfig};
use crate::workload::prepare;

/// A run failed; what was measured before the failure is still in the run folder where possible.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// the workload (trace, slice, schedule) is invalid
    #[error(transparent)]
    Workload(#[from] crate::workload::WorkloadError),
    /// the run folder cannot be created
    #[error("cannot create the run folder {path}: {source}")]
    OutputFolder {
        /// The folder.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// the run folder already holds a run
    #[error("{0} already exists: choose a new output folder")]
    OutputExists(std::path::PathBuf),
    /// writing a run file failed
    #[error(transparent)]
    Output(#[from] crate::output::OutputError),
    /// the target refused to deploy or tear down
    #[error("target: {0}")]
    Target(#[from] crate::target::TargetError),
    /// the driver failed
    #[error("replay: {0}")]
    Driver(#[from] crate::driver::DriverError),
    /// the record writer thread cannot start
    #[error("cannot start the record writer thread: {0}")]
    WriterThread(#[source] std::io::Error),
    /// the record writer thread panicked
    #[error("the record writer thread failed; invocations.csv may be incomplete")]
    Writer,
    /// the config cannot be recorded in the manifest
    #[error("cannot record the config: {0}")]
    Config(#[from] serde_json::Error),
}

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// The driver's counts.
    pub replay: ReplayStats,
    /// Whether the send lag stayed under the threshold.
    pub trustworthy: bool,
}

/// Runs `config`; `stop` ends sending early (Ctrl-C) and the files are still written.
pub async fn run(config: &RunConfig, stop: StopSignal) -> Result<RunReport, RunError> {
    // Checked before anything is deployed or any file is written.
    let workload = prepare(config)?;
    prepare_output(&config.output)?;
    let target = build_target(config)?;
    target.deploy(&workload.deployments).await?;
    let started = SystemTime::now();
    let names = Arc::clone(&workload.names);
    let csv = InvocationsCsv::create(&config.output.join("invocations.csv"), &names)?;
    let writer = RecordWriter::start(csv, RunStats::new(&names), Progress::new(workload.total))?;
    let options = driver_options(config);
    let records = writer.sender();
    let replayed = replay(Arc::clone(&target), names, workload.schedule, options, stop, |record| {
        // Blocks only when the writer is RECORD_QUEUE records behind.
        let _ = records.send(record);
    })
    .await;
    drop(records);
    let ended = SystemTime::now();
    let teardown = target.teardown().await;
    let stats = writer.finish()?;
    let replay = replayed?;
    let summary = SummaryInputs {
        measured_duration_s: workload.measured_duration_s,
        run_duration_s: workload.run_duration_s,
        scheduled_per_function: workload.scheduled_per_function,
        send_lag_threshold_us: u64::try_from(config.send_lag_threshold.as_micros()).unwrap_or(u64::MAX),
    };
    write_summary(&config.output.join("summary.json"), &stats, &summary)?;
    let trustworthy = crate::output::summarize(&stats, &summary).trustworthy;
    let manifest = ManifestInputs {
        config: serde_json::to_value(config)?,
        seed: config.schedule.seed,
        trace_checksum: workload.trace_checksum,
        started,
        ended,
        events: Vec::new(),
    };
    write_manifest(&config.output.join("manifest.json"), &manifest)?;
    teardown?;
    Ok(RunReport { replay, trustworthy })
}

/// Records the writer thread may hold before the driver waits for it (about 200 bytes each).
const RECORD_QUEUE: usize = 65_536;

/// Folds records into `invocations.csv`, the statistics and the progress display on a thread of its own, so that a
/// stalled disk (seconds, on a machine busy writing) never stalls the tokio workers that send invocations.
struct RecordWriter {
    sender: std::sync::mpsc::SyncSender<InvocationRecord>,
    thread: std::thread::JoinHandle<Result<RunStats, crate::output::OutputError>>,
}

impl RecordWriter {
    fn start(
        mut csv: InvocationsCsv<std::fs::File>,
        mut stats: RunStats,
        mut progress: Progress,
    ) -> Result<Self, RunError> {
        let (sender, receiver) = std::sync::mpsc::sync_channel::<InvocationRecord>(RECORD_QUEUE);
        let thread = std::thread::Builder::new()
            .name("loader-records".into())
            .spawn(move || {
                let mut first_error = None;
                for record in receiver {
                    progress.record(&record);
                    stats.record(&record);
                    if let Err(err) = csv.write(&record) {
                        first_error.get_or_insert(err);
                    }
                }
                progress.finish();
                csv.flush()?;
                first_error.map_or(Ok(stats), Err)
            })
            .map_err(RunError::WriterThread)?;
        Ok(RecordWriter { sender, thread })
    }

    fn sender(&self) -> std::sync::mpsc::SyncSender<InvocationRecord> {
        self.sender.clone()
    }

    /// Waits until every record sent is written; the statistics, or the first write error.
    fn finish(self) -> Result<RunStats, RunError> {
        drop(self.sender);
        match self.thread.join() {
            Ok(result) => Ok(result?),
            Err(_) => Err(RunError::Writer),
        }
    }
}

/// Creates the run folder; refuses one that already holds a run, so nothing measured is overwritten.
fn prepare_output(dir: &Path) -> Result<(), RunError> {
    std::fs::create_dir_all(dir).map_err(|source| RunError::OutputFolder { path: dir.into(), source })?;
    for file in ["invocations.csv", "summary.json", "manifest.json"] {
        let path = dir.join(file);
        if path.exists() {
            return Err(RunError::OutputExists(path));
        }
    }
    Ok(())
}

fn build_target(config: &RunConfig) -> Result<Arc<dyn Target>, RunError> {
    let timeout = Some(config.driver.request_timeout);
    Ok(match &config.target {
        TargetConfig::Dirigent { api, proxy, image, .. } => {
            let mut dirigent = DirigentConfig::new(ProxyAddresses::parse(api).0, ProxyAddresses::parse(proxy).0, image);
            dirigent.request_timeout = timeout;
            dirigent.api_timeout = config.driver.api_timeout;
            Arc::new(DirigentTarget::new(dirigent)?)
        }
        TargetConfig::Grpc { address } => {
            Arc::new(GrpcTarget::new(GrpcTargetConfig { address_template: address.clone(), request_timeout: timeout })?)
        }
        TargetConfig::Http { url, host, http2 } => {
            let mut http = HttpTargetConfig::new(url.clone());
            http.host_template = host.clone();
            http.http2_prior_knowledge = *http2;
            http.request_timeout = timeout;
            Arc::new(HttpTarget::new(http)?)
        }
        TargetConfig::Knative(knative) => {
            Arc::new(crate::target::knative::KnativeTarget::new(knative.clone(), timeout)?)
        }
        TargetConfig::Lambda(lambda) => Arc::new(crate::target::lambda::LambdaTarget::new(
            crate::target::lambda::LambdaConfig::from_target(lambda, timeout),
        )?),
    })
}

/// How much later than the targets' own request timeout the driver's backstop fires: every target bounds its
/// requests itself, and its timed-out response carries what the driver's cannot (the failovers it made).
const BACKSTOP_GRACE: Duration = Duration::from_millis(250);

fn driver_options(config: &RunConfig) -> DriverOptions {
    DriverOptions {
        max_in_flight: config.driver.max_in_flight,
        request_timeout: Some(config.driver.request_timeout + BACKSTOP_GRACE),
        drain_timeout: config.driver.drain_timeout,
        ..DriverOptions::default()
    }
}
