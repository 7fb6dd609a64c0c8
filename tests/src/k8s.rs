//! The Kubernetes API emulator (tests/k8s/emulator.py on kmock) on 127.0.0.1, and the
//! real kubectl pointed at it.

use std::{
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use crate::{Proc, workspace_root};

/// kubectl, found on PATH as a user would run it.
pub const KUBECTL: &str = "kubectl";

/// The emulator on a free port, with a kubeconfig for it; stopped when dropped.
pub struct Emulator {
    _proc: Proc,
    pub kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
}

impl Emulator {
    pub fn start() -> Emulator {
        let ok = Command::new("python3")
            .args(["-c", "import kmock"])
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "python3 with kmock is missing: run scripts/test-deps (it runs pip install -r tests/k8s/requirements.txt)"
        );
        assert!(
            Command::new(KUBECTL)
                .args(["version", "--client"])
                .output()
                .is_ok_and(|o| o.status.success()),
            "kubectl is missing: run scripts/test-deps"
        );
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        let mut cmd = Command::new("python3");
        cmd.arg(workspace_root().join("tests/k8s/emulator.py"))
            .args(["--port", "0", "--kubeconfig"])
            .arg(&kubeconfig);
        let proc = Proc::spawn(cmd, dir.path().join("emulator.log"));
        let deadline = Instant::now() + Duration::from_secs(30);
        while !proc.output().contains("listening on") {
            assert!(
                Instant::now() < deadline,
                "the emulator did not start: {}",
                proc.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Emulator {
            _proc: proc,
            kubeconfig,
            _dir: dir,
        }
    }

    /// The real runnel-operator pointed at this emulator, serving /healthz and /metrics on a
    /// free port of 127.0.0.1 (it logs the address).
    pub fn operator_command(&self) -> Command {
        let mut cmd = Command::new(crate::bin("runnel-operator"));
        cmd.env_remove("KUBECONFIG")
            .env("KUBECONFIG", &self.kubeconfig)
            .env("RUNNEL_OPERATOR_ADDR", "127.0.0.1:0");
        cmd
    }

    pub fn kubectl(&self, args: &[&str]) -> String {
        let out = Command::new(KUBECTL)
            .current_dir(workspace_root())
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs kubectl; returns whether it succeeded and its stdout and stderr.
    pub fn try_kubectl(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(KUBECTL)
            .current_dir(workspace_root())
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

/// Polls `check` every 100 ms for up to 30 s; panics with `what` and the log of `watched`
/// (the operator, say).
pub fn until(watched: &Proc, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; log:\n{}",
            watched.output()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
