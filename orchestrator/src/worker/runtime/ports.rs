//! Ports for process sandboxes, from a range kept outside the kernel's ephemeral range.
//!
//! A port picked by binding port 0 comes from the ephemeral range, where any outgoing connection (the
//! readiness probe's, the data plane's) may take it as its local port between the pick and the sandbox's
//! own bind. A dedicated range does not race with outgoing connections.

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::str::FromStr;

/// An inclusive range of ports, written `first-last` in YAML.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PortRange {
    /// First port.
    pub first: u16,
    /// Last port (inclusive).
    pub last: u16,
}

impl PortRange {
    /// How many ports.
    pub fn len(self) -> u32 {
        u32::from(self.last) - u32::from(self.first) + 1
    }

    /// Always false: a range holds at least its first port.
    pub fn is_empty(self) -> bool {
        false
    }

    /// Part `index` of `parts` equal slices (for several workers on one host).
    pub fn slice(self, parts: u32, index: u32) -> PortRange {
        let parts = parts.max(1);
        let size = (self.len() / parts).max(1);
        let first = u32::from(self.first) + size * index.min(parts - 1);
        let last = if index + 1 >= parts { u32::from(self.last) } else { first + size - 1 };
        let clamp = |p: u32| u16::try_from(p.min(u32::from(self.last))).unwrap_or(self.last);
        PortRange { first: clamp(first), last: clamp(last) }
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

impl From<PortRange> for String {
    fn from(range: PortRange) -> String {
        range.to_string()
    }
}

impl FromStr for PortRange {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("'{text}' is not a port range like 20000-29999");
        let (first, last) = text.split_once('-').ok_or_else(bad)?;
        let first: u16 = first.trim().parse().map_err(|_| bad())?;
        let last: u16 = last.trim().parse().map_err(|_| bad())?;
        if first == 0 || first > last {
            return Err(bad());
        }
        Ok(PortRange { first, last })
    }
}

impl TryFrom<String> for PortRange {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        text.parse()
    }
}

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
    fn ranges_parse_and_slice() {
        let range: PortRange = "20000-29999".parse().unwrap();
        assert_eq!(range.len(), 10_000);
        assert_eq!(range.slice(2, 0), PortRange { first: 20000, last: 24999 });
        assert_eq!(range.slice(2, 1), PortRange { first: 25000, last: 29999 });
        assert_eq!(range.slice(3, 2).last, 29999);
        assert!("30000-20000".parse::<PortRange>().is_err());
        assert!("0-10".parse::<PortRange>().is_err());
        assert!("a-b".parse::<PortRange>().is_err());
    }

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
