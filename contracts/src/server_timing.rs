//! The `Server-Timing` header the orchestrator's data plane adds to every proxied response, and the one parser
//! every reader of it uses (the loader, the orchestrator's tests and benches).
//!
//! Format (W3C Server Timing, durations in milliseconds with microsecond resolution):
//! `queue;dur=0.012, coldstart;desc="none", proxy;dur=0.031` and, after a cold start,
//! `queue;dur=4.200, coldstart;desc="triggered", create;dur=3.900, proxy;dur=0.040`; a runtime that times its
//! creation steps adds them after `create`, each as `create.<step>`: `create.image;dur=0.002, create.task;dur=61.2`.
//! `coldstart` is [`ColdStart`]: `none`, `triggered` (this request found the function at zero and asked for the
//! sandbox) or `waited` (it queued and was served by a sandbox created meanwhile).

use std::fmt::Write as _;

/// The header's name (lower case, as HTTP/2 sends it).
pub const HEADER: &str = "server-timing";
/// Metric name: time spent queued waiting for a sandbox.
pub const QUEUE: &str = "queue";
/// Metric name: whether the request met a cold start (`desc`, see [`ColdStart`]).
pub const COLD_START: &str = "coldstart";
/// Metric name: how long the sandbox that served a cold request took to become ready.
pub const CREATE: &str = "create";
/// Prefix of the metrics of a creation's steps: `create.image`, `create.snapshot`, ...
pub const CREATE_STEP: &str = "create.";
/// Metric name: the data plane's own overhead, excluding queueing and the sandbox's time.
pub const PROXY: &str = "proxy";

/// How a request got its sandbox: the `desc` of the `coldstart` metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColdStart {
    /// A free sandbox served it.
    None,
    /// It found the function without a free sandbox and asked for one.
    Triggered,
    /// It queued and was served by a sandbox another request's cold start created.
    Waited,
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

    /// The value a `desc` names, if it is one of the three.
    pub fn from_desc(desc: &str) -> Option<Self> {
        match desc {
            "none" => Some(ColdStart::None),
            "triggered" => Some(ColdStart::Triggered),
            "waited" => Some(ColdStart::Waited),
            _ => None,
        }
    }

    /// Whether the request met a cold start (it waited for a sandbox to be created).
    pub fn is_cold(self) -> bool {
        self != ColdStart::None
    }
}

/// One response's breakdown, durations in µs. Every metric is optional: the writer leaves out what is `None`, the
/// parser leaves `None` what the header lacks. `cold_start` keeps the `desc` as sent, so that a platform's other
/// descriptions survive into the run folder; [`ServerTiming::cold_start_kind`] reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerTiming {
    /// `queue;dur`: time queued for a sandbox, µs.
    pub queue_us: Option<u64>,
    /// `create;dur`: creation time of the sandbox that served a cold request, µs.
    pub create_us: Option<u64>,
    /// `proxy;dur`: the platform's own proxy overhead, µs.
    pub proxy_us: Option<u64>,
    /// `coldstart;desc`: `none`, `triggered` or `waited`, as the platform said.
    pub cold_start: Option<String>,
    /// `create.<step>;dur`: the creation's steps in order, µs (empty when the runtime has none).
    pub create_steps: Vec<(String, u64)>,
}

impl ServerTiming {
    /// Renders the header value: `queue`, `coldstart`, `create`, `proxy`, each only when present.
    pub fn header_value(&self) -> String {
        let mut out = String::with_capacity(96);
        let mut separator = "";
        let mut metric = |name: &str, param: &str, value: &dyn std::fmt::Display| {
            let _ = write!(out, "{separator}{name};{param}={value}");
            separator = ", ";
        };
        if let Some(queue) = self.queue_us {
            metric(QUEUE, "dur", &Millis(queue));
        }
        if let Some(cold_start) = &self.cold_start {
            metric(COLD_START, "desc", &Quoted(cold_start));
        }
        if let Some(create) = self.create_us {
            metric(CREATE, "dur", &Millis(create));
        }
        for (step, took) in &self.create_steps {
            metric(&format!("{CREATE_STEP}{step}"), "dur", &Millis(*took));
        }
        if let Some(proxy) = self.proxy_us {
            metric(PROXY, "dur", &Millis(proxy));
        }
        out
    }

