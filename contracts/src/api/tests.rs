use serde_json::json;

use super::*;

#[test]
fn dirigent_form_parses() {
    let body = b"name=trace-f&image=%2Fbin%2Ftrace-function+--x&port_forwarding=80&port_forwarding=tcp\
        &requested_cpu=100&requested_memory=256&scaling_upper_bound=4&scaling_lower_bound=1&cold_start_sweep=false";
    let spec = FunctionSpec::from_form(body).unwrap();
    assert_eq!(spec.name, "trace-f");
    assert_eq!(spec.image, "/bin/trace-function");
    assert_eq!(spec.args, ["--x"]);
    assert_eq!((spec.port, spec.cpu_millis, spec.memory_mib), (80, 100, 256));
    assert_eq!((spec.min_scale, spec.max_scale), (1, 4));
    assert!(!spec.cold_start_sweep);
}

#[test]
fn form_errors_name_the_field() {
    let err = FunctionSpec::from_form(b"image=x").unwrap_err();
    assert_eq!(err.to_string(), "missing field 'name'");
    let err = FunctionSpec::from_form(b"name=f&image=x&requested_cpu=abc").unwrap_err();
    assert_eq!(err.to_string(), "field 'requested_cpu': 'abc' is not a non-negative whole number");
    let err = FunctionSpec::from_form(b"name=f&image=x&scaling_lower_bound=3&scaling_upper_bound=2").unwrap_err();
    assert!(err.to_string().starts_with("field 'min_scale'"), "{err}");
    let err = FunctionSpec::from_form(b"name=F_1&image=x").unwrap_err();
    assert!(err.to_string().starts_with("field 'name'"), "{err}");
    let err = FunctionSpec::from_form(b"name=f&image=x&port_forwarding=99999").unwrap_err();
    assert!(err.to_string().starts_with("field 'port_forwarding'"), "{err}");
}

#[test]
fn a_spec_survives_the_form_and_the_json() {
    let mut spec = FunctionSpec::new("f", "/bin/trace-function");
    spec.args = vec!["--x".into(), "1".into()];
    (spec.port, spec.cpu_millis, spec.memory_mib, spec.min_scale, spec.max_scale) = (8080, 100, 256, 1, 4);
    spec.cold_start_sweep = true;
    assert_eq!(FunctionSpec::from_form(spec.to_form().as_bytes()).unwrap(), spec);
    spec.env.insert("A".into(), "b".into());
    spec.container_concurrency = 3;
    assert_eq!(FunctionSpec::from_json(&serde_json::to_vec(&spec).unwrap()).unwrap(), spec);
}

