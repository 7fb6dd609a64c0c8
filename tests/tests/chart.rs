//! The Helm chart (charts/runnel-operator), rendered and linted by Helm's own engine (the Go
//! SDK, through tests/k8s/render_chart.py): what it installs by default and with watched
//! namespaces, that it lints clean in strict mode, that its CRD is the generated one, and
//! that the real operator started with the environment the chart gives it reconciles the
//! namespaces the chart granted and no other.

#![allow(clippy::unwrap_used)]

use std::{process::Command, time::Duration};

use runnel_tests::{
    Proc, bin,
    k8s::{Emulator, until},
    workspace_root,
};
use serde::Deserialize;
use serde_json::{Value, json};

struct Rendered {
    /// Every object the templates produce, in file order.
    objects: Vec<Value>,
    crds: Value,
    lint: Value,
}

impl Rendered {
    fn of_kind(&self, kind: &str) -> Vec<&Value> {
        self.objects.iter().filter(|o| o["kind"] == kind).collect()
    }

    fn one(&self, kind: &str) -> &Value {
        let all = self.of_kind(kind);
        assert_eq!(all.len(), 1, "one {kind} expected, got {all:?}");
        all[0]
    }

    fn kinds(&self) -> Vec<&str> {
        let mut k: Vec<&str> = self
            .objects
            .iter()
            .map(|o| o["kind"].as_str().unwrap())
            .collect();
        k.sort();
        k
    }

    /// The operator container's env as name -> value (fieldRefs as "fieldRef:<path>").
    fn env(&self) -> Vec<(String, String)> {
        let c = &self.one("Deployment")["spec"]["template"]["spec"]["containers"][0];
        c["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let v = match e["value"].as_str() {
                    Some(v) => v.to_string(),
                    None => format!(
                        "fieldRef:{}",
                        e["valueFrom"]["fieldRef"]["fieldPath"].as_str().unwrap()
                    ),
                };
                (e["name"].as_str().unwrap().to_string(), v)
            })
            .collect()
    }

    fn env_var(&self, name: &str) -> String {
        self.env()
            .into_iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no {name} in {:?}", self.env()))
            .1
    }
}

fn render(values: Value) -> Rendered {
    let out = Command::new("python3")
        .arg(workspace_root().join("tests/k8s/render_chart.py"))
        .arg(workspace_root().join("charts/runnel-operator"))
        .args(["runnel", "runnel-system"])
        .arg(values.to_string())
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "rendering the chart failed (scripts/test-deps installs helm-python-sdk): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut objects = Vec::new();
    let mut files: Vec<(&String, &Value)> = doc["manifests"].as_object().unwrap().iter().collect();
    files.sort_by_key(|(name, _)| name.as_str());
    for (name, text) in files {
        for d in serde_yaml::Deserializer::from_str(text.as_str().unwrap()) {
            let v = Value::deserialize(d).unwrap_or_else(|e| panic!("{name} is not YAML: {e}"));
            if !v.is_null() {
                objects.push(v);
            }
        }
    }
    Rendered {
        objects,
        crds: doc["crds"].clone(),
        lint: doc["lint"].clone(),
    }
}

