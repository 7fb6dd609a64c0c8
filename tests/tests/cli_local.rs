//! `runnel local`: connectors started in the background from a connect.yml, listed, logged
//! and stopped through the real binaries, with a temporary index and hub.

#![allow(clippy::unwrap_used)]

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use runnel_tests::{TempHub, bin, wait_until};

/// A temporary RUNNEL_HOME (the index) and hub; every connector started through it is killed
/// when the test ends, passed or failed.
struct Local {
    hub: TempHub,
    home: tempfile::TempDir,
}

impl Local {
    fn new() -> Self {
        Local {
            hub: TempHub::new(),
            home: tempfile::tempdir().unwrap(),
        }
    }

    fn runnel(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(bin("runnel"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RUNNEL_HOME", self.home.path())
            .env("RUNNEL_HUB", &self.hub.url)
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

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.hub.path(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn list_json(&self) -> Vec<serde_json::Value> {
        let (code, out, err) = self.runnel(&["local", "list", "-o", "json"]);
        assert_eq!(code, 0, "{err}");
        serde_json::from_str::<serde_json::Value>(&out)
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    }

    fn pids(&self) -> Vec<u32> {
        let dir = self.home.path().join("local");
        let Ok(rd) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        rd.filter_map(|e| {
            let p = e.ok()?.path();
            if p.extension()? != "json" {
                return None;
            }
            let v: serde_json::Value = serde_json::from_slice(&std::fs::read(p).ok()?).ok()?;
            v["pid"].as_u64().map(|p| p as u32)
        })
        .collect()
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        for pid in self.pids() {
            if alive(pid) {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
        }
    }
}

/// Whether `pid` is a live process (not a zombie).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X']))
        })
        .unwrap_or(false)
}

const TICKER: &str = "apiVersion: 0.2.0
meta:
  version: 0.1.0
  name: ticker
  type: test-source
  topic: ticks
  create-topic: true
test:
  interval: 50ms
";

#[tokio::test]
async fn start_list_logs_stop() {
    let l = Local::new();
    let config = l.write("connect.yml", TICKER);
    let config = config.to_str().unwrap();

    let (code, out, err) = l.runnel(&["local", "start", "-c", config]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.starts_with("started ticker (test-source, pid "),
        "{out}"
    );

    // Table: header and one running row.
    let (code, out, err) = l.runnel(&["local", "list"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(header, ["NAME", "TYPE", "TOPIC", "STATUS", "PID", "AGE"]);
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        &row[..4],
        ["ticker", "test-source", "ticks", "running"],
        "{out}"
    );

    // JSON: the same, with a pid that is a live process.
    let list = l.list_json();
    assert_eq!(list.len(), 1);
    let e = &list[0];
    assert_eq!(e["name"], "ticker");
    assert_eq!(e["type"], "test-source");
    assert_eq!(e["version"], "0.1.0");
    assert_eq!(e["topic"], "ticks");
    assert_eq!(e["mode"], "process");
    assert_eq!(e["status"], "running");
    let pid = e["pid"].as_u64().unwrap() as u32;
    assert!(alive(pid));
    assert_eq!(row[4], pid.to_string());

    // It outlives the command that started it and writes to the hub.
    wait_until(Duration::from_secs(30), "records in the hub", || async {
        l.hub.count("ticks").await >= 5
    })
    .await;

    let (code, out, _) = l.runnel(&["local", "logs", "ticker"]);
    assert_eq!(code, 0);
    assert!(out.contains("Connector started."), "{out}");

    // A second start under the same name is refused while the first runs.
    let (code, _, err) = l.runnel(&["local", "start", "-c", config]);
    assert_eq!(code, 1);
    assert!(
        err.contains("\"ticker\" is already running") && err.contains("runnel local stop ticker"),
        "{err}"
    );
    // Under another name it runs beside it.
    let (code, out, err) = l.runnel(&["local", "start", "-c", config, "--name", "ticker-2"]);
    assert_eq!(code, 0, "{out}{err}");

    let (code, out, err) = l.runnel(&["local", "stop", "ticker", "ticker-2"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "stopped ticker\nstopped ticker-2\n");
    assert!(!alive(pid));
    let list = l.list_json();
    assert!(list.iter().all(|e| e["status"] == "stopped"), "{list:?}");
    assert!(list.iter().all(|e| e["pid"].is_null()), "{list:?}");
    // SIGTERM let it drain: the log ends with a clean stop.
    let (_, out, _) = l.runnel(&["local", "logs", "ticker"]);
    assert!(out.trim_end().ends_with("Connector stopped."), "{out}");

    // Stopped, the name can be started again.
    let (code, out, err) = l.runnel(&["local", "start", "-c", config]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, _, err) = l.runnel(&["local", "stop", "ticker"]);
    assert_eq!(code, 0, "{err}");
}

#[tokio::test]
async fn a_finished_connector_shows_as_exited_and_logs_follow_to_its_end() {
    let l = Local::new();
    let config = l.write(
        "connect.yml",
        &TICKER.replace("interval: 50ms", "interval: 200ms\n  count: 10"),
    );
    let (code, out, err) = l.runnel(&["local", "start", "-c", config.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    // -f returns when the connector exits, with everything it wrote.
    let (code, out, _) = l.runnel(&["local", "logs", "ticker", "-f"]);
    assert_eq!(code, 0);
    assert!(out.contains("records=10"), "{out}");
    assert_eq!(l.hub.count("ticks").await, 10);
    let list = l.list_json();
    assert_eq!(list[0]["status"], "exited", "{list:?}");
    let (code, out, _) = l.runnel(&["local", "stop", "ticker"]);
    assert_eq!(code, 0);
    assert_eq!(out, "ticker was not running (exited)\n");
}

#[test]
fn a_broken_connect_yml_exits_2_naming_the_file_and_field() {
    let l = Local::new();
    // In meta (read by runnel itself) ...
    let bad = l.write("bad-meta.yml", "meta: {name: x, type: test-source}\n");
    let (code, _, err) = l.runnel(&["local", "start", "-c", bad.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert_eq!(
        err,
        format!("error: {}: meta.topic: missing field\n", bad.display())
    );
    // ... and in the connector's section (checked by the connector).
    let bad = l.write(
        "bad-section.yml",
        "meta: {name: x, type: test-source, topic: t}\ntest: {interval: soon}\n",
    );
    let (code, _, err) = l.runnel(&["local", "start", "-c", bad.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(
        err.starts_with(&format!("error: {}: test.interval: ", bad.display())),
        "{err}"
    );
    let bad = l.write(
        "bad-type.yml",
        "meta: {name: x, type: ftp-source, topic: t}\n",
    );
    let (code, _, err) = l.runnel(&["local", "start", "-c", bad.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(
        err.contains("meta.type: unknown connector type \"ftp-source\""),
        "{err}"
    );
    let (code, _, err) = l.runnel(&["local", "start", "-c", "/nonexistent/connect.yml"]);
    assert_eq!(code, 2);
    assert!(
        err.starts_with("error: /nonexistent/connect.yml: cannot read the file"),
        "{err}"
    );
    // Nothing was started or recorded.
    assert!(l.list_json().is_empty());
    assert!(!Path::new(&l.home.path().join("local/x.json")).exists());
}

#[test]
fn unknown_names_are_errors() {
    let l = Local::new();
    let (code, _, err) = l.runnel(&["local", "stop", "ghost"]);
    assert_eq!(code, 1);
    assert_eq!(
        err,
        "error: no local connector named \"ghost\" (runnel local list shows them)\n"
    );
    let (code, _, err) = l.runnel(&["local", "logs", "../etc/passwd"]);
    assert_eq!(code, 1);
    assert!(err.contains("no local connector named"), "{err}");
    let config = l.write("connect.yml", TICKER);
    let (code, _, err) = l.runnel(&[
        "local",
        "start",
        "-c",
        config.to_str().unwrap(),
        "--name",
        "a/b",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("invalid connector name \"a/b\""), "{err}");
    let (code, out, _) = l.runnel(&["local", "list"]);
    assert_eq!(code, 0);
    assert_eq!(out, "NAME  TYPE  TOPIC  STATUS  PID  AGE\n");
}

/// A connector written outside the catalogue (examples/custom-connector, a crate on the SDK
/// by path) runs from its own connect.yml: `runnel local` finds its binary beside runnel.
#[tokio::test]
async fn runs_a_connector_built_outside_the_catalogue() {
    let l = Local::new();
    let yml = runnel_tests::workspace_root().join("examples/custom-connector/connect.yml");
    let (code, out, err) = l.runnel(&["local", "start", "--config", yml.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("started kernel (exec-source"), "{out}");
    wait_until(Duration::from_secs(30), "a line of uname", || async {
        l.hub.count("kernel").await >= 1
    })
    .await;
    let value = l.hub.read_all("kernel").await[0].record.value.clone();
    assert!(
        String::from_utf8_lossy(&value).starts_with("Linux "),
        "{value:?}"
    );
    let (code, _, err) = l.runnel(&["local", "stop", "kernel"]);
    assert_eq!(code, 0, "{err}");
    // Its own --check and --schema come from the SDK.
    let schema = Command::new(bin("exec-source"))
        .arg("--schema")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&schema.stdout).contains("\"command\""));
}
