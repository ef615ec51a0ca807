//! Role configuration files (YAML) and the standalone layout.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::control_plane::ControlPlaneConfig;
use crate::data_plane::DataPlaneConfig;
use crate::worker::WorkerConfig;

/// Reading a configuration file failed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// the file cannot be read
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// the file is not valid YAML for this role (the message names line, column and key)
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said, with its location.
        message: String,
    },
    /// a value is out of range
    #[error("invalid config file {path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Which key, and why.
        message: String,
    },
}

/// Parses a YAML document; YAML 1.1 words like `yes`/`on` stay strings rather than becoming booleans.
pub fn parse_yaml<T: DeserializeOwned>(text: &str) -> Result<T, String> {
    let options = serde_saphyr::options! { strict_booleans: true };
    serde_saphyr::from_str_with_options(text, options).map_err(|e| e.to_string())
}

/// Loads a role's config from `path`, or its defaults when `path` is `None`.
pub fn load<T: DeserializeOwned + Default>(path: Option<&Path>) -> Result<T, ConfigError> {
    let Some(path) = path else { return Ok(T::default()) };
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
    if text.trim().is_empty() {
        return Ok(T::default());
    }
    parse_yaml(&text).map_err(|message| ConfigError::Parse { path: path.to_owned(), message })
}

/// `dirigent standalone`: one control plane, one data plane and `workers` workers in one process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StandaloneConfig {
    /// How many workers to run.
    pub workers: u32,
    /// The control plane.
    pub control_plane: ControlPlaneConfig,
    /// The data plane (its `control_plane` address is filled in).
    pub data_plane: DataPlaneConfig,
    /// Template for every worker; worker `i` listens on the template's port + `i` (or an ephemeral port).
    pub worker: WorkerConfig,
}

impl Default for StandaloneConfig {
    fn default() -> Self {
        let loopback = |port: u16| std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let mut control_plane = ControlPlaneConfig::default();
        control_plane.grpc_listen = loopback(control_plane.grpc_listen.port());
        control_plane.http_listen = loopback(control_plane.http_listen.port());
        let mut data_plane = DataPlaneConfig::default();
        data_plane.proxy_listen = loopback(data_plane.proxy_listen.port());
        data_plane.grpc_listen = loopback(data_plane.grpc_listen.port());
        let mut worker = WorkerConfig::default();
        worker.listen = loopback(worker.listen.port());
        Self { workers: 2, control_plane, data_plane, worker }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The commented example files are the documentation of every default: they must not drift.
    #[test]
    fn example_files_hold_exactly_the_defaults() {
        let standalone: StandaloneConfig = parse_yaml(include_str!("../config/standalone.yaml")).unwrap();
        assert_eq!(standalone, StandaloneConfig::default());
        let listen_all = |port: u16| std::net::SocketAddr::from(([0, 0, 0, 0], port));
        let control_plane: ControlPlaneConfig = parse_yaml(include_str!("../config/control-plane.yaml")).unwrap();
        assert_eq!(control_plane, ControlPlaneConfig::default());
        assert_eq!(control_plane.grpc_listen, listen_all(9090));
        let data_plane: DataPlaneConfig = parse_yaml(include_str!("../config/data-plane.yaml")).unwrap();
        assert_eq!(data_plane, DataPlaneConfig::default());
        let worker: WorkerConfig = parse_yaml(include_str!("../config/worker.yaml")).unwrap();
        assert_eq!(worker, WorkerConfig::default());
    }

    #[test]
    fn errors_name_the_file_and_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp.yaml");
        std::fs::write(&path, "grpc_listen: 127.0.0.1:1\nplacment: random\n").unwrap();
        let err = load::<ControlPlaneConfig>(Some(&path)).unwrap_err().to_string();
        assert!(err.contains("cp.yaml") && err.contains("placment"), "{err}");
        std::fs::write(&path, "autoscaler:\n  tick: soon\n").unwrap();
        let err = load::<ControlPlaneConfig>(Some(&path)).unwrap_err().to_string();
        assert!(err.contains("line 2") || err.contains("2:"), "names the line: {err}");
        let missing = load::<ControlPlaneConfig>(Some(&dir.path().join("absent.yaml"))).unwrap_err().to_string();
        assert!(missing.contains("absent.yaml"), "{missing}");
    }
}
