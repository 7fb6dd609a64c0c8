//! A Prometheus 2.x server of the machine's own (`prometheus` from apt) on 127.0.0.1, its
//! storage in a temporary directory, receiving remote writes, scraping nothing, and
//! taking samples up to an hour out of order (so a batch written again after a crash is
//! stored, as the sink's README advises).

use std::{
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use crate::{Proc, free_port};

const INSTALL: &str =
    "apt-get install -y --no-install-recommends prometheus (or scripts/test-deps)";

pub struct Prometheus {
    port: u16,
    dir: tempfile::TempDir,
    server: Option<Proc>,
    starts: u32,
}

fn bin() -> PathBuf {
    let p = PathBuf::from("/usr/bin/prometheus");
    assert!(p.exists(), "prometheus is missing: {INSTALL}");
    p
}

impl Prometheus {
    pub fn start() -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("prometheus.yml"),
            "global:\n  scrape_interval: 1h\nstorage:\n  tsdb:\n    out_of_order_time_window: 1h\n",
        )
        .unwrap();
        let mut p = Prometheus {
            port: free_port(),
            dir,
            server: None,
            starts: 0,
        };
        p.run();
        p
    }

    fn run(&mut self) {
        let d = self.dir.path();
        let mut cmd = Command::new(bin());
        cmd.arg(format!(
            "--config.file={}",
            d.join("prometheus.yml").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{}", self.port))
        .arg(format!("--storage.tsdb.path={}", d.join("data").display()))
        .arg("--web.enable-remote-write-receiver");
        self.starts += 1;
        let p = Proc::spawn(cmd, d.join(format!("server-{}.log", self.starts)));
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.get("/-/ready").map(|r| r.0) != Some(200) {
            assert!(
                Instant::now() < deadline,
                "prometheus is not ready:\n{}",
                p.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.server = Some(p);
    }

    /// `http://127.0.0.1:PORT/api/v1/write`.
    pub fn write_url(&self) -> String {
        format!("http://127.0.0.1:{}/api/v1/write", self.port)
    }

    fn get(&self, path: &str) -> Option<(u16, String)> {
        crate::http(self.port, "GET", path)
    }

    /// Runs PromQL `q` (an instant query at `time`, seconds, or now); the JSON answer.
    pub fn query(&self, q: &str, time: Option<f64>) -> String {
        let enc = crate::url_encode(q);
        let mut path = format!("/api/v1/query?query={enc}");
        if let Some(t) = time {
            path.push_str(&format!("&time={t:.3}"));
        }
        let (status, body) = self
            .get(&path)
            .unwrap_or_else(|| panic!("no answer from prometheus to {q}"));
        assert_eq!(status, 200, "{q}: {body}");
        body
    }

    /// SIGTERM, waited for.
    pub fn stop(&mut self) {
        if let Some(mut p) = self.server.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &p.pid().to_string()])
                .status();
            assert!(
                p.wait_blocking(Duration::from_secs(60)).is_some(),
                "prometheus did not stop"
            );
        }
    }

    /// Starts it again after [`Prometheus::stop`], on the same port and data.
    pub fn start_again(&mut self) {
        assert!(self.server.is_none(), "the server is running");
        self.run();
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.stop();
    }
}
