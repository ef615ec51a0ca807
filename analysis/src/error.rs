//! Why a run folder could not be analysed.

use std::path::PathBuf;

/// A run folder could not be read; every variant names the file and, where it can, the line and column or key.
#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    /// A file could not be opened or read.
    #[error("cannot read {path}: {source} (is this a loader run folder?)")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The CSV itself is malformed (the message carries the line).
    #[error("{path}: {source}")]
    Csv {
        /// The file.
        path: PathBuf,
        /// The underlying error, with its position.
        source: csv::Error,
    },
    /// A column the analysis needs is not in the header.
    #[error("{path}:1: missing column `{column}` (expected a loader or vHive invocations.csv header)")]
    MissingColumn {
        /// The file.
        path: PathBuf,
        /// The column's name.
        column: &'static str,
    },
    /// A cell does not hold what its column should.
    #[error("{path}:{line}:{column_index}: column `{column}`: cannot read `{value}` as {expected}")]
    Field {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// 1-based column number.
        column_index: usize,
        /// The column's name.
        column: &'static str,
        /// The cell's text (lossy UTF-8).
        value: String,
        /// What was expected, e.g. `an integer (µs)`.
        expected: &'static str,
    },
    /// A JSON file does not parse, or a key holds the wrong type.
    #[error("{path}: key `{key}`: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The dotted path of the offending key (`.` for the document itself).
        key: String,
        /// The underlying error, with line and column.
        source: serde_json::Error,
    },
    /// The options cannot be used.
    #[error("invalid analysis options: {0}")]
    Options(&'static str),
}
