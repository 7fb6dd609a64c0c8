//! The connector images: built from static musl binaries by `scripts/build-images` (the
//! container profile, for build time) on scratch, run with podman on the host network as
//! local connectors against servers on 127.0.0.1, their records landing in a hub directory
//! mounted from the host.

#![allow(clippy::unwrap_used)]

use std::{
    process::{Command, Stdio},
    sync::OnceLock,
    time::Duration,
};

use runnel_tests::{
    Recorder, Reply, TempHub, bin, eventually, mosquitto::Mosquitto, wait_until, workspace_root,
};

const REGISTRY: &str = "localhost/runnel-test";
const TAG: &str = "test";

/// podman, or a failure that says how to get it: this test never skips.
fn podman() -> &'static str {
    let ok = Command::new("podman")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "podman is missing: run scripts/test-deps (it installs podman and runc and writes /etc/containers/containers.conf)"
    );
    "podman"
}

/// Builds the images this test runs, once per test process.
fn images() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let status = Command::new(workspace_root().join("scripts/build-images"))
            .args([
                "--profile",
                "container",
                "--registry",
                REGISTRY,
                "--tag",
                TAG,
                "test-source",
                "http-source",
                "mqtt-source",
                "cli",
            ])
            .env("RUNNEL_CONTAINER_ENGINE", podman())
            .current_dir(workspace_root())
            .status()
            .expect("run scripts/build-images");
        assert!(status.success(), "scripts/build-images failed");
    });
}

fn image(kind: &str) -> String {
    format!("{REGISTRY}/runnel-{kind}:{TAG}")
}

/// A temporary index and hub for `runnel local`; the containers it started are removed when
/// the test ends.
struct Local {
    hub: TempHub,
    home: tempfile::TempDir,
    names: Vec<String>,
}

