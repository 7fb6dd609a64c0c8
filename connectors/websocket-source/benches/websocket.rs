//! websocket-source and websocket-sink against bare tokio-tungstenite clients, in the same
//! run, on one WebSocket server in this process (runnel-test-servers' peer) on 127.0.0.1.
//! Run with `cargo build --release --locked -p websocket-source -p websocket-sink && cargo
//! bench --locked -p websocket-source --bench websocket`. Each case prints `CASE: runnel N
//! msg/s, PEER M msg/s, ratio R`; `RUNNEL_BENCH_MESSAGES` sets N (default 200,000).
//!
//! - source: the server sends N 100-byte text messages as fast as the client reads them;
//!   the release websocket-source writes them into the local hub (timed from its start
//!   until the hub holds them all), against a bare client that reads them and stores
//!   nothing (timed from connecting until the last one).
//! - sink: N records in the local hub sent by the release websocket-sink (`confirm: ping`,
//!   timed from its start until the server has read them all), against a bare client
//!   sending N messages, flushed every 1,000 (the sink's batch size), timed the same way;
//!   and against the like-for-like bare client, which after each 1,000 also sends a ping
//!   and reads until its pong (what `confirm: ping` does before the sink commits).

#![allow(clippy::unwrap_used)]

use std::{
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use futures_util::{SinkExt, StreamExt};
use runnel_test_servers::bench::{count, line, runtime, sink_rate, source_rate};
use runnel_test_servers::websocket::{Behaviour, Peer};
use tokio_tungstenite::tungstenite::Message;

const BODY: usize = 100;

fn release_bin(name: &str) -> std::path::PathBuf {
    runnel_test_servers::release_bin(
        name,
        "cargo build --release --locked -p websocket-source -p websocket-sink",
    )
}

fn body(i: usize) -> String {
    format!("m{i:0width$}", width = BODY - 1)
}

async fn feeding(n: usize) -> Peer {
    let b = Behaviour {
        width: BODY - 1,
        ..Behaviour::default()
    };
    b.feed_until.store(n, Ordering::SeqCst);
    Peer::start(b).await
}

/// Reads `n` data messages; returns messages/s from connecting.
async fn bare_read(n: usize) -> f64 {
    let peer = feeding(n).await;
    let start = Instant::now();
    let (mut ws, _) = tokio_tungstenite::connect_async(peer.url("/"))
        .await
        .unwrap();
    let mut got = 0;
    while got < n {
        match ws.next().await.unwrap().unwrap() {
            Message::Text(t) => {
                std::hint::black_box(t);
                got += 1;
            }
            Message::Binary(b) => {
                std::hint::black_box(b);
                got += 1;
            }
            _ => {}
        }
    }
    n as f64 / start.elapsed().as_secs_f64()
}

async fn source(n: usize) -> f64 {
    let peer = feeding(n).await;
    let url = peer.url("/");
    source_rate(&release_bin("websocket-source"), &["--endpoint", &url], n).await
}

async fn until_received(peer: &Peer, n: usize) {
    while peer.received_count() < n {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Sends `n` messages flushed every 1,000, each 1,000 confirmed by a ping's pong when
/// `confirm`; returns messages/s until the server read them.
async fn bare_send(n: usize, confirm: bool) -> f64 {
    let peer = Peer::start(Behaviour::default()).await;
    let start = Instant::now();
    let (mut ws, _) = tokio_tungstenite::connect_async(peer.url("/"))
        .await
        .unwrap();
    for i in 0..n {
        ws.feed(Message::text(body(i))).await.unwrap();
        if i % 1000 == 999 || i == n - 1 {
            ws.flush().await.unwrap();
            if confirm {
                ws.send(Message::Ping(i.to_be_bytes().to_vec().into()))
                    .await
                    .unwrap();
                while !matches!(ws.next().await, Some(Ok(Message::Pong(_)))) {}
            }
        }
    }
    until_received(&peer, n).await;
    n as f64 / start.elapsed().as_secs_f64()
}

async fn sink(n: usize) -> f64 {
    let peer = Peer::start(Behaviour::default()).await;
    let url = peer.url("/");
    let args = ["--endpoint", url.as_str()];
    let body = |i| body(i).into_bytes();
    sink_rate(
        &release_bin("websocket-sink"),
        &args,
        n,
        body,
        Some(until_received(&peer, n)),
    )
    .await
}

fn main() {
    let n = count("RUNNEL_BENCH_MESSAGES", 200_000);
    let rt = runtime();
    rt.block_on(async {
        let peer = bare_read(n).await;
        let ours = source(n).await;
        line(
            &format!("websocket-source, {n} text messages of {BODY} bytes → local hub"),
            ours,
            "bare tokio-tungstenite reader",
            peer,
        );
        let peer = bare_send(n, false).await;
        let confirmed = bare_send(n, true).await;
        let ours = sink(n).await;
        line(
            &format!("websocket-sink (confirm: ping), {n} records of {BODY} bytes"),
            ours,
            "bare tokio-tungstenite sender (flush per 1000)",
            peer,
        );
        line(
            &format!("websocket-sink (confirm: ping), {n} records of {BODY} bytes"),
            ours,
            "bare tokio-tungstenite sender (flush and ping per 1000)",
            confirmed,
        );
    });
}
