//! The tansu Kafka broker (`cargo install tansu`, see DEVELOPERS.md and scripts/test-deps)
//! on 127.0.0.1, a free port, storing in memory: the Kafka hub tests, kafka-source and
//! kafka-sink, and their benchmark. A missing binary fails with how to install it.

use std::{
    net::TcpStream,
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use crate::{
    Proc, free_port,
    proxy::Proxy,
    tls::{Certs, TlsProxy},
};

/// A binary from `$env`, the PATH, the sbin folders or cargo's bin folder.
pub fn find(name: &str, env: &str, hint: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env) {
        return PathBuf::from(p);
    }
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/sbin", "/usr/local/sbin"].map(PathBuf::from));
    if let Some(home) = std::env::var_os("CARGO_HOME") {
        dirs.push(PathBuf::from(home).join("bin"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cargo/bin"));
    }
    dirs.into_iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} is not installed ({hint}); set {env} to its path"))
}

/// Waits until something listens on `port`, or fails with the process's log.
pub fn wait_for_port(port: u16, proc: &Proc, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on {port}:\n{}",
            proc.output()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The tansu Kafka broker, storing in memory.
pub struct Tansu {
    pub port: u16,
    /// With [`Tansu::behind_proxy`]: what clients connect through (and the broker
    /// advertises), so an outage can be made without losing the broker's data.
    proxy: Option<Proxy>,
    /// With [`Tansu::behind_tls`]: the TLS end clients connect to (and the broker
    /// advertises).
    tls: Option<TlsProxy>,
    dir: tempfile::TempDir,
    proc: Option<Proc>,
    starts: usize,
}

impl Tansu {
    pub fn start() -> Tansu {
        let mut t = Tansu {
            port: free_port(),
            proxy: None,
            tls: None,
            dir: tempfile::tempdir().unwrap(),
            proc: None,
            starts: 0,
        };
        t.run();
        t
    }

    /// A broker reached through a [`Proxy`] (it advertises the proxy's address), so that
    /// [`Tansu::outage`] cuts every client off and lets them back without the broker losing
    /// its memory store.
    pub fn behind_proxy() -> Tansu {
        let port = free_port();
        let mut t = Tansu {
            port,
            proxy: Some(Proxy::start(port)),
            tls: None,
            dir: tempfile::tempdir().unwrap(),
            proc: None,
            starts: 0,
        };
        t.run();
        t
    }

    /// A broker reached only over TLS with a client certificate (a [`TlsProxy`] with
    /// `certs` in front; the broker advertises it).
    pub fn behind_tls(certs: &Certs) -> Tansu {
        let port = free_port();
        let mut t = Tansu {
            port,
            proxy: None,
            tls: Some(TlsProxy::start(port, certs)),
            dir: tempfile::tempdir().unwrap(),
            proc: None,
            starts: 0,
        };
        t.run();
        t
    }

    /// The port clients connect to.
    fn client_port(&self) -> u16 {
        match (&self.proxy, &self.tls) {
            (Some(p), _) => p.port,
            (None, Some(t)) => t.port,
            (None, None) => self.port,
        }
    }

    /// The proxy in front of the broker (needs [`Tansu::behind_proxy`]): its
    /// [`Proxy::outage`] cuts every client off for a while, the broker and its data
    /// untouched.
    pub fn proxy(&self) -> Proxy {
        self.proxy
            .clone()
            .expect("Tansu::proxy needs Tansu::behind_proxy")
    }

    fn run(&mut self) {
        let bin = find(
            "tansu",
            "RUNNEL_TANSU",
            "cargo install tansu --version 0.6.0 --locked --no-default-features --features dynostore",
        );
        let listener = format!("tcp://127.0.0.1:{}", self.port);
        let advertised = format!("tcp://127.0.0.1:{}", self.client_port());
        let mut cmd = Command::new(bin);
        cmd.args([
            "broker",
            "--listener-url",
            &listener,
            "--advertised-listener-url",
            &advertised,
            "--storage-engine",
            "memory://tansu/",
        ])
        .env("RUST_LOG", "warn");
        self.starts += 1;
        let log = self.dir.path().join(format!("tansu-{}.log", self.starts));
        let p = Proc::spawn(cmd, log);
        wait_for_port(self.port, &p, "tansu");
        self.proc = Some(p);
    }

    pub fn url(&self) -> String {
        format!("kafka://127.0.0.1:{}", self.client_port())
    }

    /// The broker as Kafka clients name it: `127.0.0.1:PORT`.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.client_port())
    }

    /// Kills the broker and starts it again on the same port (its memory store is lost).
    pub fn restart(&mut self, down_for: Duration) {
        if let Some(mut p) = self.proc.take() {
            p.kill9();
        }
        std::thread::sleep(down_for);
        self.run();
    }
}

/// Creates `topic` on the brokers with one partition, unless it is there (tansu creates no
/// topic on first use), with the runtime's Kafka client. For the Kafka tests and benchmark.
#[cfg(feature = "bench")]
pub async fn create_topic(brokers: &str, topic: &str) {
    use runnel_runtime::hub::{HubError, kafka::KafkaHub};
    let hub = KafkaHub::connect(brokers).await.unwrap();
    match hub.create_topic(topic, 1).await {
        Ok(()) | Err(HubError::TopicExists(_)) => {}
        Err(e) => panic!("creating {topic}: {e}"),
    }
}
