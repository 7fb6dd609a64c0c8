//! A PostgreSQL server of the machine's own, in a temporary directory on 127.0.0.1:
//! `initdb` as the `postgres` user (it refuses root), the postmaster run with `setpriv` so
//! the PID held is the server's own, trust authentication on loopback, `fsync=off` (the
//! tests kill connectors, not the machine). `psql` reads back what the tests check.

use std::{
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use crate::{Proc, free_port};

const BIN: &str = "/usr/lib/postgresql/15/bin";
const INSTALL: &str =
    "apt-get install -y --no-install-recommends postgresql (or scripts/test-deps)";

pub struct Postgres {
    port: u16,
    dir: tempfile::TempDir,
    server: Option<Proc>,
    starts: u32,
}

fn bin(name: &str) -> PathBuf {
    let p = PathBuf::from(BIN).join(name);
    assert!(p.exists(), "{} is missing: {INSTALL}", p.display());
    p
}

/// Runs `cmd` as the postgres user.
fn as_postgres(program: PathBuf) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=postgres", "--regid=postgres", "--init-groups"])
        .arg(program);
    cmd
}

impl Postgres {
    pub fn start() -> Postgres {
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "cannot give {} to the postgres user: {INSTALL}",
            dir.path().display()
        );
        let out = as_postgres(bin("initdb"))
            .arg("-D")
            .arg(dir.path().join("data"))
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut p = Postgres {
            port: free_port(),
            dir,
            server: None,
            starts: 0,
        };
        p.run();
        p
    }

    fn run(&mut self) {
        let mut cmd = as_postgres(bin("postgres"));
        cmd.arg("-D")
            .arg(self.dir.path().join("data"))
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-p",
                &self.port.to_string(),
            ])
            .arg("-c")
            .arg(format!(
                "unix_socket_directories={}",
                self.dir.path().display()
            ))
            .args(["-c", "fsync=off"]);
        self.starts += 1;
        let log = self.dir.path().join(format!("server-{}.log", self.starts));
        let p = Proc::spawn(cmd, log);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = Command::new(bin("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-q"])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "postgres does not answer:\n{}",
                p.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.server = Some(p);
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Runs `sql` with psql; its rows, one per line, fields split by `|`.
    pub fn query(&self, sql: &str) -> String {
        let out = Command::new(bin("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ])
            .args(["-d", "postgres", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "psql {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Fast shutdown (SIGINT), waited for.
    pub fn stop(&mut self) {
        if let Some(mut p) = self.server.take() {
            let _ = Command::new("kill")
                .args(["-INT", &p.pid().to_string()])
                .status();
            assert!(
                p.wait_blocking(Duration::from_secs(30)).is_some(),
                "postgres did not stop"
            );
        }
    }

    /// Starts it again after [`Postgres::stop`], on the same port and data.
    pub fn start_again(&mut self) {
        assert!(self.server.is_none(), "the server is running");
        self.run();
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}
