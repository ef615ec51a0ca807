//! The `Server-Timing` header the data plane adds to every proxied response.
//!
//! Format (W3C Server Timing, durations in milliseconds with microsecond resolution):
//! `queue;dur=0.012, coldstart;desc="none", proxy;dur=0.031` and, after a cold start,
//! `queue;dur=4.2, coldstart;desc="triggered", create;dur=3.9, proxy;dur=0.04`.
//! `coldstart` is `none`, `triggered` (this request found the function at zero and asked for the
//! sandbox) or `waited` (it queued and was served by a sandbox created meanwhile). The loader parses
//! these names; they are part of the wire contract.

use std::fmt::Write as _;
use std::time::Duration;

use super::endpoints::ColdStart;

/// Metric name: time spent queued waiting for a sandbox.
pub const QUEUE: &str = "queue";
/// Metric name: whether the request met a cold start (`desc`).
pub const COLD_START: &str = "coldstart";
/// Metric name: how long the sandbox that served a cold request took to become ready.
pub const CREATE: &str = "create";
/// Metric name: the data plane's own overhead, excluding queueing and the sandbox's time.
pub const PROXY: &str = "proxy";

/// The data plane's breakdown of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Breakdown {
    /// Time queued.
    pub queued: Duration,
    /// How the request got its sandbox.
    pub cold_start: ColdStart,
    /// Sandbox creation time, for cold requests.
    pub creation: Option<Duration>,
    /// Proxy overhead.
    pub proxy: Duration,
}

impl ColdStart {
    /// The `desc` value in the header.
    pub fn as_str(self) -> &'static str {
        match self {
            ColdStart::None => "none",
            ColdStart::Triggered => "triggered",
            ColdStart::Waited => "waited",
        }
    }
}

/// Milliseconds with three decimals, from integer microseconds (no float formatting on the hot path).
struct Millis(Duration);

impl std::fmt::Display for Millis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let micros = self.0.as_micros();
        write!(f, "{}.{:03}", micros / 1000, micros % 1000)
    }
}

impl Breakdown {
    /// Renders the header value.
    pub fn header_value(&self) -> String {
        let mut out = String::with_capacity(96);
        let _ =
            write!(out, "{QUEUE};dur={:.3}, {COLD_START};desc=\"{}\"", Millis(self.queued), self.cold_start.as_str());
        if let Some(creation) = self.creation {
            let _ = write!(out, ", {CREATE};dur={:.3}", Millis(creation));
        }
        let _ = write!(out, ", {PROXY};dur={:.3}", Millis(self.proxy));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_warm_and_cold() {
        let warm = Breakdown {
            queued: Duration::ZERO,
            cold_start: ColdStart::None,
            creation: None,
            proxy: Duration::from_micros(31),
        };
        assert_eq!(warm.header_value(), "queue;dur=0.000, coldstart;desc=\"none\", proxy;dur=0.031");
        let cold = Breakdown {
            queued: Duration::from_micros(4200),
            cold_start: ColdStart::Triggered,
            creation: Some(Duration::from_micros(3900)),
            proxy: Duration::from_micros(40),
        };
        assert_eq!(
            cold.header_value(),
            "queue;dur=4.200, coldstart;desc=\"triggered\", create;dur=3.900, proxy;dur=0.040"
        );
    }
}
