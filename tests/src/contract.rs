//! The connector contract (DEVELOPERS.md, "The connector contract"), checked the same way
//! for every connector: each connector's tests run it against a connector they started
//! with [`crate::connector`] and gave work to.

use std::time::Duration;

use crate::{Proc, get};

/// The metric families every connector serves, each labelled with its name and type.
pub const METRICS: &[&str] = &[
    "runnel_connector_records_in_total",
    "runnel_connector_records_out_total",
    "runnel_connector_records_filtered_total",
    "runnel_connector_records_failed_total",
    "runnel_connector_records_dead_lettered_total",
    "runnel_connector_retries_total",
    "runnel_connector_bytes_in_total",
    "runnel_connector_bytes_out_total",
    "runnel_connector_delivery_latency_seconds_count",
    "runnel_connector_ready",
];

/// What the contract is checked against.
#[derive(Debug, Clone, Copy)]
pub struct Contract<'a> {
    /// The connector type (`file-source`).
    pub kind: &'a str,
    /// Its `--name`.
    pub name: &'a str,
    /// Values that must appear in no log line (passwords, tokens given as secrets).
    pub secrets: &'a [&'a str],
    /// Whether `/readyz` must answer 200 now (its outside system is up).
    pub ready: bool,
}

/// Checks a running connector, then stops it: `/healthz` 200; `/readyz` 200 when it should
/// be ready (503 otherwise, never anything else); every metric family with the connector's
/// labels; SIGTERM ends it with exit 0 within the default grace period (10s); its log
/// says it started and stopped and holds no secret value; and its binary exits 2 on bad
/// input ([`exits_2_on_bad_input`]).
pub async fn check(p: &mut Proc, c: Contract<'_>) {
    let port = p.health_port().await;
    let base = format!("http://127.0.0.1:{port}");
    let (code, _) = get(&format!("{base}/healthz"))
        .await
        .expect("/healthz answers");
    assert_eq!(code, 200, "/healthz");
    let (code, body) = get(&format!("{base}/readyz"))
        .await
        .expect("/readyz answers");
    match c.ready {
        true => assert_eq!(code, 200, "/readyz: {body}"),
        false => assert_eq!(code, 503, "/readyz: {body}"),
    }
    let (code, metrics) = get(&format!("{base}/metrics"))
        .await
        .expect("/metrics answers");
    assert_eq!(code, 200, "/metrics");
    let labels = format!("{{connector=\"{}\",type=\"{}\"}}", c.name, c.kind);
    for family in METRICS {
        let want = format!("{family}{labels} ");
        assert!(
            metrics.lines().any(|l| l.starts_with(&want)),
            "{family} with {labels} missing from /metrics:\n{metrics}"
        );
    }
    p.terminate();
    let status = p.wait_timeout(Duration::from_secs(12)).await;
    let log = p.output();
    let status = status.unwrap_or_else(|| panic!("still running 12s after SIGTERM:\n{log}"));
    assert_eq!(status.code(), Some(0), "exit after SIGTERM:\n{log}");
    assert!(log.contains("Connector started."), "{log}");
    assert!(log.contains("Connector stopped."), "{log}");
    for s in c.secrets {
        assert!(!log.contains(s), "a secret value is in the log:\n{log}");
    }
    exits_2_on_bad_input(&crate::bin(c.kind));
}

/// A flag the connector does not take, and a config file that is not there, exit 2 with
/// a message naming them.
pub fn exits_2_on_bad_input(bin: &std::path::Path) {
    let out = std::process::Command::new(bin)
        .arg("--no-such-flag")
        .output()
        .expect("run the connector");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--no-such-flag"));
    let out = std::process::Command::new(bin)
        .args(["--config", "/nonexistent/connect.yml", "--check"])
        .output()
        .expect("run the connector");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/connect.yml"));
}
