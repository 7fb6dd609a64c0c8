//! websocket-source and websocket-sink against a real WebSocket server (tokio-tungstenite,
//! in this process, on 127.0.0.1): Fluvio's own connect.yml run unchanged, 100,000 messages
//! each way with none lost and order kept, subscriptions sent again after every reconnect,
//! the server closing and reopening, a server that goes silent, `kill -9` mid-stream,
//! refused credentials and oversized or undecodable messages, secrets kept out of logs.

#![allow(clippy::unwrap_used)]

use std::{process::Command, sync::atomic::Ordering, time::Duration};

use runnel_runtime::{ConsumedRecord, Record};
use runnel_tests::{
    Proc, TempHub, connector,
    contract::{self, Contract},
    wait_until,
    websocket::{Behaviour, Peer},
};

fn values(records: &[ConsumedRecord]) -> Vec<String> {
    records
        .iter()
        .map(|r| String::from_utf8_lossy(&r.record.value).into_owned())
        .collect()
}

fn numbers(values: &[String]) -> Vec<usize> {
    values
        .iter()
        .map(|v| v.trim_start_matches('m').parse().unwrap())
        .collect()
}

/// Whether m0 .. m{n-1} were all received (in any order, repeats allowed).
fn all_present(got: &[String], n: usize) -> bool {
    let got: std::collections::HashSet<&String> = got.iter().collect();
    (0..n).all(|i| got.contains(&format!("m{i}")))
}

fn source(hub: &TempHub, url: &str, topic: &str) -> Command {
    let mut cmd = connector("websocket-source", hub);
    cmd.args(["--name", topic, "--topic", topic, "--create-topic"])
        .args(["--endpoint", url]);
    cmd
}

fn sink(hub: &TempHub, url: &str, topic: &str) -> Command {
    let mut cmd = connector("websocket-sink", hub);
    cmd.args(["--name", &format!("{topic}-sink"), "--topic", topic])
        .args(["--endpoint", url]);
    cmd
}

fn feed(until: usize) -> Behaviour {
    let b = Behaviour::default();
    b.feed_until.store(until, Ordering::SeqCst);
    b
}

async fn readyz(port: u16) -> u16 {
    runnel_tests::get(&format!("http://127.0.0.1:{port}/readyz"))
        .await
        .map_or(0, |(code, _)| code)
}

async fn produce(hub: &TempHub, topic: &str, range: std::ops::Range<usize>) {
    let all: Vec<usize> = range.collect();
    for chunk in all.chunks(5_000) {
        let records = chunk.iter().map(|i| Record::new(format!("m{i}"))).collect();
        hub.produce(topic, records).await;
    }
}

/// Fluvio's websocket-source file, as its tests write it (`type: websocket-source`, an
/// `http:` section, `websocket_config.subscription_messages`, a header list), runs
/// unchanged: ten subscription messages go out in order, the handshake carries the
/// header, and 100,000 messages (text, then binary) arrive in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fluvio_file_subscribes_and_moves_100k_messages_in_order() {
    const N: usize = 100_000;
    let peer = Peer::start(Behaviour {
        require: Some(("x-secret-token".into(), "abc123".into())),
        subscriptions: 10,
        ..feed(N)
    })
    .await;
    let hub = TempHub::new();
    let subscriptions: Vec<String> = (1..=10).map(|i| format!("      - hello {i}\n")).collect();
    let file = hub.path("connect.yml");
    std::fs::write(
        &file,
        format!(
            "meta:\n  version: latest\n  name: websocket-messages-connector\n  type: websocket-source\n  topic: ws-messages\n  create_topic: false\n  producer:\n    linger: 0ms\nhttp:\n  endpoint: {}\n  headers:\n    - \"x-secret-token: abc123\"\n  websocket_config:\n    subscription_messages:\n{}",
            peer.url("/websocket-echo"),
            subscriptions.concat()
        ),
    )
    .unwrap();
    let mut cmd = connector("websocket-source", &hub);
    cmd.arg("--config").arg(&file).arg("--create-topic");
    let p = Proc::spawn(cmd, hub.path("src.log"));
    wait_until(Duration::from_secs(120), "100,000 records", || async {
        hub.count("ws-messages").await >= N as u64
    })
    .await;
    let got = values(&hub.read_all("ws-messages").await);
    let want: Vec<String> = (0..N).map(|i| format!("m{i}")).collect();
    assert_eq!(got, want);
    let sent: Vec<String> = (1..=10).map(|i| format!("hello {i}")).collect();
    assert_eq!(peer.received(), sent);
    assert_eq!(peer.connections(), 1);
    drop(p);

    // Binary messages are records too.
    let peer = Peer::start(Behaviour {
        binary: true,
        ..feed(1_000)
    })
    .await;
    let p = Proc::spawn(source(&hub, &peer.url("/bin"), "bin"), hub.path("bin.log"));
    wait_until(Duration::from_secs(60), "1,000 binary records", || async {
        hub.count("bin").await >= 1_000
    })
    .await;
    let got = values(&hub.read_all("bin").await);
    assert_eq!(got.first().map(String::as_str), Some("m0"));
    assert_eq!(got.len(), 1_000);
    drop(p);
}

