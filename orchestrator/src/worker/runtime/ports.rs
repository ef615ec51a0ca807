//! Ports for process sandboxes, from a range kept outside the kernel's ephemeral range.
//!
//! A port picked by binding port 0 comes from the ephemeral range, where any outgoing connection (the
//! readiness probe's, the data plane's) may take it as its local port between the pick and the sandbox's
//! own bind. A dedicated range does not race with outgoing connections.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr, TcpListener};

/// The range type is the contracts' (a worker config key).
pub use contracts::config::PortRange;

/// Hands out ports of a range that no sandbox holds and nothing else has bound.
#[derive(Debug)]
pub struct PortAllocator {
    host: IpAddr,
    range: PortRange,
    next: u32,
    taken: HashSet<u16>,
}

impl PortAllocator {
    /// An allocator over `range` on `host`.
    pub fn new(host: IpAddr, range: PortRange) -> Self {
        // Two workers on one host with the same range would otherwise test and hand out the same first ports.
        let next = rand::random::<u32>() % range.len();
        Self { host, range, next, taken: HashSet::new() }
    }

    /// A free port, or an error when every port of the range is taken.
    pub fn allocate(&mut self) -> std::io::Result<u16> {
        for _ in 0..self.range.len() {
            let port = u16::try_from(u32::from(self.range.first) + self.next % self.range.len()).unwrap_or(0);
            self.next = (self.next + 1) % self.range.len();
            if self.taken.contains(&port) || TcpListener::bind(SocketAddr::new(self.host, port)).is_err() {
                continue;
            }
            self.taken.insert(port);
            return Ok(port);
        }
        Err(std::io::Error::new(
            std::io::ErrorKind::AddrNotAvailable,
            format!("every port in {} on {} is in use", self.range, self.host),
        ))
    }

    /// Gives a port back.
    pub fn release(&mut self, port: u16) {
        self.taken.remove(&port);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_bound_ports_takes_each_once_and_reports_exhaustion() {
        let host = IpAddr::from([127, 0, 0, 1]);
        let blocker = TcpListener::bind((host, 0)).unwrap();
        let busy = blocker.local_addr().unwrap().port();
        let err = PortAllocator::new(host, PortRange { first: busy, last: busy }).allocate().unwrap_err();
        assert!(err.to_string().contains(&busy.to_string()), "{err}");

        let free = TcpListener::bind((host, 0)).unwrap().local_addr().unwrap().port();
        let mut ports = PortAllocator::new(host, PortRange { first: free, last: free });
        assert_eq!(ports.allocate().unwrap(), free);
        assert!(ports.allocate().is_err(), "a taken port is not handed out twice");
        ports.release(free);
        assert_eq!(ports.allocate().unwrap(), free);
    }
}
