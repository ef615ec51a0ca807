//! Every role config a spec produces, checked with `dirigent ROLE --config FILE --check` on this machine before
//! anything starts or is written, so a bad key fails the experiment with the spec key it came from.

use std::path::PathBuf;

use serde_json::Value;

use super::Role;
use super::config::{self, ConfigError};
use crate::binaries::Binaries;
use crate::spec::{DirigentSpec, Processes};

/// The address the checked configs are made for (checking binds nothing).
const HOST: &str = "127.0.0.1";

/// Why the spec's role configs are not usable.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// "the {role} config from platform.{key} is invalid: {message}".
    #[error("the {role} config from platform.{key} is invalid: {message}")]
    Rejected {
        /// The role.
        role: Role,
        /// The spec key it came from.
        key: &'static str,
        /// What `dirigent --check` said.
        message: String,
    },
    /// "the {role} config from platform.{key} is invalid", with the reason.
    #[error("the {role} config from platform.{key} is invalid")]
    Generate {
        /// The role.
        role: Role,
        /// The spec key it came from.
        key: &'static str,
        /// Why it could not be made.
        source: ConfigError,
    },
    /// "cannot write {path}", with the cause.
    #[error("cannot write {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// "cannot run {program}", with the cause.
    #[error("cannot run {program}")]
    Run {
        /// The `dirigent` binary.
        program: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// Checks every role config `spec` produces with `dirigent --check`.
pub async fn check_configs(spec: &DirigentSpec, binaries: &Binaries) -> Result<(), CheckError> {
    let dir = std::env::temp_dir();
    for (role, key, config) in role_configs(spec, "127.0.0.1:9090")? {
        let path = dir.join(format!("dirigent-check-{}-{role}.yaml", std::process::id()));
        config::write(&path, &config).map_err(|source| CheckError::Write { path: path.clone(), source })?;
        let mut command = tokio::process::Command::new(&binaries.dirigent);
        command.args([role.subcommand(), "--config"]).arg(&path).arg("--check");
        crate::local::prepare_child(&mut command);
        let output = command.output().await;
        let _ = std::fs::remove_file(&path);
        let output = output.map_err(|source| CheckError::Run { program: binaries.dirigent.clone(), source })?;
        if !output.status.success() {
            let message = String::from_utf8_lossy(&output.stderr).trim().replace('\n', " ");
            return Err(CheckError::Rejected { role, key, message });
        }
    }
    Ok(())
}

/// `(role, spec key, config)` of every role `spec` starts, with `control_plane_grpc` filled in.
fn role_configs(spec: &DirigentSpec, control_plane_grpc: &str) -> Result<Vec<(Role, &'static str, Value)>, CheckError> {
    if spec.processes == Processes::Standalone {
        let key = "control_plane, data_plane or worker";
        return Ok(vec![(Role::Standalone, key, config::standalone(spec, HOST))]);
    }
    let worker = config::worker(spec, HOST, control_plane_grpc, 0).map_err(|source| CheckError::Generate {
        role: Role::Worker,
        key: "worker",
        source,
    })?;
    Ok(vec![
        (Role::ControlPlane, "control_plane", config::control_plane(spec, HOST)),
        (Role::DataPlane, "data_plane", config::data_plane(spec, HOST, control_plane_grpc)),
        (Role::Worker, "worker", worker),
    ])
}