/// Fluvio's http connector with a ws:// endpoint (`type: http-source`) runs the same
/// WebSocket client: it subscribes and moves the feed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_source_with_a_ws_endpoint_is_a_websocket_client() {
    let peer = Peer::start(Behaviour {
        subscriptions: 1,
        ..feed(1_000)
    })
    .await;
    let hub = TempHub::new();
    let file = hub.path("connect.yml");
    std::fs::write(
        &file,
        format!(
            "apiVersion: 0.1.0\nmeta:\n  version: 0.3.0\n  name: trades\n  type: http-source\n  topic: trades\n  create-topic: true\nhttp:\n  endpoint: {}\n  websocket_config:\n    subscription_messages: [subscribe]\n",
            peer.url("/ws")
        ),
    )
    .unwrap();
    let mut cmd = connector("http-source", &hub);
    cmd.arg("--config").arg(&file);
    let _p = Proc::spawn(cmd, hub.path("http.log"));
    wait_until(Duration::from_secs(60), "1,000 records", || async {
        hub.count("trades").await >= 1_000
    })
    .await;
    let want: Vec<String> = (0..1_000).map(|i| format!("m{i}")).collect();
    assert_eq!(values(&hub.read_all("trades").await), want);
    assert_eq!(peer.received(), vec!["subscribe"]);
}

/// The server closes every connection (a Close frame) mid-feed and stops listening, then
/// listens again: the connector reconnects by itself, subscribes again, and, the server
/// having closed gracefully, nothing is lost and nothing repeated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_reconnects_after_the_server_closes_and_reopens() {
    const N: usize = 20_000;
    let peer = Peer::start(Behaviour {
        subscriptions: 1,
        ..feed(N)
    })
    .await;
    peer.behaviour.close_at.store(8_000, Ordering::SeqCst);
    let hub = TempHub::new();
    let mut cmd = source(&hub, &peer.url("/feed"), "reopen");
    cmd.args([
        "--websocket-config",
        r#"{"subscription_messages": ["subscribe"]}"#,
    ])
    .args(["--initial-backoff", "100ms"]);
    let p = Proc::spawn(cmd, hub.path("src.log"));
    let port = p.health_port().await;
    wait_until(Duration::from_secs(60), "the first 8,000", || async {
        hub.count("reopen").await >= 8_000
    })
    .await;
    peer.crash();
    wait_until(Duration::from_secs(20), "/readyz 503", || async {
        readyz(port).await == 503
    })
    .await;
    peer.behaviour.close_at.store(0, Ordering::SeqCst);
    peer.reopen().await;
    wait_until(Duration::from_secs(60), "every record", || async {
        hub.count("reopen").await >= N as u64
    })
    .await;
    let got = values(&hub.read_all("reopen").await);
    let want: Vec<String> = (0..N).map(|i| format!("m{i}")).collect();
    assert_eq!(got, want);
    assert_eq!(peer.received(), vec!["subscribe", "subscribe"]);
    assert_eq!(readyz(port).await, 200);
    assert!(p.output().contains("Not connected; trying again."));
}

