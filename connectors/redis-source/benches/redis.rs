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

use std::time::Instant;

use redis::{Value, aio::MultiplexedConnection};
use runnel_test_servers::bench::{UNTIL_COMMITTED, count, line, runtime, sink_rate, source_rate};
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

async fn source(r: &Redis, stream: &str, n: usize) -> f64 {
    let url = r.url();
    let args = ["--url", &url, "--stream", stream, "--count", "100"];
    source_rate(&release_bin("redis-source"), &args, n).await
}

async fn sink(r: &Redis, stream: &str, n: usize) -> f64 {
    let url = r.url();
    let args = ["--url", &url, "--mode", "xadd", "--key", stream];
    sink_rate(&release_bin("redis-sink"), &args, n, body, UNTIL_COMMITTED).await
}

fn main() {
    let n = count("RUNNEL_BENCH_MESSAGES", 200_000);
    let r = Redis::start();
    let rt = runtime();
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
