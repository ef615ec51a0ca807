//! Control-plane replicas (YAML `replication:`): which replica this is, where every replica is, and the Raft
//! timings. Absent, the control plane is one replica with the store `store:` names (`dirigent standalone`).
//! The replicated registry itself is the orchestrator's `control_plane::replication`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `replication:`: this control plane is one replica of a replicated registry (Raft).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicationConfig {
    /// This replica's id: a key of `peers`, never reused for another replica's files.
    pub id: u64,
    /// Every replica, this one included: id -> `host:port` of its control-plane gRPC service.
    pub peers: BTreeMap<u64, String>,
    /// The shortest election timeout: a follower hearing no leader for its timeout (plus `election_timeout_max`,
    /// openraft's leader lease, when it knew one) stands for election.
    #[serde(with = "humantime_serde", default = "default_election_timeout_min")]
    pub election_timeout_min: Duration,
    /// The longest election timeout: each replica draws its own in between, so that candidates rarely collide.
    #[serde(with = "humantime_serde", default = "default_election_timeout_max")]
    pub election_timeout_max: Duration,
    /// How often the leader tells the followers it is alive (and the deadline of each such call).
    #[serde(with = "humantime_serde", default = "default_heartbeat_interval")]
    pub heartbeat_interval: Duration,
}

/// 150 ms: three heartbeats. openraft 0.9 adds `election_timeout_max` (its leader lease) to a follower's election
/// timeout, so a dead leader is replaced 450-600 ms after its last heartbeat: well under a second.
fn default_election_timeout_min() -> Duration {
    Duration::from_millis(150)
}

fn default_election_timeout_max() -> Duration {
    Duration::from_millis(300)
}

fn default_heartbeat_interval() -> Duration {
    Duration::from_millis(50)
}

/// An invalid [`ReplicationConfig`] value; every message names the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplicationConfigError {
    /// "`peers` is empty; ..."
    #[error("`peers` is empty; list every replica as id: host:port, this one included")]
    NoPeers,
    /// "`id` = {id} is not a key of `peers` ..."
    #[error("`id` = {id} is not a key of `peers` ({known}); give this replica's own id")]
    UnknownId {
        /// The id given.
        id: u64,
        /// The ids in `peers`.
        known: String,
    },
    /// "`peers.{id}` = {address:?} is not a host:port"
    #[error("`peers.{id}` = {address:?} is not a host:port; give the replica's control-plane gRPC address")]
    BadAddress {
        /// The replica.
        id: u64,
        /// What was given.
        address: String,
    },
    /// "`{key}` must be at least 1ms"
    #[error("`{key}` must be at least 1ms (Raft counts in milliseconds)")]
    TooShort {
        /// The key.
        key: &'static str,
    },
    /// "`election_timeout_min` must be more than `heartbeat_interval` ..."
    #[error(
        "`election_timeout_min` ({min:?}) must be more than `heartbeat_interval` ({heartbeat:?}); a few times more, \
         or followers stand for election while the leader is alive"
    )]
    ElectionBelowHeartbeat {
        /// `election_timeout_min`.
        min: Duration,
        /// `heartbeat_interval`.
        heartbeat: Duration,
    },
    /// "`election_timeout_max` must be more than `election_timeout_min`"
    #[error("`election_timeout_max` ({max:?}) must be more than `election_timeout_min` ({min:?})")]
    ElectionRange {
        /// `election_timeout_min`.
        min: Duration,
        /// `election_timeout_max`.
        max: Duration,
    },
}

impl ReplicationConfig {
    /// Replica `id` of `peers`, with the default timings.
    pub fn new(id: u64, peers: BTreeMap<u64, String>) -> Self {
        Self {
            id,
            peers,
            election_timeout_min: default_election_timeout_min(),
            election_timeout_max: default_election_timeout_max(),
            heartbeat_interval: default_heartbeat_interval(),
        }
    }

    /// Checks what the types cannot.
    pub fn validate(&self) -> Result<(), ReplicationConfigError> {
        self.check_peers()?;
        let millis = [
            ("heartbeat_interval", self.heartbeat_interval),
            ("election_timeout_min", self.election_timeout_min),
            ("election_timeout_max", self.election_timeout_max),
        ];
        if let Some((key, _)) = millis.iter().find(|(_, value)| value.as_millis() == 0) {
            return Err(ReplicationConfigError::TooShort { key });
        }
        let (min, max, heartbeat) = (self.election_timeout_min, self.election_timeout_max, self.heartbeat_interval);
        if min <= heartbeat {
            return Err(ReplicationConfigError::ElectionBelowHeartbeat { min, heartbeat });
        }
        if max <= min {
            return Err(ReplicationConfigError::ElectionRange { min, max });
        }
        Ok(())
    }

    fn check_peers(&self) -> Result<(), ReplicationConfigError> {
        if self.peers.is_empty() {
            return Err(ReplicationConfigError::NoPeers);
        }
        if !self.peers.contains_key(&self.id) {
            let known = self.peers.keys().map(u64::to_string).collect::<Vec<_>>().join(", ");
            return Err(ReplicationConfigError::UnknownId { id: self.id, known });
        }
        match self.peers.iter().find(|(_, address)| !is_host_port(address)) {
            Some((id, address)) => Err(ReplicationConfigError::BadAddress { id: *id, address: address.clone() }),
            None => Ok(()),
        }
    }
}

/// `host:port` with a non-empty host and a numeric port (a bracketed IPv6 host included).
fn is_host_port(address: &str) -> bool {
    address.rsplit_once(':').is_some_and(|(host, port)| !host.trim().is_empty() && port.parse::<u16>().is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml;

    fn three() -> ReplicationConfig {
        yaml::parse("{ id: 2, peers: { 1: 'a:1', 2: 'b:2', 3: '[::1]:3' } }").unwrap()
    }

    #[test]
    fn timings_default_to_sub_second_failover() {
        let config = three();
        assert_eq!(config.validate(), Ok(()));
        let timings = (config.heartbeat_interval, config.election_timeout_min, config.election_timeout_max);
        assert_eq!(timings, (Duration::from_millis(50), Duration::from_millis(150), Duration::from_millis(300)));
    }

    #[test]
    fn validation_names_the_key() {
        let with = |edit: fn(&mut ReplicationConfig)| {
            let mut config = three();
            edit(&mut config);
            config.validate().unwrap_err().to_string()
        };
        let cases = [
            (with(|c| c.peers.clear()), "`peers` is empty"),
            (with(|c| c.id = 7), "`id` = 7 is not a key of `peers` (1, 2, 3)"),
            (with(|c| drop(c.peers.insert(3, "nohost".into()))), "`peers.3` = \"nohost\""),
            (with(|c| drop(c.peers.insert(1, ":80".into()))), "`peers.1`"),
            (with(|c| c.heartbeat_interval = Duration::from_micros(500)), "`heartbeat_interval` must be at least 1ms"),
            (with(|c| c.election_timeout_min = Duration::from_millis(50)), "`election_timeout_min` (50ms)"),
            (with(|c| c.election_timeout_max = Duration::from_millis(150)), "`election_timeout_max` (150ms)"),
        ];
        for (message, expected) in cases {
            assert!(message.contains(expected), "{message:?} should contain {expected:?}");
        }
    }

    #[test]
    fn an_unknown_key_is_refused() {
        let err = yaml::parse::<ReplicationConfig>("{ id: 1, peers: { 1: 'a:1' }, heartbeat: 1s }").unwrap_err();
        assert!(err.to_string().contains("heartbeat"), "{err}");
    }
}
