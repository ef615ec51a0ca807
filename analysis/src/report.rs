//! One run's report: `report.md`, `report.json` (the [`RunAnalysis`] serialized) and the plots.

use std::path::{Path, PathBuf};

use crate::RunAnalysis;
use crate::figures::{Labelled, write_run_plots};
use crate::markdown::{cell, micros, number, or_na, percent, table};
use crate::model::{Percentiles, QUANTILES, Recovery, TimelineEvent};
use crate::output::{ReportError, create_dir, write_json, write_text};

/// Writes `report.md`, `report.json` and the plots (PNG and SVG) into `out_dir` (created); returns the files.
pub fn write(analysis: &RunAnalysis, out_dir: &Path) -> Result<Vec<PathBuf>, ReportError> {
    create_dir(out_dir)?;
    let label = run_label(analysis);
    let plots = write_run_plots(&[Labelled::new(&label, analysis)], out_dir)?;
    let mut files = vec![
        write_text(out_dir, "report.md", &markdown(analysis, &plots))?,
        write_json(out_dir, "report.json", analysis)?,
    ];
    files.extend(plots);
    Ok(files)
}

/// The run folder's name, as a label for legends and tables.
pub(crate) fn run_label(analysis: &RunAnalysis) -> String {
    let name = analysis.run_dir.file_name().map(|name| name.to_string_lossy().into_owned());
    name.unwrap_or_else(|| analysis.run_dir.display().to_string())
}

/// The Markdown report.
pub(crate) fn markdown(analysis: &RunAnalysis, plots: &[PathBuf]) -> String {
    let mut sections = vec![
        format!("# Run analysis: {}\n\n{}", analysis.run_dir.display(), trust_banner(analysis)),
        format!("## Run\n\n{}", table(&["", ""], &outline_rows(analysis))),
    ];
    sections.extend(events_section(&analysis.events));
    sections.extend(recovery_section(&analysis.recovery, analysis.counts.cold_starts.is_some()));
    sections.extend([
        format!("## Invocations\n\n{}", counts_table(analysis)),
        format!("## Rates\n\n{}", rates_table(analysis)),
        format!("## Latency and slowdown\n\n{}", distributions_table(analysis)),
        format!("## Send lag\n\n{}", send_lag_text(analysis)),
        format!("## Plots\n\n{}", plot_links(plots)),
    ]);
    sections.join("\n")
}

/// The line that flags the run's trustworthiness, on top of the report.
pub(crate) fn trust_banner(analysis: &RunAnalysis) -> String {
    match analysis.trustworthy {
        Some(true) => "Trustworthy: the loader's send lag stayed within its threshold.\n".into(),
        Some(false) => "> **UNTRUSTWORTHY RUN**: the loader's send lag exceeded its threshold, so the loader itself \
                        delayed invocations; latencies below include that delay. Rerun with a lighter load or a \
                        faster loader host.\n"
            .into(),
        None => "Trustworthiness unknown: the run folder has no `summary.json` (not a loader run?).\n".into(),
    }
}

/// The run's identity (manifest) and the options used, as table rows.
fn outline_rows(analysis: &RunAnalysis) -> Vec<Vec<String>> {
    let options = &analysis.options;
    let mut rows = vec![
        ("run folder", analysis.run_dir.display().to_string()),
        ("verdict", analysis.trust_label().to_owned()),
        ("excluded leading window", humantime::format_duration(options.exclude_leading).to_string()),
        ("warm-up included", options.include_warmup.to_string()),
        ("timeline window", humantime::format_duration(options.window).to_string()),
    ];
    let Some(manifest) = &analysis.manifest else {
        rows.push(("manifest", "none (no manifest.json)".into()));
        return rows.into_iter().map(|(key, value)| vec![key.to_owned(), value]).collect();
    };
    let text = |value: &Option<String>| value.clone().unwrap_or_else(|| "unknown".into());
    let host = &manifest.host;
    rows.extend([
        ("loader version", text(&manifest.loader.version)),
        ("git commit", text(&manifest.loader.git_commit)),
        (
            "host",
            format!(
                "{}, {} cores, kernel {}",
                text(&host.hostname),
                or_na(host.nproc.map(|n| n.to_string())),
                text(&host.kernel)
            ),
        ),
        ("started", text(&manifest.started_at)),
        ("ended", text(&manifest.ended_at)),
        ("seed", or_na(manifest.seed.map(|seed| seed.to_string()))),
        ("trace checksum", text(&manifest.trace_checksum)),
        ("events", event_count(&analysis.events)),
    ]);
    let mut rows: Vec<Vec<String>> = rows.into_iter().map(|(key, value)| vec![key.to_owned(), value]).collect();
    rows.extend(
        crate::meta::config_summary(manifest).into_iter().map(|(key, value)| vec![format!("config `{key}`"), value]),
    );
    rows
}

/// The outline's event count, pointing to the Events section when there is one.
fn event_count(events: &[TimelineEvent]) -> String {
    if events.is_empty() { "0".into() } else { format!("{} (see Events)", events.len()) }
}

