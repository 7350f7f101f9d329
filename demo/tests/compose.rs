//! docker-compose.yml, checked without Docker or a network: valid against
//! the Compose specification's JSON schema (vendored in
//! `tests/fixtures/compose_spec.json`, see the README there), and saying
//! what docs/compose.md promises: the default stack (one host, embedded
//! store) and profile `cluster` (PostgreSQL and three hosts on one store).
//! When `docker-compose` is installed, its own `config -q` must accept the
//! file too, with and without the profile (and refuse broken copies).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

const SCHEMA: &str = include_str!("fixtures/compose_spec.json");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("demo/ lives in the repository")
        .to_path_buf()
}

/// docker-compose.yml as JSON, YAML merge keys (`<<: *cluster-host`)
/// applied as Compose applies them.
fn compose() -> Value {
    let path = repo().join("docker-compose.yml");
    let text = std::fs::read_to_string(&path).expect("reading docker-compose.yml");
    let mut yaml: serde_norway::Value =
        serde_norway::from_str(&text).expect("docker-compose.yml is YAML");
    yaml.apply_merge().expect("merge keys merge");
    serde_json::to_value(yaml).expect("docker-compose.yml maps to JSON")
}

/// The three hosts of profile `cluster`, with their port on this machine.
const CLUSTER_HOSTS: [(&str, &str); 3] = [
    ("switchyard-1", "8003"),
    ("switchyard-2", "8004"),
    ("switchyard-3", "8005"),
];

/// The names of the services that run with no profile given, sorted.
fn default_services(doc: &Value) -> Vec<&str> {
    doc["services"]
        .as_object()
        .expect("services")
        .iter()
        .filter(|(_, s)| s.get("profiles").is_none())
        .map(|(name, _)| name.as_str())
        .collect()
}

/// Every way `doc` breaks the schema, one line each; empty when valid.
/// Formats (`duration`) are not checked: Compose durations such as `5s` are
/// not the ISO-8601 durations of the JSON-schema format.
fn schema_errors(doc: &Value) -> Vec<String> {
    let schema: Value = serde_json::from_str(SCHEMA).expect("the vendored schema is JSON");
    let validator = jsonschema::validator_for(&schema).expect("the vendored schema compiles");
    validator
        .iter_errors(doc)
        .map(|e| format!("at {:?}: {e}", e.instance_path().as_str()))
        .collect()
}

fn service<'a>(doc: &'a Value, name: &str) -> &'a Value {
    let service = &doc["services"][name];
    assert!(service.is_object(), "no service {name:?}");
    service
}

