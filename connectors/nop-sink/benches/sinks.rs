//! The two sinks without an outside system against the bare library they stand on, in the
//! same run. Run with `cargo build --release --locked -p nop-sink -p log-sink && cargo bench
//! --locked -p nop-sink --bench sinks`. `RUNNEL_BENCH_RECORDS` sets N (default 1,000,000
//! for nop-sink; log-sink runs a fifth of it).
//!
//! - nop-sink reads N 100-byte records from the local hub and discards them, committing
//!   each batch (timed from its start until the committed offset reaches N), against the
//!   hub's own consumer in this process fetching batches of 1,000 and committing each, as
//!   the sink does: the pipeline's cost over the bare hub client.
//! - log-sink logs each record at warn level to stderr (sent to /dev/null), against
//!   tracing-subscriber's text formatter in this process writing the same fields for the
//!   same records, read by the bare consumer, to /dev/null with one write per line, as
//!   the connector's writer does.

#![allow(clippy::unwrap_used)]

use std::{process::Stdio, sync::Mutex, time::Instant};

use runnel_runtime::config::OffsetStart;
use runnel_test_servers::bench::{BenchHub, count, line, runtime, sink_rate, stop};

fn release_bin(name: &str) -> std::path::PathBuf {
    runnel_test_servers::release_bin(
        name,
        "cargo build --release --locked -p nop-sink -p log-sink",
    )
}

fn body(i: usize) -> Vec<u8> {
    format!("m{i:099}").into_bytes()
}

/// The bare consumer: fetches batches of 1,000 from `topic` and commits each; calls `each`
/// on every record. Returns records/s.
async fn bare_read(
    hub: &BenchHub,
    topic: &str,
    n: usize,
    mut each: impl FnMut(&runnel_runtime::ConsumedRecord),
) -> f64 {
    let h = hub.hub().await;
    let start = Instant::now();
    let mut c = h
        .consumer(topic, 0, Some("bare"), OffsetStart::Beginning)
        .await
        .unwrap();
    let mut got = 0;
    while got < n {
        let batch = c
            .fetch(1000, std::time::Duration::from_millis(100))
            .await
            .unwrap();
        for r in &batch {
            each(r);
        }
        got += batch.len();
        if let Some(last) = batch.last() {
            c.commit(last.offset + 1).await.unwrap();
        }
    }
    n as f64 / start.elapsed().as_secs_f64()
}

async fn log_sink(hub: &BenchHub, n: usize) -> f64 {
    let start = Instant::now();
    let child = std::process::Command::new(release_bin("log-sink"))
        .env("RUNNEL_HUB", &hub.url)
        .env("RUNNEL_HEALTH_ADDR", "off")
        .env("RUST_LOG", "warn")
        .args(["--name", "logged", "--topic", "out", "--level", "warn"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    hub.until_committed("out", "logged", n).await;
    let rate = n as f64 / start.elapsed().as_secs_f64();
    stop(child);
    rate
}

fn main() {
    let n = count("RUNNEL_BENCH_RECORDS", 1_000_000);
    let rt = runtime();
    rt.block_on(async {
        let ours = sink_rate(
            &release_bin("nop-sink"),
            &[],
            n,
            body,
            runnel_test_servers::bench::UNTIL_COMMITTED,
        )
        .await;
        let hub = BenchHub::new();
        hub.fill("out", n, body).await;
        let bare = bare_read(&hub, "out", n, |r| {
            std::hint::black_box(r);
        })
        .await;
        line(
            &format!("nop-sink, {n} records of 100 bytes"),
            ours,
            "bare hub consumer (fetch and commit per 1000)",
            bare,
        );

        let n = n / 5;
        let hub = BenchHub::new();
        hub.fill("out", n, body).await;
        let ours = log_sink(&hub, n).await;
        let devnull = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/null")
            .unwrap();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(Mutex::new(devnull))
            .with_ansi(false)
            .with_target(false)
            .finish();
        let bare = {
            let _guard = tracing::subscriber::set_default(subscriber);
            bare_read(&hub, "out", n, |r| {
                let value = String::from_utf8_lossy(&r.record.value);
                tracing::warn!(
                    topic = %r.topic,
                    partition = r.partition,
                    offset = r.offset,
                    record_timestamp = r.record.timestamp,
                    value = %value,
                    "Record."
                );
            })
            .await
        };
        line(
            &format!("log-sink (text, warn), {n} records of 100 bytes"),
            ours,
            "bare tracing-subscriber lines to /dev/null",
            bare,
        );
    });
}
