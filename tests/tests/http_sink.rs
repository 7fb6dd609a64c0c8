//! http-sink against a real HTTP server on 127.0.0.1: delivery, order, retries, dead-letter,
//! crashes, and secrets kept out of logs.

#![allow(clippy::unwrap_used)]

use std::{collections::HashSet, time::Duration};

use runnel_runtime::Record;
use runnel_tests::{
    Proc, Recorder, Reply, TempHub, connector,
    contract::{self, Contract},
    counts, free_port, wait_until,
};

fn records(n: usize) -> Vec<Record> {
    (0..n).map(|i| Record::new(format!("r{i}"))).collect()
}

fn sink(hub: &TempHub, url: &str, extra: &[&str]) -> std::process::Command {
    let mut cmd = connector("http-sink", hub);
    cmd.args(["--topic", "in", "--endpoint", url]).args(extra);
    cmd
}

#[tokio::test]
async fn delivers_every_record_in_order_and_commits() {
    let hub = TempHub::new();
    hub.produce("in", records(200)).await;
    let server = Recorder::start(|_, _| Reply::Status(200)).await;
    let p = Proc::spawn(sink(&hub, &server.url("/ingest"), &[]), hub.path("log"));
    wait_until(Duration::from_secs(30), "200 deliveries", || async {
        server.accepted().len() >= 200
    })
    .await;
    let want: Vec<String> = (0..200).map(|i| format!("r{i}")).collect();
    assert_eq!(server.accepted(), want);
    let first = server.requests.lock().unwrap()[0].clone();
    assert_eq!(first.method, "POST");
    assert!(
        first.headers["user-agent"]
            .to_str()
            .unwrap()
            .starts_with("runnel-http-sink/")
    );
    let mut p = p;
    p.terminate();
    assert!(
        p.wait_timeout(Duration::from_secs(15))
            .await
            .unwrap()
            .success(),
        "{}",
        p.output()
    );

    // A restart resumes after the committed offset: nothing is sent twice.
    let before = server.total();
    hub.produce("in", vec![Record::new("late")]).await;
    let _p = Proc::spawn(sink(&hub, &server.url("/ingest"), &[]), hub.path("log2"));
    wait_until(Duration::from_secs(30), "the late record", || async {
        server.accepted().last().map(String::as_str) == Some("late")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        server.total(),
        before + 1,
        "only the new record is delivered after a restart"
    );
}

#[tokio::test]
async fn retries_5xx_and_429_then_delivers() {
    let hub = TempHub::new();
    hub.produce("in", records(5)).await;
    // The first four requests fail with retryable statuses.
    let server = Recorder::start(|_, n| match n {
        0 | 1 => Reply::Status(503),
        2 => Reply::Status(429),
        3 => Reply::Status(500),
        _ => Reply::Status(200),
    })
    .await;
    let _p = Proc::spawn(
        sink(
            &hub,
            &server.url("/"),
            &[
                "--retry",
                "{max_attempts: 10, initial_backoff: 10ms, max_backoff: 50ms}",
            ],
        ),
        hub.path("log"),
    );
    wait_until(Duration::from_secs(30), "5 deliveries", || async {
        server.accepted().len() >= 5
    })
    .await;
    assert_eq!(server.accepted(), ["r0", "r1", "r2", "r3", "r4"]);
    assert_eq!(server.total(), 9);
}

#[tokio::test]
async fn permanent_failures_go_to_the_dead_letter_topic_with_the_error() {
    let hub = TempHub::new();
    let mut input = records(6);
    input[2] = Record::new("poison").with_key("k2");
    hub.produce("in", input).await;
    let server = Recorder::start(|body, _| {
        if body == b"poison" {
            Reply::Status(422)
        } else {
            Reply::Status(200)
        }
    })
    .await;
    let p = Proc::spawn(sink(&hub, &server.url("/"), &[]), hub.path("log"));
    wait_until(Duration::from_secs(30), "a dead letter", || async {
        hub.count("in-dlq").await == 1
    })
    .await;
    wait_until(Duration::from_secs(30), "the other records", || async {
        server.accepted().len() == 5
    })
    .await;
    let dl = &hub.read_all("in-dlq").await[0];
    assert_eq!(&dl.record.value[..], b"poison");
    assert_eq!(dl.record.key.as_deref(), Some(&b"k2"[..]));
    let h: std::collections::HashMap<_, _> = dl
        .record
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), String::from_utf8_lossy(v).into_owned()))
        .collect();
    assert_eq!(
        h["runnel-error"],
        "the endpoint answered 422 Unprocessable Entity"
    );
    assert_eq!(h["runnel-offset"], "2");
    assert_eq!(h["runnel-topic"], "in");
    assert_eq!(h["runnel-attempts"], "1");
    assert!(
        p.output().contains("written to the dead-letter topic"),
        "{}",
        p.output()
    );
}

