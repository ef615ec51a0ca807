//! Many hosts: one reusable session per host (a connection costs 100-300 ms), work spread over a bounded number of
//! threads.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{Destination, Session, SessionOptions, SshError};
use crate::cluster::inventory::Inventory;

/// A set of hosts with one lazily opened, reused [`Session`] each. Blocking: from async code call it inside
/// `tokio::task::spawn_blocking` (it starts its own threads for parallel work).
#[derive(Debug)]
pub struct Hosts {
    hosts: Vec<PooledHost>,
}

#[derive(Debug)]
struct PooledHost {
    destination: Destination,
    options: SessionOptions,
    session: Mutex<Option<Session>>,
}

impl Hosts {
    /// Hosts to reach with the same options; nothing connects until first use.
    pub fn new(destinations: impl IntoIterator<Item = Destination>, options: SessionOptions) -> Self {
        Self::with_options(destinations.into_iter().map(|destination| (destination, options.clone())))
    }

    /// Hosts with options each (e.g. their own key file); nothing connects until first use.
    pub fn with_options(hosts: impl IntoIterator<Item = (Destination, SessionOptions)>) -> Self {
        let hosts = hosts
            .into_iter()
            .map(|(destination, options)| PooledHost { destination, options, session: Mutex::new(None) })
            .collect();
        Hosts { hosts }
    }

    /// An inventory's hosts, in its order; a host's own key file replaces `options.key_file`.
    pub fn from_inventory(inventory: &Inventory, options: &SessionOptions) -> Self {
        Self::with_options(inventory.hosts.iter().map(|host| {
            let key_file = host.key_file.clone().or_else(|| options.key_file.clone());
            (host.destination.clone(), SessionOptions { key_file, ..options.clone() })
        }))
    }

    /// The hosts, in order.
    pub fn destinations(&self) -> impl Iterator<Item = &Destination> {
        self.hosts.iter().map(|host| &host.destination)
    }

    /// How many hosts.
    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// Runs `work` with host `index`'s session (connecting first if needed). After an error that may have broken
    /// the connection, the session is dropped and the next call reconnects.
    pub fn with<T>(&self, index: usize, work: impl FnOnce(&mut Session) -> Result<T, SshError>) -> Result<T, SshError> {
        let host = &self.hosts[index];
        let mut slot = host.session.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if slot.is_none() {
            *slot = Some(Session::connect(&host.destination, &host.options)?);
        }
        let result = work(slot.as_mut().expect("just connected"));
        if result.as_ref().is_err_and(SshError::may_break_session) {
            *slot = None;
        }
        result
    }

    /// Runs `work` on every host, at most `parallelism` hosts at a time, and returns each host's result in host
    /// order (one host's failure does not stop the others).
    pub fn run_all<T, F>(&self, parallelism: usize, work: F) -> Vec<Result<T, SshError>>
    where
        T: Send,
        F: Fn(&mut Session) -> Result<T, SshError> + Sync,
    {
        let indices: Vec<usize> = (0..self.hosts.len()).collect();
        self.run_on(&indices, parallelism, |_, session| work(session))
    }

    /// Like [`Hosts::run_all`] for the hosts at `indices` (results in the order of `indices`); `work` gets each
    /// host's index with its session.
    pub fn run_on<T, F>(&self, indices: &[usize], parallelism: usize, work: F) -> Vec<Result<T, SshError>>
    where
        T: Send,
        F: Fn(usize, &mut Session) -> Result<T, SshError> + Sync,
    {
        let results: Vec<Mutex<Option<Result<T, SshError>>>> = indices.iter().map(|_| Mutex::new(None)).collect();
        let next = AtomicUsize::new(0);
        let threads = parallelism.clamp(1, indices.len().max(1));
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| {
                    loop {
                        let position = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&index) = indices.get(position) else { break };
                        let result = self.with(index, |session| work(index, session));
                        *results[position].lock().unwrap_or_else(|p| p.into_inner()) = Some(result);
                    }
                });
            }
        });
        results
            .into_iter()
            .map(|slot| {
                slot.into_inner().unwrap_or_else(|p| p.into_inner()).expect("every position was run by a thread")
            })
            .collect()
    }

    /// Closes every open session.
    pub fn disconnect(&self) {
        for host in &self.hosts {
            *host.session.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn unreachable(port: u16) -> Destination {
        Destination { user: "root".into(), address: "127.0.0.1".into(), port }
    }

    #[test]
    fn every_host_gets_its_own_result_in_order() {
        let options = SessionOptions { connect_timeout: Duration::from_millis(200), ..SessionOptions::default() };
        let hosts = Hosts::new([unreachable(1), unreachable(2), unreachable(3)], options);
        let results = hosts.run_all(2, |session| Ok(session.destination().port));
        assert_eq!(results.len(), 3);
        for (port, result) in (1..=3).zip(results) {
            let error = result.unwrap_err().to_string();
            assert!(error.contains(&format!("root@127.0.0.1:{port}")), "{error}");
        }
    }

    #[test]
    fn inventory_key_files_override_the_default() {
        let inventory = Inventory::from_node_list("u@a u@b u@c u@d", Some(std::path::Path::new("/k"))).unwrap();
        let options = SessionOptions { key_file: Some("/default".into()), ..SessionOptions::default() };
        let hosts = Hosts::from_inventory(&inventory, &options);
        assert_eq!(hosts.len(), 4);
        assert!(hosts.hosts.iter().all(|h| h.options.key_file.as_deref() == Some(std::path::Path::new("/k"))));
        let without = Inventory::from_node_list("u@a u@b u@c u@d", None).unwrap();
        let hosts = Hosts::from_inventory(&without, &options);
        assert_eq!(hosts.hosts[0].options.key_file.as_deref(), Some(std::path::Path::new("/default")));
        assert_eq!(hosts.destinations().next().unwrap().to_string(), "u@a:22");
    }

    #[test]
    fn no_hosts_no_work() {
        let hosts = Hosts::new([], SessionOptions::default());
        assert!(hosts.is_empty());
        assert!(hosts.run_all(4, |_| Ok(())).is_empty());
    }
}