    /// Parses a header value (several headers joined with `, ` too). Durations (ms, fractional allowed) become µs;
    /// names and parameters are matched without regard to case; unknown metrics, unknown parameters and malformed
    /// parts are ignored, so the parser never fails.
    pub fn parse(value: &str) -> Self {
        let mut timing = ServerTiming::default();
        for metric in value.split(',') {
            let mut parts = metric.split(';');
            let name = parts.next().unwrap_or("").trim();
            let mut dur_us = None;
            let mut desc = None;
            for param in parts {
                let Some((key, val)) = param.split_once('=') else { continue };
                let val = val.trim();
                match key.trim().to_ascii_lowercase().as_str() {
                    "dur" => dur_us = ms_to_us(val),
                    "desc" => desc = Some(unquote(val).to_string()),
                    _ => {}
                }
            }
            let lower = name.to_ascii_lowercase();
            if let (Some(step), Some(took)) = (lower.strip_prefix(CREATE_STEP), dur_us) {
                // Bounded: a header of junk metrics must not grow the list without limit.
                if !step.is_empty() && timing.create_steps.len() < MAX_STEPS {
                    timing.create_steps.push((step.to_owned(), took));
                }
                continue;
            }
            match lower.as_str() {
                QUEUE => timing.queue_us = dur_us.or(timing.queue_us),
                CREATE => timing.create_us = dur_us.or(timing.create_us),
                PROXY => timing.proxy_us = dur_us.or(timing.proxy_us),
                COLD_START => timing.cold_start = desc.filter(|d| !d.is_empty()).or(timing.cold_start),
                _ => {}
            }
        }
        timing
    }

    /// The `coldstart` description as a [`ColdStart`], if it is one of the three.
    pub fn cold_start_kind(&self) -> Option<ColdStart> {
        self.cold_start.as_deref().and_then(ColdStart::from_desc)
    }
}

/// At most this many creation steps are read from one header.
const MAX_STEPS: usize = 16;

/// Milliseconds with three decimals, from integer microseconds (no float formatting on the data plane's hot path).
struct Millis(u64);

impl std::fmt::Display for Millis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{:03}", self.0 / 1000, self.0 % 1000)
    }
}

/// A `desc` in double quotes.
struct Quoted<'a>(&'a str);

impl std::fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "\"{}\"", self.0)
    }
}

fn unquote(value: &str) -> &str {
    value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(value)
}

