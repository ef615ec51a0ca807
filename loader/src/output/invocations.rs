//! Streaming `invocations.csv`: the columns of [`contracts::run_folder::Column`], in its order, by name.

use std::fmt::Write as _;
use std::fs::File;
use std::io::Write;
use std::path::Path;

use contracts::run_folder::{Column, INVOCATIONS_HEADER};

use crate::record::{InvocationRecord, Outcome};

use super::OutputError;

/// Streams one CSV row per [`InvocationRecord`]; nothing is kept beyond the CSV writer's own 8 KiB buffer.
pub struct InvocationsCsv<W: Write> {
    writer: csv::Writer<W>,
    names: Vec<String>,
    cell: String,
}

impl InvocationsCsv<File> {
    /// Creates (truncating) the file at `path` and writes the header (the CSV writer's own buffer is the only one).
    pub fn create(path: &Path, names: &[String]) -> Result<Self, OutputError> {
        let file = File::create(path).map_err(|source| OutputError::Io { path: path.to_path_buf(), source })?;
        Self::new(file, names)
    }
}

impl<W: Write> InvocationsCsv<W> {
    /// Wraps `writer` and writes the header; `names[i]` is the stable name of function index `i`.
    pub fn new(writer: W, names: &[String]) -> Result<Self, OutputError> {
        let mut writer = csv::WriterBuilder::new().has_headers(false).from_writer(writer);
        writer.write_record(INVOCATIONS_HEADER)?;
        Ok(Self { writer, names: names.to_vec(), cell: String::with_capacity(32) })
    }

    /// Writes the row for one invocation.
    pub fn write(&mut self, record: &InvocationRecord) -> Result<(), OutputError> {
        let index = record.function as usize;
        if index >= self.names.len() {
            return Err(OutputError::UnknownFunction { index: record.function, known: self.names.len() });
        }
        for column in Column::ALL {
            self.cell(column, record, index)?;
        }
        self.writer.write_record(None::<&[u8]>)?;
        Ok(())
    }

    /// Flushes buffered rows to the underlying writer.
    pub fn flush(&mut self) -> Result<(), OutputError> {
        self.writer.flush().map_err(|error| OutputError::Csv(error.into()))
    }

    /// Flushes and returns the underlying writer.
    pub fn into_inner(self) -> Result<W, OutputError> {
        self.writer.into_inner().map_err(|error| OutputError::Csv(error.into_error().into()))
    }

    /// Writes `record`'s cell of `column`; `function` is its checked index into the names.
    fn cell(&mut self, column: Column, record: &InvocationRecord, function: usize) -> Result<(), OutputError> {
        let breakdown = &record.breakdown;
        match column {
            Column::Phase => self.number(Some(u64::from(record.phase.code()))),
            Column::Instance => {
                self.writer.write_field(&self.names[function])?;
                Ok(())
            }
            Column::InvocationId => {
                self.cell.clear();
                let _ = write!(self.cell, "min{}.inv{}", record.minute, record.index_in_minute);
                self.writer.write_field(&self.cell)?;
                Ok(())
            }
            Column::StartTime => self.number(Some(record.sent_unix_us)),
            Column::RequestedDuration => self.number(Some(record.requested_duration_us)),
            Column::ResponseTime => self.number(Some(record.response_time_us)),
            Column::ActualDuration => self.number(record.actual_duration_us),
            Column::ConnectionTimeout => self.boolean(Some(matches!(record.outcome, Outcome::ConnectionFailed(_)))),
            Column::FunctionTimeout => self.boolean(Some(matches!(record.outcome, Outcome::Timeout))),
            Column::ActualMemoryUsage => self.number(record.actual_memory_mib.map(u64::from)),
            Column::IntendedTime => self.number(Some(record.intended_unix_us)),
            Column::SendLag => self.number(Some(record.send_lag_us())),
            Column::ColdStart => self.boolean(record.cold_start),
            Column::SchedulingLatency => self.number(record.scheduling_latency_us()),
            Column::Outcome => self.text(&record.outcome.label()),
            Column::QueueTime => self.number(breakdown.queue_us),
            Column::CreateTime => self.number(breakdown.create_us),
            Column::ProxyTime => self.number(breakdown.proxy_us),
            Column::PlatformColdStart => self.text(breakdown.cold_start.as_deref().unwrap_or("")),
        }
    }

    fn text(&mut self, text: &str) -> Result<(), OutputError> {
        self.writer.write_field(text)?;
        Ok(())
    }

    fn number(&mut self, value: Option<u64>) -> Result<(), OutputError> {
        self.cell.clear();
        if let Some(value) = value {
            let _ = write!(self.cell, "{value}");
        }
        self.writer.write_field(&self.cell)?;
        Ok(())
    }

    fn boolean(&mut self, value: Option<bool>) -> Result<(), OutputError> {
        let text = match value {
            Some(true) => "true",
            Some(false) => "false",
            None => "",
        };
        self.writer.write_field(text)?;
        Ok(())
    }
}
