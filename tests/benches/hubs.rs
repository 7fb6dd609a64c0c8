//! `cargo bench --bench hubs`: producing into the Kafka and NATS hubs through a connector,
//! against a bare client of the same library producing the same records in the same run.
//! Needs the release binaries (`cargo build --release --locked --workspace --bins`), tansu
//! and nats-server (scripts/test-deps).
//!
//! - kafka: test-source → `kafka://` (tansu, memory storage), 200,000 records of 100
//!   bytes, against a bare rdkafka FutureProducer with the hub's settings (acks=all,
//!   idempotence, linger 5 ms) queueing the same number of 100-byte records and awaiting
//!   every delivery, timed from creating the client to destroying it.
//! - nats: test-source → `nats://` (nats-server, JetStream file storage), against bare
//!   async-nats JetStream publishes awaited in windows of 1,024 acknowledgements, timed
//!   from connecting.
//!
//! Each prints `CASE: runnel N msg/s, PEER M msg/s, ratio R`; best of 3 alternating rounds.
//! RUNNEL_BENCH_RECORDS changes the count.

#![allow(clippy::unwrap_used)]

use std::{
    process::Command,
    time::{Duration, Instant},
};

use rdkafka::{
    ClientConfig,
    producer::{FutureProducer, FutureRecord},
};
use runnel_tests::{
    TempHub, release_bin,
    servers::{Nats, Tansu},
};

const ROUNDS: usize = 3;

fn template() -> String {
    // 100 bytes once count has 6 digits and the timestamp 13.
    format!(
        "{{\"count\":{{{{count}}}},\"timestamp\":{{{{timestamp}}}},\"pad\":\"{}\"}}",
        "x".repeat(48)
    )
}

fn value(i: u64) -> Vec<u8> {
    let mut v = format!("{{\"count\":{i},\"timestamp\":1700000000000,\"pad\":\"").into_bytes();
    while v.len() < 98 {
        v.push(b'x');
    }
    v.extend_from_slice(b"\"}");
    v
}

/// The release test-source producing `n` records into `topic` of the hub at `url`.
fn connector(url: &str, topic: &str, n: u64) -> f64 {
    let start = Instant::now();
    let out = Command::new(release_bin("test-source"))
        .env("RUNNEL_HUB", url)
        .env("RUNNEL_HEALTH_ADDR", "off")
        .env("RUST_LOG", "warn")
        .args(["--topic", topic, "--create-topic", "--interval", "0"])
        .arg("--count")
        .arg(n.to_string())
        .arg("--template")
        .arg(template())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    n as f64 / start.elapsed().as_secs_f64()
}

async fn bare_kafka(port: u16, topic: &str, n: u64) -> f64 {
    let hub = TempHub::remote(&format!("kafka://127.0.0.1:{port}"));
    hub.hub().await.create_topic(topic, 1).await.unwrap();
    // From creating the client to closing it, as the connector's time runs from its start
    // to its exit: both pay the idempotent producer's start (librdkafka acquires a
    // producer id about 0.5 s after the client is created) and the client's destruction.
    let start = Instant::now();
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", format!("127.0.0.1:{port}"))
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .unwrap();
    let mut pending = Vec::with_capacity(n as usize);
    for i in 0..n {
        let v = value(i);
        let mut r = FutureRecord::<(), _>::to(topic).payload(&v);
        loop {
            match p.send_result(r) {
                Ok(f) => {
                    pending.push(f);
                    break;
                }
                Err((_, back)) => {
                    r = back;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
    }
    for f in pending {
        f.await.unwrap().unwrap();
    }
    drop(p);
    n as f64 / start.elapsed().as_secs_f64()
}

async fn bare_nats(port: u16, topic: &str, n: u64) -> f64 {
    let hub = TempHub::remote(&format!("nats://127.0.0.1:{port}"));
    hub.hub().await.create_topic(topic, 1).await.unwrap();
    // From connecting to the last acknowledgement, as for Kafka.
    let start = Instant::now();
    let client = async_nats::connect(format!("127.0.0.1:{port}"))
        .await
        .unwrap();
    let js = async_nats::jetstream::new(client);
    let subject = format!("runnel.{topic}");
    let mut i = 0;
    while i < n {
        let mut acks = Vec::with_capacity(1024);
        for _ in 0..1024.min(n - i) {
            acks.push(js.publish(subject.clone(), value(i).into()).await.unwrap());
            i += 1;
        }
        for a in acks {
            a.await.unwrap();
        }
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn line(case: &str, ours: f64, peer: &str, theirs: f64) {
    println!(
        "{case}: runnel {ours:.0} msg/s, {peer} {theirs:.0} msg/s, ratio {:.2}",
        ours / theirs
    );
}

#[tokio::main]
async fn main() {
    let n: u64 = std::env::var("RUNNEL_BENCH_RECORDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200_000);
    let _ = Command::new("sync").status();
    println!("{n} records of 100 bytes, best of {ROUNDS} rounds");

    let tansu = Tansu::start();
    let (mut ours, mut theirs) = (0f64, 0f64);
    for round in 0..ROUNDS {
        ours = ours.max(connector(&tansu.url(), &format!("c{round}"), n));
        theirs = theirs.max(bare_kafka(tansu.port, &format!("b{round}"), n).await);
    }
    line("kafka", ours, "bare rdkafka", theirs);
    drop(tansu);

    let nats = Nats::start();
    let (mut ours, mut theirs) = (0f64, 0f64);
    for round in 0..ROUNDS {
        ours = ours.max(connector(&nats.url(), &format!("c{round}"), n));
        theirs = theirs.max(bare_nats(nats.port, &format!("b{round}"), n).await);
    }
    line("nats", ours, "bare async-nats", theirs);
}
