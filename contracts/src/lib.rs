//! Everything that crosses a crate or process boundary, defined once: the protos, the workload request and reply,
//! the Server-Timing format, the ready line, the control plane's REST types, the role configs, the run-folder
//! schema and the one YAML loader. Light on dependencies on purpose: the analysis links it and nothing heavier.

pub mod api;
pub mod bench;
pub mod config;
pub mod json_file;
#[cfg(feature = "grpc")]
pub mod proto;
pub mod ready;
pub mod run_folder;
pub mod server_timing;
pub mod workload;
pub mod yaml;
