//! mqtt-source against `mosquitto_sub`, the practical limit of reading a stream out of
//! mosquitto, in the same run from the same broker. Run with
//! `cargo build --release --locked --workspace --bins && cargo bench --bench mqtt_source`.
//! Prints `CASE: runnel N msg/s, mosquitto_sub M msg/s, ratio R` for qos0 and qos1.
//!
//! Both subscribers hold a persistent session (clean session off, fixed client id) on the
//! same topic. With both offline, a publisher in this process puts N messages of 100 bytes
//! into the broker (QoS 1, every PUBACK awaited), so both sessions queue the same stream.
//! Then each drains it alone, timed from its start: `mosquitto_sub -C N` to /dev/null, and
//! the release mqtt-source into a local hub topic, until the topic holds N records. The
//! publisher is therefore never the bottleneck, and neither reader competes with the other.

#![allow(clippy::unwrap_used)]

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};
use runnel_tests::{Proc, TempHub, mosquitto::Mosquitto, release_bin};

fn payload(i: u64) -> Vec<u8> {
    let mut p = format!("{i:010}-").into_bytes();
    p.resize(100, b'x');
    p
}

/// Puts `n` messages on `topic`, waiting for every PUBACK.
async fn publish(m: &Mosquitto, topic: &str, n: u64) {
    let mut o = MqttOptions::new("bench-publisher", "127.0.0.1", m.port);
    o.set_inflight(1000);
    let (client, mut events) = AsyncClient::new(o, 1000);
    let t = topic.to_string();
    let feeder = tokio::spawn(async move {
        for i in 0..n {
            client
                .publish(t.as_str(), QoS::AtLeastOnce, false, payload(i))
                .await
                .unwrap();
        }
        client
    });
    let mut acked = 0;
    while acked < n {
        if let Event::Incoming(Incoming::PubAck(_)) = events.poll().await.unwrap() {
            acked += 1;
        }
    }
    let client = feeder.await.unwrap();
    client.disconnect().await.unwrap();
    while !matches!(
        events.poll().await,
        Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) | Err(_)
    ) {}
}

fn mosquitto_sub(m: &Mosquitto, qos: u8, topic: &str, id: &str, extra: &[&str]) -> Command {
    let mut cmd = Command::new("mosquitto_sub");
    cmd.args(["-h", "127.0.0.1", "-p", &m.port.to_string()])
        .args(["-q", &qos.to_string(), "-t", topic, "-c", "-i", id])
        .args(extra)
        .stdout(Stdio::null());
    cmd
}

fn source(m: &Mosquitto, hub: &TempHub, qos: u8, topic: &str, id: &str) -> Command {
    let mut cmd = Command::new(release_bin("mqtt-source"));
    cmd.env("RUNNEL_HUB", &hub.url)
        .env("RUNNEL_HEALTH_ADDR", "off")
        .env("RUST_LOG", "info")
        .args(["--topic", "bench", "--create-topic", "--url", &m.url()])
        .args(["--mqtt-topic", topic, "--qos", &qos.to_string()])
        .args(["--client-id", id, "--clean-session=false"]);
    cmd
}

async fn case(m: &Mosquitto, qos: u8, n: u64) -> (f64, f64) {
    let topic = format!("bench/q{qos}");
    let sub_id = format!("bench-sub-q{qos}");
    let src_id = format!("bench-src-q{qos}");
    let hub = TempHub::new();

    // Both sessions subscribe, then go offline.
    let ok = mosquitto_sub(m, qos, &topic, &sub_id, &["-E"])
        .status()
        .unwrap()
        .success();
    assert!(ok, "mosquitto_sub could not subscribe");
    let mut first = Proc::spawn(source(m, &hub, qos, &topic, &src_id), hub.path("first.log"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !first.output().contains("Subscribed.") {
        assert!(Instant::now() < deadline, "{}", first.output());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.terminate();
    first.wait_timeout(Duration::from_secs(15)).await.unwrap();

    publish(m, &topic, n).await;
    let _ = Command::new("sync").status();

    let start = Instant::now();
    let ok = mosquitto_sub(m, qos, &topic, &sub_id, &["-C", &n.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "mosquitto_sub failed");
    let peer = n as f64 / start.elapsed().as_secs_f64();

    let h = hub.hub().await;
    let start = Instant::now();
    let p = Proc::spawn(source(m, &hub, qos, &topic, &src_id), hub.path("run.log"));
    let deadline = start + Duration::from_secs(300);
    loop {
        let have = h.topic("bench").await.unwrap().map_or(0, |t| t.records);
        if have >= n {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{have} of {n} records after 5 minutes:\n{}",
            p.output()
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let ours = n as f64 / start.elapsed().as_secs_f64();
    drop(p);
    (ours, peer)
}

#[tokio::main]
async fn main() {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name\t: ").map(String::from))
        })
        .unwrap_or_default();
    println!(
        "machine: {} cores, {cpu}",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    // QoS 0 messages are queued for offline persistent sessions only with this on.
    let m = Mosquitto::start_with("allow_anonymous true\nqueue_qos0_messages true\n");
    for (qos, n) in [(0u8, 300_000u64), (1, 200_000)] {
        let (ours, peer) = case(&m, qos, n).await;
        println!(
            "qos{qos}: runnel {ours:.0} msg/s, mosquitto_sub {peer:.0} msg/s, ratio {:.2}",
            ours / peer
        );
    }
}
