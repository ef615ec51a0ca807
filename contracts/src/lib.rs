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

/// `error` and its causes, outermost first, joined by ": " (what `{:#}` shows for an `anyhow::Error`): how an error
/// is kept as text where it crosses into a file or a record (`invocations.csv`, `experiment.json`, the manifest's
/// events), since most libraries' own messages leave the cause out.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        text.push_str(": ");
        text.push_str(&next.to_string());
        cause = next.source();
    }
    text
}
