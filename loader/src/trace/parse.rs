//! Reading a trace directory in the In-Vitro layout: `invocations.csv`, `durations.csv`, `memory.csv`.
//!
//! Files are streamed record by record; columns are found by header name, so their order may vary and extra columns
//! are ignored. The first problem found is returned and reading stops.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use csv::StringRecord;

use super::error::{FunctionKey, TraceError};
use super::model::{DurationStats, MINUTES_PER_DAY, MemoryStats, Trace, TraceFunction};
use super::name::assign_names;

/// Per-minute invocation counts of each function.
pub const INVOCATIONS_FILE: &str = "invocations.csv";
/// Execution-time statistics of each function.
pub const DURATIONS_FILE: &str = "durations.csv";
/// Memory statistics of each function.
pub const MEMORY_FILE: &str = "memory.csv";

const KEY_COLUMNS: [&str; 3] = ["HashOwner", "HashApp", "HashFunction"];
const DURATION_COLUMNS: [&str; 4] = ["Average", "Count", "Minimum", "Maximum"];
const DURATION_PCT_COLUMNS: [&str; 7] = [
    "percentile_Average_0",
    "percentile_Average_1",
    "percentile_Average_25",
    "percentile_Average_50",
    "percentile_Average_75",
    "percentile_Average_99",
    "percentile_Average_100",
];
const MEMORY_COLUMNS: [&str; 2] = ["SampleCount", "AverageAllocatedMb"];
const MEMORY_PCT_COLUMNS: [&str; 8] = [
    "AverageAllocatedMb_pct1",
    "AverageAllocatedMb_pct5",
    "AverageAllocatedMb_pct25",
    "AverageAllocatedMb_pct50",
    "AverageAllocatedMb_pct75",
    "AverageAllocatedMb_pct95",
    "AverageAllocatedMb_pct99",
    "AverageAllocatedMb_pct100",
];

/// Reads and validates the trace in `dir`; functions keep the order of `invocations.csv`.
pub fn read_trace(dir: &Path) -> Result<Trace, TraceError> {
    let invocations = read_invocations(&dir.join(INVOCATIONS_FILE))?;
    let durations_path = dir.join(DURATIONS_FILE);
    let mut durations = read_keyed(&durations_path, DurationColumns::find, DurationColumns::parse)?;
    let memory_path = dir.join(MEMORY_FILE);
    let mut memory = read_keyed(&memory_path, MemoryColumns::find, MemoryColumns::parse)?;
    let keys: Vec<(&str, &str, &str)> = invocations
        .iter()
        .map(|row| (row.key.owner.as_str(), row.key.app.as_str(), row.key.function.as_str()))
        .collect();
    let names = assign_names(&keys);
    let mut functions = Vec::with_capacity(invocations.len());
    for (row, name) in invocations.into_iter().zip(names) {
        let missing = |path: &Path| missing_function(&row, &name, path);
        let duration = durations.remove(&row.key).ok_or_else(|| missing(&durations_path))?;
        let memory = memory.remove(&row.key).ok_or_else(|| missing(&memory_path))?;
        let FunctionKey { owner, app, function } = row.key;
        functions.push(TraceFunction {
            name,
            hash_owner: owner,
            hash_app: app,
            hash_function: function,
            trigger: row.trigger,
            invocations_per_minute: row.per_minute,
            duration,
            memory,
        });
    }
    Ok(Trace { functions })
}

fn missing_function(row: &InvocationRow, name: &str, path: &Path) -> TraceError {
    TraceError::MissingFunction {
        name: name.to_owned(),
        key: Box::new(row.key.clone()),
        line: row.line,
        path: path.to_owned(),
    }
}

/// One row of `invocations.csv`.
struct InvocationRow {
    key: FunctionKey,
    line: u64,
    trigger: String,
    per_minute: Vec<u32>,
}

fn read_invocations(path: &Path) -> Result<Vec<InvocationRow>, TraceError> {
    let mut table = Table::open(path)?;
    let key_cols = KeyColumns::find(&table)?;
    let trigger_col = table.column("Trigger")?;
    let minute_cols = table.minute_columns()?;
    let mut rows = Vec::new();
    let mut seen = HashMap::new();
    while let Some(row) = table.next_row()? {
        let key = key_cols.parse(&row)?;
        check_unique(&mut seen, &key, &row)?;
        let per_minute = minute_cols.iter().map(|&c| row.u32(c)).collect::<Result<_, _>>()?;
        rows.push(InvocationRow { key, line: row.line, trigger: row.cell(trigger_col).to_owned(), per_minute });
    }
    if rows.is_empty() {
        return Err(TraceError::NoFunctions { path: path.to_owned() });
    }
    Ok(rows)
}

