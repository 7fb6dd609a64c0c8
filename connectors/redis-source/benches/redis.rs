//! redis-source and redis-sink against bare redis clients, in the same run, on one
//! redis-server started on 127.0.0.1. Run with `cargo build --release --locked -p
//! redis-source -p redis-sink && cargo bench --locked -p redis-source --bench redis`. Each
//! case prints `CASE: runnel N msg/s, PEER M msg/s, ratio R`; `RUNNEL_BENCH_MESSAGES` sets
//! N (default 200,000).
//!
//! - source: N 100-byte entries waiting in a stream, read by the release redis-source with
//!   a consumer group into the local hub (timed from its start until the hub holds them
//!   all), against a bare XREADGROUP (COUNT 100) / XACK loop on a group of its own that
//!   stores nothing.
//! - sink: N records in the local hub XADDed by the release redis-sink (timed from its
//!   start until its committed offset reaches N), against bare XADDs pipelined by the
//!   thousand (the sink's batch size).

#![allow(clippy::unwrap_used)]

use std::{process::Command, time::Instant};

use redis::{Value, aio::MultiplexedConnection};
use runnel_runtime::{
    Record,
    config::OffsetStart,
    hub::{Hub, HubUrl},
};
use runnel_test_servers::redis::Redis;

const BODY: usize = 100;

fn release_bin(name: &str) -> std::path::PathBuf {
    runnel_test_servers::release_bin(
        name,
        "cargo build --release --locked -p redis-source -p redis-sink",
    )
}

fn body(i: usize) -> Vec<u8> {
    format!("{i:0width$}", width = BODY).into_bytes()
}

async fn conn(url: &str) -> MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// XADDs `n` entries pipelined by the thousand; returns entries/s.
async fn xadd(c: &mut MultiplexedConnection, stream: &str, n: usize) -> f64 {
    let start = Instant::now();
    for from in (0..n).step_by(1000) {
        let mut p = redis::pipe();
        for i in from..(from + 1000).min(n) {
            p.cmd("XADD")
                .arg(stream)
                .arg("*")
                .arg("value")
                .arg(body(i))
                .ignore();
        }
        p.query_async::<()>(c).await.unwrap();
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// Reads `n` entries with XREADGROUP COUNT 100 and acknowledges each read; returns
/// entries/s from connecting.
async fn bare_read(url: &str, stream: &str, n: usize) -> f64 {
    let start = Instant::now();
    let mut c = conn(url).await;
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(stream)
        .arg("bare")
        .arg("0")
        .query_async(&mut c)
        .await
        .unwrap();
    let mut got = 0;
    while got < n {
        let v: Value = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg("bare")
            .arg("c")
            .arg("COUNT")
            .arg(100)
            .arg("BLOCK")
            .arg(1000)
            .arg("STREAMS")
            .arg(stream)
            .arg(">")
            .query_async(&mut c)
            .await
            .unwrap();
        let Value::Array(streams) = v else { continue };
        let Value::Array(s) = &streams[0] else {
            continue;
        };
        let Value::Array(entries) = &s[1] else {
            continue;
        };
        let ids: Vec<&Value> = entries
            .iter()
            .filter_map(|e| match e {
                Value::Array(p) => p.first(),
                _ => None,
            })
            .collect();
        std::hint::black_box(entries);
        got += ids.len();
        let mut ack = redis::cmd("XACK");
        ack.arg(stream).arg("bare");
        for id in ids {
            if let Value::BulkString(b) = id {
                ack.arg(&b[..]);
            }
        }
        let _: i64 = ack.query_async(&mut c).await.unwrap();
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

async fn source(r: &Redis, stream: &str, n: usize) -> f64 {
    let hub = TempHub::new();
    let start = Instant::now();
    let child = Command::new(release_bin("redis-source"))
        .env("RUNNEL_HUB", &hub.url)
        .env("RUNNEL_HEALTH_ADDR", "off")
        .env("RUST_LOG", "warn")
        .args(["--name", "bench", "--topic", "bench", "--create-topic"])
        .args(["--url", &r.url(), "--stream", stream, "--count", "100"])
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

async fn sink(r: &Redis, stream: &str, n: usize) -> f64 {
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
    let child = Command::new(release_bin("redis-sink"))
        .env("RUNNEL_HUB", &hub.url)
        .env("RUNNEL_HEALTH_ADDR", "off")
        .env("RUST_LOG", "warn")
        .args(["--name", "bench", "--topic", "out", "--url", &r.url()])
        .args(["--mode", "xadd", "--key", stream])
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
    let r = Redis::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let url = r.url();
        let mut c = conn(&url).await;
        xadd(&mut c, "bench-bare", n).await;
        let peer = bare_read(&url, "bench-bare", n).await;
        xadd(&mut c, "bench-src", n).await;
        let ours = source(&r, "bench-src", n).await;
        line(
            &format!("redis-source (streams), {n} entries of {BODY} bytes → local hub"),
            ours,
            "bare XREADGROUP/XACK loop (COUNT 100)",
            peer,
        );
        let peer = xadd(&mut c, "bench-bare-out", n).await;
        let ours = sink(&r, "bench-sink", n).await;
        line(
            &format!("redis-sink (xadd), {n} records"),
            ours,
            "bare XADD pipelined by 1000",
            peer,
        );
    });
}
