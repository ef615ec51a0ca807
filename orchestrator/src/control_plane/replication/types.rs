//! The types openraft runs the registry with: a log entry carries a [`StoreChange`], a committed change answers
//! nothing (`()`), a replica is an id reached at its control plane's gRPC address ([`BasicNode`]), and a
//! snapshot is the serialized [`StoredRegistry`](crate::control_plane::store::StoredRegistry) in memory.

// `declare_raft_types!` names `Cursor` for the snapshot data without a path.
use std::io::Cursor;

use openraft::BasicNode;

use crate::control_plane::store::StoreChange;

openraft::declare_raft_types!(
    /// The registry's Raft type configuration.
    pub TypeConfig:
        D = StoreChange,
        R = (),
        NodeId = u64,
        Node = BasicNode,
        SnapshotData = Cursor<Vec<u8>>,
);

/// A replica's id (`replication.id`).
pub type NodeId = u64;
/// A running replica's Raft node.
pub type Raft = openraft::Raft<TypeConfig>;
/// One log entry.
pub type Entry = openraft::Entry<TypeConfig>;
/// A log position: term, leader and index.
pub type LogId = openraft::LogId<NodeId>;
/// What a storage call fails with, as openraft wants it.
pub type StorageError = openraft::StorageError<NodeId>;
/// The cluster's members as last applied.
pub type StoredMembership = openraft::StoredMembership<NodeId, BasicNode>;
/// A snapshot's position and members.
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, BasicNode>;
/// A snapshot with its data.
pub type Snapshot = openraft::Snapshot<TypeConfig>;
