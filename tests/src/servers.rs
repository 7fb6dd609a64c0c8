//! Brokers the hub tests run against, each started on 127.0.0.1 on a free port and killed
//! when dropped: nats-server with JetStream (apt's `nats-server`) and the tansu Kafka broker
//! (`cargo install tansu`, see DEVELOPERS.md). A missing binary fails the test with how to
//! install it; nothing is skipped.

use std::{
    net::TcpStream,
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use crate::{Proc, free_port};

fn find(name: &str, env: &str, hint: &str) -> PathBuf {
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

fn wait_for_port(port: u16, proc: &Proc, what: &str) {
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

/// nats-server with JetStream, its store in a temporary directory that outlives restarts.
pub struct Nats {
    pub port: u16,
    dir: tempfile::TempDir,
    proc: Option<Proc>,
    starts: usize,
}

impl Nats {
    pub fn start() -> Nats {
        let mut n = Nats {
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            proc: None,
            starts: 0,
        };
        n.run();
        n
    }

    fn run(&mut self) {
        let bin = find(
            "nats-server",
            "RUNNEL_NATS_SERVER",
            "apt-get install nats-server",
        );
        let mut cmd = Command::new(bin);
        cmd.args([
            "-a",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-js",
            "-sd",
        ])
        .arg(self.dir.path().join("store"));
        self.starts += 1;
        let log = self.dir.path().join(format!("nats-{}.log", self.starts));
        let p = Proc::spawn(cmd, log);
        wait_for_port(self.port, &p, "nats-server");
        self.proc = Some(p);
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Stops the server (SIGTERM, as an orderly restart does) and starts it again on the
    /// same port and store.
    pub fn restart(&mut self, down_for: Duration) {
        if let Some(mut p) = self.proc.take() {
            p.terminate();
            let deadline = Instant::now() + Duration::from_secs(20);
            while p.child.try_wait().unwrap().is_none() {
                assert!(Instant::now() < deadline, "nats-server did not stop");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        std::thread::sleep(down_for);
        self.run();
    }
}

/// The tansu Kafka broker, storing in memory.
pub struct Tansu {
    pub port: u16,
    dir: tempfile::TempDir,
    proc: Option<Proc>,
    starts: usize,
}

impl Tansu {
    pub fn start() -> Tansu {
        let mut t = Tansu {
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            proc: None,
            starts: 0,
        };
        t.run();
        t
    }

    fn run(&mut self) {
        let bin = find(
            "tansu",
            "RUNNEL_TANSU",
            "cargo install tansu --version 0.6.0 --locked --no-default-features --features dynostore",
        );
        let listener = format!("tcp://127.0.0.1:{}", self.port);
        let mut cmd = Command::new(bin);
        cmd.args([
            "broker",
            "--listener-url",
            &listener,
            "--advertised-listener-url",
            &listener,
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
        format!("kafka://127.0.0.1:{}", self.port)
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
