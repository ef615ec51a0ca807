//! The replicated registry: several control planes keep one registry through Raft (openraft), each replica in
//! an SQLite file of its own holding its log, its vote and its state machine (the registry tables the
//! single-replica SQLite store also uses). [`ReplicatedStore`] is the [`RegistryStore`] of such a replica:
//! changes are made on the leader and refused on a follower with the leader's address, so that a caller
//! forwards them there.
//!
//! - [`types`]: openraft's type configuration (entries carry [`StoreChange`]s).
//! - [`log`]: the log and vote; [`state`]: the state machine and snapshots (the whole registry as JSON).
//! - [`network`]: the replicas' calls to each other over gRPC, and the service answering them.
//!
//! [`RegistryStore`]: crate::control_plane::store::RegistryStore
//! [`StoreChange`]: crate::control_plane::store::StoreChange

mod db;
pub mod log;
pub mod network;
pub mod state;
mod store;
pub mod types;

pub use network::{GrpcNetworkFactory, RaftService};
pub use store::ReplicatedStore;

#[cfg(test)]
mod tests;
