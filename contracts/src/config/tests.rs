use super::*;

/// What `experiments` writes (JSON) `dirigent` must read back as the same config.
fn json_round_trip<T: RoleConfig + Serialize + PartialEq + std::fmt::Debug>(config: &T) {
    let text = serde_json::to_string_pretty(config).unwrap();
    let back: T = yaml::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(&back, config);
}

#[test]
fn the_defaults_are_valid_and_survive_json_written_and_yaml_read() {
    assert_eq!(ControlPlaneConfig::default().validate(), Ok(()));
    assert_eq!(DataPlaneConfig::default().validate(), Ok(()));
    assert_eq!(WorkerConfig::default().validate(), Ok(()));
    assert_eq!(StandaloneConfig::default().validate(), Ok(()));
    json_round_trip(&ControlPlaneConfig::default());
    json_round_trip(&DataPlaneConfig::default());
    json_round_trip(&WorkerConfig::default());
    json_round_trip(&StandaloneConfig::default());
    let named = WorkerConfig {
        name: Some("worker-1".into()),
        cpu_millis: Some(2000),
        sandbox_ports: PortRange { first: 30000, last: 30099 },
        ..WorkerConfig::default()
    };
    json_round_trip(&named);
    json_round_trip(&DataPlaneConfig { proxy_threads: Some(0), drain_timeout: Duration::ZERO, ..Default::default() });
}

#[test]
fn sandbox_addresses_fill_loopback_up_to_its_end() {
    assert_eq!(WorkerConfig::default().sandbox_addresses, 1);
    let config = |host: [u8; 4], n: u32| WorkerConfig {
        sandbox_host: host.into(),
        sandbox_addresses: n,
        runtime: RuntimeKind::Simulated,
        ..Default::default()
    };
    assert_eq!(config([127, 0, 0, 1], 16).validate(), Ok(()));
    assert_eq!(config([127, 255, 255, 254], 2).validate(), Ok(()), "the last address of the /8 is in");
    assert_eq!(config([10, 0, 0, 1], 1).validate(), Ok(()), "one address may be any");
    let parsed: WorkerConfig = yaml::parse("sandbox_addresses: 3\n").unwrap();
    assert_eq!(parsed.sandbox_addresses, 3);
}

#[test]
fn one_set_of_default_ports() {
    assert_eq!(ControlPlaneConfig::default().grpc_listen, any(9090));
    assert_eq!(ControlPlaneConfig::default().http_listen, any(9091));
    assert_eq!(DataPlaneConfig::default().proxy_listen, any(8080));
    assert_eq!(DataPlaneConfig::default().control_plane, "127.0.0.1:9090");
    assert_eq!(WorkerConfig::default().listen, any(10010));
    assert_eq!(WorkerConfig::default().sandbox_ports.to_string(), "20000-29999");
    let standalone = StandaloneConfig::default();
    assert_eq!(standalone.control_plane.grpc_listen, loopback(9090));
    assert_eq!(standalone.data_plane.grpc_listen, loopback(8081));
    assert_eq!(standalone.worker.listen, loopback(10010));
}

#[test]
fn the_yaml_shape_is_strict_with_humantime_durations() {
    let config: ControlPlaneConfig =
        yaml::parse("placement: round-robin\nworker_timeout: 2s\nautoscaler: { tick: 500ms }\n").unwrap();
    assert_eq!(config.placement, PlacementPolicy::RoundRobin);
    assert_eq!(config.worker_timeout, Duration::from_secs(2));
    assert_eq!(config.autoscaler.tick, Duration::from_millis(500));
    let err = yaml::parse::<ControlPlaneConfig>("grpc_listen: 127.0.0.1:1\nplacment: random\n").unwrap_err();
    assert_eq!((err.key(), err.line()), ("placment", Some(2)));
    let err = yaml::parse::<WorkerConfig>("runtime: firecracker\n").unwrap_err();
    assert!(err.to_string().contains("firecracker"), "{err}");
    let err = yaml::parse::<DataPlaneConfig>("load_balancing: LeastInFlight\n").unwrap_err();
    assert_eq!(err.key(), "load_balancing");
}

