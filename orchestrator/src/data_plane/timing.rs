//! The `Server-Timing` header the data plane adds to every proxied response: its format and names are
//! [`contracts::server_timing`]; this fills it from one request's measurements.

use std::time::Duration;

use contracts::server_timing::ServerTiming;

use super::endpoints::ColdStart;

/// The breakdown of one request: time `queued` for a sandbox, how it got one, the sandbox's `creation` time for a
/// cold request (with its steps, µs) and the data plane's own `proxy` overhead.
pub fn server_timing(
    queued: Duration,
    cold_start: ColdStart,
    creation: Option<(Duration, &[(String, u64)])>,
    proxy: Duration,
) -> ServerTiming {
    ServerTiming {
        queue_us: Some(micros(queued)),
        create_us: creation.map(|(total, _)| micros(total)),
        proxy_us: Some(micros(proxy)),
        cold_start: Some(cold_start.as_str().to_owned()),
        create_steps: creation.map(|(_, steps)| steps.to_vec()).unwrap_or_default(),
    }
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_warm_and_cold() {
        let warm = server_timing(Duration::ZERO, ColdStart::None, None, Duration::from_micros(31));
        assert_eq!(warm.header_value(), "queue;dur=0.000, coldstart;desc=\"none\", proxy;dur=0.031");
        let cold = server_timing(
            Duration::from_micros(4200),
            ColdStart::Triggered,
            Some((Duration::from_micros(3900), &[][..])),
            Duration::from_micros(40),
        );
        assert_eq!(
            cold.header_value(),
            "queue;dur=4.200, coldstart;desc=\"triggered\", create;dur=3.900, proxy;dur=0.040"
        );
    }

    #[test]
    fn sub_microsecond_parts_are_cut() {
        let timing = server_timing(Duration::from_nanos(1999), ColdStart::Waited, None, Duration::from_nanos(999));
        assert_eq!((timing.queue_us, timing.proxy_us), (Some(1), Some(0)));
    }
}
