//! kafka-source and kafka-sink against bare rdkafka clients, in the same run, on one tansu
//! broker started on 127.0.0.1. Run with `cargo build --release --locked -p kafka-source
//! -p kafka-sink && cargo bench --locked -p kafka-source --bench kafka`. Each case prints
//! `CASE: runnel N msg/s, PEER M msg/s, ratio R`; `RUNNEL_BENCH_MESSAGES` sets N (default
//! 200,000).
//!
//! - source: N 100-byte records waiting in a topic, read by the release kafka-source into
//!   the local hub (timed from its start until the hub holds them all), against a bare
//!   rdkafka consumer of the same partition that commits its group's offset every 1,000
//!   records and stores nothing.
//! - sink: N records in the local hub written by the release kafka-sink (timed from its
//!   start until its committed offset reaches N), against a bare rdkafka producer with the
//!   same settings (acks=all, idempotence, linger.ms 5) awaiting its acknowledgements
//!   a thousand at a time (the sink's batch size).

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use rdkafka::{
    ClientConfig, Message, Offset, TopicPartitionList,
    consumer::{CommitMode, Consumer, StreamConsumer},
    producer::{FutureProducer, FutureRecord},
};
use runnel_test_servers::bench::{UNTIL_COMMITTED, count, line, runtime, sink_rate, source_rate};
use runnel_test_servers::tansu::{Tansu, create_topic};

const BODY: usize = 100;

fn release_bin(name: &str) -> std::path::PathBuf {
    runnel_test_servers::release_bin(
        name,
        "cargo build --release --locked -p kafka-source -p kafka-sink",
    )
}

fn body(i: usize) -> Vec<u8> {
    format!("{i:0width$}", width = BODY).into_bytes()
}

fn producer(brokers: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("log_level", "3")
        .create()
        .unwrap()
}

/// Writes `n` records to a new `topic`, awaiting the acknowledgements a thousand at a
/// time; returns records/s (not counting the topic's creation).
async fn produce(brokers: &str, topic: &str, n: usize) -> f64 {
    create_topic(brokers, topic).await;
    let start = Instant::now();
    let p = producer(brokers);
    for from in (0..n).step_by(1000) {
        let bodies: Vec<Vec<u8>> = (from..(from + 1000).min(n)).map(body).collect();
        let mut acks = Vec::with_capacity(bodies.len());
        for b in &bodies {
            let r: FutureRecord<'_, [u8], [u8]> =
                FutureRecord::to(topic).payload(b.as_slice()).partition(0);
            acks.push(p.send_result(r).map_err(|(e, _)| e).unwrap());
        }
        for a in acks {
            a.await.unwrap().map_err(|(e, _)| e).unwrap();
        }
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// Reads `n` records of partition 0 of `topic` in a group, committing every 1,000;
/// returns records/s from creating the consumer.
async fn bare_read(brokers: &str, topic: &str, n: usize) -> f64 {
    let start = Instant::now();
    let c: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "bare")
        .set("enable.auto.commit", "false")
        .set("log_level", "3")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    c.assign(&tpl).unwrap();
    let mut got = 0;
    while got < n {
        let m = c.recv().await.unwrap();
        std::hint::black_box(m.payload());
        got += 1;
        if got % 1000 == 0 || got == n {
            let mut at = TopicPartitionList::new();
            at.add_partition_offset(topic, 0, Offset::Offset(m.offset() + 1))
                .unwrap();
            c.commit(&at, CommitMode::Async).unwrap();
        }
    }
    n as f64 / start.elapsed().as_secs_f64()
}

async fn source(t: &Tansu, topic: &str, n: usize) -> f64 {
    let brokers = t.brokers();
    let args = ["--url", &brokers, "--kafka-topic", topic];
    source_rate(&release_bin("kafka-source"), &args, n).await
}

async fn sink(t: &Tansu, topic: &str, n: usize) -> f64 {
    let brokers = t.brokers();
    let args = [
        "--url",
        &brokers,
        "--kafka-topic",
        topic,
        "--kafka-create-topic",
    ];
    sink_rate(&release_bin("kafka-sink"), &args, n, body, UNTIL_COMMITTED).await
}

fn main() {
    let n = count("RUNNEL_BENCH_MESSAGES", 200_000);
    let t = Tansu::start();
    let rt = runtime();
    rt.block_on(async {
        let brokers = t.brokers();
        produce(&brokers, "bench-bare", n).await;
        let peer = bare_read(&brokers, "bench-bare", n).await;
        produce(&brokers, "bench-src", n).await;
        let ours = source(&t, "bench-src", n).await;
        line(
            &format!("kafka-source, {n} records of {BODY} bytes → local hub"),
            ours,
            "bare rdkafka consumer (commit every 1000)",
            peer,
        );
        let peer = produce(&brokers, "bench-bare-out", n).await;
        let ours = sink(&t, "bench-sink", n).await;
        line(
            &format!("kafka-sink, {n} records of {BODY} bytes"),
            ours,
            "bare rdkafka producer (acks=all, idempotence, 1000 in flight)",
            peer,
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    });
}
