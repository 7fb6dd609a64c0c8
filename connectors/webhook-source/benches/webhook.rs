//! webhook-source against the same HTTP server writing nowhere, and against that server
//! storing each body into the local hub itself, in the same run. Run with
//! `cargo build --release --locked -p webhook-source && cargo bench --locked -p
//! webhook-source --bench webhook`. Each case prints `CASE: runnel N rec/s, PEER M rec/s,
//! ratio R`; `RUNNEL_BENCH_REQUESTS` sets the requests per case (default 20,000).
//!
//! The peer is an axum server (the library webhook-source serves with, same features)
//! that reads each body to its end and answers 200 without storing it, on a runtime of its
//! own with two worker threads. The release webhook-source stores every record in the
//! local hub before it answers. The same senders (reqwest, keep-alive, 16 at once) post
//! to all three. The third peer is what a hand-written server on the same store would do at
//! best: each request splits its body as the connector does and queues its records straight
//! to a hub producer (group commit, no window, no pipeline), and answers once they are
//! stored; it is the physical bound of answering after the commit on this machine.
//!
//! - single: one 100-byte record per request;
//! - array: a JSON array of 100 such records per request (`split: array`).

#![allow(clippy::unwrap_used)]

use std::{
    process::Command,
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{Router, body::Bytes, http::StatusCode, routing::post};
use runnel_codec::Split;
use runnel_runtime::{
    Record,
    hub::{Hub, HubUrl},
};
use runnel_test_servers::{Proc, free_port};

const SENDERS: usize = 16;

fn body(i: usize, per: usize) -> String {
    if per == 1 {
        return format!("\"{i:098}\"");
    }
    let items: Vec<String> = (0..per)
        .map(|j| format!("\"{:098}\"", i * per + j))
        .collect();
    format!("[{}]", items.join(","))
}

/// Posts `requests` bodies of `per` records to `url` from SENDERS senders; returns
/// records/s.
async fn load(url: &str, requests: usize, per: usize) -> f64 {
    let start = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..SENDERS {
        let (url, next) = (url.to_string(), next.clone());
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= requests {
                    return;
                }
                let r = client.post(&url).body(body(i, per)).send().await.unwrap();
                assert_eq!(r.status(), 200);
                r.bytes().await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    (requests * per) as f64 / start.elapsed().as_secs_f64()
}

/// Serves `app` on 127.0.0.1:`port` from a runtime of its own with two workers.
fn serve(port: u16, app: impl FnOnce() -> Router + Send + 'static) {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::bind(("127.0.0.1", port))
                .await
                .unwrap();
            axum::serve(l, app()).await.unwrap();
        });
    });
}

/// The peer: the same server reading each body and storing nothing.
fn peer(port: u16) {
    serve(port, || {
        Router::new().route(
            "/",
            post(|b: Bytes| async move {
                std::hint::black_box(&b);
                (StatusCode::OK, "{\"records\":1}\n")
            }),
        )
    });
}

/// The second peer: the same server storing each body's records into a local hub topic
/// through one shared producer, answering once they are stored.
fn peer_storing(port: u16, hub: &std::path::Path, split: Split) {
    let url: HubUrl = format!("local:{}", hub.display()).parse().unwrap();
    let producer = std::thread::spawn(move || {
        tokio::runtime::Runtime::new().unwrap().block_on(async {
            let hub = Hub::connect(&url).await.unwrap();
            hub.ensure_topic("peer", true, None).await.unwrap();
            hub.producer("peer").await.unwrap()
        })
    })
    .join()
    .unwrap();
    let producer = Arc::new(tokio::sync::Mutex::new(producer));
    serve(port, move || {
        Router::new().route(
            "/",
            post(move |b: Bytes| async move {
                let records: Vec<Record> = split
                    .pieces(b)
                    .unwrap()
                    .into_iter()
                    .map(Record::new)
                    .collect();
                let n = records.len();
                let stored = producer.lock().await.enqueue(Arc::new(records)).await;
                stored.unwrap().await.unwrap();
                (StatusCode::OK, format!("{{\"records\":{n}}}\n"))
            }),
        )
    });
}

async fn wait_listening(port: u16) {
    for _ in 0..600 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nothing listens on {port}");
}

fn connector(dir: &std::path::Path, port: u16, split: &str, topic: &str) -> Proc {
    let bin = runnel_test_servers::release_bin(
        "webhook-source",
        "cargo build --release --locked -p webhook-source",
    );
    let mut cmd = Command::new(bin);
    cmd.env_clear()
        .env(
            "RUNNEL_HUB",
            format!("local:{}", dir.join("hub.db").display()),
        )
        .env("RUNNEL_HEALTH_ADDR", "off")
        .env("RUST_LOG", "warn")
        .args(["--name", topic, "--topic", topic, "--create-topic"])
        .args(["--listen", &format!("127.0.0.1:{port}"), "--split", split]);
    Proc::spawn(cmd, dir.join(format!("{topic}.log")))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let requests: usize = std::env::var("RUNNEL_BENCH_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let dir = tempfile::tempdir().unwrap();
    let peer_port = free_port();
    peer(peer_port);
    wait_listening(peer_port).await;
    let peer_url = format!("http://127.0.0.1:{peer_port}/");
    for (case, per, split) in [("single", 1, Split::None), ("array", 100, Split::Array)] {
        let n = if per == 1 { requests } else { requests / 20 };
        let port = free_port();
        let flag = if per == 1 { "none" } else { "array" };
        let mut p = connector(dir.path(), port, flag, case);
        let storing_port = free_port();
        peer_storing(
            storing_port,
            &dir.path().join(format!("{case}-peer.db")),
            split,
        );
        wait_listening(port).await;
        wait_listening(storing_port).await;
        let url = format!("http://127.0.0.1:{port}/");
        let storing_url = format!("http://127.0.0.1:{storing_port}/");
        // Warm all up (connections, the hub's first pages).
        for u in [&url, &peer_url, &storing_url] {
            load(u, 200, per).await;
        }
        let ours = load(&url, n, per).await;
        let bare = load(&peer_url, n, per).await;
        let storing = load(&storing_url, n, per).await;
        println!(
            "{case} ({n} requests of {per}): runnel {ours:.0} rec/s, bare axum {bare:.0} rec/s, ratio {:.2}; bare axum storing into the hub {storing:.0} rec/s, ratio {:.2}",
            ours / bare,
            ours / storing
        );
        p.stop().await;
    }
}
