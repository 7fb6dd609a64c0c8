//! http-source against real HTTP servers on 127.0.0.1: polling, output formats, error
//! statuses, and streaming across a dropped connection.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use runnel_tests::{
    Proc, Recorder, Reply, TempHub, connector,
    contract::{self, Contract},
    wait_until,
};
use tokio::{io::AsyncWriteExt, net::TcpListener};

#[tokio::test]
async fn polls_with_method_headers_and_body_and_skips_error_statuses() {
    let hub = TempHub::new();
    // Every third answer is a 500: no record for it, counted in records_failed.
    let server = Recorder::start(|_, n| {
        if n % 3 == 1 {
            Reply::Status(500)
        } else {
            Reply::Status(200)
        }
    })
    .await;
    let mut cmd = connector("http-source", &hub);
    cmd.args([
        "--topic",
        "polled",
        "--create-topic",
        "--interval",
        "30ms",
        "--initial-backoff",
        "10ms",
        "--method",
        "POST",
        "--headers",
        "X-Test: yes",
        "--body",
        "ping",
        "--endpoint",
        &server.url("/api"),
    ]);
    let p = Proc::spawn(cmd, hub.path("log"));
    wait_until(Duration::from_secs(30), "6 records", || async {
        hub.count("polled").await >= 6
    })
    .await;
    for r in hub.read_all("polled").await {
        let v: serde_json::Value = serde_json::from_slice(&r.record.value).unwrap();
        assert_eq!(v["status"], 200, "{v}");
    }
    let req = server.requests.lock().unwrap()[0].clone();
    assert_eq!(req.method, "POST");
    assert_eq!(req.headers["x-test"], "yes");
    assert_eq!(&req.body[..], b"ping");
    let failed = runnel_tests::metric(
        p.health_port().await,
        "runnel_connector_records_failed_total",
    )
    .await
    .unwrap();
    assert!(failed >= 1.0);
    assert!(
        p.output()
            .contains("no record written (on_error_status: skip)"),
        "{}",
        p.output()
    );
}

#[tokio::test]
async fn full_output_as_json_and_text() {
    let hub = TempHub::new();
    let server = Recorder::start(|_, _| Reply::Status(200)).await;
    for (topic, kind) in [("full-json", "json"), ("full-text", "text")] {
        let mut cmd = connector("http-source", &hub);
        cmd.args([
            "--topic",
            topic,
            "--create-topic",
            "--interval",
            "1s",
            "--output-parts",
            "full",
            "--output-type",
            kind,
            "--endpoint",
            &server.url("/"),
        ]);
        let _p = Proc::spawn(cmd, hub.path(topic));
        wait_until(Duration::from_secs(30), "a record", || async {
            hub.count(topic).await >= 1
        })
        .await;
    }
    let rec = &hub.read_all("full-json").await[0];
    let v: serde_json::Value = serde_json::from_slice(&rec.record.value).unwrap();
    assert_eq!(v["status"]["code"], 200);
    assert_eq!(v["status"]["version"], "HTTP/1.1");
    assert_eq!(v["header"]["content-type"], "text/plain; charset=utf-8");
    assert!(v["body"].as_str().unwrap().contains("\"status\":200"));
    let text = String::from_utf8(hub.read_all("full-text").await[0].record.value.to_vec()).unwrap();
    assert!(text.starts_with("HTTP/1.1 200 OK\n"), "{text}");
    assert!(text.contains("\n\n{\"n\":"), "{text}");
}

#[tokio::test]
async fn error_status_stop_policy_exits_non_zero() {
    let hub = TempHub::new();
    let server = Recorder::start(|_, _| Reply::Status(404)).await;
    let mut cmd = connector("http-source", &hub);
    cmd.args([
        "--topic",
        "x",
        "--create-topic",
        "--on-error-status",
        "stop",
        "--endpoint",
        &server.url("/"),
    ]);
    let mut p = Proc::spawn(cmd, hub.path("log"));
    p.expect_exit(
        Duration::from_secs(30),
        1,
        "answered 404 Not Found and on_error_status is stop",
    )
    .await;
}

/// A streaming server: the first connection sends two lines and half of a third, then
/// drops; the second sends three more lines and ends cleanly (the last without a
/// delimiter); later connections are refused with 503.
async fn stream_server() -> (String, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/stream", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let mut n = 0;
        loop {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = tokio::io::AsyncReadExt::read(&mut sock, &mut buf).await;
            n += 1;
            let chunk = |s: &str| format!("{:x}\r\n{s}\r\n", s.len());
            let head =
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n";
            match n {
                1 => {
                    sock.write_all(head.as_bytes()).await.unwrap();
                    sock.write_all(chunk("one\ntw").as_bytes()).await.unwrap();
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    sock.write_all(chunk("o\nhal").as_bytes()).await.unwrap();
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    // Dropped mid-record: "hal" never gets its delimiter.
                }
                2 => {
                    sock.write_all(head.as_bytes()).await.unwrap();
                    for part in ["three\n", "four\nfi", "ve"] {
                        sock.write_all(chunk(part).as_bytes()).await.unwrap();
                        tokio::time::sleep(Duration::from_millis(30)).await;
                    }
                    sock.write_all(b"0\r\n\r\n").await.unwrap();
                }
                _ => {
                    let _ = sock
                        .write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n")
                        .await;
                }
            }
        }
    });
    (url, task)
}

