//! Several runs side by side: the report's plots with one curve per run, and a table of each metric's ratio to
//! the first run (`compare.md`, `compare.json`).

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::RunAnalysis;
use crate::figures::{Labelled, write_run_plots};
use crate::gate::Metric;
use crate::markdown::{number, or_na, percent, table, verdict};
use crate::output::{ReportError, create_dir, write_json, write_text};

/// One run in `compare.json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ComparedRun {
    /// Its label.
    pub label: String,
    /// Its folder.
    pub run_dir: PathBuf,
    /// The loader's trustworthy flag.
    pub trustworthy: Option<bool>,
    /// Analysed invocations.
    pub analysed: u64,
    /// Analysed invocations per second.
    pub achieved_rate_per_s: f64,
    /// Share of failed invocations.
    pub failure_share: f64,
    /// Share of cold starts, where known.
    pub cold_start_share: Option<f64>,
}

/// One metric across the runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricRatios {
    /// The metric.
    pub metric: Metric,
    /// Its value per run, in run order (µs for latencies).
    pub values: Vec<Option<f64>>,
    /// value / the first run's value, per run.
    pub ratios: Vec<Option<f64>>,
}

/// The whole `compare.json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Comparison {
    /// The runs; the first is the reference for ratios.
    pub runs: Vec<ComparedRun>,
    /// Every metric.
    pub metrics: Vec<MetricRatios>,
}

/// Writes the plots (one curve per run), `compare.md` and `compare.json` into `out_dir`; returns the files.
pub fn write(runs: &[(String, RunAnalysis)], out_dir: &Path) -> Result<Vec<PathBuf>, ReportError> {
    if runs.is_empty() {
        return Err(ReportError::Empty("no runs to compare"));
    }
    create_dir(out_dir)?;
    let labelled: Vec<Labelled<'_>> = runs.iter().map(|(label, run)| Labelled::new(label, run)).collect();
    let plots = write_run_plots(&labelled, out_dir)?;
    let comparison = compare(runs);
    let mut files = vec![
        write_text(out_dir, "compare.md", &markdown(&comparison))?,
        write_json(out_dir, "compare.json", &comparison)?,
    ];
    files.extend(plots);
    Ok(files)
}

/// The comparison table's data.
pub fn compare(runs: &[(String, RunAnalysis)]) -> Comparison {
    let compared = runs
        .iter()
        .map(|(label, run)| ComparedRun {
            label: label.clone(),
            run_dir: run.run_dir.clone(),
            trustworthy: run.trustworthy,
            analysed: run.counts.analysed,
            achieved_rate_per_s: run.rates.achieved_per_s,
            failure_share: run.shares.failure,
            cold_start_share: run.shares.cold_start,
        })
        .collect();
    let metrics = Metric::ALL
        .into_iter()
        .map(|metric| {
            let values: Vec<Option<f64>> = runs.iter().map(|(_, run)| metric.value(run)).collect();
            let reference = values.first().copied().flatten().filter(|value| *value > 0.0);
            let ratios = values.iter().map(|value| Some(value.as_ref()? / reference?)).collect();
            MetricRatios { metric, values, ratios }
        })
        .collect();
    Comparison { runs: compared, metrics }
}

fn markdown(comparison: &Comparison) -> String {
    let run_rows: Vec<Vec<String>> = comparison
        .runs
        .iter()
        .map(|run| {
            vec![
                run.label.clone(),
                run.run_dir.display().to_string(),
                verdict(run.trustworthy),
                run.analysed.to_string(),
                number(Some(run.achieved_rate_per_s), 2),
                percent(run.failure_share),
                or_na(run.cold_start_share.map(percent)),
            ]
        })
        .collect();
    let header = ["run", "folder", "verdict", "analysed", "achieved rate (/s)", "failures", "cold starts"];
    let untrustworthy: Vec<&str> =
        comparison.runs.iter().filter(|run| run.trustworthy == Some(false)).map(|run| run.label.as_str()).collect();
    let banner = if untrustworthy.is_empty() {
        String::new()
    } else {
        format!(
            "> **UNTRUSTWORTHY runs**: {} (the loader's send lag exceeded its threshold).\n\n",
            untrustworthy.join(", ")
        )
    };
    format!(
        "# Comparison\n\n{banner}## Runs\n\n{}\n## Metrics (ratio to `{}`; lower is better)\n\n{}\n## Plots\n\n{}",
        table(&header, &run_rows),
        comparison.runs[0].label,
        ratio_table(comparison),
        ["scheduling-latency-cdf", "function-scheduling-latency-cdf", "function-slowdown-cdf", "timeline"]
            .map(|stem| format!("![{stem}]({stem}.png)\n"))
            .concat()
    )
}

fn ratio_table(comparison: &Comparison) -> String {
    let mut header = vec!["metric"];
    header.extend(comparison.runs.iter().map(|run| run.label.as_str()));
    let rows: Vec<Vec<String>> = comparison
        .metrics
        .iter()
        .map(|row| {
            let mut cells = vec![row.metric.name().to_owned()];
            cells.extend(row.values.iter().zip(&row.ratios).map(|(value, ratio)| match (value, ratio) {
                (Some(value), Some(ratio)) => format!("{} (×{ratio:.3})", row.metric.format(*value)),
                (Some(value), None) => row.metric.format(*value),
                _ => "n/a".into(),
            }));
            cells
        })
        .collect();
    table(&header, &rows)
}
