//! Redis for the redis connector tests: `redis-server` from apt on 127.0.0.1, a free port
//! and a temporary directory of its own. It starts in a few hundredths of a second, so every
//! test starts its own. With [`Redis::durable`] it keeps an append-only file synced at every
//! write, so a stop and start keeps every stream, list and consumer group.

use std::{
    net::TcpStream,
    process::Command,
    time::{Duration, Instant},
};

use crate::{Proc, free_port};

pub struct Redis {
    pub port: u16,
    dir: tempfile::TempDir,
    args: Vec<String>,
    server: Option<Proc>,
    starts: usize,
}

impl Redis {
    /// A server that keeps nothing on disk.
    pub fn start() -> Redis {
        Redis::start_with(&["--save", "", "--appendonly", "no"])
    }

    /// A server whose data outlives a restart (append-only file, fsync always).
    pub fn durable() -> Redis {
        Redis::start_with(&[
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
        ])
    }

    /// A server with these extra arguments (`--requirepass`, `--proto-max-bulk-len`, ...).
    pub fn start_with(extra: &[&str]) -> Redis {
        let found = Command::new("redis-server")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            found,
            "redis-server is not installed (apt-get install -y --no-install-recommends redis-server, or scripts/test-deps)"
        );
        let mut r = Redis {
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            args: extra.iter().map(|s| s.to_string()).collect(),
            server: None,
            starts: 0,
        };
        r.run();
        r
    }

    fn run(&mut self) {
        let mut cmd = Command::new("redis-server");
        cmd.args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .arg("--dir")
            .arg(self.dir.path())
            .args(["--daemonize", "no", "--protected-mode", "yes"])
            .args(&self.args);
        self.starts += 1;
        let p = Proc::spawn(
            cmd,
            self.dir.path().join(format!("server-{}.log", self.starts)),
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            // Listening is not enough after a restart: the append-only file must be loaded.
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                use std::io::{Read, Write};
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let mut buf = [0u8; 64];
                if s.write_all(b"PING\r\n").is_ok()
                    && s.read(&mut buf).is_ok_and(|n| {
                        let r = &buf[..n];
                        r.starts_with(b"+PONG") || r.starts_with(b"-NOAUTH")
                    })
                {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "redis-server does not answer on {}:\n{}",
                self.port,
                p.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.server = Some(p);
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Stops the server with SIGTERM (it writes its append-only file and exits).
    pub fn stop(&mut self) {
        if let Some(mut p) = self.server.take() {
            p.terminate();
            assert!(
                p.wait_blocking(Duration::from_secs(30)).is_some(),
                "redis-server did not stop"
            );
        }
    }

    /// Starts it again after [`Redis::stop`], on the same port and data.
    pub fn start_again(&mut self) {
        assert!(self.server.is_none(), "the server is running");
        self.run();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}
