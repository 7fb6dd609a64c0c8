//! test-source into the local hub: records, topic rules, health, metrics, shutdown.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use runnel_tests::{
    Proc, TempHub, connector,
    contract::{self, Contract},
    get, wait_until,
};

#[tokio::test]
async fn produces_count_records_with_dense_offsets() {
    let hub = TempHub::new();
    let mut cmd = connector("test-source", &hub);
    cmd.args([
        "--topic",
        "t",
        "--create-topic",
        "--count",
        "25",
        "--interval",
        "0",
    ]);
    let mut p = Proc::spawn(cmd, hub.path("log"));
    let status = p
        .wait_timeout(Duration::from_secs(30))
        .await
        .expect("exits");
    assert!(status.success(), "{}", p.output());
    let records = hub.read_all("t").await;
    assert_eq!(records.len(), 25);
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.offset, i as i64);
        let v: serde_json::Value = serde_json::from_slice(&r.record.value).unwrap();
        assert_eq!(v["count"], i);
    }
}

#[tokio::test]
async fn missing_topic_without_create_topic_is_an_error_that_says_how() {
    let hub = TempHub::new();
    let mut cmd = connector("test-source", &hub);
    cmd.args(["--topic", "nope", "--count", "1"]);
    let mut p = Proc::spawn(cmd, hub.path("log"));
    p.expect_exit(Duration::from_secs(30), 1, "runnel topic create nope")
        .await;
    assert_eq!(hub.count("nope").await, 0);
}

#[tokio::test]
async fn a_recreated_source_appends_to_the_existing_topic() {
    let hub = TempHub::new();
    for run in 0..2 {
        let mut cmd = connector("test-source", &hub);
        cmd.args([
            "--topic",
            "keep",
            "--create-topic",
            "--count",
            "3",
            "--interval",
            "0",
        ]);
        let mut p = Proc::spawn(cmd, hub.path(&format!("log{run}")));
        assert!(
            p.wait_timeout(Duration::from_secs(30))
                .await
                .unwrap()
                .success(),
            "{}",
            p.output()
        );
    }
    let offsets: Vec<i64> = hub
        .read_all("keep")
        .await
        .iter()
        .map(|r| r.offset)
        .collect();
    assert_eq!(offsets, (0..6).collect::<Vec<_>>());
}

#[tokio::test]
async fn health_readiness_metrics_and_graceful_sigterm() {
    let hub = TempHub::new();
    let mut cmd = connector("test-source", &hub);
    cmd.args([
        "--name",
        "ticker",
        "--topic",
        "ticks",
        "--create-topic",
        "--interval",
        "5ms",
    ]);
    let mut p = Proc::spawn(cmd, hub.path("log"));
    let base = format!("http://127.0.0.1:{}", p.health_port().await);
    wait_until(Duration::from_secs(20), "readyz 200", || async {
        matches!(get(&format!("{base}/readyz")).await, Some((200, _)))
    })
    .await;
    assert_eq!(get(&format!("{base}/healthz")).await.unwrap().0, 200);
    wait_until(Duration::from_secs(20), "records in the hub", || async {
        hub.count("ticks").await >= 10
    })
    .await;
    let (status, metrics) = get(&format!("{base}/metrics")).await.unwrap();
    assert_eq!(status, 200);
    assert!(
        metrics.contains(
            "runnel_connector_records_out_total{connector=\"ticker\",type=\"test-source\"}"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("runnel_connector_delivery_latency_seconds_bucket"),
        "{metrics}"
    );

    p.terminate();
    let status = p
        .wait_timeout(Duration::from_secs(15))
        .await
        .expect("stops within the grace period");
    assert!(status.success(), "{}", p.output());
    assert!(p.output().contains("Connector stopped."), "{}", p.output());
    // Every record handed to the producer was written before exit: the count it logged
    // matches the topic.
    let out = p.output();
    let produced: u64 = out
        .lines()
        .find_map(|l| l.split("records=").nth(1))
        .and_then(|n| n.trim().parse().ok())
        .expect("test-source logs how many records it produced");
    assert_eq!(hub.count("ticks").await, produced);
}

#[tokio::test]
async fn json_logs_when_asked() {
    let hub = TempHub::new();
    let mut cmd = connector("test-source", &hub);
    cmd.env("RUNNEL_LOG_FORMAT", "json").args([
        "--topic",
        "j",
        "--create-topic",
        "--count",
        "1",
        "--interval",
        "0",
    ]);
    let mut p = Proc::spawn(cmd, hub.path("log"));
    assert!(
        p.wait_timeout(Duration::from_secs(30))
            .await
            .unwrap()
            .success()
    );
    for line in p.output().lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"));
        assert!(v.get("level").is_some(), "{line}");
    }
}

#[tokio::test]
async fn meets_the_connector_contract() {
    let hub = TempHub::new();
    let mut cmd = connector("test-source", &hub);
    cmd.args([
        "--name",
        "ts",
        "--topic",
        "t",
        "--create-topic",
        "--interval",
        "20",
    ]);
    let mut p = Proc::spawn(cmd, hub.path("log"));
    wait_until(Duration::from_secs(30), "a record", || async {
        hub.count("t").await >= 1
    })
    .await;
    let c = Contract {
        kind: "test-source",
        name: "ts",
        secrets: &[],
        ready: true,
    };
    contract::check(&mut p, c).await;
}
