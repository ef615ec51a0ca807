//! Invocation parameters: parsed from HTTP headers and query, from a gRPC request and its metadata, or from a JSON
//! object (a Lambda invocation payload).

use std::borrow::Cow;

use axum::extract::Query;
use http::{HeaderMap, Uri};

use crate::proto::faas::FaasRequest;
use contracts::workload;

/// What an invocation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Workload {
    /// Spin the CPU and hold memory as requested.
    #[default]
    Trace,
    /// Reply at once.
    Empty,
}

/// The parameters of one invocation, validated and bounded.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Invocation {
    /// What to do.
    pub workload: Workload,
    /// Function name, echoed in the reply.
    pub function: String,
    /// CPU time to spin, in milliseconds (at most [`workload::MAX_CPU_MS`]).
    pub requested_cpu_ms: u64,
    /// Memory to hold while spinning, in MiB (at most [`workload::MAX_MEMORY_MIB`]).
    pub requested_memory_mib: u64,
    /// The loader's iteration multiplier, echoed only.
    pub multiplier: u64,
}

/// A parameter that cannot be used; the message names the parameter and its value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    /// The value does not parse.
    #[error("invalid {name} {value:?}: expected {expected}")]
    Invalid {
        /// Parameter name.
        name: &'static str,
        /// The value as received (shortened if long).
        value: String,
        /// What a valid value looks like.
        expected: &'static str,
    },
    /// The value parses but exceeds the limit.
    #[error("{name} {value} is too large: the limit is {max}")]
    TooLarge {
        /// Parameter name.
        name: &'static str,
        /// The value as received.
        value: u64,
        /// The largest accepted value.
        max: u64,
    },
    /// The query string is not `application/x-www-form-urlencoded`.
    #[error("invalid query string {query:?}: {reason}")]
    Query {
        /// The query as received (shortened if long).
        query: String,
        /// Why it does not parse.
        reason: String,
    },
}

/// Longest value quoted back in an error, so that a huge header does not make a huge reply.
const MAX_QUOTED: usize = 100;

impl Invocation {
    /// Parses the parameters of an HTTP invocation; a header wins over a query parameter of the same name.
    pub fn from_http(headers: &HeaderMap, uri: &Uri) -> Result<Self, ParamError> {
        let query = parse_query(uri)?;
        let get = |name| lookup(headers, name).or_else(|| lookup_query(&query, name));
        Self::from_named(get)
    }

    /// The parameters by their HTTP names, from `get`.
    fn from_named<'a>(get: impl Fn(&'static str) -> Option<Cow<'a, str>>) -> Result<Self, ParamError> {
        Ok(Self {
            workload: parse_workload(get(workload::WORKLOAD))?,
            function: get(workload::FUNCTION).unwrap_or_default().into_owned(),
            requested_cpu_ms: parse_bounded(
                workload::REQUESTED_CPU,
                get(workload::REQUESTED_CPU),
                workload::MAX_CPU_MS,
            )?,
            requested_memory_mib: parse_bounded(
                workload::REQUESTED_MEMORY,
                get(workload::REQUESTED_MEMORY),
                workload::MAX_MEMORY_MIB,
            )?,
            multiplier: parse_bounded(workload::MULTIPLIER, get(workload::MULTIPLIER), u64::MAX)?,
        })
    }

    /// Parses a gRPC `Execute` request: runtime and memory from the message, `workload`, `function` and `multiplier`
    /// from the metadata; the function name falls back to the request's `message`.
    pub fn from_grpc(metadata: &HeaderMap, request: &FaasRequest) -> Result<Self, ParamError> {
        let function = lookup(metadata, workload::FUNCTION).unwrap_or(Cow::Borrowed(request.message.as_str()));
        Ok(Self {
            workload: parse_workload(lookup(metadata, workload::WORKLOAD))?,
            function: function.into_owned(),
            requested_cpu_ms: bounded(
                workload::REQUESTED_CPU,
                request.runtime_in_milli_sec.into(),
                workload::MAX_CPU_MS,
            )?,
            requested_memory_mib: bounded(
                workload::REQUESTED_MEMORY,
                request.memory_in_mebi_bytes.into(),
                workload::MAX_MEMORY_MIB,
            )?,
            multiplier: parse_bounded(workload::MULTIPLIER, lookup(metadata, workload::MULTIPLIER), u64::MAX)?,
        })
    }

    /// Parses a JSON object with the HTTP parameter names as keys (numbers or numeric strings); an empty payload,
    /// `null` and `{}` mean defaults, as does a `null` value for one key.
    pub fn from_json(payload: &[u8]) -> Result<Self, ParamError> {
        let not_an_object = |expected| ParamError::Invalid {
            name: "payload",
            value: quoted(&String::from_utf8_lossy(payload)),
            expected,
        };
        if payload.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self::default());
        }
        let value: serde_json::Value = serde_json::from_slice(payload)
            .map_err(|e| not_an_object(if e.is_eof() { "complete JSON" } else { "a JSON object" }))?;
        let object = match value {
            serde_json::Value::Object(object) => object,
            serde_json::Value::Null => return Ok(Self::default()),
            _ => return Err(not_an_object("a JSON object")),
        };
        let get = |name| lookup_json(&object, name);
        Self::from_named(get)
    }
}

