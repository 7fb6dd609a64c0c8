//! An InfluxDB 1.x server of the machine's own (`influxd` from apt) on 127.0.0.1, its
//! config written from `influxd config` with every directory in a temporary one, both
//! addresses on free loopback ports and everything else (graphite, UDP, monitor's own
//! database, reporting) off. Optionally with authentication and one admin user.

use std::{
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use crate::{Proc, free_port};

const INSTALL: &str = "apt-get install -y --no-install-recommends influxdb (or scripts/test-deps)";

/// The admin user of a server started with authentication.
pub const ADMIN: (&str, &str) = ("admin", "admin-pw");

pub struct Influx {
    port: u16,
    dir: tempfile::TempDir,
    server: Option<Proc>,
    starts: u32,
    auth: bool,
}

fn influxd() -> PathBuf {
    ["/usr/bin/influxd", "/usr/sbin/influxd"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("influxd is missing: {INSTALL}"))
}

impl Influx {
    /// A server without authentication.
    pub fn start() -> Influx {
        Influx::start_with(false)
    }

    /// A server with authentication on and the [`ADMIN`] user.
    pub fn start_with_auth() -> Influx {
        Influx::start_with(true)
    }

    fn start_with(auth: bool) -> Influx {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(influxd()).arg("config").output().unwrap();
        assert!(out.status.success(), "influxd config failed");
        let port = free_port();
        let rpc = free_port();
        let d = dir.path().display().to_string();
        let mut config = String::new();
        let mut section = String::new();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let t = line.trim();
            if t.starts_with('[') {
                section = t.to_string();
            }
            let key = t.split('=').next().unwrap_or_default().trim();
            let line = match (section.as_str(), key) {
                ("", "bind-address") => format!("bind-address = \"127.0.0.1:{rpc}\""),
                ("", "reporting-enabled") => "reporting-enabled = false".into(),
                ("[meta]", "dir") => format!("  dir = \"{d}/meta\""),
                ("[data]", "dir") => format!("  dir = \"{d}/data\""),
                ("[data]", "wal-dir") => format!("  wal-dir = \"{d}/wal\""),
                ("[monitor]", "store-enabled") => "  store-enabled = false".into(),
                ("[http]", "bind-address") => format!("  bind-address = \"127.0.0.1:{port}\""),
                ("[http]", "auth-enabled") => format!("  auth-enabled = {auth}"),
                ("[http]", "log-enabled") => "  log-enabled = false".into(),
                ("[http]", "bind-socket") => format!("  bind-socket = \"{d}/influxdb.sock\""),
                _ => line.to_string(),
            };
            config.push_str(&line);
            config.push('\n');
        }
        std::fs::write(dir.path().join("influxdb.conf"), config).unwrap();
        let mut s = Influx {
            port,
            dir,
            server: None,
            starts: 0,
            auth,
        };
        s.run();
        if auth {
            let (status, body) = s.request(
                "POST",
                &format!(
                    "/query?q=CREATE+USER+{}+WITH+PASSWORD+%27{}%27+WITH+ALL+PRIVILEGES",
                    ADMIN.0, ADMIN.1
                ),
            );
            assert_eq!(status, 200, "creating the admin user: {body}");
        }
        s
    }

    fn run(&mut self) {
        let mut cmd = Command::new(influxd());
        cmd.arg("-config")
            .arg(self.dir.path().join("influxdb.conf"));
        self.starts += 1;
        let log = self.dir.path().join(format!("server-{}.log", self.starts));
        let p = Proc::spawn(cmd, log);
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.try_request("GET", "/ping").map(|r| r.0) != Some(204) {
            assert!(
                Instant::now() < deadline,
                "influxd does not answer:\n{}",
                p.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.server = Some(p);
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// One request (as the admin when authentication is on): status and body.
    fn try_request(&self, method: &str, path: &str) -> Option<(u16, String)> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let path = if self.auth {
            format!("{path}{sep}u={}&p={}", ADMIN.0, ADMIN.1)
        } else {
            path.to_string()
        };
        crate::http(self.port, method, &path)
    }

    fn request(&self, method: &str, path: &str) -> (u16, String) {
        self.try_request(method, path)
            .unwrap_or_else(|| panic!("no answer from influxd to {method} {path}"))
    }

    /// Runs InfluxQL `q` (URL-encoded here) in database `db`; the JSON answer.
    pub fn query(&self, db: &str, q: &str) -> String {
        let enc = crate::url_encode(q);
        let method = if q.to_ascii_uppercase().starts_with("SELECT")
            || q.to_ascii_uppercase().starts_with("SHOW")
        {
            "GET"
        } else {
            "POST"
        };
        let (status, body) = self.request(method, &format!("/query?db={db}&q={enc}"));
        assert_eq!(status, 200, "{q}: {body}");
        assert!(!body.contains("\"error\""), "{q}: {body}");
        body
    }

    /// Kills the server as a crash would (SIGKILL), or stops it (SIGTERM), and waits.
    pub fn stop(&mut self) {
        if let Some(mut p) = self.server.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &p.pid().to_string()])
                .status();
            assert!(
                p.wait_blocking(Duration::from_secs(30)).is_some(),
                "influxd did not stop"
            );
        }
    }

    /// Starts it again after [`Influx::stop`], on the same port and data.
    pub fn start_again(&mut self) {
        assert!(self.server.is_none(), "the server is running");
        self.run();
    }
}

impl Drop for Influx {
    fn drop(&mut self) {
        self.stop();
    }
}
