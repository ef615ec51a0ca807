//! Experiments: one YAML spec, one command. Starts the platform under test (the bundled orchestrator, as processes
//! on this machine or on a cluster's hosts over SSH), replays the load (with the loader library here, or the loader
//! binary on the cluster's loader host), injects failures, stops the platform, checks that nothing survived,
//! collects everything and analyses the runs.
//!
//! The platform's lifecycle ([`lifecycle`]) is one, over a host abstraction ([`lifecycle::host::Host`]) with two
//! implementations: this machine ([`local`]) and a cluster's hosts over SSH ([`cluster`], on [`ssh`]). The runner
//! ([`runner`]) asks the experiment's [`site`] for the hosts and the load.

pub mod binaries;
pub mod cluster;
pub mod events;
pub mod failures;
pub mod lifecycle;
pub mod load;
pub mod local;
pub mod platform;
pub mod provision;
pub mod roles;
pub mod runner;
pub mod site;
pub mod spec;
pub mod ssh;

pub use contracts::error_chain;

#[cfg(test)]
mod tests {
    #[test]
    fn the_chain_names_every_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let error = crate::cluster::inventory::InventoryError::Read { path: "/inv.yaml".into(), source: io };
        assert_eq!(super::error_chain(&error), "cannot read inventory /inv.yaml: no such file");
    }
}