/// Reads `durations.csv` or `memory.csv` into a map by function key.
fn read_keyed<C, T>(
    path: &Path,
    find: fn(&Table) -> Result<C, TraceError>,
    parse: fn(&C, &Row) -> Result<T, TraceError>,
) -> Result<HashMap<FunctionKey, T>, TraceError> {
    let mut table = Table::open(path)?;
    let key_cols = KeyColumns::find(&table)?;
    let columns = find(&table)?;
    let mut seen = HashMap::new();
    let mut values = HashMap::new();
    while let Some(row) = table.next_row()? {
        let key = key_cols.parse(&row)?;
        check_unique(&mut seen, &key, &row)?;
        values.insert(key, parse(&columns, &row)?);
    }
    Ok(values)
}

fn check_unique(seen: &mut HashMap<FunctionKey, u64>, key: &FunctionKey, row: &Row) -> Result<(), TraceError> {
    match seen.insert(key.clone(), row.line) {
        None => Ok(()),
        Some(first_line) => Err(TraceError::DuplicateFunction {
            path: row.path.to_owned(),
            line: row.line,
            first_line,
            key: Box::new(key.clone()),
        }),
    }
}

struct KeyColumns([usize; 3]);

impl KeyColumns {
    fn find(table: &Table) -> Result<Self, TraceError> {
        Ok(Self(table.columns(KEY_COLUMNS)?))
    }

    fn parse(&self, row: &Row) -> Result<FunctionKey, TraceError> {
        let [owner, app, function] = self.0;
        Ok(FunctionKey { owner: row.hash(owner)?, app: row.hash(app)?, function: row.hash(function)? })
    }
}

struct DurationColumns {
    stats: [usize; 4],
    percentiles: [usize; 7],
}

impl DurationColumns {
    fn find(table: &Table) -> Result<Self, TraceError> {
        Ok(Self { stats: table.columns(DURATION_COLUMNS)?, percentiles: table.columns(DURATION_PCT_COLUMNS)? })
    }

    fn parse(&self, row: &Row) -> Result<DurationStats, TraceError> {
        let [average, count, minimum, maximum] = self.stats;
        Ok(DurationStats {
            average: row.f64(average)?,
            count: row.u64(count)?,
            minimum: row.f64(minimum)?,
            maximum: row.f64(maximum)?,
            percentiles: row.f64s(self.percentiles)?,
        })
    }
}

struct MemoryColumns {
    stats: [usize; 2],
    percentiles: [usize; 8],
}

impl MemoryColumns {
    fn find(table: &Table) -> Result<Self, TraceError> {
        Ok(Self { stats: table.columns(MEMORY_COLUMNS)?, percentiles: table.columns(MEMORY_PCT_COLUMNS)? })
    }

    fn parse(&self, row: &Row) -> Result<MemoryStats, TraceError> {
        let [sample_count, average] = self.stats;
        Ok(MemoryStats {
            sample_count: row.u64(sample_count)?,
            average: row.f64(average)?,
            percentiles: row.f64s(self.percentiles)?,
        })
    }
}

/// A CSV file being streamed, with its header.
struct Table {
    path: PathBuf,
    reader: csv::Reader<File>,
    headers: StringRecord,
    record: StringRecord,
}