impl Local {
    fn runnel(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(bin("runnel"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RUNNEL_HOME", self.home.path())
            .env("RUNNEL_HUB", &self.hub.url)
            .env("RUNNEL_CONTAINER_ENGINE", podman())
            .env("RUST_LOG", "info")
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn start(&mut self, kind: &str, name: &str, yaml: &str) {
        let file = self.hub.path(&format!("{name}.yml"));
        std::fs::write(&file, yaml).unwrap();
        self.names.push(name.to_string());
        let (code, out, err) = self.runnel(&[
            "local",
            "start",
            "--container",
            "--image",
            &image(kind),
            "--name",
            name,
            "-c",
            file.to_str().unwrap(),
        ]);
        assert_eq!(code, 0, "{out}{err}");
        assert!(out.contains(&format!("container runnel-{name}")), "{out}");
    }

    fn status(&self, name: &str) -> String {
        let (code, out, err) = self.runnel(&["local", "list", "-o", "json"]);
        assert_eq!(code, 0, "{err}");
        let list: serde_json::Value = serde_json::from_str(&out).unwrap();
        let e = list
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("{name} not listed: {out}"));
        assert_eq!(e["mode"], "container");
        e["status"].as_str().unwrap().to_string()
    }

    fn logs(&self, name: &str) -> String {
        let (_, out, err) = self.runnel(&["local", "logs", name]);
        format!("{out}{err}")
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = Command::new("podman")
                .args(["rm", "-f", "-t", "0", &format!("runnel-{n}")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connector_images_run_as_local_connectors() {
    podman();
    tokio::task::spawn_blocking(images).await.unwrap();
    let mut l = Local {
        hub: TempHub::new(),
        home: tempfile::tempdir().unwrap(),
        names: Vec::new(),
    };
    let id = std::process::id();
    let http = Recorder::start(|_, _| Reply::Status(200)).await;
    let broker = Mosquitto::start();

    let ticker = format!("ct{id}-ticker");
    l.start(
        "test-source",
        &ticker,
        "meta: {name: ticker, type: test-source, topic: ticks, create-topic: true}\ntest: {interval: 100ms}\n",
    );
    let poller = format!("ct{id}-poller");
    l.start(
        "http-source",
        &poller,
        &format!(
            "meta: {{name: poller, type: http-source, topic: polled, create-topic: true}}\nhttp: {{endpoint: \"{}\", interval: 200ms}}\n",
            http.url("/status")
        ),
    );
    let sensors = format!("ct{id}-sensors");
    l.start(
        "mqtt-source",
        &sensors,
        &format!(
            "meta: {{name: sensors, type: mqtt-source, topic: sensors, create-topic: true}}\nmqtt: {{url: \"{}\", topic: \"sensors/#\", payload_output_type: json}}\n",
            broker.url()
        ),
    );
    for n in [&ticker, &poller, &sensors] {
        assert_eq!(l.status(n), "running", "{}", l.logs(n));
    }

    wait_until(Duration::from_secs(60), "test-source records", || async {
        l.hub.count("ticks").await >= 5
    })
    .await;
    wait_until(Duration::from_secs(60), "http-source records", || async {
        l.hub.count("polled").await >= 3
    })
    .await;
    let polled = l.hub.read_all("polled").await;
    let v: serde_json::Value = serde_json::from_slice(&polled[0].record.value).unwrap();
    assert_eq!(v["status"], 200);
    // The subscription may not be in place yet when the first message goes out: publish
    // until one arrives.
    let port = broker.port.to_string();
    let landed = eventually(Duration::from_secs(60), || {
        let port = port.clone();
        let hub = &l.hub;
        async move {
            let _ = Command::new("mosquitto_pub")
                .args(["-h", "127.0.0.1", "-p", &port, "-t", "sensors/a/reading"])
                .args(["-m", r#"{"celsius":21.5}"#])
                .status();
            tokio::time::sleep(Duration::from_millis(200)).await;
            hub.count("sensors").await >= 1
        }
    })
    .await;
    assert!(landed, "no MQTT message in the hub:\n{}", l.logs(&sensors));
    let rec = &l.hub.read_all("sensors").await[0];
    let v: serde_json::Value = serde_json::from_slice(&rec.record.value).unwrap();
    assert_eq!(v["payload"]["celsius"], 21.5, "{v}");

    assert!(l.logs(&ticker).contains("Connector started."));
    let (code, out, err) = l.runnel(&["local", "stop", &ticker, &poller, &sensors]);
    assert_eq!(code, 0, "{out}{err}");
    for n in [&ticker, &poller, &sensors] {
        assert_eq!(l.status(n), "stopped");
        // SIGTERM reached the connector (PID 1 in its container) and it drained.
        assert!(l.logs(n).contains("Connector stopped."), "{}", l.logs(n));
    }
}

/// `docker run IMAGE -- --flags`: the leading `--` reaches the connector, which takes its
/// options as flags; the image runs as a non-root user with its default hub in /data.
#[test]
fn an_image_runs_with_flags_alone() {
    podman();
    images();
    let out = Command::new(podman())
        .args(["run", "--rm", "--network", "host", &image("test-source")])
        .args([
            "--",
            "--topic=direct",
            "--create-topic",
            "--count=3",
            "--interval=0",
            "--health-addr=off",
        ])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("hub=local:/data/hub.db"), "{log}");
    assert!(log.contains("records=3"), "{log}");
    let user = Command::new(podman())
        .args([
            "image",
            "inspect",
            "--format",
            "{{.Config.User}}",
            &image("test-source"),
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&user.stdout).trim(), "65532:65532");
}

/// `podman run --rm ARGS`; returns stdout, and fails the test with stderr if it fails.
fn podman_run(args: &[&str]) -> String {
    let out = Command::new(podman())
        .args(["run", "--rm"])
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "podman run {args:?}: {stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The CLI image reads what a connector image wrote: both use the hub in /data, here a
/// host directory mounted into each in turn.
#[test]
fn the_cli_image_reads_a_hub_a_connector_image_wrote() {
    podman();
    images();
    let dir = tempfile::tempdir().unwrap();
    // The images run as 65532, which must be able to write the mounted directory.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let volume = format!("{}:/data", dir.path().display());
    let source = image("test-source");
    podman_run(&[
        "-v",
        &volume,
        &source,
        "--topic=shared",
        "--create-topic",
        "--count=3",
        "--interval=0",
        "--template={\"n\":{{count}}}",
        "--health-addr=off",
    ]);
    let cli = image("cli");
    let out = podman_run(&[
        "-v", &volume, &cli, "topic", "consume", "shared", "-B", "-d",
    ]);
    let values: Vec<&str> = out.lines().collect();
    assert_eq!(values, [r#"{"n":0}"#, r#"{"n":1}"#, r#"{"n":2}"#]);
    let version = podman_run(&[&cli, "--version"]);
    assert!(version.starts_with("runnel "), "{version}");
}
