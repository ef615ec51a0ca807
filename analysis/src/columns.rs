//! The columns of `invocations.csv`, looked up by name through the run-folder contract
//! ([`contracts::run_folder::Column`]), so the schema lives in one place; a vHive loader CSV (only the vHive
//! columns, and some of its own) is read too, with the missing columns treated as unknown.

use std::path::Path;

use contracts::run_folder::{Column, HeaderIndex};
use csv::ByteRecord;

use crate::AnalyzeError;

const INTEGER_US: &str = "a non-negative integer (µs)";
const BOOLEAN: &str = "true or false";

/// How a failed invocation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// No connection, or it broke (vHive's `connectionTimeout`).
    Connection,
    /// The request timed out (vHive's `functionTimeout`).
    Timeout,
    /// Any other error, e.g. an HTTP error status.
    Other,
}

/// One row, parsed; borrows the function name from the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Row<'a> {
    /// Phase 1 (warm-up).
    pub warmup: bool,
    /// The function (`instance`).
    pub function: &'a [u8],
    /// Intended send time (the send time when the CSV has none), Unix µs.
    pub time_us: u64,
    /// Requested execution time, µs.
    pub requested_us: u64,
    /// Response time, µs.
    pub response_us: u64,
    /// Execution time the function reported, µs.
    pub actual_us: Option<u64>,
    /// How it failed, if it did.
    pub failure: Option<Failure>,
    /// Whether it met a cold start, where known.
    pub cold: Option<bool>,
    /// Send lag, µs, where known.
    pub send_lag_us: Option<u64>,
}

/// Column indices of one CSV header.
#[derive(Debug, Clone)]
pub(crate) struct Columns {
    phase: Option<usize>,
    instance: usize,
    time: (usize, Column),
    requested: usize,
    response: usize,
    actual: usize,
    connection: Option<usize>,
    timeout: Option<usize>,
    send_lag: Option<usize>,
    cold: Option<usize>,
    outcome: Option<usize>,
}

/// A record together with what is needed to name a bad cell.
struct Cells<'r> {
    path: &'r Path,
    record: &'r ByteRecord,
}

impl Columns {
    /// Finds the columns in `header`; `instance`, `startTime`, `requestedDuration`, `responseTime` and
    /// `actualDuration` are required, the rest optional.
    pub fn from_header(path: &Path, header: &ByteRecord) -> Result<Self, AnalyzeError> {
        let index = HeaderIndex::new(header);
        let find = |column| index.get(column);
        let require = |column: Column| {
            find(column).ok_or_else(|| AnalyzeError::MissingColumn { path: path.to_path_buf(), column: column.name() })
        };
        let time = match find(Column::IntendedTime) {
            Some(index) => (index, Column::IntendedTime),
            None => (require(Column::StartTime)?, Column::StartTime),
        };
        Ok(Self {
            phase: find(Column::Phase),
            instance: require(Column::Instance)?,
            time,
            requested: require(Column::RequestedDuration)?,
            response: require(Column::ResponseTime)?,
            actual: require(Column::ActualDuration)?,
            connection: find(Column::ConnectionTimeout),
            timeout: find(Column::FunctionTimeout),
            send_lag: find(Column::SendLag),
            cold: find(Column::ColdStart),
            outcome: find(Column::Outcome),
        })
    }

    /// Whether the CSV says which invocations were cold starts.
    pub fn has_cold_starts(&self) -> bool {
        self.cold.is_some()
    }

    /// Parses one record.
    pub fn row<'r>(&self, path: &'r Path, record: &'r ByteRecord) -> Result<Row<'r>, AnalyzeError> {
        let cells = Cells { path, record };
        let phase = match self.phase {
            Some(index) => cells.optional_u64(index, Column::Phase)?,
            None => None,
        };
        Ok(Row {
            warmup: phase == Some(1),
            function: cells.get(self.instance),
            time_us: cells.required_u64(self.time.0, self.time.1)?,
            requested_us: cells.required_u64(self.requested, Column::RequestedDuration)?,
            response_us: cells.required_u64(self.response, Column::ResponseTime)?,
            actual_us: cells.optional_u64(self.actual, Column::ActualDuration)?,
            failure: self.failure(&cells)?,
            cold: self.cold.map(|index| cells.optional_bool(index, Column::ColdStart)).transpose()?.flatten(),
            send_lag_us: self.send_lag.map(|index| cells.optional_u64(index, Column::SendLag)).transpose()?.flatten(),
        })
    }