#[tokio::test]
async fn on_error_skip_logs_and_stop_exits_without_commit() {
    let hub = TempHub::new();
    hub.produce(
        "in",
        vec![Record::new("a"), Record::new("bad"), Record::new("c")],
    )
    .await;
    let rule = |body: &[u8], _| {
        if body == b"bad" {
            Reply::Status(400)
        } else {
            Reply::Status(200)
        }
    };
    let server = Recorder::start(rule).await;

    let mut stop = Proc::spawn(
        sink(&hub, &server.url("/"), &["--on-error", "stop"]),
        hub.path("stop"),
    );
    stop.expect_exit(Duration::from_secs(30), 1, "on_error is stop")
        .await;

    let skip = Proc::spawn(
        sink(&hub, &server.url("/"), &["--on-error", "skip"]),
        hub.path("skip"),
    );
    wait_until(Duration::from_secs(30), "c delivered", || async {
        server.accepted().iter().any(|b| b == "c")
    })
    .await;
    // "a" twice: the stopped run stopped at "bad" without committing, so "a" came again;
    // "c" once: nothing after the failure was sent by the stopped run.
    assert_eq!(server.accepted(), ["a", "a", "c"]);
    assert!(
        skip.output().contains("skipped as on_error says"),
        "{}",
        skip.output()
    );
    assert_eq!(hub.count("in-dlq").await, 0);
}