/// The `published:target` pairs of a service's `ports` ("8001:8001").
fn ports(service: &Value) -> Vec<String> {
    service["ports"]
        .as_array()
        .map(|ports| {
            ports
                .iter()
                .map(|p| p.as_str().expect("ports written as strings").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn is_valid_against_the_compose_schema() {
    let errors = schema_errors(&compose());
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

/// What is wrong with a copy, and how to make it so.
type Breakage = (&'static str, fn(&mut Value));

/// The check above would be worthless if the validator accepted anything.
#[test]
fn the_schema_refuses_broken_copies() {
    let breakages: [Breakage; 6] = [
        ("misspelt healthcheck key", |d| {
            d["services"]["crm"]["healthcheck"]["intervall"] = json!("5s");
        }),
        ("unknown depends_on condition", |d| {
            d["services"]["switchyard"]["depends_on"]["rabbitmq"]["condition"] =
                json!("service_ready");
        }),
        ("ports not a list", |d| {
            d["services"]["crm"]["ports"] = json!("8001:8001");
        }),
        ("unknown top-level key", |d| {
            d["service"] = json!({});
        }),
        ("service name with a space", |d| {
            d["services"]["my crm"] = json!({"image": "x"});
        }),
        ("profiles not a list", |d| {
            d["services"]["postgres"]["profiles"] = json!("cluster");
        }),
    ];
    for (what, breakage) in breakages {
        let mut doc = compose();
        breakage(&mut doc);
        assert!(!schema_errors(&doc).is_empty(), "{what}: accepted");
    }
}

#[test]
fn runs_the_four_services_on_the_documented_ports() {
    let doc = compose();
    let rabbitmq = service(&doc, "rabbitmq");
    assert_eq!(rabbitmq["image"], "rabbitmq:3-management");
    assert_eq!(ports(rabbitmq), ["5672:5672", "15672:15672"]);
    for (name, port) in [
        ("crm", "8001"),
        ("inventory", "8002"),
        ("switchyard", "8003"),
    ] {
        let s = service(&doc, name);
        assert_eq!(ports(s), [format!("{port}:{port}")], "{name}");
        assert_eq!(s["build"], ".", "{name} is built from the repository");
        assert!(
            s["healthcheck"]["test"]
                .to_string()
                .contains(&format!("/{port} ")),
            "{name}"
        );
    }
    assert_eq!(
        rabbitmq["healthcheck"]["test"],
        json!(["CMD", "rabbitmq-diagnostics", "-q", "ping"])
    );
}

#[test]
fn the_upstreams_serve_the_sample_data_baked_into_the_image() {
    let doc = compose();
    for (name, port, file) in [
        ("crm", "8001", "customers.json"),
        ("inventory", "8002", "products.json"),
    ] {
        let s = service(&doc, name);
        assert_eq!(s["entrypoint"], json!(["/app/switchyard-demo"]), "{name}");
        let data = format!("/app/demo/data/{file}");
        assert_eq!(s["command"], json!([name, "--port", port, "--data", data]));
        // The Dockerfile copies demo/data to /app/demo/data.
        assert!(repo().join("demo/data").join(file).is_file(), "{file}");
    }
}

#[test]
fn switchyard_waits_for_healthy_dependencies_and_watches_the_plugins_folder() {
    let doc = compose();
    let switchyard = service(&doc, "switchyard");
    let depends_on = &switchyard["depends_on"];
    for dependency in ["rabbitmq", "crm", "inventory"] {
        assert_eq!(
            depends_on[dependency]["condition"], "service_healthy",
            "{dependency}"
        );
    }
    assert_eq!(
        depends_on["plugins"]["condition"],
        "service_completed_successfully"
    );

    let volumes = switchyard["volumes"].as_array().unwrap();
    assert!(
        volumes.contains(&json!("./plugins:/app/plugins")),
        "{volumes:?}"
    );
    assert!(
        volumes.contains(&json!("switchyard-data:/data")),
        "{volumes:?}"
    );
    assert!(
        doc["volumes"]
            .as_object()
            .unwrap()
            .contains_key("switchyard-data")
    );

    let env = &switchyard["environment"];
    assert_eq!(env["AMQP_URL"], "amqp://guest:guest@rabbitmq:5672/%2f");
    assert_eq!(env["SWITCHYARD_PLUGINS"], "/app/plugins");
    assert_eq!(env["SWITCHYARD_DATA"], "/data");
    assert_eq!(
        env["SWITCHYARD_GRANTS"],
        "crm-producer=http://crm:8001,inventory-producer=http://inventory:8002"
    );
    assert_eq!(
        env["SWITCHYARD_PLUGIN_SETTINGS"],
        "crm-producer.base-url=http://crm:8001,inventory-producer.base-url=http://inventory:8002"
    );

    // The one-shot service that fills ./plugins from the image.
    let plugins = service(&doc, "plugins");
    assert_eq!(plugins["volumes"], json!(["./plugins:/mnt/plugins"]));
}

#[test]
fn the_default_stack_is_one_host_on_the_embedded_store() {
    let doc = compose();
    assert_eq!(
        default_services(&doc),
        ["crm", "inventory", "plugins", "rabbitmq", "switchyard"],
        "without a profile: the four services and the one-shot plugins copy"
    );
    let env = &service(&doc, "switchyard")["environment"];
    assert!(
        env.get("SWITCHYARD_STORE").is_none(),
        "the single host keeps its embedded store: {env}"
    );
    assert!(
        service(&doc, "switchyard")["depends_on"]
            .get("postgres")
            .is_none()
    );
}

#[test]
fn the_cluster_profile_runs_postgres_and_three_hosts_on_one_store() {
    let doc = compose();
    let postgres = service(&doc, "postgres");
    assert_eq!(postgres["image"], "postgres:15");
    assert_eq!(postgres["profiles"], json!(["cluster"]));
    assert!(
        postgres["healthcheck"]["test"]
            .to_string()
            .contains("pg_isready"),
        "{postgres}"
    );
    assert_eq!(ports(postgres), Vec::<String>::new(), "not published");
    let password = postgres["environment"]["POSTGRES_PASSWORD"]
        .as_str()
        .expect("a password");
    assert_eq!(password, "${SWITCHYARD_DB_PASSWORD:-switchyard}");
    assert!(
        postgres["volumes"]
            .to_string()
            .contains("postgres-data:/var/lib/postgresql/data")
    );

    let store = format!(
        "postgres://{}:{password}@postgres:5432/{}",
        postgres["environment"]["POSTGRES_USER"].as_str().unwrap(),
        postgres["environment"]["POSTGRES_DB"].as_str().unwrap()
    );
    let single = service(&doc, "switchyard");
    let mut data_volumes = Vec::new();
    for (name, port) in CLUSTER_HOSTS {
        let host = service(&doc, name);
        assert_eq!(host["profiles"], json!(["cluster"]), "{name}");
        assert_eq!(host["build"], ".", "{name}");
        assert_eq!(host["image"], single["image"], "{name}: the same image");
        assert_eq!(ports(host), [format!("{port}:8003")], "{name}");
        assert_eq!(host["hostname"], name);
        let env = &host["environment"];
        assert_eq!(env["SWITCHYARD_STORE"], store.as_str(), "{name}: one store");
        assert_eq!(env["SWITCHYARD_HOST_ID"], name);
        // Everything else as the single host: broker, plugins, grants.
        for key in [
            "AMQP_URL",
            "SWITCHYARD_PLUGINS",
            "SWITCHYARD_DATA",
            "SWITCHYARD_GRANTS",
            "SWITCHYARD_PLUGIN_SETTINGS",
        ] {
            assert_eq!(env[key], single["environment"][key], "{name}: {key}");
        }
        for dependency in ["rabbitmq", "postgres", "crm", "inventory"] {
            assert_eq!(
                host["depends_on"][dependency]["condition"], "service_healthy",
                "{name} waits for {dependency}"
            );
        }
        assert_eq!(
            host["depends_on"]["plugins"]["condition"],
            "service_completed_successfully"
        );
        assert_eq!(host["healthcheck"], single["healthcheck"], "{name}");
        let volumes = host["volumes"].as_array().unwrap();
        assert!(
            volumes.contains(&json!("./plugins:/app/plugins")),
            "{name} shares ./plugins: {volumes:?}"
        );
        let data = volumes
            .iter()
            .filter_map(Value::as_str)
            .find_map(|v| v.strip_suffix(":/data"))
            .unwrap_or_else(|| panic!("{name}: a /data volume in {volumes:?}"));
        assert!(
            doc["volumes"].as_object().unwrap().contains_key(data),
            "{data}"
        );
        data_volumes.push(data.to_owned());
    }
    data_volumes.sort();
    data_volumes.dedup();
    assert_eq!(data_volumes.len(), 3, "each host its own compile cache");
    assert!(!data_volumes.contains(&"switchyard-data".to_owned()));
}

/// `docker-compose config -q` (Debian's 1.29) when it is installed; the
/// schema test above stands in for it elsewhere.
#[test]
fn docker_compose_accepts_it_when_installed() {
    let installed = Command::new("docker-compose")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !installed {
        eprintln!("docker-compose not installed: only the schema check ran");
        return;
    }
    let check = |file: &Path, profile: &[&str]| {
        Command::new("docker-compose")
            .args(["--project-directory"])
            .arg(repo())
            .arg("-f")
            .arg(file)
            .args(profile)
            .args(["config", "-q"])
            .output()
            .expect("running docker-compose")
    };
    for profile in [&[][..], &["--profile", "cluster"]] {
        let valid = check(&repo().join("docker-compose.yml"), profile);
        assert!(
            valid.status.success(),
            "{profile:?}: {}",
            String::from_utf8_lossy(&valid.stderr)
        );
    }

    let breakages: [Breakage; 2] = [
        ("unknown depends_on condition", |d| {
            d["services"]["switchyard"]["depends_on"]["crm"]["condition"] = json!("service_ready");
        }),
        ("a cluster host on a port that is no number", |d| {
            d["services"]["switchyard-2"]["ports"] = json!(["80x4:8003"]);
        }),
    ];
    for (what, breakage) in breakages {
        let mut broken = compose();
        breakage(&mut broken);
        let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("broken-compose.yml");
        std::fs::write(&path, serde_norway::to_string(&broken).unwrap()).unwrap();
        let refused = check(&path, &["--profile", "cluster"]);
        assert!(
            !refused.status.success(),
            "docker-compose accepted {what} ({path:?})"
        );
    }
}
