//! A sweep: one run per requested rate, summarised as the Dirigent paper's cold-start sweep figure (end-to-end
//! latency p50 and p99 against achieved cold starts per second) and a table (`sweep.md`, `sweep.json`).

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::RunAnalysis;
use crate::figures::{SweepPoint, sweep_figure};
use crate::markdown::{micros, number, or_na, percent, table, verdict};
use crate::output::{ReportError, create_dir, write_json, write_text};
use crate::plot::save;

/// One run of the sweep.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SweepRow {
    /// The rate the run asked for (cold starts or invocations per second).
    pub requested_rate: f64,
    /// Its folder.
    pub run_dir: PathBuf,
    /// The loader's trustworthy flag.
    pub trustworthy: Option<bool>,
    /// Analysed invocations.
    pub analysed: u64,
    /// Achieved cold starts per second, where known.
    pub cold_starts_per_s: Option<f64>,
    /// Share of cold starts, where known.
    pub cold_start_share: Option<f64>,
    /// Share of failures.
    pub failure_share: f64,
    /// Median end-to-end latency (response time), µs.
    pub p50_response_time_us: Option<f64>,
    /// 99th percentile end-to-end latency, µs.
    pub p99_response_time_us: Option<f64>,
    /// 99th percentile scheduling latency, µs.
    pub p99_scheduling_latency_us: Option<f64>,
}

/// Writes `sweep.png`, `sweep.svg`, `sweep.md` and `sweep.json` into `out_dir`; `points` pairs each run with its
/// requested rate. Returns the files.
pub fn write(points: &[(f64, RunAnalysis)], out_dir: &Path) -> Result<Vec<PathBuf>, ReportError> {
    if points.is_empty() {
        return Err(ReportError::Empty("no runs in the sweep"));
    }
    create_dir(out_dir)?;
    let rows = rows(points);
    let plotted: Vec<SweepPoint> = rows
        .iter()
        .filter_map(|row| {
            Some(SweepPoint {
                cold_starts_per_s: row.cold_starts_per_s?,
                p50_us: row.p50_response_time_us?,
                p99_us: row.p99_response_time_us?,
            })
        })
        .collect();
    let untrustworthy = rows.iter().filter(|row| row.trustworthy == Some(false)).count();
    let mut files = save(&sweep_figure(&plotted, untrustworthy), out_dir, "sweep")?;
    files.push(write_text(out_dir, "sweep.md", &markdown(&rows, plotted.len()))?);
    files.push(write_json(out_dir, "sweep.json", &rows)?);
    Ok(files)
}

/// The table's rows, by requested rate.
pub fn rows(points: &[(f64, RunAnalysis)]) -> Vec<SweepRow> {
    let mut rows: Vec<SweepRow> = points
        .iter()
        .map(|(rate, run)| SweepRow {
            requested_rate: *rate,
            run_dir: run.run_dir.clone(),
            trustworthy: run.trustworthy,
            analysed: run.counts.analysed,
            cold_starts_per_s: run.rates.cold_starts_per_s,
            cold_start_share: run.shares.cold_start,
            failure_share: run.shares.failure,
            p50_response_time_us: run.response_time_us.as_ref().map(|p| p.p50),
            p99_response_time_us: run.response_time_us.as_ref().map(|p| p.p99),
            p99_scheduling_latency_us: run.scheduling_latency_us.as_ref().map(|p| p.p99),
        })
        .collect();
    rows.sort_by(|a, b| a.requested_rate.total_cmp(&b.requested_rate));
    rows
}

fn markdown(rows: &[SweepRow], plotted: usize) -> String {
    let header = [
        "requested rate (/s)",
        "achieved cold starts/s",
        "cold starts",
        "failures",
        "p50 end-to-end",
        "p99 end-to-end",
        "p99 scheduling latency",
        "verdict",
        "run",
    ];
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            vec![
                number(Some(row.requested_rate), 2),
                number(row.cold_starts_per_s, 2),
                or_na(row.cold_start_share.map(percent)),
                percent(row.failure_share),
                or_na(row.p50_response_time_us.map(micros)),
                or_na(row.p99_response_time_us.map(micros)),
                or_na(row.p99_scheduling_latency_us.map(micros)),
                verdict(row.trustworthy),
                row.run_dir.display().to_string(),
            ]
        })
        .collect();
    format!(
        "# Cold-start sweep\n\n{}\n{plotted} of {} runs plotted (a run needs cold-start data and successful \
         invocations).\n\n![sweep](sweep.png)\n",
        table(&header, &cells),
        rows.len()
    )
}
