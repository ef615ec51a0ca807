//! Errors of reading a trace and of selecting a slice of it.

use std::path::PathBuf;

/// Why a trace directory could not be read. Each message names the file and, where there is one, the line (the
/// header is line 1) and the column.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// `trace file {path} not found`.
    #[error("trace file {} not found", .path.display())]
    MissingFile {
        /// The file that is missing.
        path: PathBuf,
    },
    /// `cannot read {path}: {source}`.
    #[error("cannot read {}: {source}", .path.display())]
    Io {
        /// The file that could not be read.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// `{path}: cannot read CSV: {source}` (e.g. invalid UTF-8, or an I/O error while reading).
    #[error("{}: cannot read CSV: {source}", .path.display())]
    Csv {
        /// The file.
        path: PathBuf,
        /// The CSV reader's error, with its position.
        source: csv::Error,
    },
    /// `{path} is empty: expected a header line`.
    #[error("{} is empty: expected a header line", .path.display())]
    EmptyFile {
        /// The empty file.
        path: PathBuf,
    },
    /// `{path}: missing column `{column}`` plus, when a header is close, `(found `{header}`: misnamed?)`.
    #[error("{}: missing column `{column}`{}", .path.display(), did_you_mean(.suggestion))]
    MissingColumn {
        /// The file.
        path: PathBuf,
        /// The expected column name.
        column: String,
        /// The closest header in the file, if one is close enough to be a likely misspelling.
        suggestion: Option<String>,
    },
    /// `{path}: column `{column}` appears more than once in the header`.
    #[error("{}: column `{column}` appears more than once in the header", .path.display())]
    DuplicateColumn {
        /// The file.
        path: PathBuf,
        /// The repeated column name.
        column: String,
    },
    /// `{path}: the minute columns must be exactly 1..1440: {detail}`.
    #[error("{}: the minute columns must be exactly 1..1440: {detail}", .path.display())]
    MinuteColumns {
        /// The file (`invocations.csv`).
        path: PathBuf,
        /// What is wrong (count found, first missing or out-of-range column).
        detail: String,
    },
    /// `{path}:{line}: row has {found} fields, the header has {expected}` (e.g. a truncated row).
    #[error("{}:{line}: row has {found} fields, the header has {expected}", .path.display())]
    RowLength {
        /// The file.
        path: PathBuf,
        /// Line of the row (header is line 1).
        line: u64,
        /// Fields in the header.
        expected: usize,
        /// Fields in the row.
        found: usize,
    },
    /// `{path}:{line}: column `{column}`: `{value}` is not {expected}`.
    #[error("{}:{line}: column `{column}`: `{value}` is not {expected}", .path.display())]
    InvalidNumber {
        /// The file.
        path: PathBuf,
        /// Line of the row (header is line 1).
        line: u64,
        /// The column's header.
        column: String,
        /// The cell as written.
        value: String,
        /// What the cell should be, e.g. `a non-negative integer`.
        expected: &'static str,
    },
    /// `{path}:{line}: column `{column}`: `{value}` is not a hash (expected ASCII letters and digits)`.
    #[error(
        "{}:{line}: column `{column}`: `{value}` is not a hash (expected ASCII letters and digits)",
        .path.display()
    )]
    InvalidHash {
        /// The file.
        path: PathBuf,
        /// Line of the row (header is line 1).
        line: u64,
        /// The column's header.
        column: String,
        /// The cell as written.
        value: String,
    },
    /// `{path}:{line}: duplicate function {key}, first on line {first_line}`.
    #[error("{}:{line}: duplicate function {key}, first on line {first_line}", .path.display())]
    DuplicateFunction {
        /// The file.
        path: PathBuf,
        /// Line of the repeated row.
        line: u64,
        /// Line of the first row with the same hashes.
        first_line: u64,
        /// The function's hashes (boxed to keep the error small).
        key: Box<FunctionKey>,
    },
    /// `function {name} ({key}) is in invocations.csv (line {line}) but missing from {path}`.
    #[error("function {name} ({key}) is in invocations.csv (line {line}) but missing from {}", .path.display())]
    MissingFunction {
        /// The function's stable name.
        name: String,
        /// The function's hashes (boxed to keep the error small).
        key: Box<FunctionKey>,
        /// Its line in `invocations.csv`.
        line: u64,
        /// The file that lacks it (`durations.csv` or `memory.csv`).
        path: PathBuf,
    },
    /// `{path}: no functions (only a header line)`.
    #[error("{}: no functions (only a header line)", .path.display())]
    NoFunctions {
        /// The file (`invocations.csv`).
        path: PathBuf,
    },
}

/// The hashes that identify a function across the three files.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FunctionKey {
    /// `HashOwner`.
    pub owner: String,
    /// `HashApp`.
    pub app: String,
    /// `HashFunction`.
    pub function: String,
}

impl std::fmt::Display for FunctionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HashFunction {}, owner {}, app {}", self.function, self.owner, self.app)
    }
}

fn did_you_mean(suggestion: &Option<String>) -> String {
    match suggestion {
        Some(header) => format!(" (found `{header}`: misnamed?)"),
        None => String::new(),
    }
}

/// Why a slice cannot be taken from a trace.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SliceError {
    /// `a slice must span at least one minute`.
    #[error("a slice must span at least one minute")]
    ZeroMinutes,
    /// `minutes {start}..{end} are outside the trace's {available} minutes`.
    #[error(
        "minutes {start}..{end} are outside the trace's {available} minutes (start + minutes must be <= {available})"
    )]
    OutOfRange {
        /// First minute of the slice (0-based).
        start: usize,
        /// One past the slice's last minute.
        end: usize,
        /// Minutes in the trace.
        available: usize,
    },
    /// `cannot select {requested} functions: the trace has {available}`.
    #[error("cannot select {requested} functions: the trace has {available}")]
    TooManyFunctions {
        /// Functions asked for.
        requested: usize,
        /// Functions in the trace.
        available: usize,
    },
    /// `a function selection of 0 functions selects nothing`.
    #[error("a function selection of 0 functions selects nothing")]
    NoFunctions,
}
