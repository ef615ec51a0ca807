//! Experiments on remote hosts over SSH: preflight, shipping the binaries, the orchestrator's roles as detached
//! services on their hosts, the loader on the loader host, collecting the results and tearing down. Built on
//! [`crate::ssh`].

pub mod cluster;
pub mod dirigent;
pub mod load;
pub mod preflight;
pub mod script;
