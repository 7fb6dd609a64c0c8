//! Test kit for the end-to-end tests and benchmarks: the workspace's binaries, a hub in a
//! temporary directory, processes that are killed when a test ends, a recording HTTP server,
//! and waiting with a deadline.

#![allow(clippy::unwrap_used)]

pub mod contract;
pub mod k8s;
pub mod mosquitto;
pub mod oracle;
// The process and port helpers live with the servers, which benchmarks use without this kit.
pub use runnel_test_servers::{Proc, free_port, rabbitmq, redis, websocket};
pub mod servers;

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Command,
    sync::{Arc, Mutex, OnceLock},
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    routing::any,
};
use runnel_runtime::{
    ConsumedRecord, Record,
    config::OffsetStart,
    hub::{Hub, HubUrl},
};

/// The path of a workspace binary in the debug profile, building the workspace's binaries
/// the first time any is asked for.
pub fn bin(name: &str) -> PathBuf {
    built("debug", name)
}

/// The same from the release profile, for benchmarks, which need them built first
/// (`cargo build --release --workspace --bins`): a build from inside `cargo bench` would
/// run with the bench's environment and rebuild the workspace every time.
pub fn release_bin(name: &str) -> PathBuf {
    let path = target_dir().join("release").join(name);
    assert!(
        path.exists(),
        "{} is missing: run cargo build --release --locked --workspace --bins first",
        path.display()
    );
    path
}

fn built(profile: &'static str, name: &str) -> PathBuf {
    static DEBUG: OnceLock<PathBuf> = OnceLock::new();
    static RELEASE: OnceLock<PathBuf> = OnceLock::new();
    let cell = if profile == "release" {
        &RELEASE
    } else {
        &DEBUG
    };
    let dir = cell.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--workspace", "--bins", "--quiet"]);
        if profile == "release" {
            cmd.arg("--release");
        }
        let status = cmd
            .current_dir(workspace_root())
            .status()
            .expect("run cargo build for the connector binaries");
        assert!(
            status.success(),
            "cargo build of the workspace binaries failed"
        );
        target_dir().join(profile)
    });
    let path = dir.join(name);
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// The example SmartModules (`smartmodule-host/smartmodules`), built with Fluvio's SDK for
/// `target` (wasm32-unknown-unknown or wasm32-wasip1) once per test process. Returns the
/// directory holding `<name>.wasm` (crate names with `_`).
pub fn smartmodules(target: &'static str) -> PathBuf {
    static BUILT: Mutex<Vec<(&'static str, PathBuf)>> = Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, dir)) = built.iter().find(|(t, _)| *t == target) {
        return dir.clone();
    }
    let root = workspace_root();
    let target_dir = target_dir().join("smartmodules");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--locked",
            "--quiet",
            "--target",
            target,
        ])
        .arg("--manifest-path")
        .arg(root.join("smartmodule-host/smartmodules/Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()
        .expect("run cargo build for the example SmartModules");
    assert!(
        status.success(),
        "building the example SmartModules for {target} failed (is the target installed? rustup target add {target})"
    );
    let dir = target_dir.join(target).join("release");
    built.push((target, dir.clone()));
    dir
}

/// An example SmartModule built for wasm32-unknown-unknown, e.g. `wasm("json_filter")`.
pub fn wasm(name: &str) -> PathBuf {
    let path = smartmodules("wasm32-unknown-unknown").join(format!("{name}.wasm"));
    assert!(path.exists(), "{} was not built", path.display());
    path
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| {
            if p.is_relative() {
                workspace_root().join(p)
            } else {
                p
            }
        })
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// A hub file in its own temporary directory.
pub struct TempHub {
    pub dir: tempfile::TempDir,
    pub url: String,
}

impl TempHub {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("local:{}", dir.path().join("hub.db").display());
        TempHub { dir, url }
    }

    /// A hub at `url` (a broker the test started), with a temporary directory for logs.
    pub fn remote(url: &str) -> Self {
        TempHub {
            dir: tempfile::tempdir().unwrap(),
            url: url.to_string(),
        }
    }

    pub async fn hub(&self) -> Hub {
        Hub::connect(&self.url.parse::<HubUrl>().unwrap())
            .await
            .unwrap()
    }

    /// Every record of `topic` from the beginning.
    pub async fn read_all(&self, topic: &str) -> Vec<ConsumedRecord> {
        let hub = self.hub().await;
        let mut c = hub
            .consumer(topic, 0, None, OffsetStart::Beginning)
            .await
            .unwrap();
        let end = c.end_offset().await.unwrap();
        let mut out = Vec::new();
        while c.position() < end {
            let batch = c.fetch(10_000, Duration::from_secs(5)).await.unwrap();
            assert!(
                !batch.is_empty(),
                "{topic}: nothing after offset {} of {end}",
                c.position()
            );
            out.extend(batch);
        }
        out
    }

    pub async fn produce(&self, topic: &str, records: Vec<Record>) {
        let hub = self.hub().await;
        hub.ensure_topic(topic, true, None).await.unwrap();
        let mut p = hub.producer(topic).await.unwrap();
        p.send(records).await.unwrap();
    }

    /// The `runnel-error` header (the reason) of each record in dead-letter topic `topic`,
    /// in order.
    pub async fn reasons(&self, topic: &str) -> Vec<String> {
        self.read_all(topic)
            .await
            .iter()
            .map(|r| {
                let h = r.record.headers.iter().find(|(k, _)| k == "runnel-error");
                String::from_utf8_lossy(&h.expect("a runnel-error header").1).into_owned()
            })
            .collect()
    }

    pub async fn count(&self, topic: &str) -> u64 {
        match self.hub().await.topic(topic).await.unwrap() {
            Some(t) => t.records,
            None => 0,
        }
    }

    /// The offset consumer `id` committed on `topic` (0 when none): how far a sink got.
    pub async fn committed(&self, topic: &str, id: &str) -> i64 {
        self.hub()
            .await
            .consumer(topic, 0, Some(id), OffsetStart::Beginning)
            .await
            .map_or(0, |c| c.position())
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Default for TempHub {
    fn default() -> Self {
        Self::new()
    }
}

/// Checks that every item of `want` is in `got` and returns how many of `got` repeat.
pub fn each_present(got: &[String], want: impl IntoIterator<Item = String>) -> usize {
    let seen = counts(got);
    for w in want {
        assert!(seen.contains_key(&w), "{w:?} is missing");
    }
    got.len() - seen.len()
}

/// The peak resident memory of process `pid`, in bytes (VmHWM).
pub fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb * 1024
}

/// A connector command with the hub set and the health server on a port the system picks
/// ([`Proc::health_port`] finds it), so parallel tests never collide.
pub fn connector(name: &str, hub: &TempHub) -> Command {
    let mut cmd = Command::new(bin(name));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("RUNNEL_HUB", &hub.url)
        .env("RUNNEL_HEALTH_ADDR", "127.0.0.1:0")
        .env("RUST_LOG", "info");
    cmd
}

/// Polls `check` until it is true; panics with `what` after `timeout`.
pub async fn wait_until<F, Fut>(timeout: Duration, what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    assert!(
        eventually(timeout, check).await,
        "timed out waiting for {what}"
    );
}

/// Polls `check` until it is true or `timeout` passes; says which.
pub async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// GET a URL on 127.0.0.1, returning status and body; `None` when nothing answers.
pub async fn get(url: &str) -> Option<(u16, String)> {
    let r = reqwest::get(url).await.ok()?;
    let status = r.status().as_u16();
    Some((status, r.text().await.ok()?))
}

/// The value of the first sample of a metric on a connector's /metrics.
pub async fn metric(health_port: u16, name: &str) -> Option<f64> {
    let (_, text) = get(&format!("http://127.0.0.1:{health_port}/metrics")).await?;
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
}

/// What the recording server answers to one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    Status(u16),
    /// Waits this long, then 200.
    Slow(Duration),
}

