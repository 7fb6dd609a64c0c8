//! A mosquitto broker (from apt: `/usr/sbin/mosquitto`) on 127.0.0.1 for one test: its own
//! port, config and persistence directory; it can be stopped and started again on the same
//! port with the same data, and is killed when dropped.

use std::{
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::free_port;

/// The broker binary: `$RUNNEL_MOSQUITTO`, else the Debian path, else `mosquitto` on the PATH.
fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("RUNNEL_MOSQUITTO") {
        return p.into();
    }
    let debian = Path::new("/usr/sbin/mosquitto");
    if debian.exists() {
        return debian.to_path_buf();
    }
    "mosquitto".into()
}

pub struct Mosquitto {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    starts: usize,
}

impl Mosquitto {
    /// Anonymous access, persistence on, no limit on queued messages (a persistent session
    /// may hold a whole test's stream) and 1,000 QoS 1 messages in flight per client.
    pub fn start() -> Self {
        Self::start_with("allow_anonymous true\n")
    }

    /// As [`start`](Self::start), with `extra` config lines instead of `allow_anonymous true`.
    /// `{dir}` in them stands for the broker's directory.
    pub fn start_with(extra: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        // Started as root, mosquitto drops to the mosquitto user before it writes its
        // persistence file.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        }
        let port = free_port();
        let d = dir.path().display().to_string();
        let conf = format!(
            "listener {port} 127.0.0.1\n\
             persistence true\n\
             persistence_location {d}/\n\
             max_queued_messages 0\n\
             max_inflight_messages 1000\n\
             log_dest stderr\n\
             log_type error\n\
             log_type warning\n\
             log_type notice\n\
             {}",
            extra.replace("{dir}", &d)
        );
        std::fs::write(dir.path().join("mosquitto.conf"), conf).unwrap();
        let mut m = Mosquitto {
            port,
            dir,
            child: None,
            starts: 0,
        };
        m.start_again();
        m
    }

    /// `mqtt://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Starts the broker (again) with the same config and data, and waits until it accepts
    /// connections.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "mosquitto is already running");
        let log =
            std::fs::File::create(self.dir.path().join(format!("log{}", self.starts))).unwrap();
        self.starts += 1;
        let child = Command::new(binary())
            .arg("-c")
            .arg(self.dir.path().join("mosquitto.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {}: {e} (install the mosquitto package)",
                    binary().display()
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(Some(status)) = self.child.as_mut().map(|c| c.try_wait().unwrap()) {
                panic!("mosquitto exited with {status}:\n{}", self.logs());
            }
            assert!(
                Instant::now() < deadline,
                "mosquitto does not listen on {}:\n{}",
                self.port,
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the broker as an operator would (SIGTERM: it saves its persistence file) and
    /// waits for the exit.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stop, then start on the same port with the same data.
    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }

    /// Everything the broker logged, every start.
    pub fn logs(&self) -> String {
        (0..self.starts)
            .map(|i| {
                std::fs::read_to_string(self.dir.path().join(format!("log{i}"))).unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
