//! Real servers for Runnel's tests and benchmarks, started on 127.0.0.1 on free ports and
//! stopped by their PIDs. Kept apart from the test kit (`runnel-tests`) so a connector's
//! benchmark, built in release, links nothing but this.

// Test support: a server that cannot start fails the test or benchmark then and there.
#![allow(clippy::unwrap_used)]

pub mod rabbitmq;

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
};

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process whose output goes to a log file.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(mut cmd: Command, log: PathBuf) -> Proc {
        let f = std::fs::File::create(&log).unwrap();
        cmd.stdout(Stdio::from(f.try_clone().unwrap()))
            .stderr(Stdio::from(f))
            .stdin(Stdio::null());
        let child = cmd.spawn().unwrap();
        Proc { child, log }
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -TERM failed");
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
