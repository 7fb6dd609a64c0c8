//! `runnel connector` through the real binary against the Kubernetes API emulator
//! (tests/k8s/emulator.py), with the real kubectl installing the CRD and checking what the
//! command wrote.

#![allow(clippy::unwrap_used)]

use std::{
    process::Command,
    time::{Duration, Instant},
};

use runnel_tests::{bin, k8s::Emulator, workspace_root};
use serde_json::Value;

const SECRET_VALUE: &str = "tok-3a9f-never-printed";

trait RunnelConnector {
    fn runnel(&self, args: &[&str]) -> (i32, String, String);
}

impl RunnelConnector for Emulator {
    /// Runs `runnel connector ARGS`; returns exit code, stdout, stderr. No output may hold
    /// the secret's value.
    fn runnel(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(bin("runnel"))
            .current_dir(workspace_root())
            .env_remove("KUBECONFIG")
            .arg("connector")
            .args(args)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .output()
            .unwrap();
        let (stdout, stderr) = (
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        );
        assert!(
            !stdout.contains(SECRET_VALUE) && !stderr.contains(SECRET_VALUE),
            "a secret value was printed: {stdout}{stderr}"
        );
        (out.status.code().unwrap(), stdout, stderr)
    }
}

#[test]
fn create_list_describe_delete_against_the_api() {
    let k = Emulator::start();
    k.kubectl(&["apply", "-f", "crds/connector.yaml"]);
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets.env");
    std::fs::write(&secrets, format!("WEBHOOK_TOKEN={SECRET_VALUE}\n")).unwrap();
    let secrets = secrets.to_str().unwrap();
    let ns = dir.path().join("ns.yaml");
    std::fs::write(
        &ns,
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: team-b}\n",
    )
    .unwrap();
    k.kubectl(&["apply", "-f", ns.to_str().unwrap()]);

    let (code, out, err) = k.runnel(&[
        "create",
        "-c",
        "examples/http-source.yml",
        "--secrets",
        secrets,
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "connector \"cat-facts\" created in namespace \"default\"\n"
    );
    let (code, out, err) = k.runnel(&[
        "create",
        "-c",
        "examples/http-sink.yml",
        "--secrets",
        secrets,
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "connector \"webhook\" created in namespace \"default\"\nsecret \"webhook-secrets\" created with the keys WEBHOOK_TOKEN\n"
    );
    let (code, _, err) = k.runnel(&["create", "-c", "examples/mqtt-sink.yml", "-n", "team-b"]);
    assert_eq!(code, 0, "{err}");

    // What kubectl sees: the Connector refers to the Secret, which holds the value and is
    // owned by the Connector.
    let c: Value =
        serde_json::from_str(&k.kubectl(&["get", "connector", "webhook", "-o", "json"])).unwrap();
    assert_eq!(c["spec"]["type"], "http-sink");
    assert_eq!(c["spec"]["topic"], "quickstart");
    assert_eq!(
        c["spec"]["secrets"][0]["secretKeyRef"],
        serde_json::json!({"name": "webhook-secrets", "key": "WEBHOOK_TOKEN"})
    );
    let s: Value =
        serde_json::from_str(&k.kubectl(&["get", "secret", "webhook-secrets", "-o", "json"]))
            .unwrap();
    assert_eq!(
        s["data"]["WEBHOOK_TOKEN"],
        "dG9rLTNhOWYtbmV2ZXItcHJpbnRlZA=="
    );
    assert_eq!(
        s["metadata"]["ownerReferences"][0]["uid"],
        c["metadata"]["uid"]
    );

    // Once only, unless --replace.
    let (code, _, err) = k.runnel(&[
        "create",
        "-c",
        "examples/http-sink.yml",
        "--secrets",
        secrets,
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains("already exists in namespace \"default\": pass --replace"),
        "{err}"
    );
    let (code, out, err) = k.runnel(&[
        "create",
        "-c",
        "examples/http-sink.yml",
        "--secrets",
        secrets,
        "--replace",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("connector \"webhook\" replaced"), "{out}");

    // A broken file: the connectors' error form and exit code.
    let broken = dir.path().join("broken.yml");
    std::fs::write(
        &broken,
        "apiVersion: 0.1.0\nmeta: {type: http-source, topic: t}\n",
    )
    .unwrap();
    let (code, out, err) = k.runnel(&["create", "-c", broken.to_str().unwrap()]);
    assert_eq!((code, out.as_str()), (2, ""));
    assert_eq!(
        err,
        format!("error: {}: meta.name: missing field\n", broken.display())
    );
    // A declared secret with no value.
    let empty = dir.path().join("empty.env");
    std::fs::write(&empty, "OTHER=1\n").unwrap();
    let (code, _, err) = k.runnel(&[
        "create",
        "-c",
        "examples/mqtt-source.yml",
        "--secrets",
        empty.to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    assert!(
        err.contains("meta.secrets[0].name: secret \"MQTT_PASSWORD\" has no value"),
        "{err}"
    );

    let (code, out, err) = k.runnel(&["list"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[0].starts_with("NAME        TYPE          VERSION   TOPIC        STATUS    AGE"),
        "{out}"
    );
    assert!(
        lines[1].starts_with("cat-facts   http-source   0.1.0     cat-facts    Pending   "),
        "{out}"
    );
    assert!(
        lines[2].starts_with("webhook     http-sink     0.1.0     quickstart   Pending   "),
        "{out}"
    );
    let (_, out, _) = k.runnel(&["list", "-A"]);
    assert!(out.starts_with("NAMESPACE   NAME"), "{out}");
    assert!(out.contains("\nteam-b      commands    mqtt-sink"), "{out}");
    let (_, out, _) = k.runnel(&["list", "-o", "json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    let names: Vec<&str> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["cat-facts", "webhook"]);
    let (_, out, _) = k.runnel(&["list", "-o", "yaml", "-n", "team-b"]);
    assert!(
        out.starts_with("apiVersion: v1\nitems:\n- apiVersion: runnel.dev/v1alpha1\n"),
        "{out}"
    );
    assert!(
        out.contains("    type: mqtt-sink\n") && out.contains("kind: List\n"),
        "{out}"
    );

    let (code, out, err) = k.runnel(&["describe", "webhook"]);
    assert_eq!(code, 0, "{err}");
    for want in [
        "Name:               webhook\n",
        "Type:               http-sink\n",
        "Secrets:            WEBHOOK_TOKEN from webhook-secrets/WEBHOOK_TOKEN\n",
        "  Phase:            Pending\n",
        "Deployment:         <none yet",
        "Events:             <none>\n",
    ] {
        assert!(out.contains(want), "{want:?} not in\n{out}");
    }

    // Delete: a missing name stops the run, unless --continue-on-error.
    let (code, out, err) = k.runnel(&["delete", "nope", "cat-facts"]);
    assert_eq!((code, out.as_str()), (1, ""));
    assert_eq!(
        err,
        "error: connector \"nope\" not found in namespace \"default\"\n"
    );
    let (code, out, err) = k.runnel(&[
        "delete",
        "nope",
        "cat-facts",
        "webhook",
        "--continue-on-error",
    ]);
    assert_eq!(code, 1);
    assert_eq!(
        out,
        "connector \"cat-facts\" deleted\nconnector \"webhook\" deleted\n"
    );
    assert!(
        err.ends_with("error: 1 of 3 connector(s) could not be deleted\n"),
        "{err}"
    );
    let (code, out, err) = k.runnel(&["list"]);
    assert_eq!((code, out.as_str()), (0, ""));
    assert_eq!(err, "No connectors found in namespace \"default\".\n");
    // The Secret went with its Connector.
    let deadline = Instant::now() + Duration::from_secs(10);
    while k
        .kubectl(&["get", "secrets", "-o", "name"])
        .contains("webhook-secrets")
    {
        assert!(
            Instant::now() < deadline,
            "the Secret outlived its Connector"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