/// A request the server received.
#[derive(Clone, Debug)]
pub struct Received {
    pub method: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub accepted: bool,
}

type Rule = Arc<dyn Fn(&[u8], usize) -> Reply + Send + Sync>;
type Shared = (
    Arc<Mutex<Vec<Received>>>,
    Rule,
    Arc<std::sync::atomic::AtomicUsize>,
);

/// An HTTP server on 127.0.0.1 that records every request and answers as `rule` says,
/// given the body and the request's number (from 0).
#[derive(Clone)]
pub struct Recorder {
    pub addr: SocketAddr,
    pub requests: Arc<Mutex<Vec<Received>>>,
    /// Requests that arrived, answered or not.
    pub arrived: Arc<std::sync::atomic::AtomicUsize>,
    task: Arc<tokio::task::JoinHandle<()>>,
}

impl Recorder {
    pub async fn start(rule: impl Fn(&[u8], usize) -> Reply + Send + Sync + 'static) -> Self {
        Self::start_on("127.0.0.1:0".parse().unwrap(), rule).await
    }

    pub async fn start_on(
        addr: SocketAddr,
        rule: impl Fn(&[u8], usize) -> Reply + Send + Sync + 'static,
    ) -> Self {
        let requests: Arc<Mutex<Vec<Received>>> = Arc::default();
        let arrived: Arc<std::sync::atomic::AtomicUsize> = Arc::default();
        let state: Shared = (requests.clone(), Arc::new(rule), arrived.clone());
        let app = Router::new().fallback(any(record)).with_state(state);
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Recorder {
            addr,
            requests,
            arrived,
            task: Arc::new(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Bodies of the requests answered with 2xx, in arrival order.
    pub fn accepted(&self) -> Vec<String> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.accepted)
            .map(|r| String::from_utf8_lossy(&r.body).into_owned())
            .collect()
    }

    pub fn total(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    pub fn stop(&self) {
        self.task.abort();
    }
}

async fn record(
    State((requests, rule, arrived)): State<Shared>,
    method: axum::http::Method,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    // Numbered on arrival: a request whose client gave up mid-answer still counts.
    let n = arrived.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let reply = rule(&body, n);
    let status = match reply {
        Reply::Status(s) => s,
        Reply::Slow(d) => {
            tokio::time::sleep(d).await;
            200
        }
    };
    requests.lock().unwrap().push(Received {
        method: method.to_string(),
        headers,
        body,
        accepted: (200..300).contains(&status),
    });
    (
        StatusCode::from_u16(status).unwrap(),
        format!("{{\"n\":{n},\"status\":{status}}}"),
    )
}

/// Counts occurrences of each item.
pub fn counts<T: std::hash::Hash + Eq + Clone>(items: &[T]) -> HashMap<T, usize> {
    let mut m = HashMap::new();
    for i in items {
        *m.entry(i.clone()).or_insert(0) += 1;
    }
    m
}
