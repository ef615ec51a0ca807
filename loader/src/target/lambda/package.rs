//! The Lambda deployment package: a zip with one entry, `bootstrap` (the `trace-function` binary, which speaks the
//! Lambda Runtime API when `AWS_LAMBDA_RUNTIME_API` is set), for the `provided.al2023` custom runtime.
//!
//! The zip is reproducible: stored (no compression), fixed timestamp (1980-01-01), fixed mode 0755, so the same
//! binary always gives the same bytes and the same `CodeSha256`.

use std::io::{Cursor, Write};
use std::path::Path;

use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipWriter};

/// The entry name the custom runtime executes.
pub const BOOTSTRAP: &str = "bootstrap";

/// Largest zip CreateFunction accepts inline (50 MiB, before base64).
pub const MAX_INLINE_ZIP_BYTES: usize = 50 * 1024 * 1024;

/// Building the package failed; the message names the file.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    /// Reading the binary or writing the zip failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The zip library failed.
    #[error("building the zip for {path}: {message}")]
    Zip {
        /// The binary being packaged.
        path: String,
        /// What the library said.
        message: String,
    },
}

/// The zip bytes for `binary` as the `bootstrap` entry.
fn zip_bytes(binary: &Path) -> Result<Vec<u8>, PackageError> {
    let shown = binary.display().to_string();
    let content = std::fs::read(binary).map_err(|source| PackageError::Io { path: shown.clone(), source })?;
    let zip_error = |e: &dyn std::fmt::Display| PackageError::Zip { path: shown.clone(), message: e.to_string() };
    let options = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Stored)
        .last_modified_time(DateTime::default())
        .unix_permissions(0o755)
        .large_file(content.len() >= u32::MAX as usize);
    let mut writer = ZipWriter::new(Cursor::new(Vec::new()));
    writer.start_file(BOOTSTRAP, options).map_err(|e| zip_error(&e))?;
    writer.write_all(&content).map_err(|e| zip_error(&e))?;
    Ok(writer.finish().map_err(|e| zip_error(&e))?.into_inner())
}

/// Writes the package for `binary` to `out` (e.g. `target/release/trace-function` to `target/lambda/function.zip`).
pub fn write_zip(binary: &Path, out: &Path) -> Result<(), PackageError> {
    let bytes = zip_bytes(binary)?;
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|source| PackageError::Io { path: parent.display().to_string(), source })?;
    }
    std::fs::write(out, bytes).map_err(|source| PackageError::Io { path: out.display().to_string(), source })
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn zip_is_reproducible_and_executable() {
        let dir = tempfile::tempdir().unwrap();
        let binary = dir.path().join("trace-function");
        std::fs::write(&binary, b"#!/bin/sh\necho hi\n").unwrap();
        let first = zip_bytes(&binary).unwrap();
        let out = dir.path().join("out/function.zip");
        write_zip(&binary, &out).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), first, "same input, same bytes");

        let mut archive = zip::ZipArchive::new(Cursor::new(first)).unwrap();
        assert_eq!(archive.len(), 1);
        let mut entry = archive.by_name(BOOTSTRAP).unwrap();
        assert_eq!(entry.unix_mode().map(|m| m & 0o777), Some(0o755));
        assert_eq!(entry.compression(), CompressionMethod::Stored);
        assert_eq!(entry.last_modified(), Some(DateTime::default()));
        let mut content = Vec::new();
        entry.read_to_end(&mut content).unwrap();
        assert_eq!(content, b"#!/bin/sh\necho hi\n");

        let err = zip_bytes(&dir.path().join("missing")).unwrap_err().to_string();
        assert!(err.contains("missing"), "{err}");
    }
}
