//! The real `runnel-operator`, `kubectl` and `runnel` against the Kubernetes API emulator
//! (tests/k8s/emulator.py): a Connector applied with kubectl becomes a ConfigMap and a
//! Deployment; a ready Deployment makes it Running in `runnel connector list` and
//! `kubectl get conn`; a spec change reaches the Deployment; stopped scales it to zero;
//! deleting it deletes what it owns; SIGTERM stops the operator cleanly.

#![allow(clippy::unwrap_used)]

use std::{process::Command, time::Duration};

use runnel_tests::{
    Proc, bin,
    k8s::{Emulator, until},
    workspace_root,
};
use serde_json::Value;

fn json(k: &Emulator, args: &[&str]) -> Option<Value> {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    let (ok, out, _) = k.try_kubectl(&all);
    ok.then(|| serde_json::from_str(&out).unwrap())
}

fn runnel_list(k: &Emulator) -> String {
    let out = Command::new(bin("runnel"))
        .env_remove("KUBECONFIG")
        .args(["connector", "list", "--kubeconfig"])
        .arg(&k.kubeconfig)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn row<'a>(table: &'a str, name: &str) -> &'a str {
    table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no row {name} in:\n{table}"))
}

#[test]
fn operator_reconciles_connectors_through_the_api() {
    let k = Emulator::start();
    k.kubectl(&["apply", "-f", "crds/connector.yaml"]);

    let dir = tempfile::tempdir().unwrap();
    let mut cmd = k.operator_command();
    cmd.env("RUNNEL_CONNECTOR_REGISTRY", "registry.test/runnel")
        .env("RUNNEL_HUB", "nats://nats.runnel:4222")
        .env("RUST_LOG", "info,kube=warn");
    let mut op = Proc::spawn(cmd, dir.path().join("operator.log"));
    until(&op, "the operator to start", || {
        op.output().contains("runnel-operator started")
    });
    // /healthz and /metrics on the address it logged.
    let log = op.output();
    let addr = log
        .split("addr=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap()
        .to_string();
    let get = |path: &str| {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        use std::io::{Read, Write};
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    assert!(get("/healthz").starts_with("HTTP/1.1 200"));

    // kubectl apply of the example manifest (the emulator has no OpenAPI to validate with).
    k.kubectl(&[
        "apply",
        "--validate=false",
        "-f",
        "examples/kubernetes/connector.yaml",
    ]);
    let mut cm = None;
    until(&op, "the ConfigMap", || {
        cm = json(&k, &["get", "configmap", "runnel-cat-facts"]);
        cm.is_some()
    });
    let yml = cm.unwrap()["data"]["connect.yml"]
        .as_str()
        .unwrap()
        .to_string();
    let parsed: serde_yaml::Value = serde_yaml::from_str(&yml).unwrap();
    assert_eq!(parsed["meta"]["type"], "http-source");
    assert_eq!(parsed["meta"]["topic"], "cat-facts");
    assert_eq!(parsed["http"]["endpoint"], "https://catfact.ninja/fact");
    assert_eq!(parsed["http"]["interval"], "10s");

    let mut deploy = None;
    until(&op, "the Deployment", || {
        deploy = json(&k, &["get", "deployment", "runnel-cat-facts"]);
        deploy.is_some()
    });
    let d = deploy.unwrap();
    assert_eq!(d["spec"]["replicas"], 1);
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["image"], "registry.test/runnel/runnel-http-source:0.1.0");
    assert_eq!(
        c["args"],
        serde_json::json!(["--config", "/etc/runnel/connect.yml"])
    );
    let env = c["env"].as_array().unwrap();
    let hub = env.iter().find(|e| e["name"] == "RUNNEL_HUB").unwrap();
    assert_eq!(hub["value"], "nats://nats.runnel:4222");
    let token = env.iter().find(|e| e["name"] == "CAT_TOKEN").unwrap();
    assert_eq!(token["valueFrom"]["secretKeyRef"]["name"], "cat-facts");
    assert_eq!(c["securityContext"]["runAsNonRoot"], true);
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(c["securityContext"]["capabilities"]["drop"][0], "ALL");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(d["metadata"]["ownerReferences"][0]["kind"], "Connector");
    let managers: Vec<String> = d["metadata"]["managedFields"]
        .as_array()
        .map(|m| m.iter().map(|f| f["manager"].to_string()).collect())
        .unwrap_or_default();
    assert!(
        managers.is_empty() || managers.iter().any(|m| m.contains("runnel-operator")),
        "{managers:?}"
    );
    until(&op, "status Pending", || {
        row(&runnel_list(&k), "cat-facts").contains("Pending")
    });

    // The Deployment becomes ready (no kubelet here: its status is set by hand).
    k.kubectl(&[
        "patch",
        "deployment",
        "runnel-cat-facts",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"replicas":1,"readyReplicas":1,"availableReplicas":1}}"#,
    ]);
    until(&op, "STATUS Running in runnel connector list", || {
        row(&runnel_list(&k), "cat-facts").contains("Running")
    });
    let table = runnel_list(&k);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "TYPE", "VERSION", "TOPIC", "STATUS", "AGE"]
    );
    let r: Vec<&str> = row(&table, "cat-facts").split_whitespace().collect();
    assert_eq!(
        &r[..5],
        [
            "cat-facts",
            "http-source",
            "<default>",
            "cat-facts",
            "Running"
        ]
    );
    let kget = k.kubectl(&["get", "conn"]);
    assert!(row(&kget, "cat-facts").contains("Running"), "{kget}");
    assert!(kget.contains("STATUS"), "{kget}");

    // A spec change reaches the ConfigMap and rolls the pod template.
    let hash = |d: &Value| {
        d["spec"]["template"]["metadata"]["annotations"]["runnel.dev/config-hash"].clone()
    };
    let before = hash(&d);
    k.kubectl(&[
        "patch",
        "connector",
        "cat-facts",
        "--type=merge",
        "-p",
        r#"{"spec":{"config":{"interval":"30s"}}}"#,
    ]);
    until(&op, "the new interval in the ConfigMap", || {
        json(&k, &["get", "configmap", "runnel-cat-facts"]).is_some_and(|cm| {
            cm["data"]["connect.yml"]
                .as_str()
                .unwrap_or_default()
                .contains("interval: 30s")
        })
    });
    until(&op, "the Deployment to follow", || {
        json(&k, &["get", "deployment", "runnel-cat-facts"]).is_some_and(|d| hash(&d) != before)
    });

    // Stopped: zero replicas, and the status says so.
    k.kubectl(&[
        "patch",
        "connector",
        "cat-facts",
        "--type=merge",
        "-p",
        r#"{"spec":{"state":"stopped"}}"#,
    ]);
    until(&op, "zero replicas", || {
        json(&k, &["get", "deployment", "runnel-cat-facts"])
            .is_some_and(|d| d["spec"]["replicas"] == 0)
    });
    k.kubectl(&[
        "patch",
        "deployment",
        "runnel-cat-facts",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"replicas":0,"readyReplicas":0,"availableReplicas":0}}"#,
    ]);
    until(&op, "STATUS Stopped", || {
        row(&runnel_list(&k), "cat-facts").contains("Stopped")
    });

    // An invalid spec: Failed with the reason, nothing crashes.
    k.kubectl(&[
        "patch",
        "connector",
        "cat-facts",
        "--type=merge",
        "-p",
        r#"{"spec":{"type":"ftp-source"}}"#,
    ]);
    until(&op, "phase Failed with the reason", || {
        json(&k, &["get", "connector", "cat-facts"]).is_some_and(|c| {
            c["status"]["phase"] == "Failed"
                && c["status"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("unknown connector type \"ftp-source\"")
        })
    });

    // A misspelt field of the connector's own section: the operator checks it with the
    // connector's own rules (as --check would) and renders nothing.
    let bad = dir.path().join("misspelt.yaml");
    std::fs::write(
        &bad,
        "apiVersion: runnel.dev/v1alpha1\nkind: Connector\nmetadata:\n  name: misspelt\nspec:\n  type: http-sink\n  topic: orders\n  config:\n    endpiont: https://example.test/hook\n    concurrency: 4\n",
    )
    .unwrap();
    k.kubectl(&["apply", "--validate=false", "-f", bad.to_str().unwrap()]);
    until(
        &op,
        "the misspelt Connector to be Failed with the path",
        || {
            json(&k, &["get", "connector", "misspelt"]).is_some_and(|c| {
            c["status"]["phase"] == "Failed"
                && c["status"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .starts_with("invalid spec: spec.config.endpiont: unknown field, expected one of endpoint")
        })
        },
    );
    assert!(json(&k, &["get", "deployment", "runnel-misspelt"]).is_none());
    assert!(json(&k, &["get", "configmap", "runnel-misspelt"]).is_none());
    k.kubectl(&["delete", "connector", "misspelt"]);

    // Deleting the Connector deletes what it owns.
    k.kubectl(&["delete", "connector", "cat-facts"]);
    until(&op, "the Deployment and ConfigMap to go", || {
        json(&k, &["get", "deployment", "runnel-cat-facts"]).is_none()
            && json(&k, &["get", "configmap", "runnel-cat-facts"]).is_none()
    });
    let metrics = get("/metrics");
    assert!(
        metrics.contains("runnel_operator_reconciles_total"),
        "{metrics}"
    );

    op.terminate();
    let status = op
        .wait_blocking(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("the operator did not stop on SIGTERM:\n{}", op.output()));
    assert!(status.success(), "{status:?}\n{}", op.output());
    assert!(!op.output().contains("panicked"), "{}", op.output());
    let _ = workspace_root();
}
