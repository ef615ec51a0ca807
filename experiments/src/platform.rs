//! The platform of one run, on this machine or on a cluster's hosts: where the loader sends, how a role is killed
//! and restarted for a failure injection, and how it all stops. Events are stamped on the loader's clock, so the
//! analysis places them on the same axis as the invocations.

use std::path::Path;
use std::time::SystemTime;

use serde_json::{Value, json};

use crate::dirigent::{LocalDirigent, StopReport};
use crate::remote::cluster::RemoteCluster;
use crate::remote::dirigent::RemoteDirigent;
use crate::ssh::inventory::Role;

/// A started platform.
#[derive(Debug)]
pub enum Platform<'a> {
    /// Roles as child processes of this machine.
    Local(LocalDirigent),
    /// Roles on the cluster's hosts.
    Remote(RemoteDirigent, &'a RemoteCluster),
    /// A platform the runner neither starts nor stops (Knative, Lambda, any HTTP or gRPC endpoint).
    External,
}

impl Platform<'_> {
    /// The control plane's HTTP API (`address:port`).
    pub fn api(&self) -> &str {
        match self {
            Platform::Local(local) => &local.api,
            Platform::Remote(remote, _) => &remote.api,
            Platform::External => "",
        }
    }

    /// The data plane's proxy (`address:port`).
    pub fn proxy(&self) -> &str {
        match self {
            Platform::Local(local) => &local.proxy,
            Platform::Remote(remote, _) => &remote.proxy,
            Platform::External => "",
        }
    }

    /// Kills component `name` with SIGKILL; returns the event for the manifest.
    pub async fn kill(&mut self, name: &str) -> Result<Value, String> {
        let (host, unix_us) = match self {
            Platform::Local(local) => {
                local.kill(name)?;
                ("localhost".to_owned(), now_us())
            }
            Platform::Remote(remote, cluster) => {
                let (index, at_ns) = remote.kill(cluster, name).await?;
                // The host's clock, moved onto the runner's, then onto the loader's.
                let runner_us = at_ns / 1000 - i128::from(cluster.reports[index].clock_offset_us);
                (cluster.name(index), runner_us + loader_offset(cluster))
            }
            Platform::External => return Err(format!("cannot kill {name}: the runner did not start this platform")),
        };
        Ok(event("kill", name, &host, unix_us, Some("SIGKILL")))
    }

    /// Starts component `name` again; returns the event for the manifest (stamped when it was ready).
    pub async fn restart(&mut self, name: &str) -> Result<Value, String> {
        let host = match self {
            Platform::Local(local) => local.restart(name).await.map(|()| "localhost".to_owned())?,
            Platform::Remote(remote, cluster) => cluster.name(remote.restart(cluster, name).await?),
            Platform::External => return Err(format!("cannot restart {name}: the runner did not start this platform")),
        };
        let offset = match self {
            Platform::Local(_) | Platform::External => 0,
            Platform::Remote(_, cluster) => loader_offset(cluster),
        };
        Ok(event("restart", name, &host, now_us() + offset, None))
    }

    /// Stops every role and looks for survivors; on a cluster also fetches the roles' logs into `platform_dir` and
    /// removes the run's folders from the hosts.
    pub async fn stop(&mut self, platform_dir: &Path, run_id: &str) -> StopReport {
        match self {
            Platform::Local(local) => local.stop().await,
            Platform::Remote(remote, cluster) => {
                let mut report = remote.stop(cluster).await;
                report.errors.extend(remote.collect_logs(cluster, platform_dir).await);
                report.errors.extend(RemoteDirigent::remove_run(cluster, run_id).await);
                report
            }
            Platform::External => StopReport::default(),
        }
    }
}

/// A manifest event (the shape `analysis` reads).
fn event(kind: &str, component: &str, host: &str, unix_us: i128, detail: Option<&str>) -> Value {
    let role = component.trim_end_matches(|c: char| c.is_ascii_digit() || c == '-');
    let unix_us = i64::try_from(unix_us).unwrap_or_default();
    json!({ "kind": kind, "component": component, "role": role, "host": host, "unixUs": unix_us, "detail": detail })
}

fn now_us() -> i128 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_micros() as i128)
}

/// The loader host's clock minus the runner's, µs.
fn loader_offset(cluster: &RemoteCluster) -> i128 {
    cluster.with_role(Role::Loader).first().map_or(0, |&i| i128::from(cluster.reports[i].clock_offset_us))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_name_the_role_and_carry_the_time() {
        let kill = event("kill", "worker-12", "root@10.0.0.4:22", 1_700_000_000_000_000, Some("SIGKILL"));
        assert_eq!(kill["role"], "worker");
        assert_eq!(kill["unixUs"], 1_700_000_000_000_000_i64);
        assert_eq!(event("restart", "data-plane", "h", 1, None)["role"], "data-plane");
        assert!(event("restart", "data-plane", "h", 1, None)["detail"].is_null());
    }
}
