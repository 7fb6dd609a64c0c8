//! rabbitmq-source and rabbitmq-sink against bare lapin clients, in the same run, on one
//! RabbitMQ started on 127.0.0.1. Run with `cargo build --release --locked -p
//! rabbitmq-source -p rabbitmq-sink && cargo bench --locked -p rabbitmq-source --bench
//! rabbitmq`. Each case prints `CASE: runnel N msg/s, PEER M msg/s, ratio R`;
//! `RUNNEL_BENCH_MESSAGES` sets N (default 200,000).
//!
//! - source: N persistent 100-byte messages waiting in a durable queue, drained by the
//!   release rabbitmq-source into the local hub (timed from its start until the hub holds
//!   them all), against a bare lapin consumer with the same prefetch (100) acknowledging
//!   each message as it arrives, storing nothing.
//! - sink: N records in the local hub published by the release rabbitmq-sink to a durable
//!   queue (timed from its start until its committed offset reaches N: every message
//!   confirmed), against a bare lapin publisher with confirms and the same number of
//!   publishes in flight (1, then 16).

#![allow(clippy::unwrap_used)]

use std::{process::Command, time::Instant};

use futures_util::StreamExt;
use lapin::{
    BasicProperties, Channel, Connection, ConnectionProperties,
    options::{
        BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
        ConfirmSelectOptions, QueueDeclareOptions, QueuePurgeOptions,
    },
    types::FieldTable,
};
use runnel_runtime::{
    Record,
    config::OffsetStart,
    hub::{Hub, HubUrl},
};
use runnel_test_servers::rabbitmq::RabbitMq;

const BODY: usize = 100;

fn release_bin(name: &str) -> std::path::PathBuf {
    runnel_test_servers::release_bin(
        name,
        "cargo build --release --locked -p rabbitmq-source -p rabbitmq-sink",
    )
}

fn body(i: usize) -> Vec<u8> {
    format!("{i:0width$}", width = BODY).into_bytes()
}

async fn channel(url: &str) -> (Connection, Channel) {
    let c = Connection::connect(url, ConnectionProperties::default())
        .await
        .unwrap();
    let ch = c.create_channel().await.unwrap();
    (c, ch)
}

async fn declare(ch: &Channel, q: &str) {
    let opts = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    ch.queue_declare(q.into(), opts, FieldTable::default())
        .await
        .unwrap();
    ch.queue_purge(q.into(), QueuePurgeOptions::default())
        .await
        .unwrap();
}

/// Publishes `n` persistent messages with confirms, `window` in flight; returns msg/s.
async fn publish(url: &str, q: &str, n: usize, window: usize) -> f64 {
    let start = Instant::now();
    let (_c, ch) = channel(url).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let mut pending = std::collections::VecDeque::new();
    for i in 0..n {
        let c = ch
            .basic_publish(
                "".into(),
                q.into(),
                BasicPublishOptions::default(),
                &body(i),
                BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .unwrap();
        pending.push_back(c);
        if pending.len() >= window {
            assert!(pending.pop_front().unwrap().await.unwrap().is_ack());
        }
    }
    for c in pending {
        assert!(c.await.unwrap().is_ack());
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// Drains `n` messages with prefetch 100, acking each; returns msg/s from connecting.
async fn bare_consume(url: &str, q: &str, n: usize) -> f64 {
    let start = Instant::now();
    let (_c, ch) = channel(url).await;
    ch.basic_qos(100, BasicQosOptions::default()).await.unwrap();
    let mut consumer = ch
        .basic_consume(
            q.into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    for _ in 0..n {
        let d = consumer.next().await.unwrap().unwrap();
        std::hint::black_box(&d.data);
        d.ack(BasicAckOptions::default()).await.unwrap();
    }
    n as f64 / start.elapsed().as_secs_f64()
}

struct TempHub {
    _dir: tempfile::TempDir,
    url: String,
}

impl TempHub {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("local:{}", dir.path().join("hub.db").display());
        TempHub { _dir: dir, url }
    }

    async fn hub(&self) -> Hub {
        Hub::connect(&self.url.parse::<HubUrl>().unwrap())
            .await
            .unwrap()
    }
}

fn stop(mut child: std::process::Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

async fn source(r: &RabbitMq, q: &str, n: usize) -> f64 {
    let hub = TempHub::new();
    let start = Instant::now();
    let child = Command::new(release_bin("rabbitmq-source"))
        .env("RUNNEL_HUB", &hub.url)
        .env("RUNNEL_HEALTH_ADDR", "off")
        .env("RUST_LOG", "warn")
        .args(["--name", "bench", "--topic", "bench", "--create-topic"])
        .args(["--url", &r.url(), "--queue", q, "--prefetch", "100"])
        .spawn()
        .unwrap();
    let h = hub.hub().await;
    loop {
        if let Ok(Some(t)) = h.topic("bench").await
            && t.records >= n as u64
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    stop(child);
    rate
}

async fn sink(r: &RabbitMq, q: &str, n: usize, concurrency: usize) -> f64 {
    let hub = TempHub::new();
    {
        let h = hub.hub().await;
        h.ensure_topic("out", true, None).await.unwrap();
        let mut p = h.producer("out").await.unwrap();
        for chunk in (0..n).collect::<Vec<_>>().chunks(10_000) {
            p.send(chunk.iter().map(|&i| Record::new(body(i))).collect())
                .await
                .unwrap();
        }
    }
    let start = Instant::now();
    let child = Command::new(release_bin("rabbitmq-sink"))
        .env("RUNNEL_HUB", &hub.url)
        .env("RUNNEL_HEALTH_ADDR", "off")
        .env("RUST_LOG", "warn")
        .args(["--name", "bench", "--topic", "out", "--url", &r.url()])
        .args([
            "--routing-key",
            q,
            "--concurrency",
            &concurrency.to_string(),
        ])
        .spawn()
        .unwrap();
    let h = hub.hub().await;
    loop {
        let c = h
            .consumer("out", 0, Some("bench"), OffsetStart::Beginning)
            .await
            .unwrap();
        if c.position() >= n as i64 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    stop(child);
    rate
}

fn line(case: &str, ours: f64, peer: &str, theirs: f64) {
    println!(
        "{case}: runnel {ours:.0} msg/s, {peer} {theirs:.0} msg/s, ratio {:.2}",
        ours / theirs
    );
}

fn main() {
    let n: usize = std::env::var("RUNNEL_BENCH_MESSAGES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200_000);
    let r = RabbitMq::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let url = r.url();
        let (_c, ch) = channel(&url).await;
        for q in ["bench-bare", "bench-src", "bench-sink"] {
            declare(&ch, q).await;
        }
        publish(&url, "bench-bare", n, 1000).await;
        let peer = bare_consume(&url, "bench-bare", n).await;
        publish(&url, "bench-src", n, 1000).await;
        let ours = source(&r, "bench-src", n).await;
        line(
            &format!("rabbitmq-source, {n} messages of {BODY} bytes → local hub"),
            ours,
            "bare lapin consumer (prefetch 100, ack each)",
            peer,
        );
        for concurrency in [1, 16] {
            let peer = publish(&url, "bench-bare", n, concurrency).await;
            declare(&ch, "bench-bare").await;
            let ours = sink(&r, "bench-sink", n, concurrency).await;
            declare(&ch, "bench-sink").await;
            line(
                &format!("rabbitmq-sink, {n} records, concurrency {concurrency}"),
                ours,
                &format!("bare lapin publisher with confirms, {concurrency} in flight"),
                peer,
            );
        }
    });
}
