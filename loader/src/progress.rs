//! Run progress: a bar on a terminal, a log line every few seconds otherwise.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::record::InvocationRecord;

/// How often the plain (non-terminal) report is logged.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// Counts completed invocations and shows them; fed from the record stream, so it costs the driver nothing.
pub struct Progress {
    bar: Option<ProgressBar>,
    total: u64,
    started: Instant,
    last_log: Instant,
    completed: u64,
    failed: u64,
    max_send_lag_us: u64,
}

impl Progress {
    /// Progress towards `total` invocations; a bar only when stderr is a terminal.
    pub fn new(total: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total);
            let style = ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} completed {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style.progress_chars("=> "));
            bar
        });
        let now = Instant::now();
        Self { bar, total, started: now, last_log: now, completed: 0, failed: 0, max_send_lag_us: 0 }
    }

    /// Counts one finished invocation.
    pub fn record(&mut self, record: &InvocationRecord) {
        self.completed += 1;
        if !record.outcome.is_ok() {
            self.failed += 1;
        }
        self.max_send_lag_us = self.max_send_lag_us.max(record.send_lag_us());
        // Updating a terminal on every record would cost more than the record; a few times a second is plenty. The
        // plain log goes by time, so that a slow run still reports every few seconds.
        let due = match self.bar {
            Some(_) => self.completed.is_multiple_of(64),
            None => self.last_log.elapsed() >= LOG_EVERY,
        };
        if due || self.completed == self.total {
            self.show();
        }
    }

    fn show(&mut self) {
        let rate = self.completed as f64 / self.started.elapsed().as_secs_f64().max(1e-3);
        let message = format!("{} failed, {rate:.0}/s, max send lag {} µs", self.failed, self.max_send_lag_us);
        match &self.bar {
            Some(bar) => {
                bar.set_position(self.completed);
                bar.set_message(message);
            }
            None if self.last_log.elapsed() >= LOG_EVERY => {
                self.last_log = Instant::now();
                tracing::info!("{}/{} completed, {message}", self.completed, self.total);
            }
            None => {}
        }
    }

    /// Ends the bar.
    pub fn finish(&mut self) {
        self.show();
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
}