impl Table {
    fn open(path: &Path) -> Result<Self, TraceError> {
        let file = File::open(path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => TraceError::MissingFile { path: path.to_owned() },
            _ => TraceError::Io { path: path.to_owned(), source },
        })?;
        // Flexible so that a short row gets our error with its line, not the reader's generic one.
        let mut reader = csv::ReaderBuilder::new().flexible(true).trim(csv::Trim::All).from_reader(file);
        let headers = reader.headers().map_err(|e| csv_error(path, e))?.clone();
        if headers.iter().all(str::is_empty) {
            return Err(TraceError::EmptyFile { path: path.to_owned() });
        }
        Ok(Self { path: path.to_owned(), reader, headers, record: StringRecord::new() })
    }

    /// The index of the column named `name`, which must appear exactly once.
    fn column(&self, name: &str) -> Result<usize, TraceError> {
        let mut matches = self.headers.iter().enumerate().filter(|(_, h)| *h == name).map(|(i, _)| i);
        let index = matches.next().ok_or_else(|| TraceError::MissingColumn {
            path: self.path.clone(),
            column: name.to_owned(),
            suggestion: closest_header(name, &self.headers),
        })?;
        if matches.next().is_some() {
            return Err(TraceError::DuplicateColumn { path: self.path.clone(), column: name.to_owned() });
        }
        Ok(index)
    }

    fn columns<const N: usize>(&self, names: [&str; N]) -> Result<[usize; N], TraceError> {
        let mut indices = [0; N];
        for (index, name) in indices.iter_mut().zip(names) {
            *index = self.column(name)?;
        }
        Ok(indices)
    }

    /// Indices of the columns `1`..`1440`, in minute order; any header that is a number counts as a minute column.
    fn minute_columns(&self) -> Result<Vec<usize>, TraceError> {
        let mut by_minute = vec![None; MINUTES_PER_DAY];
        let mut found = 0;
        for (index, header) in self.headers.iter().enumerate() {
            let Ok(minute) = header.parse::<i64>() else { continue };
            found += 1;
            let slot = usize::try_from(minute).ok().filter(|m| (1..=MINUTES_PER_DAY).contains(m));
            let Some(minute) = slot else {
                return Err(self.minute_error(format!("found a column `{header}`")));
            };
            if by_minute[minute - 1].replace(index).is_some() {
                return Err(self.minute_error(format!("column `{minute}` appears more than once")));
            }
        }
        match by_minute.iter().position(Option::is_none) {
            Some(missing) => {
                Err(self.minute_error(format!("found {found} minute columns, `{}` is missing", missing + 1)))
            }
            None => Ok(by_minute.into_iter().flatten().collect()),
        }
    }

    fn minute_error(&self, detail: String) -> TraceError {
        TraceError::MinuteColumns { path: self.path.clone(), detail }
    }

    /// The next data row, checked to have as many fields as the header.
    fn next_row(&mut self) -> Result<Option<Row<'_>>, TraceError> {
        if !self.reader.read_record(&mut self.record).map_err(|e| csv_error(&self.path, e))? {
            return Ok(None);
        }
        let line = self.record.position().map_or(0, |p| p.line());
        if self.record.len() != self.headers.len() {
            return Err(TraceError::RowLength {
                path: self.path.clone(),
                line,
                expected: self.headers.len(),
                found: self.record.len(),
            });
        }
        Ok(Some(Row { path: &self.path, line, headers: &self.headers, record: &self.record }))
    }
}

fn csv_error(path: &Path, source: csv::Error) -> TraceError {
    TraceError::Csv { path: path.to_owned(), source }
}

/// The header closest to `wanted` if it is likely a misspelling of it: equal ignoring case, or at most a third of
/// the name's characters apart.
fn closest_header(wanted: &str, headers: &StringRecord) -> Option<String> {
    let wanted_lower = wanted.to_ascii_lowercase();
    headers
        .iter()
        .map(|h| (edit_distance(&wanted_lower, &h.to_ascii_lowercase()), h))
        .filter(|(distance, _)| *distance <= wanted.len().div_ceil(3))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, h)| h.to_owned())
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != *cb);
            current.push(substitute.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

/// One data row, for typed access to its cells with errors that name file, line and column.
struct Row<'a> {
    path: &'a Path,
    line: u64,
    headers: &'a StringRecord,
    record: &'a StringRecord,
}

impl Row<'_> {
    fn cell(&self, index: usize) -> &str {
        self.record.get(index).unwrap_or_default()
    }

    fn hash(&self, index: usize) -> Result<String, TraceError> {
        let value = self.cell(index);
        if value.is_empty() || !value.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(TraceError::InvalidHash {
                path: self.path.to_owned(),
                line: self.line,
                column: self.header(index),
                value: value.to_owned(),
            });
        }
        Ok(value.to_owned())
    }

    fn u32(&self, index: usize) -> Result<u32, TraceError> {
        self.cell(index).parse().map_err(|_| self.invalid(index, "a non-negative integer (at most 4294967295)"))
    }

    fn u64(&self, index: usize) -> Result<u64, TraceError> {
        self.cell(index).parse().map_err(|_| self.invalid(index, "a non-negative integer"))
    }

    fn f64(&self, index: usize) -> Result<f64, TraceError> {
        match self.cell(index).parse::<f64>() {
            Ok(value) if value.is_finite() && value >= 0.0 => Ok(value),
            _ => Err(self.invalid(index, "a non-negative number")),
        }
    }

    fn f64s<const N: usize>(&self, indices: [usize; N]) -> Result<[f64; N], TraceError> {
        let mut values = [0.0; N];
        for (value, index) in values.iter_mut().zip(indices) {
            *value = self.f64(index)?;
        }
        Ok(values)
    }

    fn header(&self, index: usize) -> String {
        self.headers.get(index).unwrap_or_default().to_owned()
    }

    fn invalid(&self, index: usize, expected: &'static str) -> TraceError {
        TraceError::InvalidNumber {
            path: self.path.to_owned(),
            line: self.line,
            column: self.header(index),
            value: self.cell(index).to_owned(),
            expected,
        }
    }
}