fn parse_query(uri: &Uri) -> Result<Vec<(String, String)>, ParamError> {
    Query::<Vec<(String, String)>>::try_from_uri(uri).map(|Query(pairs)| pairs).map_err(|rejection| ParamError::Query {
        query: quoted(uri.query().unwrap_or_default()),
        reason: rejection.body_text(),
    })
}

/// The first value of a header; bytes outside visible ASCII are replaced rather than rejected, since a value that
/// is not text is reported by the parser that needs a number.
fn lookup<'a>(headers: &'a HeaderMap, name: &str) -> Option<Cow<'a, str>> {
    headers.get(name).map(|value| String::from_utf8_lossy(value.as_bytes()))
}

/// A JSON value as the text a header would carry: strings as they are, `null` as absent, anything else as JSON
/// (which the parsers then reject by name unless it is a number).
fn lookup_json<'a>(object: &'a serde_json::Map<String, serde_json::Value>, name: &str) -> Option<Cow<'a, str>> {
    match object.get(name)? {
        serde_json::Value::Null => None,
        serde_json::Value::String(text) => Some(Cow::Borrowed(text.as_str())),
        other => Some(Cow::Owned(other.to_string())),
    }
}

fn lookup_query<'a>(query: &'a [(String, String)], name: &str) -> Option<Cow<'a, str>> {
    query.iter().find(|(key, _)| key == name).map(|(_, value)| Cow::Borrowed(value.as_str()))
}

fn parse_workload(value: Option<Cow<'_, str>>) -> Result<Workload, ParamError> {
    let Some(value) = value.filter(|value| !value.trim().is_empty()) else {
        return Ok(Workload::default());
    };
    match value.trim() {
        name if name.eq_ignore_ascii_case(workload::WORKLOAD_TRACE) => Ok(Workload::Trace),
        name if name.eq_ignore_ascii_case(workload::WORKLOAD_EMPTY) => Ok(Workload::Empty),
        _ => Err(ParamError::Invalid {
            name: workload::WORKLOAD,
            value: quoted(&value),
            expected: "\"trace\" or \"empty\"",
        }),
    }
}

/// Parses a non-negative integer; an absent or empty value means 0, as the loaders leave unset numbers empty.
fn parse_bounded(name: &'static str, value: Option<Cow<'_, str>>, max: u64) -> Result<u64, ParamError> {
    let Some(value) = value.filter(|value| !value.trim().is_empty()) else {
        return Ok(0);
    };
    let number = value.trim().parse::<u64>().map_err(|_| ParamError::Invalid {
        name,
        value: quoted(&value),
        expected: "a non-negative integer",
    })?;
    bounded(name, number, max)
}

fn bounded(name: &'static str, value: u64, max: u64) -> Result<u64, ParamError> {
    if value > max {
        return Err(ParamError::TooLarge { name, value, max });
    }
    Ok(value)
}