#[tokio::test]
async fn stream_mode_splits_records_and_reconnects_after_a_drop() {
    let hub = TempHub::new();
    let (url, server) = stream_server().await;
    let mut cmd = connector("http-source", &hub);
    cmd.args([
        "--topic",
        "lines",
        "--create-topic",
        "--stream",
        "--initial-backoff",
        "20ms",
        "--max-backoff",
        "200ms",
        "--endpoint",
        &url,
    ]);
    let p = Proc::spawn(cmd, hub.path("log"));
    wait_until(Duration::from_secs(30), "5 records", || async {
        hub.count("lines").await >= 5
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let values: Vec<String> = hub
        .read_all("lines")
        .await
        .iter()
        .map(|r| String::from_utf8_lossy(&r.record.value).into_owned())
        .collect();
    assert_eq!(values, ["one", "two", "three", "four", "five"]);
    let out = p.output();
    assert!(out.contains("Discarding an incomplete record"), "{out}");
    assert!(out.contains("Stream interrupted; reconnecting."), "{out}");
    server.abort();
}

#[tokio::test]
async fn two_processes_share_one_hub_while_it_is_written() {
    let hub = TempHub::new();
    let mut src = connector("test-source", &hub);
    src.args(["--topic", "shared", "--create-topic", "--interval", "1ms"]);
    let _source = Proc::spawn(src, hub.path("source"));
    wait_until(Duration::from_secs(30), "the topic", || async {
        hub.count("shared").await > 0
    })
    .await;
    // `runnel topic consume` in its own process follows the topic as the source writes.
    let out = tokio::process::Command::new(runnel_tests::bin("runnel"))
        .env("RUNNEL_HUB", &hub.url)
        .args([
            "topic", "consume", "shared", "-B", "-n", "500", "-o", "json",
        ])
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), out)
        .await
        .unwrap()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let offsets: Vec<i64> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["offset"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(offsets, (0..500).collect::<Vec<_>>());
}

const HUGE: usize = 300 << 20;

/// A hostile server: the first answer is a chunked body of 300 MB of `x` (in stream mode
/// followed by "\nok\n"), later answers are `ok` with a Content-Length.
async fn hostile_server(then_ok_in_stream: bool) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/big", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut n = 0;
        loop {
            let (mut sock, _) = listener.accept().await.unwrap();
            n += 1;
            let first = n == 1;
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = tokio::io::AsyncReadExt::read(&mut sock, &mut buf).await;
                if !first {
                    let _ = sock
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                        .await;
                    return;
                }
                let head = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
                if sock.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let piece = vec![b'x'; 64 << 10];
                let mut framed = format!("{:x}\r\n", piece.len()).into_bytes();
                framed.extend(&piece);
                framed.extend(b"\r\n");
                for _ in 0..HUGE / piece.len() {
                    // The connector may stop reading and close: that is its right.
                    if sock.write_all(&framed).await.is_err() {
                        return;
                    }
                }
                if then_ok_in_stream {
                    let _ = sock.write_all(b"4\r\n\nok\n\r\n").await;
                }
                let _ = sock.write_all(b"0\r\n\r\n").await;
            });
        }
    });
    url
}

/// Runs http-source against the hostile server until the record after the huge one is in
/// `topic`; checks it, the peak memory and that the log gives `reason`, then stops it.
async fn survives_the_huge_one(stream: bool, topic: &str, flags: &[&str], reason: &str) {
    let hub = TempHub::new();
    let url = hostile_server(stream).await;
    let mut cmd = connector("http-source", &hub);
    cmd.args(["--topic", topic, "--create-topic", "--endpoint", &url]);
    cmd.args(flags);
    let mut p = Proc::spawn(cmd, hub.path("log"));
    wait_until(
        Duration::from_secs(120),
        "the record after the huge one",
        || async { hub.count(topic).await >= 1 },
    )
    .await;
    assert_eq!(&hub.read_all(topic).await[0].record.value[..], b"ok");
    let rss = runnel_tests::peak_rss(p.pid());
    assert!(rss < 200 << 20, "peak RSS {rss} bytes");
    let log = p.output();
    assert!(log.contains(reason), "{log}");
    let failed = runnel_tests::metric(
        p.health_port().await,
        "runnel_connector_records_failed_total",
    )
    .await
    .unwrap();
    assert!(failed >= 1.0);
    p.stop().await;
}

/// A 300 MB poll body is not kept: it is skipped with its size named, memory stays low,
/// and the next poll is a record as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_poll_body_is_skipped_with_its_size_and_memory_stays_bounded() {
    let reason = "is over the maximum record size of 1048576 bytes (max_record_size)";
    survives_the_huge_one(false, "big", &["--interval", "50ms"], reason).await;
}

