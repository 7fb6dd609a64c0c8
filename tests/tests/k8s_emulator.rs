//! The Kubernetes API emulator's own tests (tests/k8s/test_emulator.py: the real kubectl
//! against it), run from `cargo test` so they gate like every other test.

use std::process::Command;

use runnel_tests::workspace_root;

#[test]
fn emulator_behaves_like_an_api_server_for_kubectl() {
    let out = Command::new("python3")
        .current_dir(workspace_root())
        .args([
            "-m",
            "unittest",
            "discover",
            "-s",
            "tests/k8s",
            "-p",
            "test_*.py",
        ])
        .output()
        .expect("python3 is needed: run scripts/test-deps");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    // A skipped test would pass silently: kmock or kubectl missing must fail instead.
    assert!(
        !text.contains("skipped"),
        "emulator tests were skipped:\n{text}"
    );
}