fn ms_to_us(value: &str) -> Option<u64> {
    let ms: f64 = unquote(value).parse().ok()?;
    if !ms.is_finite() || ms < 0.0 {
        return None;
    }
    let us = (ms * 1000.0).round();
    (us <= u64::MAX as f64).then_some(us as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing(queue: Option<u64>, cold: Option<&str>, create: Option<u64>, proxy: Option<u64>) -> ServerTiming {
        ServerTiming {
            queue_us: queue,
            create_us: create,
            proxy_us: proxy,
            cold_start: cold.map(str::to_owned),
            create_steps: Vec::new(),
        }
    }

    #[test]
    fn creation_steps_follow_create_in_order_and_parse_back() {
        let mut cold = timing(Some(10), Some("triggered"), Some(90_000), Some(40));
        cold.create_steps = vec![("image".into(), 2), ("task".into(), 61_200)];
        let value = cold.header_value();
        assert!(value.contains("create;dur=90.000, create.image;dur=0.002, create.task;dur=61.200, proxy"), "{value}");
        assert_eq!(ServerTiming::parse(&value), cold);
        let junk: String = (0..100).map(|i| format!("create.s{i};dur=1, ")).collect();
        assert_eq!(ServerTiming::parse(&junk).create_steps.len(), MAX_STEPS);
    }

    #[test]
    fn renders_warm_and_cold() {
        let warm = timing(Some(0), Some("none"), None, Some(31));
        assert_eq!(warm.header_value(), "queue;dur=0.000, coldstart;desc=\"none\", proxy;dur=0.031");
        let cold = timing(Some(4200), Some("triggered"), Some(3900), Some(40));
        assert_eq!(
            cold.header_value(),
            "queue;dur=4.200, coldstart;desc=\"triggered\", create;dur=3.900, proxy;dur=0.040"
        );
        assert_eq!(ServerTiming::default().header_value(), "");
        assert_eq!(timing(None, None, None, Some(1_234_567)).header_value(), "proxy;dur=1234.567");
    }

    /// splitmix64: a deterministic stream of test cases without a dependency.
    fn next(state: &mut u64) -> u64 {
        *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    #[test]
    fn parse_reads_what_header_value_writes() {
        let edges = [0, 1, 999, 1000, 1001, 59_999_999, 3_600_000_000, 1 << 40];
        let descs = [None, Some("none"), Some("triggered"), Some("waited"), Some("other-platform")];
        let mut state = 11;
        let duration = |state: &mut u64| match next(state) % 4 {
            0 => None,
            1 => Some(edges[(next(state) % edges.len() as u64) as usize]),
            // Up to about 12 days in µs: far beyond any request, well inside f64's exact range.
            _ => Some(next(state) % (1 << 40)),
        };
        for _ in 0..20_000 {
            let desc = descs[(next(&mut state) % descs.len() as u64) as usize];
            let x = timing(duration(&mut state), desc, duration(&mut state), duration(&mut state));
            assert_eq!(ServerTiming::parse(&x.header_value()), x, "{}", x.header_value());
        }
    }

    #[test]
    fn parses_full_header() {
        let b = ServerTiming::parse(r#"queue;dur=1.5, coldstart;desc="triggered", create;dur=120, proxy;dur=0.042"#);
        assert_eq!(b.queue_us, Some(1500));
        assert_eq!(b.create_us, Some(120_000));
        assert_eq!(b.proxy_us, Some(42));
        assert_eq!(b.cold_start.as_deref(), Some("triggered"));
        assert_eq!(b.cold_start_kind(), Some(ColdStart::Triggered));
        assert!(ColdStart::Triggered.is_cold() && ColdStart::Waited.is_cold() && !ColdStart::None.is_cold());
    }

    #[test]
    fn missing_parts_stay_none() {
        let b = ServerTiming::parse(r#"coldstart;desc="none", proxy;dur=2"#);
        assert_eq!(b.queue_us, None);
        assert_eq!(b.create_us, None);
        assert_eq!(b.proxy_us, Some(2000));
        assert_eq!(b.cold_start_kind(), Some(ColdStart::None));
        assert_eq!(ServerTiming::parse(""), ServerTiming::default());
        assert_eq!(ServerTiming::parse("queue"), ServerTiming::default());
    }

    #[test]
    fn extra_whitespace_case_and_unknown_metrics() {
        let b = ServerTiming::parse(r#"  Queue ; DUR = 3 ,db;dur=9;desc=x, coldstart;desc=waited "#);
        assert_eq!(b.queue_us, Some(3000));
        assert_eq!(b.cold_start.as_deref(), Some("waited"));
        assert_eq!(b.create_us, None);
        let repeated = ServerTiming::parse("queue;dur=1, queue;dur=x, queue;dur=2");
        assert_eq!(repeated.queue_us, Some(2000), "a later valid value wins, an invalid one is skipped");
    }

    #[test]
    fn garbage_does_not_panic() {
        for junk in [
            ";;;,,,",
            "queue;dur=abc",
            "queue;dur=-1",
            "queue;dur=NaN, create;dur=inf",
            "queue;dur=1e400",
            "coldstart;desc=\"",
            "coldstart;desc=",
            "=;=,=",
            "\u{1F600};dur=\u{1F600}",
        ] {
            let b = ServerTiming::parse(junk);
            assert_eq!(b.queue_us, None, "{junk}");
            assert_eq!(b.create_us, None, "{junk}");
        }
        assert_eq!(ColdStart::from_desc("weird"), None);
        assert_eq!(ServerTiming::parse("coldstart;desc=weird").cold_start_kind(), None);
    }
}