    /// The vHive flags first (they are the shared contract), then the loader's `outcome` for other errors.
    fn failure(&self, cells: &Cells<'_>) -> Result<Option<Failure>, AnalyzeError> {
        let flag = |index: Option<usize>, name| match index {
            Some(index) => cells.optional_bool(index, name).map(|value| value == Some(true)),
            None => Ok(false),
        };
        if flag(self.connection, Column::ConnectionTimeout)? {
            return Ok(Some(Failure::Connection));
        }
        if flag(self.timeout, Column::FunctionTimeout)? {
            return Ok(Some(Failure::Timeout));
        }
        Ok(match self.outcome.map(|index| cells.get(index)) {
            None | Some(b"" | b"ok") => None,
            Some(b"connection") => Some(Failure::Connection),
            Some(b"timeout") => Some(Failure::Timeout),
            Some(_) => Some(Failure::Other),
        })
    }
}

impl<'r> Cells<'r> {
    fn get(&self, index: usize) -> &'r [u8] {
        self.record.get(index).unwrap_or_default()
    }

    fn error(&self, index: usize, column: Column, expected: &'static str) -> AnalyzeError {
        AnalyzeError::Field {
            path: self.path.to_path_buf(),
            line: self.record.position().map_or(0, csv::Position::line),
            column_index: index + 1,
            column: column.name(),
            value: String::from_utf8_lossy(self.get(index)).into_owned(),
            expected,
        }
    }

    fn optional_u64(&self, index: usize, column: Column) -> Result<Option<u64>, AnalyzeError> {
        let cell = self.get(index);
        if cell.is_empty() {
            return Ok(None);
        }
        parse_u64(cell).map(Some).ok_or_else(|| self.error(index, column, INTEGER_US))
    }

    fn required_u64(&self, index: usize, column: Column) -> Result<u64, AnalyzeError> {
        self.optional_u64(index, column)?.ok_or_else(|| self.error(index, column, INTEGER_US))
    }

    fn optional_bool(&self, index: usize, column: Column) -> Result<Option<bool>, AnalyzeError> {
        match self.get(index) {
            b"" => Ok(None),
            b"true" | b"1" => Ok(Some(true)),
            b"false" | b"0" => Ok(Some(false)),
            _ => Err(self.error(index, column, BOOLEAN)),
        }
    }
}

/// Parses ASCII decimal digits without going through `str` (this is the hot loop of a million-row CSV).
fn parse_u64(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() {
        return None;
    }
    bytes.iter().try_fold(0u64, |value, &byte| {
        let digit = byte.checked_sub(b'0').filter(|digit| *digit < 10)?;
        value.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_integers_and_refuses_the_rest() {
        assert_eq!(parse_u64(b"0"), Some(0));
        assert_eq!(parse_u64(b"18446744073709551615"), Some(u64::MAX));
        for bad in [&b""[..], b"-1", b"1.5", b" 1", b"18446744073709551616", b"x"] {
            assert_eq!(parse_u64(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_vhive_only_header_reads_with_our_columns_unknown() {
        let header = ByteRecord::from(vec![
            "phase",
            "instance",
            "invocationID",
            "startTime",
            "requestedDuration",
            "responseTime",
            "actualDuration",
            "actualMemoryUsage",
            "memoryAllocationTimeout",
            "connectionTimeout",
            "functionTimeout",
        ]);
        let columns = Columns::from_header(Path::new("invocations.csv"), &header).unwrap();
        assert!(!columns.has_cold_starts());
        assert_eq!((columns.time, columns.connection, columns.timeout), ((3, Column::StartTime), Some(9), Some(10)));
        assert_eq!((columns.send_lag, columns.outcome), (None, None));
        let mut record =
            ByteRecord::from(vec!["2", "f", "min0.inv0", "1000", "10", "30", "", "5", "false", "true", "false"]);
        record.set_position(Some(csv::Position::new()));
        let row = columns.row(Path::new("invocations.csv"), &record).unwrap();
        assert_eq!((row.time_us, row.actual_us, row.failure, row.cold), (1000, None, Some(Failure::Connection), None));
    }
}
