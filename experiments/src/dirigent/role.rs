//! One role process of a run as the runner remembers it, locally and on a cluster: its config, what it announced,
//! and how often it was started, which is what a restart needs.

use serde_json::Value;

use super::config;

/// A role process of a run.
#[derive(Debug, Clone)]
pub struct RoleRecord {
    /// `control-plane`, `data-plane`, `data-plane-N`, `worker-N` (or `standalone`).
    pub name: String,
    /// The `dirigent` subcommand.
    pub role: &'static str,
    /// Its config as first generated.
    pub config: Value,
    /// The addresses its first start announced, which a restart binds again.
    pub announced: Value,
    /// How often it was restarted (each start has a config and a log of its own).
    pub restarts: u32,
    /// Whether a failure injection left it down on purpose, so its exit is no surprise at the stop.
    pub down_on_purpose: bool,
}

impl RoleRecord {
    /// A role not started yet.
    pub fn new(name: String, role: &'static str, config: Value) -> Self {
        RoleRecord { name, role, config, announced: Value::Null, restarts: 0, down_on_purpose: false }
    }

    /// The file name stem of its current start: `<name>`, then `<name>.<N>` after N restarts.
    pub fn stem(&self) -> String {
        match self.restarts {
            0 => self.name.clone(),
            n => format!("{}.{n}", self.name),
        }
    }

    /// Counts a restart and returns its config: the first one, bound to the addresses the first start announced.
    pub fn restart(&mut self) -> Value {
        self.restarts += 1;
        config::pinned(self.role, &self.config, &self.announced)
    }
}

/// `control-plane`, `data-plane` for the first data plane and `data-plane-N` for the others, `worker-N`: the same
/// locally and on a cluster.
pub fn component_name(role: &str, index: usize) -> String {
    match (role, index) {
        ("control-plane", _) | ("data-plane", 0) => role.into(),
        _ => format!("{role}-{index}"),
    }
}

/// The position of role `name` among `records`, or an error listing the names there are.
pub fn position<'a>(records: impl Iterator<Item = &'a RoleRecord> + Clone, name: &str) -> Result<usize, String> {
    records.clone().position(|r| r.name == name).ok_or_else(|| {
        let names: Vec<&str> = records.map(|r| r.name.as_str()).collect();
        format!("no component '{name}' on this platform; there are {}", names.join(", "))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn components_are_named_alike_everywhere() {
        assert_eq!(component_name("control-plane", 0), "control-plane");
        assert_eq!(component_name("data-plane", 0), "data-plane");
        assert_eq!(component_name("data-plane", 2), "data-plane-2");
        assert_eq!(component_name("worker", 0), "worker-0");
    }

    #[test]
    fn restarts_number_their_files_and_keep_the_announced_addresses() {
        let mut record = RoleRecord::new("data-plane".into(), "data-plane", json!({ "proxy_listen": "h:0" }));
        assert_eq!(record.stem(), "data-plane");
        record.announced = json!({ "proxy": "h:4003" });
        assert_eq!(record.restart()["proxy_listen"], "h:4003");
        assert_eq!(record.stem(), "data-plane.1");
        record.restart();
        assert_eq!(record.stem(), "data-plane.2");
        assert_eq!(position([&record].into_iter(), "data-plane"), Ok(0));
        assert!(position([&record].into_iter(), "worker-9").unwrap_err().contains("there are data-plane"));
    }
}
