//! What every benchmark report does the same way: the machine's load as context, a figure's verdict against its
//! target, and publishing the results as JSON next to the printed tables.

use std::path::Path;

use serde::Serialize;

use crate::json_file::{JsonFileError, write_pretty};

/// The machine's load averages over 1, 5 and 15 minutes as `/proc/loadavg` says them (empty where it cannot be
/// read): the machines are shared, so every figure needs this context.
pub fn loadavg() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// `target {target}: met` or `target {target}: MISSED`.
pub fn verdict(met: bool, target: &str) -> String {
    format!("target {target}: {}", if met { "met" } else { "MISSED" })
}

/// Writes `results` as pretty JSON to `path` (creating its folder) and says where on stdout.
pub fn publish<T: Serialize + ?Sized>(results: &T, path: &Path) -> Result<(), JsonFileError> {
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| JsonFileError::Io { path: dir.to_path_buf(), source })?;
    }
    write_pretty(path, results)?;
    let shown = path.canonicalize().unwrap_or_else(|_| path.to_owned());
    println!("\nwritten to {}", shown.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_and_load() {
        assert_eq!(verdict(true, "< 5 ms"), "target < 5 ms: met");
        assert_eq!(verdict(false, ">= 60%"), "target >= 60%: MISSED");
        assert!(loadavg().split(' ').count() <= 3);
    }

    #[test]
    fn publish_creates_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("target").join("bench.json");
        publish(&serde_json::json!({"rate": 1}), &path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\n  \"rate\": 1\n}\n");
    }
}