#[tokio::test]
async fn slow_and_refused_connections_are_retried() {
    let hub = TempHub::new();
    hub.produce("in", records(3)).await;
    // Nothing listens yet: connection refused until the server starts.
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/");
    let cmd = sink(
        &hub,
        &url,
        &[
            "--http-request-timeout",
            "200ms",
            "--retry",
            "{max_attempts: 50, initial_backoff: 20ms, max_backoff: 100ms}",
        ],
    );
    let p = Proc::spawn(cmd, hub.path("log"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Then the first answer is slower than the request timeout.
    let server = Recorder::start_on(format!("127.0.0.1:{port}").parse().unwrap(), |_, n| {
        if n == 0 {
            Reply::Slow(Duration::from_millis(600))
        } else {
            Reply::Status(200)
        }
    })
    .await;
    let done = runnel_tests::eventually(Duration::from_secs(30), || async {
        server.accepted().len() >= 3
    })
    .await;
    assert!(done, "got {:?}\n{}", server.accepted(), p.output());
    // The slow request completed on the server after the client gave up: r0 may be there
    // twice, but every record is there and in order of first arrival.
    let got = server.accepted();
    let firsts: Vec<&String> = got.iter().fold(Vec::new(), |mut v, b| {
        if !v.contains(&b) {
            v.push(b);
        }
        v
    });
    assert_eq!(firsts, ["r0", "r1", "r2"]);
}

#[tokio::test]
async fn keeps_per_key_order_with_concurrency() {
    let hub = TempHub::new();
    let input: Vec<Record> = (0..300)
        .map(|i| Record::new(format!("{}:{i}", i % 7)).with_key(format!("{}", i % 7)))
        .collect();
    hub.produce("in", input).await;
    // Random small delays shuffle arrival across keys.
    let server =
        Recorder::start(|_, n| Reply::Slow(Duration::from_millis((n * 7 % 5) as u64))).await;
    let _p = Proc::spawn(
        sink(&hub, &server.url("/"), &["--concurrency", "8"]),
        hub.path("log"),
    );
    wait_until(Duration::from_secs(60), "300 deliveries", || async {
        server.accepted().len() >= 300
    })
    .await;
    let got = server.accepted();
    for key in 0..7 {
        let seq: Vec<usize> = got
            .iter()
            .filter_map(|b| b.split_once(':'))
            .filter(|(k, _)| *k == key.to_string())
            .map(|(_, i)| i.parse().unwrap())
            .collect();
        let mut sorted = seq.clone();
        sorted.sort();
        assert_eq!(seq, sorted, "key {key} out of order");
    }
}

#[tokio::test]
async fn kill_9_mid_stream_then_restart_loses_nothing() {
    let hub = TempHub::new();
    let n = 3000;
    hub.produce("in", records(n)).await;
    let server = Recorder::start(|_, _| Reply::Status(200)).await;
    let url = server.url("/");
    let mut p = Proc::spawn(sink(&hub, &url, &[]), hub.path("log1"));
    wait_until(Duration::from_secs(30), "deliveries under way", || async {
        server.accepted().len() >= 500
    })
    .await;
    p.kill9();
    let at_kill = server.accepted().len();
    assert!(
        at_kill < n,
        "the crash must land mid-stream ({at_kill} delivered)"
    );
    let _p2 = Proc::spawn(sink(&hub, &url, &[]), hub.path("log2"));
    wait_until(Duration::from_secs(60), "every record", || async {
        let got: HashSet<String> = server.accepted().into_iter().collect();
        got.len() == n
    })
    .await;
    let got = server.accepted();
    let dup = counts(&got).values().filter(|c| **c > 1).count();
    // At-least-once: duplicates only from the batch in flight at the crash and the one
    // before it, whose commit goes out while the next is delivered.
    assert!(dup <= 2000, "{dup} duplicates");
}

#[tokio::test]
async fn secrets_never_reach_the_logs() {
    let hub = TempHub::new();
    hub.produce("in", records(1)).await;
    let port = free_port(); // nothing listens: every attempt fails and is logged
    let secret = "tok-9f8e7d6c5b4a";
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("sink.yml");
    std::fs::write(
        &cfg,
        format!(
            "apiVersion: 0.1.0\nmeta:\n  name: s\n  type: http-sink\n  topic: in\n  secrets:\n    - name: API_TOKEN\nhttp:\n  endpoint: http://127.0.0.1:{port}/x?token=${{{{ secrets.API_TOKEN }}}}\n  headers:\n    - \"Authorization: Bearer ${{{{ secrets.API_TOKEN }}}}\"\n  retry:\n    max_attempts: 2\n    initial_backoff: 10ms\n"
        ),
    )
    .unwrap();
    let mut cmd = connector("http-sink", &hub);
    cmd.env("API_TOKEN", secret)
        .env("RUST_LOG", "debug")
        .arg("--config")
        .arg(&cfg);
    let mut p = Proc::spawn(cmd, hub.path("log"));
    wait_until(Duration::from_secs(30), "the dead letter", || async {
        hub.count("in-dlq").await == 1
    })
    .await;
    let out = p.output();
    assert!(out.contains("Delivery failed; retrying."), "{out}");
    // The connector contract, with the endpoint down: not ready, and no secret anywhere.
    let c = Contract {
        kind: "http-sink",
        name: "s",
        secrets: &[secret],
        ready: false,
    };
    contract::check(&mut p, c).await;
    let dl = &hub.read_all("in-dlq").await[0];
    for (_, v) in &dl.record.headers {
        assert!(!String::from_utf8_lossy(v).contains(secret));
    }

    // --check prints the config with the secret masked.
    let check = std::process::Command::new(runnel_tests::bin("http-sink"))
        .env("API_TOKEN", secret)
        .arg("--config")
        .arg(&cfg)
        .arg("--check")
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success());
    assert!(
        shown.contains("'Authorization: ******'") && !shown.contains(secret),
        "{shown}"
    );
}

#[tokio::test]
async fn sigterm_waits_for_the_grace_period_then_gives_up_without_commit() {
    let hub = TempHub::new();
    hub.produce("in", records(2)).await;
    // The endpoint hangs far longer than the grace period.
    let server = Recorder::start(|_, _| Reply::Slow(Duration::from_secs(20))).await;
    let mut cmd = sink(&hub, &server.url("/"), &["--grace-period", "300ms"]);
    cmd.env("RUST_LOG", "info");
    let mut p = Proc::spawn(cmd, hub.path("log"));
    wait_until(Duration::from_secs(30), "a request in flight", || async {
        server.arrived.load(std::sync::atomic::Ordering::SeqCst) > 0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    p.terminate();
    p.expect_exit(
        Duration::from_secs(10),
        1,
        "shutdown took longer than the grace period (300ms)",
    )
    .await;
    // Nothing was committed: a restart starts again at the first record.
    let hub2 = hub.hub().await;
    let mut c = hub2
        .consumer(
            "in",
            0,
            Some("http-sink"),
            runnel_runtime::config::OffsetStart::End,
        )
        .await
        .unwrap();
    assert_eq!(c.position(), 2, "no stored offset: the start rule applied");
    drop(c.fetch(1, Duration::ZERO).await.unwrap());
}

/// `/readyz` follows the endpoint even with no records to send: 503 while it refuses
/// connections, 200 once it accepts them, 503 again when it goes away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_the_endpoint() {
    let hub = TempHub::new();
    hub.produce("in", Vec::new()).await;
    let port = free_port();
    let mut p = Proc::spawn(
        sink(&hub, &format!("http://127.0.0.1:{port}/"), &[]),
        hub.path("log"),
    );
    let health = p.health_port().await;
    let readyz = || async move {
        runnel_tests::get(&format!("http://127.0.0.1:{health}/readyz"))
            .await
            .map_or(0, |(code, _)| code)
    };
    wait_until(
        Duration::from_secs(20),
        "readyz 503 while refused",
        || async { readyz().await == 503 },
    )
    .await;
    let server = Recorder::start_on(format!("127.0.0.1:{port}").parse().unwrap(), |_, _| {
        Reply::Status(200)
    })
    .await;
    wait_until(
        Duration::from_secs(20),
        "readyz 200 once it listens",
        || async { readyz().await == 200 },
    )
    .await;
    server.stop();
    wait_until(
        Duration::from_secs(20),
        "readyz 503 once it is gone",
        || async { readyz().await == 503 },
    )
    .await;
    p.terminate();
    assert!(
        p.wait_timeout(Duration::from_secs(15))
            .await
            .unwrap()
            .success(),
        "{}",
        p.output()
    );
}

/// `format: cloudevents` speaks CloudEvents' HTTP binding: in binary mode each ce- header
/// of the record becomes an HTTP header and its data the body; in structured mode the body
/// is the whole event as application/cloudevents+json. `format: json` sets its Content-Type
/// and sends a record that is not JSON to the dead-letter topic with the reason.
#[tokio::test]
async fn formats_make_cloudevents_and_checked_json_bodies() {
    let hub = TempHub::new();
    let event = Record::new(r#"{"celsius":21}"#)
        .with_header("ce-specversion", "1.0")
        .with_header("ce-id", "e-1")
        .with_header("ce-source", "/rooms/kitchen")
        .with_header("ce-type", "reading")
        .with_header("content-type", "application/json");
    hub.produce("in", vec![event]).await;
    let server = Recorder::start(|_, _| Reply::Status(200)).await;
    let binary = "{type: cloudevents, cloudevents: {mode: binary}}";
    let mut p = Proc::spawn(
        sink(&hub, &server.url("/"), &["--format", binary]),
        hub.path("binary.log"),
    );
    wait_until(Duration::from_secs(30), "the binary event", || async {
        server.accepted().len() == 1
    })
    .await;
    p.stop().await;
    let req = server.requests.lock().unwrap()[0].clone();
    assert_eq!(&req.body[..], br#"{"celsius":21}"#);
    assert_eq!(req.headers["ce-id"], "e-1");
    assert_eq!(req.headers["ce-source"], "/rooms/kitchen");
    assert_eq!(req.headers["content-type"], "application/json");

    let server = Recorder::start(|_, _| Reply::Status(200)).await;
    let mut p = Proc::spawn(
        sink(
            &hub,
            &server.url("/"),
            // Another name: the first sink committed the record under its own.
            &["--name", "structured", "--format", "cloudevents"],
        ),
        hub.path("structured.log"),
    );
    wait_until(Duration::from_secs(30), "the structured event", || async {
        server.accepted().len() == 1
    })
    .await;
    p.stop().await;
    let req = server.requests.lock().unwrap()[0].clone();
    assert_eq!(req.headers["content-type"], "application/cloudevents+json");
    let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"specversion": "1.0", "id": "e-1", "source": "/rooms/kitchen",
            "type": "reading", "datacontenttype": "application/json", "data": {"celsius": 21}})
    );

    hub.produce("docs", vec![Record::new("{\"ok\":1}"), Record::new("nope")])
        .await;
    let server = Recorder::start(|_, _| Reply::Status(200)).await;
    let mut cmd = connector("http-sink", &hub);
    cmd.args([
        "--topic",
        "docs",
        "--endpoint",
        &server.url("/"),
        "--format",
        "json",
    ]);
    let _p = Proc::spawn(cmd, hub.path("json.log"));
    wait_until(Duration::from_secs(30), "the dead letter", || async {
        hub.count("docs-dlq").await == 1
    })
    .await;
    wait_until(Duration::from_secs(30), "the JSON record", || async {
        server.accepted().len() == 1
    })
    .await;
    let req = server.requests.lock().unwrap()[0].clone();
    assert_eq!(&req.body[..], b"{\"ok\":1}");
    assert_eq!(req.headers["content-type"], "application/json");
    let dl = &hub.read_all("docs-dlq").await[0];
    let error = dl
        .record
        .headers
        .iter()
        .find(|(k, _)| k == "runnel-error")
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        .unwrap();
    assert!(
        error.starts_with("the value is not JSON: expected ident"),
        "{error}"
    );
}
