//! Parsing of the bundled orchestrator's `Server-Timing` response header into a [`PlatformBreakdown`].
//!
//! The data plane sends `queue;dur=<ms>, coldstart;desc="none|triggered|waited", create;dur=<ms>, proxy;dur=<ms>`.
//! Unknown metrics, unknown parameters and malformed parts are ignored; the parser never fails.

use crate::record::PlatformBreakdown;

/// Parses a `Server-Timing` header value; durations (ms, fractional allowed) become µs.
pub fn parse_server_timing(value: &str) -> PlatformBreakdown {
    let mut breakdown = PlatformBreakdown::default();
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
        match name.to_ascii_lowercase().as_str() {
            "queue" => breakdown.queue_us = dur_us.or(breakdown.queue_us),
            "create" => breakdown.create_us = dur_us.or(breakdown.create_us),
            "proxy" => breakdown.proxy_us = dur_us.or(breakdown.proxy_us),
            "coldstart" => breakdown.cold_start = desc.filter(|d| !d.is_empty()).or(breakdown.cold_start),
            _ => {}
        }
    }
    breakdown
}

/// Whether a `coldstart` description means the request met a cold start (`triggered` or `waited`).
pub fn cold_start_from_desc(desc: &str) -> Option<bool> {
    match desc {
        "none" => Some(false),
        "triggered" | "waited" => Some(true),
        _ => None,
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

    #[test]
    fn parses_full_header() {
        let b = parse_server_timing(r#"queue;dur=1.5, coldstart;desc="triggered", create;dur=120, proxy;dur=0.042"#);
        assert_eq!(b.queue_us, Some(1500));
        assert_eq!(b.create_us, Some(120_000));
        assert_eq!(b.proxy_us, Some(42));
        assert_eq!(b.cold_start.as_deref(), Some("triggered"));
        assert_eq!(cold_start_from_desc(b.cold_start.as_deref().unwrap()), Some(true));
    }

    #[test]
    fn missing_parts_stay_none() {
        let b = parse_server_timing(r#"coldstart;desc="none", proxy;dur=2"#);
        assert_eq!(b.queue_us, None);
        assert_eq!(b.create_us, None);
        assert_eq!(b.proxy_us, Some(2000));
        assert_eq!(b.cold_start.as_deref(), Some("none"));
        assert_eq!(cold_start_from_desc("none"), Some(false));
        assert_eq!(parse_server_timing(""), PlatformBreakdown::default());
        assert_eq!(parse_server_timing("queue"), PlatformBreakdown::default());
    }

    #[test]
    fn extra_whitespace_case_and_unknown_metrics() {
        let b = parse_server_timing(r#"  Queue ; DUR = 3 ,db;dur=9;desc=x, coldstart;desc=waited "#);
        assert_eq!(b.queue_us, Some(3000));
        assert_eq!(b.cold_start.as_deref(), Some("waited"));
        assert_eq!(b.create_us, None);
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
            let b = parse_server_timing(junk);
            assert_eq!(b.queue_us, None, "{junk}");
            assert_eq!(b.create_us, None, "{junk}");
        }
        assert_eq!(cold_start_from_desc("weird"), None);
    }
}