/// What the operator calls, as RBAC rules: read Connectors and patch their status, apply the
/// ConfigMaps and Deployments it owns, publish Events. Nothing on Secrets, nothing deleted.
fn expected_rules() -> Value {
    json!([
        {"apiGroups": ["runnel.dev"], "resources": ["connectors"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["runnel.dev"], "resources": ["connectors/status"], "verbs": ["get", "patch"]},
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch", "create", "patch"]},
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list", "watch", "create", "patch"]},
        {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
    ])
}

#[test]
fn by_default_the_chart_installs_a_hardened_operator_with_cluster_wide_rbac() {
    let r = render(json!({}));
    assert_eq!(
        r.kinds(),
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment",
            "ServiceAccount"
        ]
    );
    let d = r.one("Deployment");
    assert_eq!(d["metadata"]["namespace"], "runnel-system");
    assert_eq!(d["spec"]["replicas"], 1);
    let pod = &d["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "runnel");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let c = &pod["containers"][0];
    let chart: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(workspace_root().join("charts/runnel-operator/Chart.yaml"))
            .unwrap(),
    )
    .unwrap();
    let app_version = chart["appVersion"].as_str().unwrap();
    assert_eq!(
        c["image"],
        format!("ghcr.io/runnel-dev/runnel-operator:{app_version}")
    );
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(c["securityContext"]["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(c["resources"]["limits"]["memory"], "128Mi");
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(c[probe]["httpGet"]["path"], "/healthz", "{probe}");
        assert_eq!(c[probe]["httpGet"]["port"], "http", "{probe}");
    }
    // The port the probes reach is the one the operator listens on unless told otherwise.
    let help = Command::new(bin("runnel-operator"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    let port = c["ports"][0]["containerPort"].as_u64().unwrap();
    assert_eq!(c["ports"][0]["name"], "http");
    assert!(
        help.contains(&format!("[default: 0.0.0.0:{port}]")),
        "the operator's default address is not port {port}:\n{help}"
    );
    assert_eq!(r.env_var("RUNNEL_WATCH_NAMESPACES"), "");
    assert_eq!(r.env_var("RUNNEL_HUB"), "");
    assert_eq!(r.env_var("RUNNEL_CONNECTOR_REGISTRY"), "ghcr.io/runnel-dev");
    assert_eq!(r.env_var("POD_NAME"), "fieldRef:metadata.name");

    assert_eq!(r.one("ClusterRole")["rules"], expected_rules());
    let binding = r.one("ClusterRoleBinding");
    assert_eq!(binding["roleRef"]["name"], "runnel");
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": "runnel", "namespace": "runnel-system"}])
    );
    assert_eq!(
        r.one("ServiceAccount")["metadata"]["namespace"],
        "runnel-system"
    );
}

#[test]
fn watched_namespaces_get_a_role_each_and_nothing_cluster_wide() {
    let r = render(json!({
        "watchNamespaces": ["team-a", "team-b"],
        "hubUrl": "kafka://kafka.data:9092",
        "image": {"tag": "9.9.9"},
        "connectorRegistry": "registry.example/runnel",
    }));
    assert_eq!(
        r.kinds(),
        [
            "Deployment",
            "Role",
            "Role",
            "RoleBinding",
            "RoleBinding",
            "ServiceAccount"
        ]
    );
    for (role, ns) in r.of_kind("Role").into_iter().zip(["team-a", "team-b"]) {
        assert_eq!(role["metadata"]["namespace"], ns);
        assert_eq!(role["rules"], expected_rules());
    }
    for (b, ns) in r
        .of_kind("RoleBinding")
        .into_iter()
        .zip(["team-a", "team-b"])
    {
        assert_eq!(b["metadata"]["namespace"], ns);
        assert_eq!(
            b["roleRef"],
            json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "runnel"})
        );
        // The service account lives where the operator runs, not where it watches.
        assert_eq!(b["subjects"][0]["namespace"], "runnel-system");
    }
    assert_eq!(r.env_var("RUNNEL_WATCH_NAMESPACES"), "team-a,team-b");
    assert_eq!(r.env_var("RUNNEL_HUB"), "kafka://kafka.data:9092");
    assert_eq!(
        r.env_var("RUNNEL_CONNECTOR_REGISTRY"),
        "registry.example/runnel"
    );
    let c = &r.one("Deployment")["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["image"], "ghcr.io/runnel-dev/runnel-operator:9.9.9");
}

#[test]
fn the_chart_lints_clean_and_ships_the_generated_crd() {
    let r = render(json!({"watchNamespaces": ["team-a"]}));
    assert_eq!(r.lint["errors"], json!([]), "{}", r.lint);
    let worse_than_info: Vec<&Value> = r.lint["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["severity"].as_u64().unwrap() > 1)
        .collect();
    assert!(worse_than_info.is_empty(), "{worse_than_info:?}");
    let generated = std::fs::read_to_string(workspace_root().join("crds/connector.yaml")).unwrap();
    assert_eq!(r.crds["crds/connector.yaml"], generated.as_str());
}

#[test]
fn the_operator_run_as_the_chart_configures_it_reconciles_only_the_watched_namespace() {
    let r = render(json!({
        "watchNamespaces": ["team-a"],
        "connectorRegistry": "registry.example/runnel",
        "hubUrl": "nats://nats.data:4222",
    }));
    let k = Emulator::start();
    k.kubectl(&["apply", "-f", "crds/connector.yaml"]);
    let dir = tempfile::tempdir().unwrap();
    // The chart's env, but for the address: its port is a container's own, and the
    // emulator's command picks a free one here.
    let mut cmd = k.operator_command();
    for (name, value) in r.env() {
        let value = match value.strip_prefix("fieldRef:") {
            Some("metadata.name") => "runnel-7d9f-abcde".to_string(),
            Some(other) => panic!("unexpected fieldRef {other}"),
            None => value,
        };
        if name != "RUNNEL_OPERATOR_ADDR" {
            cmd.env(name, value);
        }
    }
    let op = Proc::spawn(cmd, dir.path().join("operator.log"));
    until(&op, "the operator to start", || {
        op.output().contains("runnel-operator started")
    });
    for ns in ["team-a", "team-b"] {
        let manifest = dir.path().join(format!("{ns}.yaml"));
        std::fs::write(
            &manifest,
            format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n"),
        )
        .unwrap();
        k.kubectl(&["apply", "-f", manifest.to_str().unwrap()]);
        k.kubectl(&[
            "apply",
            "--validate=false",
            "-n",
            ns,
            "-f",
            "examples/kubernetes/connector.yaml",
        ]);
    }
    let mut image = None;
    until(&op, "the Deployment in team-a", || {
        let (ok, out, _) = k.try_kubectl(&[
            "get",
            "deployment",
            "runnel-cat-facts",
            "-n",
            "team-a",
            "-o",
            "json",
        ]);
        if ok {
            let d: Value = serde_json::from_str(&out).unwrap();
            image = Some(d["spec"]["template"]["spec"]["containers"][0].clone());
        }
        ok
    });
    let c = image.unwrap();
    assert!(
        c["image"]
            .as_str()
            .unwrap()
            .starts_with("registry.example/runnel/runnel-http-source:"),
        "{c}"
    );
    let hub = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "RUNNEL_HUB")
        .unwrap()
        .clone();
    assert_eq!(hub["value"], "nats://nats.data:4222");
    // team-b is not watched: its Connector is left alone (two seconds more, to be sure the
    // operator had every chance).
    std::thread::sleep(Duration::from_secs(2));
    let (ok, _, _) = k.try_kubectl(&["get", "deployment", "runnel-cat-facts", "-n", "team-b"]);
    assert!(
        !ok,
        "a Deployment appeared in the unwatched namespace team-b"
    );
    let (ok, _, _) = k.try_kubectl(&["get", "configmap", "runnel-cat-facts", "-n", "team-b"]);
    assert!(
        !ok,
        "a ConfigMap appeared in the unwatched namespace team-b"
    );
}
