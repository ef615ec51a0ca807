//! The ready line: one JSON line `dirigent` prints on stdout once a role serves,
//! `{"ready":{"addresses":{"api":"127.0.0.1:4002",...},"role":"control-plane"}}`, so that scripts, tests and the
//! experiments runner wait on it instead of sleeping, and learn the addresses it bound.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How every ready line starts, for a shell that waits for one with `grep '^{"ready"'`.
pub const PREFIX: &str = r#"{"ready""#;

/// A role's announced addresses by name (`api`, `grpc`, `proxy`; a worker announces its `name`), sorted by name.
pub type Addresses = BTreeMap<String, String>;

/// What a role announces once it serves.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadyLine {
    /// The addresses it listens on, by name. Declared first: the line lists its keys sorted, as it always has.
    #[serde(default)]
    pub addresses: Addresses,
    /// The role: `standalone`, `control-plane`, `data-plane` or `worker` (empty when a line names none).
    #[serde(default)]
    pub role: String,
}

/// The line's one key around the announcement, so that other JSON lines on the same stdout are told apart.
#[derive(Serialize, Deserialize)]
struct Line<T> {
    ready: T,
}

impl ReadyLine {
    /// The announcement of `role` with `addresses`.
    pub fn new<K: Into<String>, V: Into<String>>(role: &str, addresses: impl IntoIterator<Item = (K, V)>) -> Self {
        let addresses = addresses.into_iter().map(|(name, address)| (name.into(), address.into())).collect();
        ReadyLine { addresses, role: role.to_owned() }
    }

    /// The line as printed, without the newline.
    pub fn to_line(&self) -> String {
        // A struct of strings always serializes.
        serde_json::to_string(&Line { ready: self }).unwrap_or_default()
    }

    /// The announcement in `line` (surrounding whitespace ignored); `None` for any other line, such as a log line or
    /// a JSON line without `ready`.
    pub fn parse(line: &str) -> Option<Self> {
        serde_json::from_str::<Line<ReadyLine>>(line.trim()).ok().map(|line| line.ready)
    }

    /// The address named `name`, if announced.
    pub fn address(&self, name: &str) -> Option<&str> {
        self.addresses.get(name).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_is_what_dirigent_always_printed() {
        let ready = ReadyLine::new("control-plane", [("grpc", "127.0.0.1:4001"), ("api", "127.0.0.1:4002")]);
        let expected =
            r#"{"ready":{"addresses":{"api":"127.0.0.1:4002","grpc":"127.0.0.1:4001"},"role":"control-plane"}}"#;
        assert_eq!(ready.to_line(), expected);
        let old = serde_json::json!({ "ready": { "role": "control-plane",
            "addresses": { "grpc": "127.0.0.1:4001", "api": "127.0.0.1:4002" } } });
        assert_eq!(ready.to_line(), old.to_string());
        let worker = ReadyLine::new("worker", [("name", "worker-0")]);
        assert_eq!(worker.to_line(), r#"{"ready":{"addresses":{"name":"worker-0"},"role":"worker"}}"#);
        assert!(ReadyLine::default().to_line().starts_with(PREFIX));
    }

    #[test]
    fn parse_reads_what_to_line_writes() {
        let ready = ReadyLine::new("standalone", [("api", "a:1"), ("grpc", "g:2"), ("proxy", "p:3")]);
        assert_eq!(ReadyLine::parse(&ready.to_line()), Some(ready.clone()));
        assert_eq!(ReadyLine::parse(&format!("  {}\r\n", ready.to_line())), Some(ready.clone()));
        assert_eq!(ready.address("proxy"), Some("p:3"));
        assert_eq!(ready.address("missing"), None);
        assert_eq!(ReadyLine::parse(&ReadyLine::default().to_line()), Some(ReadyLine::default()));
    }

    #[test]
    fn other_lines_are_not_ready_lines() {
        for line in [
            "",
            "starting",
            r#"{"level":"info","message":"ready"}"#,
            r#"{"config":"ok"}"#,
            r#"{"ready":"it's"}"#,
            r#"{"ready":{"addresses":{"api":1}}}"#,
            r#"{"ready":{"role":"worker"}"#,
        ] {
            assert_eq!(ReadyLine::parse(line), None, "{line}");
        }
    }

    #[test]
    fn partial_announcements_parse() {
        let line = r#"{"ready":{"role":"data-plane","addresses":{"proxy":"127.0.0.1:4003"}}}"#;
        assert_eq!(ReadyLine::parse(line), Some(ReadyLine::new("data-plane", [("proxy", "127.0.0.1:4003")])));
        let no_addresses = ReadyLine::parse(r#"{"ready":{"role":"worker"}}"#).unwrap();
        assert!(no_addresses.addresses.is_empty());
        let no_role = ReadyLine::parse(r#"{"ready":{"addresses":{"api":"127.0.0.1:1"}}}"#).unwrap();
        assert_eq!((no_role.role.as_str(), no_role.address("api")), ("", Some("127.0.0.1:1")));
        let extra = ReadyLine::parse(r#"{"ready":{"role":"worker","version":2},"at":1}"#).unwrap();
        assert_eq!(extra.role, "worker");
    }
}
