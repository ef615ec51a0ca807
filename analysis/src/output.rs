//! Writing output files: one error type for reports, comparisons and sweeps.

use std::path::{Path, PathBuf};

use serde::Serialize;

/// An output file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A folder or file could not be created or written.
    #[error("cannot write {path}: {source} (check that the folder is writable)")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A JSON document could not be written (the error names it).
    #[error(transparent)]
    Json(#[from] contracts::json_file::JsonFileError),
    /// A plot could not be drawn.
    #[error("cannot draw {path}: {message}")]
    Plot {
        /// The image file.
        path: PathBuf,
        /// What the plotting library said.
        message: String,
    },
    /// There is nothing to write about.
    #[error("nothing to write: {0}")]
    Empty(&'static str),
}

/// Creates `dir` and its parents.
pub(crate) fn create_dir(dir: &Path) -> Result<(), ReportError> {
    std::fs::create_dir_all(dir).map_err(|source| ReportError::Io { path: dir.to_path_buf(), source })
}

/// Writes `text` to `dir/name` and returns the path.
pub(crate) fn write_text(dir: &Path, name: &str, text: &str) -> Result<PathBuf, ReportError> {
    let path = dir.join(name);
    std::fs::write(&path, text).map_err(|source| ReportError::Io { path: path.clone(), source })?;
    Ok(path)
}

/// Writes `value` as pretty JSON with a trailing newline to `dir/name` (atomically) and returns the path.
pub(crate) fn write_json<T: Serialize>(dir: &Path, name: &str, value: &T) -> Result<PathBuf, ReportError> {
    let path = dir.join(name);
    contracts::json_file::write_pretty(&path, value)?;
    Ok(path)
}
