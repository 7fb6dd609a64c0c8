//! Real servers for Runnel's tests and benchmarks, started on 127.0.0.1 on free ports and
//! stopped by their PIDs. Kept apart from the test kit (`runnel-tests`) so a connector's
//! benchmark, built in release, links nothing but this.

// Test support: a server that cannot start fails the test or benchmark then and there.
#![allow(clippy::unwrap_used)]

#[cfg(feature = "bench")]
pub mod bench;
pub mod influxdb;
pub mod postgres;
pub mod prometheus;
pub mod proxy;
pub mod rabbitmq;
pub mod redis;
pub mod tansu;
pub mod tls;
pub mod websocket;

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// A release binary of the workspace, which a benchmark runs as a user would; `build` is
/// the command that builds it, named when it is missing.
pub fn release_bin(name: &str, build: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let path = target.join("release").join(name);
    assert!(path.exists(), "{} is missing: run {build}", path.display());
    path
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP/1.0 request without a body to 127.0.0.1:`port`: its status and body, or
/// `None` when nothing answers (for readiness checks and queries of the test servers).
pub fn http(port: u16, method: &str, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(s, "{method} {path} HTTP/1.0\r\nContent-Length: 0\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split_whitespace().nth(1)?.parse().ok()?;
    let body = out.split("\r\n\r\n").nth(1).unwrap_or_default().to_string();
    Some((status, body))
}

/// `q` percent-encoded for a query string.
pub fn url_encode(q: &str) -> String {
    let mut enc = String::new();
    for b in q.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            enc.push(b as char);
        } else {
            enc.push_str(&format!("%{b:02X}"));
        }
    }
    enc
}

/// A child process killed (SIGKILL) when dropped, its stderr kept in a file.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    /// Starts `cmd` with stdout and stderr into `log`.
    pub fn spawn(mut cmd: Command, log: PathBuf) -> Proc {
        let f = std::fs::File::create(&log).unwrap();
        cmd.stdout(Stdio::from(f.try_clone().unwrap()))
            .stderr(Stdio::from(f))
            .stdin(Stdio::null());
        let child = cmd.spawn().unwrap();
        Proc { child, log }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -TERM failed");
    }

    /// SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the exit; `None` when it takes longer than `timeout`. Async, so servers
    /// on the test's runtime keep answering meanwhile.
    pub async fn wait_timeout(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// [`Proc::wait_timeout`] for tests without a runtime.
    pub fn wait_blocking(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits up to `timeout` for the exit, then checks its code and that the output says
    /// `needle`; returns the output.
    pub async fn expect_exit(&mut self, timeout: Duration, code: i32, needle: &str) -> String {
        let status = self.wait_timeout(timeout).await;
        let out = self.output();
        let status = status.unwrap_or_else(|| panic!("still running after {timeout:?}:\n{out}"));
        assert_eq!(status.code(), Some(code), "{out}");
        assert!(out.contains(needle), "expected {needle:?} in:\n{out}");
        out
    }

    /// The port of the connector's health server, read from its startup log line.
    pub async fn health_port(&self) -> u16 {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = self.output();
            if let Some(port) = out
                .lines()
                .filter(|l| l.contains("Serving /healthz"))
                // `addr=127.0.0.1:PORT` in text logs, `"addr":"127.0.0.1:PORT"` in JSON ones.
                .find_map(|l| {
                    l.split("addr=")
                        .nth(1)
                        .or_else(|| l.split("\"addr\":\"").nth(1))
                })
                .and_then(|a| a.trim().split('"').next())
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| p.parse().ok())
            {
                return port;
            }
            assert!(Instant::now() < deadline, "no health server in:\n{out}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then exit 0 within 15 s (the output is in the failure).
    pub async fn stop(&mut self) {
        self.terminate();
        let status = self.wait_timeout(Duration::from_secs(15)).await;
        assert!(
            status.is_some_and(|s| s.success()),
            "no clean exit after SIGTERM ({status:?}):\n{}",
            self.output()
        );
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