/// `kill -9` mid-stream, then a restart: WebSocket has no acknowledgements, so what the
/// killed process had read and not stored is gone (the README says so); what the hub holds
/// is in order with no repeats, one gap at the kill, and everything after the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_kill_9_then_restart_keeps_order_without_repeats() {
    const N: usize = 30_000;
    let peer = Peer::start(feed(N)).await;
    peer.behaviour.pace_micros.store(2_000, Ordering::SeqCst);
    let hub = TempHub::new();
    let mut p = Proc::spawn(source(&hub, &peer.url("/"), "killed"), hub.path("a.log"));
    wait_until(Duration::from_secs(60), "some records", || async {
        hub.count("killed").await >= 5_000
    })
    .await;
    p.kill9();
    let _again = Proc::spawn(source(&hub, &peer.url("/"), "killed"), hub.path("b.log"));
    wait_until(Duration::from_secs(120), "the last record", || async {
        values(&hub.read_all("killed").await)
            .last()
            .is_some_and(|v| v == &format!("m{}", N - 1))
    })
    .await;
    let got = numbers(&values(&hub.read_all("killed").await));
    assert!(
        got.windows(2).all(|w| w[0] < w[1]),
        "order kept, no repeats"
    );
    let gaps = got.windows(2).filter(|w| w[1] != w[0] + 1).count();
    assert!(gaps <= 1, "{gaps} gaps");
    assert_eq!(got[0], 0);
    let lost = N - got.len();
    assert!(lost < 5_000, "{lost} lost at the kill");
    assert_eq!(peer.connections(), 2);
}

/// A server that stops answering (no pong, no message) without closing is taken as dead
/// after two ping intervals, and the connector connects again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_takes_a_silent_server_as_dead() {
    let peer = Peer::start(Behaviour::default()).await;
    peer.behaviour.silent.store(true, Ordering::SeqCst);
    let hub = TempHub::new();
    let mut cmd = source(&hub, &peer.url("/"), "silent");
    cmd.args(["--websocket-config", r#"{"ping_interval_ms": 300}"#])
        .args(["--initial-backoff", "100ms"]);
    let p = Proc::spawn(cmd, hub.path("src.log"));
    wait_until(Duration::from_secs(30), "a second connection", || async {
        peer.connections() >= 2
    })
    .await;
    assert!(p.output().contains("answered nothing"), "{}", p.output());
}

/// Refused credentials end the source with exit 1 and a message saying so, the token
/// absent from it; an unreachable server is retried with `/readyz` 503; a message over
/// max_record_size is counted in records_failed and the connector reconnects; a message
/// that does not decode is skipped with a log line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_bad_input() {
    let peer = Peer::start(Behaviour {
        require: Some(("authorization".into(), "Bearer right".into())),
        ..feed(10)
    })
    .await;
    let hub = TempHub::new();
    let mut cmd = source(&hub, &peer.url("/"), "refused");
    cmd.args(["--headers", "Authorization: Bearer ${{ secrets.TOKEN }}"])
        .env("TOKEN", "wr0ng-t0ken");
    let mut p = Proc::spawn(cmd, hub.path("refused.log"));
    let log = p
        .expect_exit(
            Duration::from_secs(30),
            1,
            "refused the WebSocket upgrade with 401",
        )
        .await;
    assert!(!log.contains("wr0ng-t0ken"), "{log}");
    // The sink too: exit 1, the reason, no token.
    hub.produce("refused-out", vec![Record::new("z")]).await;
    let mut cmd = sink(&hub, &peer.url("/"), "refused-out");
    cmd.args(["--headers", "Authorization: Bearer ${{ secrets.TOKEN }}"])
        .env("TOKEN", "wr0ng-t0ken");
    let mut p = Proc::spawn(cmd, hub.path("refused-sink.log"));
    let log = p
        .expect_exit(
            Duration::from_secs(30),
            1,
            "the server refused the connection",
        )
        .await;
    assert!(!log.contains("wr0ng-t0ken"), "{log}");

    // Nothing listens: retried, /readyz 503.
    let port = runnel_tests::free_port();
    let p = Proc::spawn(
        source(&hub, &format!("ws://127.0.0.1:{port}/"), "away"),
        hub.path("away.log"),
    );
    let health = p.health_port().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(readyz(health).await, 503);
    assert!(
        p.output().contains("Not connected; trying again."),
        "{}",
        p.output()
    );
    drop(p);

    // Oversized and undecodable messages.
    let peer = Peer::start(feed(100)).await;
    let mut cmd = source(&hub, &peer.url("/"), "small");
    cmd.args(["--max-record-size", "2B"])
        .args(["--initial-backoff", "100ms"]);
    let p = Proc::spawn(cmd, hub.path("small.log"));
    let health = p.health_port().await;
    wait_until(Duration::from_secs(30), "records_failed", || async {
        runnel_tests::metric(health, "runnel_connector_records_failed_total")
            .await
            .unwrap_or(0.0)
            >= 1.0
    })
    .await;
    wait_until(Duration::from_secs(30), "a reconnect", || async {
        peer.connections() >= 2
    })
    .await;
    assert!(p.output().contains("over the maximum"), "{}", p.output());
    drop(p);
    let peer = Peer::start(feed(5)).await;
    let mut cmd = source(&hub, &peer.url("/"), "json");
    cmd.args(["--format", "json"]);
    let p = Proc::spawn(cmd, hub.path("json.log"));
    let health = p.health_port().await;
    wait_until(Duration::from_secs(30), "five skipped", || async {
        runnel_tests::metric(health, "runnel_connector_records_failed_total")
            .await
            .unwrap_or(0.0)
            >= 5.0
    })
    .await;
    assert!(p.output().contains("does not decode"), "{}", p.output());
    assert_eq!(hub.count("json").await, 0);
}

