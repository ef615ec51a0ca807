//! With feature `grpc`, generates the gRPC code of `proto/` (servers and clients); protoc comes from
//! `protoc-bin-vendored` so the build needs nothing beyond cargo. Without it, does nothing: the analysis links
//! this crate and needs no protobuf toolchain.

// Setting PROTOC is the documented way to point tonic-prost-build at a protoc binary.
#![allow(unsafe_code)]

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    #[cfg(feature = "grpc")]
    generate()?;
    Ok(())
}

#[cfg(feature = "grpc")]
fn generate() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("PROTOC").is_none() {
        // SAFETY: a build script is single-threaded, so nothing reads the environment concurrently.
        unsafe { std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?) };
    }
    tonic_prost_build::configure().compile_protos(&["proto/dirigent.proto", "proto/faas.proto"], &["proto"])?;
    Ok(())
}
