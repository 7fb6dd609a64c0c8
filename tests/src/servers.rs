//! Brokers the hub tests run against, each started on 127.0.0.1 on a free port and killed
//! when dropped: nats-server with JetStream (apt's `nats-server`) and the tansu Kafka broker
//! (`cargo install tansu`, see DEVELOPERS.md). A missing binary fails the test with how to
//! install it; nothing is skipped.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use crate::{Proc, free_port};
pub use runnel_test_servers::tansu::Tansu;
use runnel_test_servers::tansu::{find, wait_for_port};

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