/// 100,000 records from the hub reach the server in order, each a text message; with
/// `message_type: binary`, binary messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_sends_100k_records_in_order() {
    const N: usize = 100_000;
    let peer = Peer::start(Behaviour::default()).await;
    let hub = TempHub::new();
    produce(&hub, "out", 0..N).await;
    let p = Proc::spawn(sink(&hub, &peer.url("/in"), "out"), hub.path("sink.log"));
    wait_until(Duration::from_secs(120), "100,000 messages", || async {
        peer.received_count() >= N
    })
    .await;
    let want: Vec<String> = (0..N).map(|i| format!("m{i}")).collect();
    assert_eq!(peer.received(), want);
    drop(p);

    let peer = Peer::start(Behaviour::default()).await;
    produce(&hub, "raw", 0..10).await;
    hub.produce("raw", vec![Record::new(vec![0xff, 0xfe])])
        .await;
    let mut cmd = sink(&hub, &peer.url("/in"), "raw");
    cmd.args(["--message-type", "binary"]);
    let p = Proc::spawn(cmd, hub.path("raw.log"));
    wait_until(Duration::from_secs(30), "eleven messages", || async {
        peer.received_count() >= 11
    })
    .await;
    assert_eq!(
        peer.seen.received.lock().unwrap()[10],
        vec![0xff, 0xfe],
        "bytes as they are"
    );
    drop(p);
}

