//! Errors from writing the run folder's files.

use std::path::PathBuf;

/// Why an output file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// A file could not be created or written.
    #[error("cannot write {path}: {source} (check that the run folder exists and is writable)")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Writing a CSV row failed (usually an I/O error underneath).
    #[error("cannot write invocations CSV row: {0}")]
    Csv(#[from] csv::Error),
    /// A JSON document (`summary.json`, `manifest.json`) could not be written.
    #[error(transparent)]
    Json(#[from] contracts::json_file::JsonFileError),
    /// A record names a function index that has no name.
    #[error("invocation record names function index {index}, but only {known} function names were given")]
    UnknownFunction {
        /// The record's function index.
        index: u32,
        /// How many names are known.
        known: usize,
    },
}
