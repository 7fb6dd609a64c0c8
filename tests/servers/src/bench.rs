//! What the connector benchmarks share: a local hub in a temporary directory, a release
//! connector started against it and stopped with SIGTERM, waits for the work to be done,
//! and the one line each case prints. Behind the `bench` feature (it links the runtime,
//! which a connector's benchmark links anyway).

use std::{
    path::Path,
    process::{Child, Command},
    time::Duration,
};

use runnel_runtime::{
    Record,
    config::OffsetStart,
    hub::{Hub, HubUrl},
};

/// A local hub in a directory removed when it is dropped.
#[derive(Debug)]
pub struct BenchHub {
    _dir: tempfile::TempDir,
    pub url: String,
}

impl Default for BenchHub {
    fn default() -> Self {
        Self::new()
    }
}

impl BenchHub {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("local:{}", dir.path().join("hub.db").display());
        BenchHub { _dir: dir, url }
    }

    pub async fn hub(&self) -> Hub {
        Hub::connect(&self.url.parse::<HubUrl>().unwrap())
            .await
            .unwrap()
    }

    /// Writes `n` records, `body(i)` each, into a new topic.
    pub async fn fill(&self, topic: &str, n: usize, body: impl Fn(usize) -> Vec<u8>) {
        let h = self.hub().await;
        h.ensure_topic(topic, true, None).await.unwrap();
        let mut p = h.producer(topic).await.unwrap();
        for from in (0..n).step_by(10_000) {
            let records = (from..(from + 10_000).min(n))
                .map(|i| Record::new(body(i)))
                .collect();
            p.send(records).await.unwrap();
        }
    }

    /// Waits until `topic` holds `n` records (a source's work is done).
    pub async fn until_records(&self, topic: &str, n: usize) {
        let h = self.hub().await;
        loop {
            if let Ok(Some(t)) = h.topic(topic).await
                && t.records >= n as u64
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until consumer `id` committed `n` records of `topic` (a sink's work is done).
    pub async fn until_committed(&self, topic: &str, id: &str, n: usize) {
        let h = self.hub().await;
        loop {
            let c = h
                .consumer(topic, 0, Some(id), OffsetStart::Beginning)
                .await
                .unwrap();
            if c.position() >= n as i64 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Starts the release connector `bin` on this hub with `args`, warnings only and no
    /// health server.
    pub fn start(&self, bin: &Path, args: &[&str]) -> Child {
        Command::new(bin)
            .env("RUNNEL_HUB", &self.url)
            .env("RUNNEL_HEALTH_ADDR", "off")
            .env("RUST_LOG", "warn")
            .args(args)
            .spawn()
            .unwrap()
    }
}

/// Runs the release source `bin` with `args` on a new hub, writing topic `bench`
/// (`--name bench --topic bench --create-topic` come first), until the topic holds `n`
/// records; returns records/s from its start.
pub async fn source_rate(bin: &Path, args: &[&str], n: usize) -> f64 {
    let hub = BenchHub::new();
    let start = std::time::Instant::now();
    let mut all = vec!["--name", "bench", "--topic", "bench", "--create-topic"];
    all.extend_from_slice(args);
    let child = hub.start(bin, &all);
    hub.until_records("bench", n).await;
    let rate = n as f64 / start.elapsed().as_secs_f64();
    stop(child);
    rate
}

/// Fills topic `out` of a new hub with `n` records (`body(i)` each), then runs the release
/// sink `bin` with `args` on it (`--name bench --topic out` come first) until `done` says
/// the work is done (its committed offset reaching `n` when `None`); returns records/s from
/// its start.
pub async fn sink_rate<F: std::future::Future<Output = ()>>(
    bin: &Path,
    args: &[&str],
    n: usize,
    body: impl Fn(usize) -> Vec<u8>,
    done: Option<F>,
) -> f64 {
    let hub = BenchHub::new();
    hub.fill("out", n, body).await;
    let start = std::time::Instant::now();
    let mut all = vec!["--name", "bench", "--topic", "out"];
    all.extend_from_slice(args);
    let child = hub.start(bin, &all);
    match done {
        Some(f) => f.await,
        None => hub.until_committed("out", "bench", n).await,
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    stop(child);
    rate
}

/// The `done` of [`sink_rate`] that waits for the committed offset.
pub const UNTIL_COMMITTED: Option<std::future::Ready<()>> = None;

/// Stops a connector with SIGTERM and waits for it.
pub fn stop(mut child: Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

/// The count a benchmark runs with: `var` from the environment, else `default`.
pub fn count(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// A two-worker runtime, as a connector has.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Prints one case: `CASE: runnel N msg/s, PEER M msg/s, ratio R`.
pub fn line(case: &str, ours: f64, peer: &str, theirs: f64) {
    println!(
        "{case}: runnel {ours:.0} msg/s, {peer} {theirs:.0} msg/s, ratio {:.2}",
        ours / theirs
    );
}
