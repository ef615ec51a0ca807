//! The OCI runtime spec of a sandbox container: the image's command with the sandbox's environment, its own
//! network namespace, and the function's CPU and memory requests as cgroup limits.

use std::path::Path;

use serde_json::{Value, json};

use super::image::ImageConfig;
use crate::worker::runtime::SandboxSpec;

/// The CFS period the CPU quota is a share of, µs.
const CPU_PERIOD_US: u64 = 100_000;

/// What the container runs: the image's entry point followed by the spec's arguments, or by the image's
/// command when the spec has none (as `docker run IMAGE ARGS` does).
pub fn command(image: &ImageConfig, spec: &SandboxSpec) -> Vec<String> {
    let tail = if spec.args.is_empty() { &image.cmd } else { &spec.args };
    image.entrypoint.iter().chain(tail).cloned().collect()
}

/// The runtime spec (JSON) of `spec`'s container, listening on `port` in the namespace at `netns`.
pub fn runtime_spec(image: &ImageConfig, spec: &SandboxSpec, port: u16, netns: &Path, cgroup_parent: &str) -> Value {
    let mut env: Vec<String> = image.env.clone();
    env.extend([
        "HOST=0.0.0.0".to_owned(),
        format!("PORT={port}"),
        format!("FUNCTION_NAME={}", spec.function),
        format!("SANDBOX_ID={}", spec.id),
    ]);
    env.extend(spec.env.iter().map(|(name, value)| format!("{name}={value}")));
    let cwd = if image.working_dir.is_empty() { "/" } else { &image.working_dir };
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": { "uid": 0, "gid": 0 },
            "args": command(image, spec),
            "env": env,
            "cwd": cwd,
            "capabilities": capabilities(),
            "noNewPrivileges": true,
        },
        "root": { "path": "rootfs", "readonly": false },
        "hostname": hostname(&spec.id),
        "mounts": mounts(),
        "linux": {
            "resources": resources(spec),
            "cgroupsPath": format!("/{cgroup_parent}/{}", spec.id),
            "namespaces": [
                { "type": "pid" }, { "type": "ipc" }, { "type": "uts" }, { "type": "mount" },
                { "type": "network", "path": netns },
            ],
            "maskedPaths": [
                "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
                "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
            ],
            "readonlyPaths": [
                "/proc/asound", "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
            ],
        },
    })
}

/// CPU quota from `cpu_millis` (1000 = one core) and a memory limit from `memory_mib`; 0 asks for no limit.
fn resources(spec: &SandboxSpec) -> Value {
    let mut resources = json!({ "devices": [{ "allow": false, "access": "rwm" }] });
    if spec.cpu_millis > 0 {
        let quota = spec.cpu_millis.saturating_mul(CPU_PERIOD_US) / 1000;
        resources["cpu"] = json!({ "quota": quota.max(1000), "period": CPU_PERIOD_US });
    }
    if spec.memory_mib > 0 {
        resources["memory"] = json!({ "limit": spec.memory_mib.saturating_mul(1 << 20) });
    }
    resources
}

/// A host name is at most 64 bytes; sandbox ids may be longer.
fn hostname(id: &str) -> String {
    id.chars().take(63).collect()
}

/// The capabilities Docker grants by default, no more.
fn capabilities() -> Value {
    let caps = [
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FSETID",
        "CAP_FOWNER",
        "CAP_NET_RAW",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETFCAP",
        "CAP_SETPCAP",
        "CAP_NET_BIND_SERVICE",
        "CAP_SYS_CHROOT",
        "CAP_KILL",
        "CAP_AUDIT_WRITE",
    ];
    json!({ "bounding": caps, "effective": caps, "permitted": caps })
}

fn mounts() -> Value {
    json!([
        { "destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"] },
        { "destination": "/dev", "type": "tmpfs", "source": "tmpfs",
          "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] },
        { "destination": "/dev/pts", "type": "devpts", "source": "devpts",
          "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"] },
        { "destination": "/dev/shm", "type": "tmpfs", "source": "shm",
          "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"] },
        { "destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"] },
        { "destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=1777"] },
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::contract;

    fn image() -> ImageConfig {
        ImageConfig {
            chain_id: "sha256:abc".into(),
            entrypoint: vec![],
            cmd: vec!["/trace-function".into()],
            env: vec!["PATH=/".into()],
            working_dir: String::new(),
        }
    }

    #[test]
    fn arguments_replace_the_images_command_and_keep_its_entry_point() {
        let spec = contract::spec("s", "i", &[]);
        assert_eq!(command(&image(), &spec), ["/trace-function"]);
        let spec = contract::spec("s", "i", &["/bin/sleep", "5"]);
        assert_eq!(command(&image(), &spec), ["/bin/sleep", "5"]);
        let with_entry = ImageConfig { entrypoint: vec!["/init".into()], ..image() };
        assert_eq!(command(&with_entry, &spec), ["/init", "/bin/sleep", "5"]);
    }

    #[test]
    fn requests_become_cgroup_limits_and_the_namespace_is_the_sandboxs() {
        let mut spec = contract::spec("s-1", "i", &[]);
        spec.cpu_millis = 250;
        spec.memory_mib = 128;
        spec.env.insert("EXTRA".into(), "1".into());
        let value = runtime_spec(&image(), &spec, 8080, Path::new("/run/netns/x"), "dirigent");
        assert_eq!(value["linux"]["resources"]["cpu"]["quota"], 25_000);
        assert_eq!(value["linux"]["resources"]["cpu"]["period"], 100_000);
        assert_eq!(value["linux"]["resources"]["memory"]["limit"], 128u64 << 20);
        assert_eq!(value["linux"]["namespaces"][4]["path"], "/run/netns/x");
        assert_eq!(value["linux"]["cgroupsPath"], "/dirigent/s-1");
        let env: Vec<&str> = value["process"]["env"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
        assert!(env.contains(&"PORT=8080") && env.contains(&"SANDBOX_ID=s-1") && env.contains(&"EXTRA=1"), "{env:?}");
        let unlimited = runtime_spec(&image(), &contract::spec("s", "i", &[]), 8080, Path::new("/n"), "d");
        assert!(
            unlimited["linux"]["resources"].get("cpu").is_none()
                && unlimited["linux"]["resources"].get("memory").is_none()
        );
    }
}
