//! The filter and shape stages in real connectors, and `runnel smartmodule test`.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::{Router, routing::get};
use runnel_runtime::Record;
use runnel_tests::{Proc, Recorder, Reply, TempHub, bin, connector, wait_until, wasm};

/// http-source polls JSON; a filter keeps `type: a`, a map reshapes it; a body that is not
/// JSON is rejected by the filter and lands in the dead-letter topic with the reason.
#[tokio::test]
async fn http_source_filters_and_shapes_into_the_hub() {
    let hub = TempHub::new();
    let n = Arc::new(AtomicUsize::new(0));
    let app = Router::new().route(
        "/data",
        get(move || {
            let i = n.fetch_add(1, Ordering::SeqCst);
            async move {
                match i % 4 {
                    0 => format!(r#"{{"type":"a","n":{i}}}"#),
                    1 => format!(r#"{{"type":"b","n":{i}}}"#),
                    2 => "not json".to_string(),
                    _ => format!(r#"{{"type":"a","n":{i},"extra":true}}"#),
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let config = hub.path("connect.yml");
    std::fs::write(
        &config,
        format!(
            "apiVersion: 0.1.0\nmeta:\n  version: 0.1.0\n  name: shaped\n  type: http-source\n  topic: shaped\n  create-topic: true\n\
             http:\n  endpoint: http://{addr}/data\n  interval: 20ms\n\
             transforms:\n  - uses: {}\n    with:\n      field: type\n      value: a\n  - uses: {}\n",
            wasm("json_filter").display(),
            wasm("json_map").display()
        ),
    )
    .unwrap();
    let mut cmd = connector("http-source", &hub);
    cmd.arg("--config").arg(&config);
    cmd.arg("--smartmodule-cache").arg(hub.path("cache"));
    let p = Proc::spawn(cmd, hub.path("log"));
    wait_until(Duration::from_secs(60), "6 shaped records", || async {
        hub.count("shaped").await >= 6
    })
    .await;
    for r in hub.read_all("shaped").await {
        let v: serde_json::Value = serde_json::from_slice(&r.record.value).unwrap();
        assert_eq!(v["kind"], "a", "{v}");
        assert!(v["data"]["n"].is_number(), "{v}");
        assert!(v.get("type").is_none(), "{v}");
    }
    wait_until(Duration::from_secs(30), "a dead letter", || async {
        hub.count("shaped-dlq").await >= 1
    })
    .await;
    let dl = &hub.read_all("shaped-dlq").await[0].record;
    assert_eq!(&dl.value[..], b"not json");
    let (_, err) = dl
        .headers
        .iter()
        .find(|(k, _)| k == "runnel-error")
        .unwrap();
    let err = String::from_utf8_lossy(err);
    assert!(
        err.contains("json_filter") && err.contains("expected"),
        "{err}"
    );
    drop(p);
    server.abort();
}

/// http-sink runs a chain before delivery: array_map splits, filter_map keeps amounts.
/// A record the chain rejects follows on_error (dead-letter) and the rest is delivered.
#[tokio::test]
async fn http_sink_applies_a_chain_before_delivery() {
    let hub = TempHub::new();
    let server = Recorder::start(|_, _| Reply::Status(200)).await;
    hub.produce(
        "orders",
        vec![
            Record::new(r#"[{"amount":1.5},{"note":"x"},{"amount":2}]"#),
            Record::new("broken"),
            Record::new(r#"[{"amount":0.01}]"#),
        ],
    )
    .await;
    let config = hub.path("connect.yml");
    std::fs::write(
        &config,
        format!(
            "meta:\n  version: 0.1.0\n  name: orders-out\n  type: http-sink\n  topic: orders\n\
             http:\n  endpoint: {}\n\
             transforms:\n  - uses: {}\n  - uses: {}\n",
            server.url("/in"),
            wasm("json_array_split").display(),
            wasm("json_filter_map").display()
        ),
    )
    .unwrap();
    let mut cmd = connector("http-sink", &hub);
    cmd.arg("--config").arg(&config);
    cmd.arg("--smartmodule-cache").arg(hub.path("cache"));
    let p = Proc::spawn(cmd, hub.path("log"));
    wait_until(Duration::from_secs(60), "3 deliveries", || async {
        server.requests.lock().unwrap().len() >= 3
    })
    .await;
    wait_until(Duration::from_secs(30), "a dead letter", || async {
        hub.count("orders-dlq").await >= 1
    })
    .await;
    let bodies: Vec<String> = server
        .requests
        .lock()
        .unwrap()
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    assert_eq!(bodies, ["150", "200", "1"]);
    let dl = &hub.read_all("orders-dlq").await[0].record;
    assert_eq!(&dl.value[..], b"broken");
    drop(p);
}

#[test]
fn smartmodule_test_command_prints_outputs_and_rejections() {
    let out = std::process::Command::new(bin("runnel"))
        .args(["smartmodule", "test", "--wasm"])
        .arg(wasm("json_filter"))
        .args(["-e", "field=type", "-e", "value=a"])
        .args([
            "--text",
            r#"{"type":"a","n":1}"#,
            "--text",
            r#"{"type":"b"}"#,
            "--text",
            "oops",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "{\"type\":\"a\",\"n\":1}\n"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("rejected record 3: json_filter:"), "{err}");
    assert_eq!(out.status.code(), Some(1));

    // A chain, records from standard input, keys split off and printed back.
    let mut child = std::process::Command::new(bin("runnel"))
        .args(["smartmodule", "test", "--key-separator", "|", "--wasm"])
        .arg(wasm("json_array_split"))
        .arg("--wasm")
        .arg(wasm("json_filter_map"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"k1|[{\"amount\":1},{\"x\":0}]\n[{\"amount\":2.5}]\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "k1|100\n250\n");
    assert!(out.status.success());

    // A broken module is refused with the reason and exit code 2.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.wasm");
    std::fs::write(&bad, b"\0asm\x01\0\0\0garbage").unwrap();
    let out = std::process::Command::new(bin("runnel"))
        .args(["smartmodule", "test", "--text", "x", "--wasm"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("corrupt WebAssembly module"));
}

#[test]
fn a_missing_or_broken_module_is_a_config_error() {
    let hub = TempHub::new();
    let config = hub.path("connect.yml");
    std::fs::write(
        &config,
        "meta:\n  version: 0.1.0\n  name: t\n  type: test-source\n  topic: t\n\
         test:\n  count: 1\n\
         transforms:\n  - uses: ./nowhere.wasm\n",
    )
    .unwrap();
    let out = std::process::Command::new(bin("test-source"))
        .arg("--check")
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("connect.yml")
            && err.contains("transforms[0]")
            && err.contains("nowhere.wasm"),
        "{err}"
    );
}