/// The Events section (e.g. injected failures), in the manifest's order; `None` when the run has no events.
fn events_section(events: &[TimelineEvent]) -> Option<String> {
    if events.is_empty() {
        return None;
    }
    let text = |value: &Option<String>| or_na(value.as_deref().map(cell));
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|event| {
            let at_s = number(event.at_s, 3);
            vec![at_s, text(&event.kind), text(&event.component), text(&event.host), text(&event.detail)]
        })
        .collect();
    Some(format!(
        "## Events\n\n{}\nTime from the run's start, the timeline's origin (negative: before it; n/a: the event has no \
         `unixUs`). Timed events are marked on the timeline plot.\n",
        table(&["time from start (s)", "kind", "component", "host", "detail"], &rows)
    ))
}

/// The Recovery section: one row per timed kill; `None` when nothing was killed. Without cold-start flags in the
/// CSV the cold-start column is `n/a` (unknown) rather than `—` (none).
fn recovery_section(recovery: &[Recovery], cold_starts_known: bool) -> Option<String> {
    if recovery.is_empty() {
        return None;
    }
    let text = |value: &Option<String>| or_na(value.as_deref().map(cell));
    let seconds = |value: Option<f64>| value.map_or_else(|| "—".to_owned(), |s| format!("{s:.3}"));
    let rows: Vec<Vec<String>> = recovery
        .iter()
        .map(|kill| {
            let cold = if cold_starts_known { seconds(kill.first_cold_ok_s) } else { "n/a".into() };
            vec![
                number(kill.at_s, 3),
                text(&kill.component),
                text(&kill.detail),
                kill.failed.to_string(),
                seconds(kill.first_ok_s),
                cold,
                seconds(kill.last_failure_s),
            ]
        })
        .collect();
    let header = [
        "kill at (s)",
        "component",
        "detail",
        "failed",
        "first success (s)",
        "first cold-start success (s)",
        "last failure (s)",
    ];
    Some(format!(
        "## Recovery

{}
Per kill, over the analysed invocations intended from it until the next kill (or the run's \
         end): failed is how many did not succeed, first success and first cold-start success are the seconds from \
         the kill to the earliest completion (intended time + response time) of a successful invocation, and of a \
         successful cold start, intended at or after it, and last failure is the seconds to the intended time of the \
         last failed one, after which service was whole again (—: none).\n",
        table(&header, &rows)
    ))
}

fn counts_table(analysis: &RunAnalysis) -> String {
    let counts = &analysis.counts;
    let shares = &analysis.shares;
    let with_share = |count: u64, share: f64| format!("{count} ({})", percent(share));
    let rows = [
        ("rows read", counts.rows.to_string()),
        ("excluded: warm-up (phase 1)", counts.excluded_warmup.to_string()),
        ("excluded: leading window", counts.excluded_leading.to_string()),
        ("analysed", counts.analysed.to_string()),
        ("successful", counts.ok.to_string()),
        ("failed", with_share(counts.failures(), shares.failure)),
        ("failed: connection", with_share(counts.connection_failures, shares.connection_failure)),
        ("failed: function timeout", with_share(counts.function_timeouts, shares.function_timeout)),
        ("failed: other (HTTP errors)", with_share(counts.other_failures, shares.other_failure)),
        ("cold starts", or_na(counts.cold_starts.zip(shares.cold_start).map(|(n, s)| with_share(n, s)))),
        ("slowdown < 1 (excluded from slowdown)", counts.slowdown_below_one.to_string()),
        ("successful without execution time (no scheduling latency)", counts.missing_execution_time.to_string()),
    ];
    table(&["invocations", "count"], &rows.map(|(name, value)| vec![name.to_owned(), value]))
}

fn rates_table(analysis: &RunAnalysis) -> String {
    let rates = &analysis.rates;
    let rows = [
        ("requested (loader summary: whole measured phase; else config)", number(rates.requested_per_s, 2)),
        ("achieved (analysed invocations)", number(Some(rates.achieved_per_s), 2)),
        ("successful", number(Some(rates.ok_per_s), 2)),
        ("cold starts", number(rates.cold_starts_per_s, 2)),
    ];
    let mut rows: Vec<Vec<String>> = rows.iter().map(|(name, value)| vec![(*name).to_owned(), value.clone()]).collect();
    rows.push(vec!["analysed interval".into(), format!("{:.1} s", rates.duration_s)]);
    table(&["rate", "per second"], &rows)
}

/// One table row: the name, the count, the mean and the percentiles, formatted by `format`.
fn distribution_row(name: &str, percentiles: Option<&Percentiles>, format: fn(f64) -> String) -> Vec<String> {
    let mut row = vec![name.to_owned()];
    match percentiles {
        Some(p) => {
            row.push(p.count.to_string());
            row.push(format(p.mean));
            row.extend(p.values().map(format));
        }
        None => row.extend(std::iter::repeat_n("n/a".to_owned(), 2 + QUANTILES.len() + 1)),
    }
    row
}

pub(crate) fn distribution_header() -> Vec<&'static str> {
    let mut header = vec!["", "count", "mean"];
    header.extend(QUANTILES.map(|(label, _)| label));
    header.push("max");
    header
}

