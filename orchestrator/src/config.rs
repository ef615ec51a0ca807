//! Role configuration files (YAML): the types, defaults and validation are the contracts' (`contracts::config`),
//! one definition for `dirigent`, which reads them, and `experiments`, which writes them; the commented example
//! files in `orchestrator/config/` document every default.

pub use contracts::config::{
    ContainerdConfig, ControlPlaneConfig, DataPlaneConfig, OciRuntime, RoleConfig, StandaloneConfig, WorkerConfig, load,
};
pub use contracts::yaml::ConfigError;

#[cfg(test)]
mod tests {
    use super::*;
    use contracts::yaml::parse as parse_yaml;

    /// The commented example files are the documentation of every default: they must not drift.
    #[test]
    fn example_files_hold_exactly_the_defaults() {
        let standalone: StandaloneConfig = parse_yaml(include_str!("../config/standalone.yaml")).unwrap();
        assert_eq!(standalone, StandaloneConfig::default());
        let listen_all = |port: u16| std::net::SocketAddr::from(([0, 0, 0, 0], port));
        let control_plane: ControlPlaneConfig = parse_yaml(include_str!("../config/control-plane.yaml")).unwrap();
        assert_eq!(control_plane, ControlPlaneConfig::default());
        assert_eq!(control_plane.grpc_listen, listen_all(9090));
        let data_plane: DataPlaneConfig = parse_yaml(include_str!("../config/data-plane.yaml")).unwrap();
        assert_eq!(data_plane, DataPlaneConfig::default());
        let worker: WorkerConfig = parse_yaml(include_str!("../config/worker.yaml")).unwrap();
        assert_eq!(worker, WorkerConfig::default());
    }

    #[test]
    fn errors_name_the_file_and_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp.yaml");
        std::fs::write(&path, "grpc_listen: 127.0.0.1:1\nplacment: random\n").unwrap();
        let err = load::<ControlPlaneConfig>(Some(&path)).unwrap_err().to_string();
        assert!(err.contains("cp.yaml") && err.contains("placment"), "{err}");
        std::fs::write(&path, "autoscaler:\n  tick: soon\n").unwrap();
        let err = load::<ControlPlaneConfig>(Some(&path)).unwrap_err().to_string();
        assert!(err.contains("line 2") || err.contains("2:"), "names the line: {err}");
        let missing = load::<ControlPlaneConfig>(Some(&dir.path().join("absent.yaml"))).unwrap_err().to_string();
        assert!(missing.contains("absent.yaml"), "{missing}");
    }
}
