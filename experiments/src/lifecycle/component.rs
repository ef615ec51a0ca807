//! One component of a run as the lifecycle remembers it, locally and on a cluster: where it runs, its config, what
//! it announced, and how often it was started, which is what a restart needs.

use serde_json::Value;

use crate::roles::Planned;
use crate::roles::config::ComponentConfig;

/// A component of a run.
#[derive(Debug, Clone)]
pub struct Component {
    /// Its name, role and host.
    pub planned: Planned,
    /// Its config as first generated (`None` until then).
    pub config: Option<ComponentConfig>,
    /// The addresses its first start announced, which a restart binds again.
    pub announced: Value,
    /// How often it was restarted (each start has a config and a log of its own).
    pub restarts: u32,
    /// Whether it was launched at all (a start that failed counts: its process may still run).
    pub launched: bool,
    /// Whether it is down on purpose (a failure injection killed it, or its start failed and said so), so its
    /// absence is no surprise at the stop.
    pub down_on_purpose: bool,
}

impl Component {
    /// A component not started yet.
    pub fn new(planned: Planned, config: Option<ComponentConfig>) -> Self {
        Component { planned, config, announced: Value::Null, restarts: 0, launched: false, down_on_purpose: false }
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.planned.name
    }

    /// The file name stem of its current start: `<name>`, then `<name>.<N>` after N restarts.
    pub fn stem(&self) -> String {
        match self.restarts {
            0 => self.planned.name.clone(),
            n => format!("{}.{n}", self.planned.name),
        }
    }

    /// Counts a restart and returns its config: the first one, bound to the ports the first start announced;
    /// `None` when it was never configured.
    pub fn restart(&mut self) -> Option<ComponentConfig> {
        self.restarts += 1;
        Some(self.config.as_ref()?.pinned(&self.announced))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::roles::Role;
    use contracts::config::DataPlaneConfig;
    use serde_json::json;

    #[test]
    fn restarts_number_their_files_and_keep_the_announced_addresses() {
        let planned = Planned { name: "data-plane".into(), role: Role::DataPlane, host: 0, slot: 0, slots: 1 };
        let config = DataPlaneConfig { proxy_listen: "10.0.0.2:0".parse().unwrap(), ..DataPlaneConfig::default() };
        let mut component = Component::new(planned, Some(ComponentConfig::DataPlane(config)));
        assert_eq!(component.stem(), "data-plane");
        component.announced = json!({ "proxy": "10.0.0.2:4003" });
        let Some(ComponentConfig::DataPlane(again)) = component.restart() else { panic!("a data plane's config") };
        assert_eq!(again.proxy_listen, "10.0.0.2:4003".parse().unwrap());
        assert_eq!(component.stem(), "data-plane.1");
        component.restart();
        assert_eq!(component.stem(), "data-plane.2");
    }
}
