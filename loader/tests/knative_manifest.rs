//! Every manifest the Knative target generates validates against the real Knative Serving CRD schema
//! (`tests/data/knative-serving-service-crd.yaml`, its `spec.versions[0].schema.openAPIV3Schema`), and manifests the
//! API server would refuse are refused here too, so the check cannot pass vacuously.

use std::path::{Path, PathBuf};

use loader::config::{RunConfig, TargetConfig, Workload};
use loader::target::FunctionDeployment;
use loader::target::knative::{KnativeConfig, check_service_name, manifest};
use serde_json::{Value, json};

fn crd_schema() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/knative-serving-service-crd.yaml");
    let crd: Value = contracts::yaml::load(&path).unwrap();
    assert_eq!(crd["spec"]["group"], "serving.knative.dev");
    assert_eq!(crd["spec"]["versions"][0]["name"], "v1");
    let mut schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone();
    assert!(schema.is_object(), "no openAPIV3Schema in {}", path.display());
    strict(&mut schema);
    schema
}

/// Makes the schema reject unknown fields where the API server's strict field validation (`kubectl apply`'s
/// default, `fieldValidation=Strict`) would: objects with `properties` that do not preserve unknown fields.
fn strict(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            let preserves = map.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
            if map.contains_key("properties") && !preserves && !map.contains_key("additionalProperties") {
                map.insert("additionalProperties".into(), Value::Bool(false));
            }
            map.values_mut().for_each(strict);
        }
        Value::Array(items) => items.iter_mut().for_each(strict),
        _ => {}
    }
}

fn errors(validator: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    validator.iter_errors(instance).map(|e| format!("{} at {}", e, e.instance_path())).collect()
}

/// The deployments a real run makes: the repository's trace through `workload::prepare` with a knative target.
fn trace_deployments(knative: &KnativeConfig) -> Vec<FunctionDeployment> {
    let config = RunConfig {
        trace: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("traces/azure-100"),
        target: TargetConfig::Knative(knative.clone()),
        ..RunConfig::default()
    };
    let workload = loader::workload::prepare(&config).unwrap();
    assert!(!workload.deployments.is_empty());
    workload.deployments
}

fn config_variants() -> Vec<KnativeConfig> {
    let base = KnativeConfig::new("127.0.0.1:8080", "docker.io/example/trace-function:latest");
    let mut h2c = base.clone();
    h2c.http2 = true;
    h2c.namespace = "bench".into();
    h2c.container_port = 9000;
    let mut bounded = base.clone();
    bounded.min_scale = 1;
    bounded.max_scale = 200;
    bounded.initial_scale = 1;
    bounded.annotations.insert("autoscaling.knative.dev/target-burst-capacity".into(), "-1".into());
    bounded.annotations.insert("autoscaling.knative.dev/class".into(), "kpa.autoscaling.knative.dev".into());
    vec![base, h2c, bounded]
}

#[test]
fn every_generated_manifest_validates_against_the_crd_schema() {
    let validator = jsonschema::validator_for(&crd_schema()).unwrap();
    let mut checked = 0;
    for knative in config_variants() {
        let mut deployments = trace_deployments(&knative);
        // A function bringing its own image, as the FunctionDeployment allows.
        deployments[0].image = Some("registry.example.com/other:1".into());
        for deployment in &deployments {
            check_service_name(&deployment.name).unwrap();
            let m = manifest(deployment, &knative, "r1764270000-4242");
            let found = errors(&validator, &m);
            assert!(found.is_empty(), "{}: {found:#?}\n{m:#}", deployment.name);
            assert_eq!(m["spec"]["template"]["spec"]["containerConcurrency"], 1);
            let annotations = &m["spec"]["template"]["metadata"]["annotations"];
            assert_eq!(annotations["autoscaling.knative.dev/min-scale"], knative.min_scale.to_string());
            checked += 1;
        }
    }
    // The synthetic workloads' function names too.
    let mut config = RunConfig {
        workload: Workload::Rps(serde_json::from_value(json!({ "rate": 5.0, "functions": 3 })).unwrap()),
        ..RunConfig::default()
    };
    config.target = TargetConfig::Knative(config_variants().remove(0));
    for deployment in loader::workload::prepare(&config).unwrap().deployments {
        check_service_name(&deployment.name).unwrap();
        let TargetConfig::Knative(knative) = &config.target else { unreachable!() };
        assert!(errors(&validator, &manifest(&deployment, knative, "r1")).is_empty());
        checked += 1;
    }
    assert!(checked > 100, "only {checked} manifests checked");
}

#[test]
fn invalid_manifests_are_rejected() {
    let validator = jsonschema::validator_for(&crd_schema()).unwrap();
    let knative = KnativeConfig::new("127.0.0.1:8080", "docker.io/example/trace-function:latest");
    let function = FunctionDeployment { name: "f-abc".into(), max_scale: 3, ..FunctionDeployment::default() };
    let good = manifest(&function, &knative, "r1");
    assert!(validator.is_valid(&good));

    type Breaker = fn(&mut Value);
    let broken: Vec<(&str, Breaker)> = vec![
        ("containerConcurrency as a string", |m| m["spec"]["template"]["spec"]["containerConcurrency"] = json!("1")),
        ("annotation value as a number", |m| {
            m["spec"]["template"]["metadata"]["annotations"]["autoscaling.knative.dev/target"] = json!(1)
        }),
        ("no containers", |m| {
            m["spec"]["template"]["spec"].as_object_mut().unwrap().remove("containers");
        }),
        ("containerPort as a string", |m| {
            m["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = json!("8080")
        }),
        ("unknown field in the revision spec", |m| m["spec"]["template"]["spec"]["concurrency"] = json!(1)),
        ("image as a list", |m| m["spec"]["template"]["spec"]["containers"][0]["image"] = json!(["a"])),
    ];
    for (what, breaker) in broken {
        let mut bad = good.clone();
        breaker(&mut bad);
        assert!(!validator.is_valid(&bad), "{what} was accepted:\n{bad:#}");
    }
}
