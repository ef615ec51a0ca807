//! The generated gRPC code (messages, servers and clients), compiled once from `contracts/proto/`.
#![allow(missing_docs, clippy::all)]

pub mod dirigent {
    //! The internal contract between the orchestrator's roles (control plane, data planes, workers).
    tonic::include_proto!("dirigent");
}

pub mod faas {
    //! vHive's workload function contract, `faas.Executor/Execute`.
    tonic::include_proto!("faas");
}
