//! The roles' default ports and the sandbox port range.
//!
//! Sandbox ports come from a range kept outside the kernel's ephemeral range: a port picked by binding port 0
//! comes from the ephemeral range, where any outgoing connection (the readiness probe's, the data plane's) may take
//! it as its local port between the pick and the sandbox's own bind.

use std::fmt;
use std::str::FromStr;

/// The control plane's gRPC port (workers and data planes connect to it).
pub const CONTROL_PLANE_GRPC: u16 = 9090;
/// The control plane's HTTP API port (registration, `/metrics`).
pub const CONTROL_PLANE_HTTP: u16 = 9091;
/// The data plane's proxy port (invocations).
pub const DATA_PLANE_PROXY: u16 = 8080;
/// The data plane's gRPC port (the control plane pushes to it).
pub const DATA_PLANE_GRPC: u16 = 8081;
/// A worker's gRPC port.
pub const WORKER_GRPC: u16 = 10010;
/// A worker's sandbox ports (outside Linux's default ephemeral range, 32768-60999).
pub const SANDBOX_PORTS: PortRange = PortRange { first: 20000, last: 29999 };

/// An inclusive range of ports, written `first-last` in YAML.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PortRange {
    /// First port.
    pub first: u16,
    /// Last port (inclusive).
    pub last: u16,
}

/// Text that is not a port range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{text}' is not a port range like 20000-29999 (first port 1 or more, last port not below it)")]
pub struct PortRangeError {
    /// The text as written.
    pub text: String,
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

    /// Part `index` of `parts` equal slices (for several workers on one host); the last part takes the remainder.
    /// With more parts than ports, parts overlap on the last port: check `parts <= len()` first.
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
    type Err = PortRangeError;

    fn from_str(text: &str) -> Result<Self, PortRangeError> {
        let bad = || PortRangeError { text: text.into() };
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
    type Error = PortRangeError;

    fn try_from(text: String) -> Result<Self, PortRangeError> {
        text.parse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_and_slice() {
        let range: PortRange = "20000-29999".parse().unwrap();
        assert_eq!(range, SANDBOX_PORTS);
        assert_eq!(range.len(), 10_000);
        assert_eq!(range.slice(2, 0), PortRange { first: 20000, last: 24999 });
        assert_eq!(range.slice(2, 1), PortRange { first: 25000, last: 29999 });
        assert_eq!(range.slice(3, 2).last, 29999);
        assert!("30000-20000".parse::<PortRange>().is_err());
        assert!("0-10".parse::<PortRange>().is_err());
        assert!("a-b".parse::<PortRange>().is_err());
    }

    #[test]
    fn slices_cover_the_range_without_overlap() {
        let range = PortRange { first: 30000, last: 30300 };
        let slices: Vec<PortRange> = (0..3).map(|i| range.slice(3, i)).collect();
        assert_eq!(slices[0], PortRange { first: 30000, last: 30099 });
        assert_eq!(slices[1], PortRange { first: 30100, last: 30199 });
        assert_eq!(slices[2], PortRange { first: 30200, last: 30300 }, "the last takes the remainder");
        assert_eq!(range.slice(1, 0), range);
    }

    #[test]
    fn yaml_and_json_write_first_dash_last() {
        let range: PortRange = crate::yaml::parse("21000-21999").unwrap();
        assert_eq!(range, PortRange { first: 21000, last: 21999 });
        assert_eq!(serde_json::to_string(&range).unwrap(), "\"21000-21999\"");
        let err = crate::yaml::parse::<PortRange>("lots").unwrap_err().to_string();
        assert!(err.contains("lots") && err.contains("20000-29999"), "{err}");
    }
}