#[test]
fn json_rejects_unknown_fields_with_location() {
    let err = FunctionSpec::from_json(br#"{"name":"f","image":"x","replicas":3}"#).unwrap_err();
    assert!(err.to_string().contains("unknown field `replicas`"), "{err}");
    let spec = FunctionSpec::from_json(br#"{"name":"f","image":"x","max_scale":2}"#).unwrap();
    assert_eq!((spec.max_scale, spec.container_concurrency), (2, 1));
}

#[test]
fn a_minimal_request_gets_the_defaults_new_has() {
    let spec = FunctionSpec::from_json(br#"{"name":"f","image":"x"}"#).unwrap();
    assert_eq!(spec, FunctionSpec::new("f", "x"));
}

fn view() -> FunctionView {
    let sandbox = Sandbox {
        id: "f-3".into(),
        worker: "w-1".into(),
        address: "127.0.0.1:9".into(),
        creation_micros: 7,
        creation_steps: Vec::new(),
    };
    let status = FunctionStatus { ready: 1, desired: Some(1), sandboxes: vec![sandbox], ..FunctionStatus::default() };
    FunctionView { spec: FunctionSpec::new("f", "x"), status }
}

#[test]
fn a_function_view_is_its_spec_flattened_beside_its_status() {
    let json = serde_json::to_value(view()).unwrap();
    assert_eq!(json["name"], "f");
    assert_eq!(json["max_scale"], 1000);
    assert_eq!(json["status"]["ready"], 1);
    assert_eq!(json["status"]["last_error"], serde_json::Value::Null);
    assert_eq!(json["status"]["sandboxes"][0]["id"], "f-3");
    assert_eq!(json["status"]["counters"]["cold_starts"], 0);
    let list = FunctionList { functions: vec![view()] };
    let text = serde_json::to_string(&list).unwrap();
    assert_eq!(serde_json::from_str::<FunctionList>(&text).unwrap(), list);
    assert!(serde_json::from_str::<FunctionList>("[]").is_err(), "a bare array is not a function list");
    assert!(serde_json::from_str::<FunctionList>("{}").is_err(), "the list is required");
}

#[test]
fn readers_tolerate_fields_they_do_not_know_and_status_fields_an_older_server_lacked() {
    let newer = json!({
        "name": "f", "image": "x", "args": [], "port": 80, "env": {}, "cpu_millis": 0, "memory_mib": 0,
        "min_scale": 0, "max_scale": 1000, "container_concurrency": 1, "cold_start_sweep": false,
        "runtime": "microvm",
        "status": { "ready": 2, "sandboxes": [{ "id": "a", "worker": "w", "address": "x:1", "zone": "eu" }] },
    });
    let view: FunctionView = serde_json::from_value(newer).unwrap();
    assert_eq!(view.spec, FunctionSpec::new("f", "x"));
    assert_eq!((view.status.ready, view.status.creating, view.status.desired), (2, 0, None));
    assert_eq!(view.status.sandboxes[0].creation_micros, 0);

    let health: Health = serde_json::from_str(r#"{"status":"ok","workers":2,"raft_term":3}"#).unwrap();
    assert_eq!((health.workers, health.data_planes), (2, 0));
    let workers: WorkerList = serde_json::from_str(r#"{"workers":[{"name":"w","address":"a:1"}]}"#).unwrap();
    assert_eq!(workers.workers[0].name, "w");
    let planes: DataPlaneList = serde_json::from_str(r#"{"data_planes":[{"name":"d","extra":1}]}"#).unwrap();
    assert_eq!(planes.data_planes.len(), 1);
}

#[test]
fn the_small_bodies_keep_their_shape() {
    let health = Health { status: "ok".into(), functions: 1, workers: 2, data_planes: 3, role: "leader".into() };
    assert_eq!(
        serde_json::to_value(&health).unwrap(),
        json!({ "status": "ok", "functions": 1, "workers": 2, "data_planes": 3, "role": "leader" })
    );
    let older: Health = serde_json::from_value(json!({ "status": "ok", "functions": 1 })).unwrap();
    assert_eq!(older.role, "", "an older control plane's answer still reads");
    assert_eq!(serde_json::to_value(Deleted { deleted: "f".into() }).unwrap(), json!({ "deleted": "f" }));
    assert_eq!(serde_json::to_value(ErrorBody { error: "no".into() }).unwrap(), json!({ "error": "no" }));
    let worker = WorkerView { name: "w".into(), address: "a:1".into(), sandboxes: 1, ..WorkerView::default() };
    assert_eq!(
        serde_json::to_value(WorkerList { workers: vec![worker] }).unwrap(),
        json!({ "workers": [{ "name": "w", "address": "a:1", "sandboxes": 1, "cpu_capacity_millis": 0,
            "cpu_used_millis": 0, "memory_capacity_mib": 0, "memory_used_mib": 0 }] })
    );
    let plane = DataPlaneView { name: "d".into(), proxy_address: "p:80".into(), grpc_address: "g:1".into() };
    assert_eq!(
        serde_json::to_value(DataPlaneList { data_planes: vec![plane] }).unwrap(),
        json!({ "data_planes": [{ "name": "d", "proxy_address": "p:80", "grpc_address": "g:1" }] })
    );
}

#[test]
fn proxy_addresses_are_one_semicolon_separated_line() {
    let addresses = ProxyAddresses(vec!["a:80".into(), "b:80".into()]);
    assert_eq!(addresses.to_string(), "a:80;b:80");
    assert_eq!(ProxyAddresses::parse("a:80;b:80"), addresses);
    assert_eq!(ProxyAddresses::parse(""), ProxyAddresses::default());
    assert_eq!(function_path("f"), "/v1/functions/f");
}

#[test]
fn counts_and_sizes_from_outside_are_bounded() {
    let base = FunctionSpec::new("f", "/bin/f");
    let refused = |spec: FunctionSpec, field: &str| {
        let err = spec.validate().unwrap_err().to_string();
        assert!(err.starts_with(&format!("field '{field}'")), "{err}");
        assert!(err.contains("limit") || err.contains("between"), "{err}");
    };
    // The registration that froze the control plane: it is refused before anything is planned.
    let mut spec = base.clone();
    (spec.min_scale, spec.max_scale) = (4_000_000_000, 4_000_000_000);
    refused(spec, "max_scale");
    let mut spec = base.clone();
    spec.container_concurrency = MAX_CONCURRENCY + 1;
    refused(spec, "container_concurrency");
    let mut spec = base.clone();
    spec.args = vec!["a".into(); MAX_ENTRIES + 1];
    refused(spec, "args");
    let mut spec = base.clone();
    spec.env = (0..=MAX_ENTRIES).map(|i| (format!("K{i}"), String::new())).collect();
    refused(spec, "env");
    let mut spec = base.clone();
    spec.env.insert("K".into(), "v".repeat(MAX_TEXT + 1));
    refused(spec, "env");
    let mut spec = base.clone();
    spec.image = "i".repeat(MAX_TEXT + 1);
    refused(spec, "image");
    let mut spec = base;
    (spec.min_scale, spec.max_scale) = (MAX_SCALE, MAX_SCALE);
    spec.args = vec!["a".repeat(MAX_TEXT); MAX_ENTRIES];
    assert_eq!(spec.validate(), Ok(()));
    // The form is validated the same way.
    let err =
        FunctionSpec::from_form(b"name=f&image=/bin/f&scaling_upper_bound=4000000000&scaling_lower_bound=4000000000")
            .unwrap_err();
    assert!(err.to_string().starts_with("field 'max_scale'"), "{err}");
}
