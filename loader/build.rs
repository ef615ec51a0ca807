//! Generates the client of the workload function's gRPC service from the orchestrator's copy of vHive's
//! faas.proto (one source of truth for the wire contract; the loader does not link the orchestrator).

// Setting PROTOC is the documented way to point tonic-prost-build at a protoc binary.
#![allow(unsafe_code)]

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("PROTOC").is_none() {
        // SAFETY: a build script is single-threaded, so nothing reads the environment concurrently.
        unsafe { std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?) };
    }
    // The loader's tests run a server of this service, so both sides are generated.
    tonic_prost_build::configure().compile_protos(&["../orchestrator/proto/faas.proto"], &["../orchestrator/proto"])?;
    println!("cargo:rerun-if-changed=../orchestrator/proto/faas.proto");
    Ok(())
}
