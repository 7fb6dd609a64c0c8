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

use std::time::Instant;

use futures_util::StreamExt;
use lapin::{
    BasicProperties, Channel, Connection, ConnectionProperties,
    options::{
        BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
        ConfirmSelectOptions, QueueDeclareOptions, QueuePurgeOptions,
    },
    types::FieldTable,
};
use runnel_test_servers::bench::{UNTIL_COMMITTED, count, line, runtime, sink_rate, source_rate};
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

async fn source(r: &RabbitMq, q: &str, n: usize) -> f64 {
    let url = r.url();
    let args = ["--url", &url, "--queue", q, "--prefetch", "100"];
    source_rate(&release_bin("rabbitmq-source"), &args, n).await
}

async fn sink(r: &RabbitMq, q: &str, n: usize, concurrency: usize) -> f64 {
    let (url, c) = (r.url(), concurrency.to_string());
    let args = ["--url", &url, "--routing-key", q, "--concurrency", &c];
    sink_rate(
        &release_bin("rabbitmq-sink"),
        &args,
        n,
        body,
        UNTIL_COMMITTED,
    )
    .await
}

fn main() {
    let n = count("RUNNEL_BENCH_MESSAGES", 200_000);
    let r = RabbitMq::start();
    let rt = runtime();
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
