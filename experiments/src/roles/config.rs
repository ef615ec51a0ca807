//! The orchestrator's role configs, generated from the spec's sections: the user's keys, with the addresses the
//! runner decides filled in. They are written as JSON, which every YAML parser (and `dirigent --config`) reads.
//! They stay untyped JSON values here until the role config types have one definition shared with the
//! orchestrator.

use serde_json::{Map, Value, json};

use super::{Planned, Role};
use crate::spec::DirigentSpec;

/// Why a role config cannot be made from the spec.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// "platform.worker.sandbox_ports must be a range like "20000-29999", got {text}".
    #[error("platform.worker.sandbox_ports must be a range like \"20000-29999\", got {text}")]
    SandboxPorts {
        /// What the spec says.
        text: Value,
    },
    /// "platform.worker.sandbox_ports {low}-{high} has fewer ports than the {slots} workers".
    #[error("platform.worker.sandbox_ports {low}-{high} has fewer ports than the {slots} workers")]
    TooFewSandboxPorts {
        /// The range's first port.
        low: u16,
        /// The range's last port.
        high: u16,
        /// The workers that share it.
        slots: u32,
    },
}

/// The orchestrator's default sandbox port range (outside the kernel's ephemeral range).
pub const DEFAULT_SANDBOX_PORTS: (u16, u16) = (20000, 29999);

/// The roles' log filter unless `RUST_LOG` says otherwise: info, without the HTTP/2 and tower chatter.
pub fn role_log_filter() -> String {
    std::env::var("RUST_LOG").unwrap_or_else(|_| "info,h2=warn,tower=warn".into())
}

/// Writes a role config to `path` (as JSON, which `dirigent --config` reads as YAML).
pub fn write(path: &std::path::Path, config: &Value) -> std::io::Result<()> {
    std::fs::write(path, serde_json::to_string_pretty(config).unwrap_or_default() + "\n")
}

/// `section` with `defaults` for keys the user did not set and `forced` keys always overwritten.
fn merge(section: &Value, defaults: Value, forced: Value) -> Value {
    let mut merged: Map<String, Value> = section.as_object().cloned().unwrap_or_default();
    for (key, value) in defaults.as_object().into_iter().flatten() {
        merged.entry(key.clone()).or_insert_with(|| value.clone());
    }
    for (key, value) in forced.as_object().into_iter().flatten() {
        merged.insert(key.clone(), value.clone());
    }
    Value::Object(merged)
}

/// The control plane's config: ephemeral ports on `host` unless the spec fixes them.
pub fn control_plane(spec: &DirigentSpec, host: &str) -> Value {
    merge(
        &spec.control_plane,
        json!({ "grpc_listen": format!("{host}:0"), "http_listen": format!("{host}:0"), "advertise_host": host }),
        json!({}),
    )
}

/// The data plane's config, pointed at the control plane's gRPC address.
pub fn data_plane(spec: &DirigentSpec, host: &str, control_plane_grpc: &str) -> Value {
    merge(
        &spec.data_plane,
        json!({ "proxy_listen": format!("{host}:0"), "grpc_listen": format!("{host}:0"), "advertise_host": host }),
        json!({ "control_plane": control_plane_grpc }),
    )
}

/// The config of component `planned` on a host with address `host`, pointed at the control plane's gRPC address.
pub fn for_component(
    spec: &DirigentSpec,
    planned: &Planned,
    host: &str,
    control_plane_grpc: &str,
) -> Result<Value, ConfigError> {
    Ok(match planned.role {
        Role::ControlPlane => control_plane(spec, host),
        Role::DataPlane => data_plane(spec, host, control_plane_grpc),
        Role::Worker => worker_in_slot(spec, host, control_plane_grpc, &planned.name, planned.slot, planned.slots)?,
        Role::Standalone => standalone(spec, host),
    })
}

/// Worker `index` of the spec's workers on one host: its own slice of the sandbox port range, so workers on one
/// host never collide.
pub fn worker(spec: &DirigentSpec, host: &str, control_plane_grpc: &str, index: u32) -> Result<Value, ConfigError> {
    worker_in_slot(spec, host, control_plane_grpc, &format!("worker-{index}"), index, spec.workers)
}

/// Worker `name` using slice `slot` of `slots` of the sandbox port range (a worker alone on its host: 0 of 1).
pub fn worker_in_slot(
    spec: &DirigentSpec,
    host: &str,
    control_plane_grpc: &str,
    name: &str,
    slot: u32,
    slots: u32,
) -> Result<Value, ConfigError> {
    let (low, high) = sandbox_ports(&spec.worker)?;
    let width = (u32::from(high) - u32::from(low) + 1) / slots.max(1);
    if width == 0 {
        return Err(ConfigError::TooFewSandboxPorts { low, high, slots });
    }
    let first = u32::from(low) + slot * width;
    Ok(merge(
        &spec.worker,
        json!({ "listen": format!("{host}:0"), "name": name, "advertise_host": host, "sandbox_host": host }),
        json!({ "control_plane": control_plane_grpc, "sandbox_ports": format!("{first}-{}", first + width - 1) }),
    ))
}

/// `dirigent standalone`'s config: the three sections with ephemeral ports, and the worker count.
pub fn standalone(spec: &DirigentSpec, host: &str) -> Value {
    let listen = json!({ "listen": format!("{host}:0") });
    json!({
        "workers": spec.workers,
        "control_plane": control_plane(spec, host),
        "data_plane": merge(&spec.data_plane, json!({ "proxy_listen": format!("{host}:0"), "grpc_listen": format!("{host}:0") }), json!({})),
        "worker": merge(&spec.worker, listen, json!({})),
    })
}