#[test]
fn validation_names_the_key() {
    let sqlite = |path: &str| StoreConfig::Sqlite(SqliteStoreConfig { path: path.into(), ..Default::default() });
    let redis = |url: &str| StoreConfig::Redis(RedisStoreConfig { url: url.into(), ..Default::default() });
    let loopback = |last: u8| IpAddr::from([127, 255, 255, last]);
    let addresses = |host: IpAddr, n: u32| WorkerConfig {
        sandbox_host: host,
        sandbox_addresses: n,
        runtime: RuntimeKind::Simulated,
        ..Default::default()
    };
    let cases: [(Result<(), InvalidConfig>, &str); 17] = [
        (
            WorkerConfig { sandbox_addresses: 2, ..Default::default() }.validate(),
            "`sandbox_addresses` = 2 with `sandbox_host` 127.0.0.1: only `runtime: simulated`",
        ),
        (
            addresses(loopback(1), 0).validate(),
            "`sandbox_addresses` = 0 with `sandbox_host` 127.255.255.1: sandboxes need",
        ),
        (addresses(IpAddr::from([10, 0, 0, 1]), 2).validate(), "`sandbox_addresses` = 2 with `sandbox_host` 10.0.0.1"),
        (addresses("::1".parse().unwrap(), 2).validate(), "IPv4 loopback"),
        (addresses(loopback(254), 3).validate(), "runs past 127.255.255.255; give at most 2"),
        (ControlPlaneConfig { store: sqlite(""), ..Default::default() }.validate(), "`store`: `path` is empty"),
        (
            ControlPlaneConfig { store: redis("http://127.0.0.1:6379"), ..Default::default() }.validate(),
            "`store`: `url` = \"http://127.0.0.1:6379\" is not a redis:// URL",
        ),
        (ControlPlaneConfig { worker_timeout: Duration::ZERO, ..Default::default() }.validate(), "worker_timeout"),
        (
            ControlPlaneConfig {
                autoscaler: AutoscalerConfig { tick: Duration::ZERO, ..Default::default() },
                ..Default::default()
            }
            .validate(),
            "`autoscaler`: `tick`",
        ),
        (DataPlaneConfig { report_interval: Duration::ZERO, ..Default::default() }.validate(), "report_interval"),
        (DataPlaneConfig { heartbeat_interval: Duration::ZERO, ..Default::default() }.validate(), "heartbeat_interval"),
        (DataPlaneConfig { control_plane: " ".into(), ..Default::default() }.validate(), "control_plane"),
        (
            WorkerConfig { control_plane: "10.0.0.1:9090,,10.0.0.3:9090".into(), ..Default::default() }.validate(),
            "`control_plane` = \"10.0.0.1:9090,,10.0.0.3:9090\" has an empty address",
        ),
        (WorkerConfig { heartbeat_interval: Duration::ZERO, ..Default::default() }.validate(), "heartbeat_interval"),
        (WorkerConfig { ready_timeout: Duration::ZERO, ..Default::default() }.validate(), "ready_timeout"),
        (
            StandaloneConfig {
                worker: WorkerConfig { heartbeat_interval: Duration::ZERO, ..Default::default() },
                ..Default::default()
            }
            .validate(),
            "`worker`: `heartbeat_interval`",
        ),
        (
            StandaloneConfig {
                workers: 3,
                worker: WorkerConfig { sandbox_ports: PortRange { first: 30000, last: 30001 }, ..Default::default() },
                ..Default::default()
            }
            .validate(),
            "`workers` (3) is more than the 2 ports of `worker.sandbox_ports` (30000-30001)",
        ),
    ];
    for (result, key) in cases {
        let err = result.expect_err(key).to_string();
        assert!(err.contains(key), "{err} should name {key}");
    }
}

