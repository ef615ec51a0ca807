//! Generates the gRPC code; protoc comes from `protoc-bin-vendored` so the build needs nothing beyond cargo.

// Setting PROTOC is the documented way to point tonic-prost-build at a protoc binary.
#![allow(unsafe_code)]

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("PROTOC").is_none() {
        // SAFETY: a build script is single-threaded, so nothing reads the environment concurrently.
        unsafe { std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?) };
    }
    tonic_prost_build::configure().compile_protos(&["proto/dirigent.proto", "proto/faas.proto"], &["proto"])?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