/// `config` of a `role` process with the addresses it announced (`{"grpc": ..., "api": ...}`) as its listen
/// addresses, so a restart binds the ports its peers and the loader already know instead of new ephemeral ones.
pub fn pinned(role: Role, config: &Value, announced: &Value) -> Value {
    let keys: &[(&[&str], &str)] = match role {
        Role::ControlPlane => &[(&["grpc_listen"], "grpc"), (&["http_listen"], "api")],
        Role::DataPlane => &[(&["proxy_listen"], "proxy"), (&["grpc_listen"], "grpc")],
        Role::Standalone => &[
            (&["control_plane", "grpc_listen"], "grpc"),
            (&["control_plane", "http_listen"], "api"),
            (&["data_plane", "proxy_listen"], "proxy"),
        ],
        Role::Worker => &[],
    };
    let mut config = config.clone();
    for (path, key) in keys {
        let (Some(address), Some((last, parents))) = (announced.get(*key), path.split_last()) else { continue };
        let section = parents.iter().try_fold(&mut config, |value, part| value.get_mut(*part));
        if let Some(Value::Object(section)) = section {
            section.insert((*last).into(), address.clone());
        }
    }
    config
}

/// The `sandbox_ports` range of a worker section (`"A-B"`), or the default.
fn sandbox_ports(worker: &Value) -> Result<(u16, u16), ConfigError> {
    let Some(text) = worker.get("sandbox_ports") else { return Ok(DEFAULT_SANDBOX_PORTS) };
    let bad = || ConfigError::SandboxPorts { text: text.clone() };
    let (low, high) = text.as_str().and_then(|t| t.split_once('-')).ok_or_else(bad)?;
    let (low, high): (u16, u16) = (low.trim().parse().map_err(|_| bad())?, high.trim().parse().map_err(|_| bad())?);
    if low > high {
        return Err(bad());
    }
    Ok((low, high))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::dirigent_spec as spec;

    #[test]
    fn user_keys_stay_and_addresses_are_filled_in() {
        let d = spec("{ kind: dirigent, control_plane: { placement: random, http_listen: 127.0.0.1:9091 } }");
        let cp = control_plane(&d, "127.0.0.1");
        let expected = json!({ "placement": "random", "http_listen": "127.0.0.1:9091", "grpc_listen": "127.0.0.1:0",
            "advertise_host": "127.0.0.1" });
        assert_eq!(cp, expected);
        let d = spec("{ kind: dirigent, data_plane: { control_plane: 'ignored:1', load_balancing: random } }");
        let dp = data_plane(&d, "127.0.0.1", "127.0.0.1:5000");
        assert_eq!(dp["control_plane"], "127.0.0.1:5000");
        assert_eq!(dp["load_balancing"], "random");
    }

    #[test]
    fn workers_split_the_sandbox_port_range() {
        let d = spec("{ kind: dirigent, workers: 3, worker: { sandbox_ports: 30000-30299, runtime: process } }");
        let ports: Vec<Value> =
            (0..3).map(|i| worker(&d, "127.0.0.1", "cp:1", i).unwrap()["sandbox_ports"].clone()).collect();
        assert_eq!(ports, vec![json!("30000-30099"), json!("30100-30199"), json!("30200-30299")]);
        assert_eq!(worker(&d, "127.0.0.1", "cp:1", 1).unwrap()["name"], "worker-1");
        let d = spec("{ kind: dirigent, workers: 3, worker: { sandbox_ports: 30000-30001 } }");
        assert!(worker(&d, "h", "cp:1", 0).unwrap_err().to_string().contains("sandbox_ports"));
        let d = spec("{ kind: dirigent, worker: { sandbox_ports: lots } }");
        assert!(worker(&d, "h", "cp:1", 0).unwrap_err().to_string().contains("sandbox_ports"));
    }

    #[test]
    fn a_restart_config_binds_the_announced_addresses() {
        let d = spec("{ kind: dirigent, control_plane: { placement: random } }");
        let announced = json!({ "grpc": "10.0.0.1:4001", "api": "10.0.0.1:4002", "proxy": "10.0.0.1:4003" });
        let cp = pinned(Role::ControlPlane, &control_plane(&d, "10.0.0.1"), &announced);
        assert_eq!((&cp["grpc_listen"], &cp["http_listen"]), (&json!("10.0.0.1:4001"), &json!("10.0.0.1:4002")));
        assert_eq!(cp["placement"], "random");
        let dp = pinned(Role::DataPlane, &data_plane(&d, "10.0.0.1", "cp:1"), &json!({ "proxy": "10.0.0.1:4003" }));
        assert_eq!((&dp["proxy_listen"], &dp["grpc_listen"]), (&json!("10.0.0.1:4003"), &json!("10.0.0.1:0")));
        let s = pinned(Role::Standalone, &standalone(&d, "10.0.0.1"), &announced);
        assert_eq!(s["control_plane"]["http_listen"], "10.0.0.1:4002");
        assert_eq!(s["data_plane"]["proxy_listen"], "10.0.0.1:4003");
        let w = worker(&d, "10.0.0.1", "cp:1", 0).unwrap();
        assert_eq!(
            pinned(Role::Worker, &w, &json!({ "name": "worker-0" })),
            w,
            "workers register anew: nothing to pin"
        );
    }

    #[test]
    fn standalone_holds_every_section() {
        let d = spec("{ kind: dirigent, processes: standalone, workers: 4 }");
        let s = standalone(&d, "127.0.0.1");
        assert_eq!(s["workers"], 4);
        assert_eq!(s["worker"]["listen"], "127.0.0.1:0");
        assert_eq!(s["data_plane"]["proxy_listen"], "127.0.0.1:0");
    }
}
