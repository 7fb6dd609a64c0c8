//! Foundation benchmarks: the release binaries against the practical limit of what they sit
//! on, measured in the same run. Run with `cargo bench -p runnel-tests --bench foundation`.
//! Each case prints `CASE: runnel N unit/s, PEER M unit/s, ratio R`.
//!
//! - produce: test-source → local hub, 1,000,000 records of 100 bytes, against bare rusqlite
//!   inserting the same rows in batches with a prepared statement.
//! - consume: `runnel topic consume -B -d` of those records into /dev/null, against a bare
//!   rusqlite scan of the same rows.
//! - http-sink: 20,000 records to a local HTTP server at concurrency 1 and 8, against a bare
//!   reqwest client in its own process (`peer-http-post`) sending the same bodies with the
//!   same concurrency.
//! - idle RSS of each connector, and the size of each stripped binary.

#![allow(clippy::unwrap_used)]

use std::{
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use runnel_runtime::Record;
use runnel_tests::{Proc, TempHub, free_port, release_bin};

const PRODUCE_N: u64 = 1_000_000;
const SINK_N: usize = 20_000;

fn line(case: &str, ours: f64, peer_name: &str, peer: f64, unit: &str) {
    println!(
        "{case}: runnel {ours:.0} {unit}, {peer_name} {peer:.0} {unit}, ratio {:.2}",
        ours / peer
    );
}

fn template() -> String {
    // 100 bytes once count has 7 digits and the timestamp 13.
    format!(
        "{{\"count\":{{{{count}}}},\"timestamp\":{{{{timestamp}}}},\"pad\":\"{}\"}}",
        "x".repeat(47)
    )
}

fn produce(hub: &TempHub) -> f64 {
    let start = Instant::now();
    let status = Command::new(release_bin("test-source"))
        .env("RUNNEL_HUB", &hub.url)
        .env("RUNNEL_HEALTH_ADDR", "off")
        .env("RUST_LOG", "warn")
        .args(["--topic", "bench", "--create-topic", "--interval", "0"])
        .arg("--count")
        .arg(PRODUCE_N.to_string())
        .arg("--template")
        .arg(template())
        .status()
        .unwrap();
    assert!(status.success());
    PRODUCE_N as f64 / start.elapsed().as_secs_f64()
}

fn bare_sqlite_insert(path: &std::path::Path) -> f64 {
    let mut c = rusqlite::Connection::open(path).unwrap();
    c.pragma_update(None, "journal_mode", "WAL").unwrap();
    c.pragma_update(None, "synchronous", "NORMAL").unwrap();
    c.execute_batch(
        "CREATE TABLE records (topic_id INTEGER NOT NULL, offset INTEGER NOT NULL, ts INTEGER NOT NULL,
         key BLOB, value BLOB NOT NULL, headers BLOB, PRIMARY KEY (topic_id, offset)) WITHOUT ROWID;",
    )
    .unwrap();
    let start = Instant::now();
    let mut n = 0u64;
    while n < PRODUCE_N {
        let tx = c.transaction().unwrap();
        {
            let mut stmt = tx
                .prepare_cached("INSERT INTO records (topic_id, offset, ts, key, value, headers) VALUES (1, ?1, ?2, NULL, ?3, NULL)")
                .unwrap();
            for _ in 0..4096.min(PRODUCE_N - n) {
                let ts = runnel_runtime::record::now_millis();
                let v = format!(
                    "{{\"count\":{n},\"timestamp\":{ts},\"pad\":\"{}\"}}",
                    "x".repeat(47)
                );
                stmt.execute(rusqlite::params![n as i64, ts, v.as_bytes()])
                    .unwrap();
                n += 1;
            }
        }
        tx.commit().unwrap();
    }
    PRODUCE_N as f64 / start.elapsed().as_secs_f64()
}

fn consume(hub: &TempHub) -> f64 {
    let start = Instant::now();
    let out = Command::new(release_bin("runnel"))
        .env("RUNNEL_HUB", &hub.url)
        .args(["topic", "consume", "bench", "-B", "-d"])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(out.success());
    PRODUCE_N as f64 / start.elapsed().as_secs_f64()
}

fn bare_sqlite_scan(path: &std::path::Path) -> f64 {
    use std::io::Write;
    let c = rusqlite::Connection::open(path).unwrap();
    let start = Instant::now();
    let mut stmt = c
        .prepare("SELECT offset, ts, key, value, headers FROM records WHERE topic_id = 1 ORDER BY offset")
        .unwrap();
    let mut rows = stmt.query([]).unwrap();
    let mut sink = std::io::BufWriter::new(std::io::sink());
    let mut n = 0u64;
    while let Some(r) = rows.next().unwrap() {
        let v: Vec<u8> = r.get(3).unwrap();
        sink.write_all(&v).unwrap();
        sink.write_all(b"\n").unwrap();
        n += 1;
    }
    assert_eq!(n, PRODUCE_N);
    PRODUCE_N as f64 / start.elapsed().as_secs_f64()
}