fn distributions_table(analysis: &RunAnalysis) -> String {
    let ratio = |value: f64| format!("{value:.3}");
    let rows = [
        distribution_row("scheduling latency, per invocation", analysis.scheduling_latency_us.as_ref(), micros),
        distribution_row("response time, per invocation", analysis.response_time_us.as_ref(), micros),
        distribution_row(
            "scheduling latency, per-function mean (over functions)",
            analysis.function_scheduling_latency_us.as_ref(),
            micros,
        ),
        distribution_row("slowdown, per function (over functions)", analysis.function_slowdown.as_ref(), ratio),
    ];
    format!(
        "{}\nScheduling latency = response time − the function's own execution time, over successful invocations. \
         Slowdown = response time / requested duration, the geometric mean per function; invocations with slowdown \
         < 1 are excluded ({} here).\n",
        table(&distribution_header(), &rows),
        analysis.counts.slowdown_below_one
    )
}

fn send_lag_text(analysis: &RunAnalysis) -> String {
    let mut rows = vec![distribution_row("analysed invocations (CSV)", analysis.send_lag_us.as_ref(), micros)];
    let loader = analysis.loader_summary.as_ref();
    if let Some(lag) = loader.and_then(|summary| summary.overall.send_lag_us.as_ref()) {
        let values = [lag.p50, lag.p90, lag.p99, lag.p999, lag.max].map(|value| micros(value as f64));
        let mut row = vec!["loader summary (measured phase)".to_owned(), lag.count.to_string(), "n/a".into()];
        row.extend(values);
        rows.push(row);
    }
    let threshold = loader.map(|summary| micros(summary.send_lag_threshold_us as f64));
    format!(
        "{}\nThreshold for a trustworthy run (send-lag p99): {}. Verdict: **{}**.\n",
        table(&distribution_header(), &rows),
        or_na(threshold),
        analysis.trust_label()
    )
}

fn plot_links(plots: &[PathBuf]) -> String {
    let names = plots.iter().filter_map(|path| path.file_name()).map(|name| name.to_string_lossy().into_owned());
    names.filter(|name| name.ends_with(".png")).map(|name| format!("![{name}]({name})\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: Option<&str>, detail: Option<&str>, at_s: Option<f64>) -> TimelineEvent {
        let text = |value: Option<&str>| value.map(str::to_owned);
        TimelineEvent { kind: text(kind), component: text(Some("worker-1")), host: None, detail: text(detail), at_s }
    }

    #[test]
    fn events_section_lists_every_event_with_its_time() {
        assert_eq!(events_section(&[]), None);
        assert_eq!(event_count(&[]), "0");
        let events = [
            event(Some("kill"), Some("SIGKILL"), Some(12.3456)),
            event(Some("restart"), None, Some(-0.5)),
            event(None, Some("a|b"), None),
        ];
        let section = events_section(&events).unwrap();
        let expected_rows = [
            "| time from start (s) | kind | component | host | detail |",
            "| 12.346 | kill | worker-1 | n/a | SIGKILL |",
            "| -0.500 | restart | worker-1 | n/a | n/a |",
            "| n/a | n/a | worker-1 | n/a | a\\|b |",
        ];
        for row in expected_rows {
            assert!(section.contains(&format!("{row}\n")), "{section} lacks {row}");
        }
        assert!(section.starts_with("## Events\n"));
        assert_eq!(event_count(&events), "3 (see Events)");
    }

    fn recovery(at_s: f64, failed: u64, first_ok_s: Option<f64>, last_failure_s: Option<f64>) -> Recovery {
        Recovery {
            component: Some("control-plane-1".into()),
            detail: Some("SIGKILL (the leader)".into()),
            at_s: Some(at_s),
            failed,
            first_ok_s,
            first_cold_ok_s: first_ok_s.map(|s| s + 1.0),
            last_failure_s,
        }
    }

    #[test]
    fn recovery_section_has_one_row_per_kill() {
        assert_eq!(recovery_section(&[], true), None);
        let kills = [recovery(20.0, 12, Some(0.35), Some(4.8)), recovery(40.0, 0, None, None)];
        let section = recovery_section(&kills, true).unwrap();
        assert!(section.starts_with("## Recovery\n"), "{section}");
        for row in [
            "| kill at (s) | component | detail | failed | first success (s) | first cold-start success (s) | last \
             failure (s) |",
            "| 20.000 | control-plane-1 | SIGKILL (the leader) | 12 | 0.350 | 1.350 | 4.800 |",
            "| 40.000 | control-plane-1 | SIGKILL (the leader) | 0 | — | — | — |",
        ] {
            assert!(section.contains(&format!("{row}\n")), "{section} lacks {row}");
        }
        let unknown = recovery_section(&kills[..1], false).unwrap();
        assert!(unknown.contains("| 12 | 0.350 | n/a | 4.800 |"), "{unknown}");
    }
}