/// The server crashes mid-stream (no Close frame, what it had not read is gone) and comes
/// back: the batch that was not confirmed by a pong is sent again, so every record
/// arrives; repeats stay within the batches in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_loses_nothing_when_the_server_crashes_and_returns() {
    const N: usize = 50_000;
    let peer = Peer::start(Behaviour::default()).await;
    // A slow reader, so the crash finds batches in flight.
    peer.behaviour
        .read_pace_micros
        .store(5_000, Ordering::SeqCst);
    let hub = TempHub::new();
    produce(&hub, "crash", 0..N / 2).await;
    let p = Proc::spawn(sink(&hub, &peer.url("/in"), "crash"), hub.path("sink.log"));
    let port = p.health_port().await;
    wait_until(Duration::from_secs(60), "some messages", || async {
        peer.received_count() >= 5_000
    })
    .await;
    peer.crash();
    produce(&hub, "crash", N / 2..N).await;
    wait_until(Duration::from_secs(20), "/readyz 503", || async {
        readyz(port).await == 503
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    peer.behaviour.read_pace_micros.store(0, Ordering::SeqCst);
    peer.reopen().await;
    wait_until(Duration::from_secs(120), "every record", || async {
        all_present(&peer.received(), N)
    })
    .await;
    let repeated = peer.received_count() - N;
    assert!(repeated <= 10_000, "{repeated} repeated");
    wait_until(Duration::from_secs(10), "/readyz 200", || async {
        readyz(port).await == 200
    })
    .await;
}

/// `kill -9` of the sink mid-stream, then a restart: the hub offset was committed only
/// after a batch was confirmed, so the rest is sent again and nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_kill_9_then_restart_loses_nothing() {
    const N: usize = 50_000;
    let peer = Peer::start(Behaviour::default()).await;
    peer.behaviour
        .read_pace_micros
        .store(2_000, Ordering::SeqCst);
    let hub = TempHub::new();
    produce(&hub, "k", 0..N).await;
    let mut p = Proc::spawn(sink(&hub, &peer.url("/in"), "k"), hub.path("a.log"));
    wait_until(Duration::from_secs(60), "some messages", || async {
        peer.received_count() >= 10_000
    })
    .await;
    p.kill9();
    peer.behaviour.read_pace_micros.store(0, Ordering::SeqCst);
    let _again = Proc::spawn(sink(&hub, &peer.url("/in"), "k"), hub.path("b.log"));
    wait_until(Duration::from_secs(120), "every record", || async {
        all_present(&peer.received(), N)
    })
    .await;
    let repeated = peer.received_count() - N;
    assert!(repeated <= 10_000, "{repeated} repeated");
}

/// A value that is not UTF-8 cannot be a text message: it follows on_error (here the
/// dead-letter topic) and the records around it are sent. Both connectors keep the
/// connector contract, with a header secret kept out of their logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_dead_letters_what_cannot_be_text_and_both_keep_the_contract() {
    let peer = Peer::start(Behaviour {
        require: Some(("x-api-key".into(), "k3y-s3cret".into())),
        ..Behaviour::default()
    })
    .await;
    let hub = TempHub::new();
    hub.produce(
        "mixed",
        vec![
            Record::new("a"),
            Record::new(vec![0xff, 0x00]),
            Record::new("b"),
        ],
    )
    .await;
    let mut cmd = sink(&hub, &peer.url("/in"), "mixed");
    cmd.args(["--headers", "x-api-key: ${{ secrets.KEY }}"])
        .args(["--on-error", "dead-letter"])
        .env("KEY", "k3y-s3cret");
    let mut snk = Proc::spawn(cmd, hub.path("sink.log"));
    wait_until(Duration::from_secs(30), "a and b", || async {
        peer.received_count() >= 2
    })
    .await;
    assert_eq!(peer.received(), vec!["a", "b"]);
    wait_until(Duration::from_secs(30), "the dead letter", || async {
        hub.count("mixed-dlq").await >= 1
    })
    .await;

    let src_peer = Peer::start(Behaviour {
        require: Some(("x-api-key".into(), "k3y-s3cret".into())),
        ..feed(3)
    })
    .await;
    let mut cmd = source(&hub, &src_peer.url("/"), "csrc");
    cmd.args(["--headers", "x-api-key: ${{ secrets.KEY }}"])
        .env("KEY", "k3y-s3cret");
    let mut src = Proc::spawn(cmd, hub.path("src.log"));
    wait_until(Duration::from_secs(30), "three records", || async {
        hub.count("csrc").await >= 3
    })
    .await;
    for (p, kind, name) in [
        (&mut src, "websocket-source", "csrc"),
        (&mut snk, "websocket-sink", "mixed-sink"),
    ] {
        contract::check(
            p,
            Contract {
                kind,
                name,
                secrets: &["k3y-s3cret"],
                ready: true,
            },
        )
        .await;
    }
}