/// In stream mode, 300 MB without a delimiter is one oversized record, named with its exact
/// size; the stream resumes at the delimiter after it, and memory stays low.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_stream_without_a_delimiter_stays_bounded_and_resynchronises() {
    let reason =
        format!("a record of {HUGE} bytes is over the maximum record size of 1048576 bytes");
    survives_the_huge_one(true, "stream", &["--stream"], &reason).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meets_the_connector_contract() {
    let hub = TempHub::new();
    let server = Recorder::start(|_, _| Reply::Status(200)).await;
    let mut cmd = connector("http-source", &hub);
    cmd.args(["--name", "poll", "--topic", "polled", "--create-topic"])
        .args(["--interval", "30ms", "--endpoint", &server.url("/api")]);
    let mut p = Proc::spawn(cmd, hub.path("log"));
    wait_until(Duration::from_secs(30), "a record", || async {
        hub.count("polled").await >= 1
    })
    .await;
    let c = Contract {
        kind: "http-source",
        name: "poll",
        secrets: &[],
        ready: true,
    };
    contract::check(&mut p, c).await;
}

/// Answers every request with `body` (the same each time) and closes the connection.
async fn body_server(body: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/data", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = tokio::io::AsyncReadExt::read(&mut sock, &mut buf).await;
            let reply = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(reply.as_bytes()).await;
        }
    });
    url
}

/// `format:` on polled bodies: a CSV body with a header row gives one JSON record per row
/// (the header is read again in each body), and a body that is not what the format says
/// is skipped with the reason, never stored as it came.
#[tokio::test]
async fn formats_decode_polled_bodies_and_skip_what_does_not_decode() {
    let hub = TempHub::new();
    let csv = body_server("room,celsius\nkitchen,21\nhall,\n").await;
    let mut cmd = connector("http-source", &hub);
    cmd.args(["--topic", "rooms", "--create-topic", "--interval", "50ms"]);
    cmd.args([
        "--format",
        "{type: csv, csv: {columns: [{name: celsius, type: integer}]}}",
        "--endpoint",
        &csv,
    ]);
    let _p = Proc::spawn(cmd, hub.path("csv.log"));
    wait_until(Duration::from_secs(30), "4 rows", || async {
        hub.count("rooms").await >= 4
    })
    .await;
    let rows: Vec<serde_json::Value> = hub
        .read_all("rooms")
        .await
        .iter()
        .map(|r| serde_json::from_slice(&r.record.value).unwrap())
        .collect();
    assert_eq!(
        rows[0],
        serde_json::json!({"room": "kitchen", "celsius": 21})
    );
    assert_eq!(
        rows[1],
        serde_json::json!({"room": "hall", "celsius": null})
    );
    assert_eq!(
        rows[2], rows[0],
        "the header row is read again in the next body"
    );

    let bad = body_server("{not json").await;
    let mut cmd = connector("http-source", &hub);
    cmd.args(["--topic", "docs", "--create-topic", "--interval", "50ms"]);
    cmd.args(["--format", "json", "--endpoint", &bad]);
    let p = Proc::spawn(cmd, hub.path("json.log"));
    let port = p.health_port().await;
    wait_until(Duration::from_secs(30), "failures counted", || async {
        runnel_tests::metric(port, "runnel_connector_records_failed_total")
            .await
            .unwrap_or(0.0)
            >= 2.0
    })
    .await;
    assert_eq!(
        hub.count("docs").await,
        0,
        "nothing that is not JSON is stored"
    );
    let out = p.output();
    assert!(
        out.contains("Skipping a piece that does not decode.")
            && out.contains("the piece is not JSON: key must be a string"),
        "{out}"
    );
}

/// Stream mode with `framing: newline` and `format: json`: each line is a record, a line
/// that is not JSON is skipped, and Fluvio's older options cannot be mixed with `format:`.
#[tokio::test]
async fn stream_framing_and_format_together() {
    let hub = TempHub::new();
    let url = body_server("{\"a\":1}\nnope\n{\"a\":2}\n").await;
    let mut cmd = connector("http-source", &hub);
    cmd.args(["--topic", "events", "--create-topic", "--stream"]);
    cmd.args([
        "--framing",
        "newline",
        "--format",
        "json",
        "--endpoint",
        &url,
    ]);
    let _p = Proc::spawn(cmd, hub.path("stream.log"));
    wait_until(Duration::from_secs(30), "2 records", || async {
        hub.count("events").await >= 2
    })
    .await;
    let values: Vec<String> = hub.read_all("events").await[..2]
        .iter()
        .map(|r| String::from_utf8_lossy(&r.record.value).into_owned())
        .collect();
    assert_eq!(values, ["{\"a\":1}", "{\"a\":2}"]);

    let mut cmd = connector("http-source", &hub);
    cmd.args(["--topic", "t", "--format", "json", "--output-type", "json"]);
    cmd.args(["--endpoint", &url, "--check"]);
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(
            "http.format: cannot be combined with output_parts: full or output_type: json"
        ),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