fn quoted(value: &str) -> String {
    match value.char_indices().nth(MAX_QUOTED) {
        Some((end, _)) => format!("{}...", &value[..end]),
        None => value.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| (http::HeaderName::from_static(name), HeaderValue::from_str(value).unwrap()))
            .collect()
    }

    fn parse(pairs: &[(&'static str, &str)], uri: &str) -> Result<Invocation, ParamError> {
        Invocation::from_http(&headers(pairs), &uri.parse().unwrap())
    }

    #[test]
    fn defaults_to_trace_with_zero_work() {
        assert_eq!(parse(&[], "/").unwrap(), Invocation::default());
        assert_eq!(Invocation::default().workload, Workload::Trace);
    }

    #[test]
    fn reads_loader_headers() {
        let invocation = parse(
            &[
                ("workload", "trace"),
                ("function", "fn-1"),
                ("requested_cpu", "250"),
                ("requested_memory", "128"),
                ("multiplier", "155"),
            ],
            "/",
        )
        .unwrap();
        let expected = Invocation {
            workload: Workload::Trace,
            function: "fn-1".into(),
            requested_cpu_ms: 250,
            requested_memory_mib: 128,
            multiplier: 155,
        };
        assert_eq!(invocation, expected);
    }

    #[test]
    fn reads_query_and_headers_win() {
        let invocation =
            parse(&[("requested_cpu", "30")], "/?requested_cpu=abc&requested_memory=4&workload=EMPTY&function=q%20f")
                .unwrap();
        assert_eq!(invocation.requested_cpu_ms, 30);
        assert_eq!(invocation.requested_memory_mib, 4);
        assert_eq!(invocation.workload, Workload::Empty);
        assert_eq!(invocation.function, "q f");
    }

    #[test]
    fn empty_values_mean_defaults() {
        let invocation = parse(&[("workload", ""), ("requested_cpu", " "), ("multiplier", "")], "/").unwrap();
        assert_eq!(invocation, Invocation::default());
    }

    #[test]
    fn rejects_non_numeric_and_negative() {
        let error = parse(&[("requested_cpu", "abc")], "/").unwrap_err();
        assert!(matches!(error, ParamError::Invalid { name: "requested_cpu", .. }), "{error}");
        assert!(error.to_string().contains("\"abc\""), "{error}");

        let error = parse(&[], "/?requested_memory=-1").unwrap_err();
        assert!(matches!(error, ParamError::Invalid { name: "requested_memory", .. }), "{error}");
        assert!(error.to_string().contains("\"-1\""), "{error}");

        let error = parse(&[("multiplier", "1.5")], "/").unwrap_err();
        assert!(matches!(error, ParamError::Invalid { name: "multiplier", .. }), "{error}");
    }

    #[test]
    fn rejects_unknown_workload() {
        let error = parse(&[("workload", "docker.io/some/image")], "/").unwrap_err();
        assert!(matches!(error, ParamError::Invalid { name: "workload", .. }), "{error}");
    }

    #[test]
    fn rejects_values_above_limits() {
        let cpu = (workload::MAX_CPU_MS + 1).to_string();
        let error = parse(&[("requested_cpu", &cpu)], "/").unwrap_err();
        assert!(matches!(error, ParamError::TooLarge { name: "requested_cpu", .. }), "{error}");
        let memory = (workload::MAX_MEMORY_MIB + 1).to_string();
        let error = parse(&[("requested_memory", &memory)], "/").unwrap_err();
        assert!(matches!(error, ParamError::TooLarge { name: "requested_memory", .. }), "{error}");
        let error = parse(&[("requested_cpu", "99999999999999999999999")], "/").unwrap_err();
        assert!(matches!(error, ParamError::Invalid { .. }), "{error}");
    }

    #[test]
    fn long_values_are_shortened_in_errors() {
        let long = "x".repeat(10_000);
        let message = parse(&[("requested_cpu", &long)], "/").unwrap_err().to_string();
        assert!(message.len() < 300, "{message}");
    }

    #[test]
    fn non_text_header_is_an_error_not_a_panic() {
        let mut map = HeaderMap::new();
        map.insert("requested_cpu", HeaderValue::from_bytes(b"\xff\xfe").unwrap());
        let error = Invocation::from_http(&map, &"/".parse().unwrap()).unwrap_err();
        assert!(matches!(error, ParamError::Invalid { name: "requested_cpu", .. }), "{error}");
    }

    #[test]
    fn grpc_reads_message_and_metadata() {
        let request = FaasRequest { message: "fn-g".into(), runtime_in_milli_sec: 20, memory_in_mebi_bytes: 4 };
        let invocation = Invocation::from_grpc(&HeaderMap::new(), &request).unwrap();
        assert_eq!(invocation.function, "fn-g");
        assert_eq!((invocation.requested_cpu_ms, invocation.requested_memory_mib), (20, 4));

        let metadata = headers(&[("workload", "empty"), ("function", "meta")]);
        let invocation = Invocation::from_grpc(&metadata, &request).unwrap();
        assert_eq!((invocation.workload, invocation.function.as_str()), (Workload::Empty, "meta"));

        let request = FaasRequest { memory_in_mebi_bytes: u32::MAX, ..request };
        assert!(Invocation::from_grpc(&HeaderMap::new(), &request).is_err());
    }
}
