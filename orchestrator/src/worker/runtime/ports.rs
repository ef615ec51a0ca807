//! Ports for process sandboxes, from a range kept outside the kernel's ephemeral range.
//!
//! A port picked by binding port 0 comes from the ephemeral range, where any outgoing connection (the
//! readiness probe's, the data plane's) may take it as its local port between the pick and the sandbox's
//! own bind. A dedicated range does not race with outgoing connections.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};

/// The range type is the contracts' (a worker config key).
pub use contracts::config::PortRange;

/// Hands out (address, port) pairs of a range on one or more consecutive addresses that no sandbox holds and
/// nothing else has bound.
#[derive(Debug)]
pub struct PortAllocator {
    host: IpAddr,
    addresses: u32,
    range: PortRange,
    next: u64,
    taken: HashSet<SocketAddr>,
}

impl PortAllocator {
    /// An allocator over `range` on `host`.
    pub fn new(host: IpAddr, range: PortRange) -> Self {
        Self::over(host, 1, range)
    }

    /// An allocator over `range` on each of `addresses` consecutive IPv4 addresses from `host` (the worker config
    /// checks that they exist; an IPv6 `host` has just itself).
    pub fn over(host: IpAddr, addresses: u32, range: PortRange) -> Self {
        let addresses = if host.is_ipv4() { addresses.max(1) } else { 1 };
        let slots = u64::from(addresses) * u64::from(range.len());
        // Two workers on one host with the same range would otherwise test and hand out the same first ports.
        let next = rand::random::<u64>() % slots;
        Self { host, addresses, range, next, taken: HashSet::new() }
    }

    /// The port range it hands out on each address.
    pub fn range(&self) -> PortRange {
        self.range
    }

    fn slots(&self) -> u64 {
        u64::from(self.addresses) * u64::from(self.range.len())
    }

    /// Slot `slot` in address-major order: every port of the first address, then of the next.
    fn slot(&self, slot: u64) -> SocketAddr {
        let len = u64::from(self.range.len());
        let port = u16::try_from(u64::from(self.range.first) + slot % len).unwrap_or(0);
        let host = match self.host {
            IpAddr::V4(v4) => {
                let offset = u32::try_from(slot / len).unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(u32::from(v4).saturating_add(offset)))
            }
            v6 => v6,
        };
        SocketAddr::new(host, port)
    }

    /// A free address and port, or an error when every port of the range is taken on every address.
    pub fn allocate(&mut self) -> std::io::Result<SocketAddr> {
        let slots = self.slots();
        for _ in 0..slots {
            let address = self.slot(self.next);
            self.next = (self.next + 1) % slots;
            if self.taken.contains(&address) || TcpListener::bind(address).is_err() {
                continue;
            }
            self.taken.insert(address);
            return Ok(address);
        }
        let hosts = match self.addresses {
            1 => self.host.to_string(),
            n => format!("the {n} addresses {}-{}", self.host, self.slot(slots - 1).ip()),
        };
        Err(std::io::Error::new(
            std::io::ErrorKind::AddrNotAvailable,
            format!("every port in {} on {hosts} is in use", self.range),
        ))
    }

    /// Gives an address and port back.
    pub fn release(&mut self, address: SocketAddr) {
        self.taken.remove(&address);
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
        assert_eq!(ports.allocate().unwrap(), SocketAddr::new(host, free));
        assert!(ports.allocate().is_err(), "a taken port is not handed out twice");
        ports.release(SocketAddr::new(host, free));
        assert_eq!(ports.allocate().unwrap(), SocketAddr::new(host, free));
    }

    /// A range of two ports no listener holds on 127.0.0.1 (ephemeral ports, given back at once).
    fn two_free_ports() -> PortRange {
        loop {
            let first = TcpListener::bind(("127.0.0.1", 0)).unwrap().local_addr().unwrap().port();
            let Some(last) = first.checked_add(1) else { continue };
            if TcpListener::bind(("127.0.0.1", last)).is_ok() {
                return PortRange { first, last };
            }
        }
    }

    #[test]
    fn hands_out_every_port_on_every_address_before_it_reports_exhaustion() {
        let host = IpAddr::from([127, 0, 0, 1]);
        let range = two_free_ports();
        let mut ports = PortAllocator::over(host, 3, range);
        let mut handed: Vec<SocketAddr> = (0..6).map(|_| ports.allocate().unwrap()).collect();
        handed.sort();
        let expected: Vec<SocketAddr> = [1, 2, 3]
            .into_iter()
            .flat_map(|last| [range.first, range.last].map(|port| SocketAddr::from(([127, 0, 0, last], port))))
            .collect();
        assert_eq!(handed, expected, "each address once with each port");
        let err = ports.allocate().unwrap_err().to_string();
        assert!(err.contains("the 3 addresses 127.0.0.1-127.0.0.3") && err.contains(&range.to_string()), "{err}");

        let given_back = SocketAddr::from(([127, 0, 0, 2], range.last));
        ports.release(given_back);
        assert_eq!(ports.allocate().unwrap(), given_back, "a released pair is the only free one");
        assert!(ports.allocate().is_err());
    }

    #[test]
    fn a_pair_bound_elsewhere_is_skipped_on_any_address() {
        let range = two_free_ports();
        let _blocker = TcpListener::bind(("127.0.0.2", range.first)).unwrap();
        let mut ports = PortAllocator::over(IpAddr::from([127, 0, 0, 1]), 2, range);
        let handed: HashSet<SocketAddr> = (0..3).map(|_| ports.allocate().unwrap()).collect();
        assert!(!handed.contains(&SocketAddr::from(([127, 0, 0, 2], range.first))), "{handed:?}");
        assert!(ports.allocate().is_err());
    }
}