#[test]
fn the_store_is_picked_by_kind_with_defaults_for_the_rest() {
    assert_eq!(ControlPlaneConfig::default().store, StoreConfig::Sqlite(SqliteStoreConfig::default()));
    let config: ControlPlaneConfig = yaml::parse("store: { kind: sqlite, synchronous: full }\n").unwrap();
    let expected = SqliteStoreConfig { synchronous: Synchronous::Full, ..Default::default() };
    assert_eq!(expected.path, std::path::Path::new("dirigent-registry.sqlite"));
    assert_eq!(config.store, StoreConfig::Sqlite(expected));
    let config: ControlPlaneConfig = yaml::parse("store: { kind: redis, prefix: 'x:' }\n").unwrap();
    let expected = RedisStoreConfig { url: "redis://127.0.0.1:6379/0".into(), prefix: "x:".into() };
    assert_eq!(config.store, StoreConfig::Redis(expected));
    let config: ControlPlaneConfig = yaml::parse("store: { kind: memory }\n").unwrap();
    assert_eq!(config.store, StoreConfig::Memory);
    for store in [StoreConfig::Memory, StoreConfig::Redis(RedisStoreConfig::default())] {
        json_round_trip(&ControlPlaneConfig { store, ..Default::default() });
    }
    let err = yaml::parse::<ControlPlaneConfig>("store: { kind: sqlite, url: redis://x }\n").unwrap_err();
    assert!(err.to_string().contains("url"), "{err}");
    let err = yaml::parse::<ControlPlaneConfig>("store: { kind: etcd }\n").unwrap_err();
    assert!(err.to_string().contains("etcd"), "{err}");
}

#[test]
fn replication_is_absent_by_default_and_needs_the_sqlite_store() {
    assert_eq!(ControlPlaneConfig::default().replication, None);
    let text =
        "replication: { id: 1, peers: { 1: '127.0.0.1:9090', 2: '127.0.0.1:9190' }, heartbeat_interval: 20ms }\n";
    let config: ControlPlaneConfig = yaml::parse(text).unwrap();
    let replication = config.replication.clone().expect("given");
    assert_eq!((replication.id, replication.heartbeat_interval), (1, Duration::from_millis(20)));
    assert_eq!(config.validate(), Ok(()));
    json_round_trip(&config);
    let bad = ReplicationConfig { id: 9, ..replication.clone() };
    let err = ControlPlaneConfig { replication: Some(bad), ..config.clone() }.validate().unwrap_err().to_string();
    assert!(err.starts_with("`replication`: `id` = 9"), "{err}");
    let memory = ControlPlaneConfig { store: StoreConfig::Memory, ..config };
    let err = memory.validate().unwrap_err().to_string();
    assert!(err.contains("`replication` needs `store.kind: sqlite`") && err.contains("memory"), "{err}");
}

#[test]
fn standalone_sections_are_named() {
    let config = StandaloneConfig {
        data_plane: DataPlaneConfig { queue_timeout: Duration::ZERO, ..Default::default() },
        ..Default::default()
    };
    assert_eq!(config.validate().unwrap_err().to_string(), "`data_plane`: `queue_timeout` must be greater than zero");
}

#[test]
fn load_validates_and_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("worker.yaml");
    std::fs::write(&path, "heartbeat_interval: 0s\n").unwrap();
    let err = load::<WorkerConfig>(Some(&path)).unwrap_err().to_string();
    assert!(err.contains("worker.yaml") && err.contains("heartbeat_interval"), "{err}");
    std::fs::write(&path, "heartbeat_interval: 200ms\nsandbox_ports: 21000-21999\n").unwrap();
    let config = load::<WorkerConfig>(Some(&path)).unwrap();
    assert_eq!(config.sandbox_ports, PortRange { first: 21000, last: 21999 });
    assert_eq!(load::<WorkerConfig>(None).unwrap(), WorkerConfig::default());
}
