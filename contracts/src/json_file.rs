//! Writing the JSON files several crates produce (run folders, experiment records, reports, bench results) one
//! way: pretty-printed, a trailing newline, and atomically, so a reader never sees half a file.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// Why a JSON file could not be written; every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum JsonFileError {
    /// The value could not be serialized (a map with non-string keys, a failing `Serialize` impl).
    #[error("cannot serialize the JSON for {path}", path = .path.display())]
    Serialize {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
    /// The temporary file could not be written or renamed into place.
    #[error("cannot write {path} (check that its folder exists and is writable)", path = .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// Writes `value` as pretty JSON with a trailing newline at `path`: into a temporary file beside it, then renamed
/// over `path`, so a crash or a concurrent reader sees the old file or the new one, never a part.
pub fn write_pretty<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<(), JsonFileError> {
    let mut text = serde_json::to_vec_pretty(value)
        .map_err(|source| JsonFileError::Serialize { path: path.to_path_buf(), source })?;
    text.push(b'\n');
    let io_error = |source| JsonFileError::Io { path: path.to_path_buf(), source };
    let temporary = temporary_path(path);
    let written = std::fs::File::create(&temporary).and_then(|mut file| file.write_all(&text));
    if let Err(source) = written.and_then(|()| std::fs::rename(&temporary, path)) {
        let _ = std::fs::remove_file(&temporary);
        return Err(io_error(source));
    }
    Ok(())
}

/// `.<name>.<pid>.tmp` in the same folder (a rename is atomic only within one file system).
fn temporary_path(path: &Path) -> PathBuf {
    let name = path.file_name().map_or_else(|| "file".into(), |name| name.to_string_lossy().into_owned());
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_pretty_json_with_a_newline_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("value.json");
        std::fs::write(&path, "old").unwrap();
        write_pretty(&path, &serde_json::json!({"a": [1, 2]})).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\n  \"a\": [\n    1,\n    2\n  ]\n}\n");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["value.json"]);
    }

    #[test]
    fn errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing").join("value.json");
        let error = write_pretty(&path, &1).unwrap_err();
        assert!(matches!(error, JsonFileError::Io { .. }));
        assert!(error.to_string().contains("missing/value.json"), "{error}");
        let mut keys = std::collections::HashMap::new();
        keys.insert(vec![1u8], 1);
        let error = write_pretty(&dir.path().join("bad.json"), &keys).unwrap_err();
        assert!(matches!(error, JsonFileError::Serialize { .. }), "{error}");
    }
}