/// A local server counting accepted requests.
async fn counting_server() -> (String, Arc<AtomicUsize>) {
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    let app = axum::Router::new().fallback(axum::routing::post(move |_body: axum::body::Bytes| {
        let c = c.clone();
        async move {
            c.fetch_add(1, Ordering::Relaxed);
            "ok"
        }
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/ingest", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, count)
}

async fn http_sink(concurrency: usize) -> (f64, f64) {
    let hub = TempHub::new();
    let records: Vec<Record> = (0..SINK_N)
        .map(|i| {
            Record::new(format!("{{\"i\":{i},\"pad\":\"{}\"}}", "y".repeat(80)))
                .with_key(format!("k{}", i % 64))
        })
        .collect();
    hub.produce("in", records).await;
    let (url, count) = counting_server().await;

    let start = Instant::now();
    let mut cmd = Command::new(release_bin("http-sink"));
    cmd.env("RUNNEL_HUB", &hub.url)
        .env("RUNNEL_HEALTH_ADDR", "off")
        .env("RUST_LOG", "warn")
        .args([
            "--topic",
            "in",
            "--endpoint",
            &url,
            "--concurrency",
            &concurrency.to_string(),
        ]);
    let _p = Proc::spawn(cmd, hub.path("log"));
    while count.load(Ordering::Relaxed) < SINK_N {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let ours = SINK_N as f64 / start.elapsed().as_secs_f64();

    // The peer: a bare reqwest client in its own process, the same bodies, the same
    // concurrency.
    count.store(0, Ordering::Relaxed);
    let peer_bin = release_bin("peer-http-post");
    let start = Instant::now();
    let status = tokio::process::Command::new(peer_bin)
        .args([url.as_str(), &SINK_N.to_string(), &concurrency.to_string()])
        .status()
        .await
        .unwrap();
    assert!(status.success());
    assert_eq!(count.load(Ordering::Relaxed), SINK_N);
    let peer = SINK_N as f64 / start.elapsed().as_secs_f64();
    (ours, peer)
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

async fn idle_rss() {
    let hub = TempHub::new();
    hub.produce("idle", vec![]).await;
    for (name, args) in [
        ("test-source", vec!["--topic", "idle", "--interval", "1h"]),
        (
            "http-source",
            vec![
                "--topic",
                "idle",
                "--interval",
                "1h",
                "--endpoint",
                "http://127.0.0.1:9/",
            ],
        ),
        (
            "http-sink",
            vec!["--topic", "idle", "--endpoint", "http://127.0.0.1:9/"],
        ),
    ] {
        let mut cmd = Command::new(release_bin(name));
        cmd.env("RUNNEL_HUB", &hub.url)
            .env("RUNNEL_HEALTH_ADDR", format!("127.0.0.1:{}", free_port()))
            .args(&args);
        let p = Proc::spawn(cmd, hub.path(name));
        tokio::time::sleep(Duration::from_secs(2)).await;
        let kib = rss_kib(p.pid());
        println!(
            "idle RSS {name}: {:.1} MB (goal: at most 15 MB)",
            kib as f64 / 1024.0
        );
    }
}

fn binary_sizes() {
    for name in ["test-source", "http-source", "http-sink", "runnel"] {
        let len = std::fs::metadata(release_bin(name)).unwrap().len();
        println!(
            "stripped binary {name}: {:.1} MB",
            len as f64 / (1024.0 * 1024.0)
        );
    }
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes --bench; any other argument filters nothing here.
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

    let hub = TempHub::new();
    let ours = produce(&hub);
    let peer_db = hub.path("peer.db");
    let peer = bare_sqlite_insert(&peer_db);
    line(
        "test-source -> local hub (100-byte records)",
        ours,
        "bare rusqlite insert",
        peer,
        "rec/s",
    );

    let ours = consume(&hub);
    let peer = bare_sqlite_scan(&peer_db);
    line(
        "runnel topic consume (100-byte records)",
        ours,
        "bare rusqlite scan",
        peer,
        "rec/s",
    );

    for c in [1, 8] {
        let (ours, peer) = http_sink(c).await;
        line(
            &format!("http-sink concurrency {c}"),
            ours,
            "bare reqwest",
            peer,
            "rec/s",
        );
    }
    idle_rss().await;
    binary_sizes();
}
