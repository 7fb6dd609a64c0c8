//! prometheus-sink against a real Prometheus (started here on 127.0.0.1, receiving remote
//! writes): JSON records land as the samples their mapping says (metric, labels, value,
//! time), read back with PromQL; records that give no sample and samples Prometheus
//! refuses follow on_error with the reason, and only they; `kill -9` and a server restart
//! lose no sample and store none twice; an endpoint that takes no remote writes stops the
//! connector without showing the token.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use runnel_runtime::Record;
use runnel_test_servers::prometheus::Prometheus;
use runnel_tests::{Proc, TempHub, connector, wait_until};
use serde_json::{Value, json};

fn sink(hub: &TempHub, url: &str, args: &[&str]) -> Proc {
    let mut cmd = connector("prometheus-sink", hub);
    cmd.args(["--name", "prom", "--topic", "s", "--endpoint", url])
        .args(args);
    Proc::spawn(cmd, hub.path(&format!("sink-{}.log", fastrand::u32(..))))
}

fn now_ms() -> i64 {
    runnel_runtime::record::now_millis()
}

/// The `result` of a PromQL answer.
fn result(answer: &str) -> Vec<Value> {
    let v: Value = serde_json::from_str(answer).unwrap();
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

/// How many samples series `selector` holds in the hour before `at_ms`.
fn samples(p: &Prometheus, selector: &str, at_ms: i64) -> u64 {
    let r = result(&p.query(
        &format!("sum(count_over_time({selector}[1h]))"),
        Some(at_ms as f64 / 1000.0),
    ));
    r.first()
        .and_then(|s| s["value"][1].as_str())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Labels from templates and fixed values, the metric from a template, values as numbers,
/// booleans and numeric strings, times from a field; four records that give no sample go
/// to the dead-letter topic with the reason and the others of their batch are stored; a
/// later sample older than Prometheus takes (out of bounds) follows them with its reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samples_as_mapped_and_refusals_follow_on_error() {
    let prom = Prometheus::start();
    let hub = TempHub::new();
    let t = now_ms() - 120_000;
    let records = vec![
        json!({"name": "temp_c", "host": "h1", "value": 21.5, "ts": t}),
        json!({"name": "temp_c", "host": "h1", "value": true, "ts": t + 1000}),
        json!({"name": "temp_c", "host": "h2", "value": "-3.25", "ts": t}),
        json!({"name": "bad name", "host": "h1", "value": 1, "ts": t}),
        json!({"name": "temp_c", "host": "h1", "value": "warm", "ts": t}),
        json!({"name": "temp_c", "host": "h3", "value": 1}),
    ];
    let mut records: Vec<Record> = records
        .into_iter()
        .map(|v| Record::new(v.to_string()))
        .collect();
    records.push(Record::new("not json"));
    hub.produce("s", records).await;
    let mut p = sink(
        &hub,
        &prom.write_url(),
        &[
            "--metric",
            "{{.name}}",
            "--labels",
            r#"{"host":"{{.host}}","job":"runnel"}"#,
            "--timestamp-field",
            "ts",
            "--on-error",
            "dead-letter",
        ],
    );
    wait_until(
        Duration::from_secs(60),
        "every record committed",
        || async { hub.committed("s", "prom").await == 7 },
    )
    .await;
    let old = json!({"name": "temp_c", "host": "h1", "value": 5, "ts": t - 3 * 3_600_000});
    hub.produce("s", vec![Record::new(old.to_string())]).await;
    let handled = runnel_tests::eventually(Duration::from_secs(60), || async {
        hub.committed("s", "prom").await == 8
    })
    .await;
    assert!(handled, "the old sample was not handled:\n{}", p.output());
    p.stop().await;
    let got = result(&prom.query("temp_c[10m]", Some((t + 2000) as f64 / 1000.0)));
    let mut series: Vec<(String, Vec<(i64, String)>)> = got
        .iter()
        .map(|s| {
            assert_eq!(s["metric"]["job"], json!("runnel"));
            let values = s["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| {
                    (
                        (v[0].as_f64().unwrap() * 1000.0).round() as i64,
                        v[1].as_str().unwrap().to_string(),
                    )
                })
                .collect();
            (s["metric"]["host"].as_str().unwrap().to_string(), values)
        })
        .collect();
    series.sort();
    assert_eq!(
        series,
        vec![
            (
                "h1".to_string(),
                vec![(t, "21.5".to_string()), (t + 1000, "1".to_string())]
            ),
            ("h2".to_string(), vec![(t, "-3.25".to_string())]),
        ]
    );
    let reasons = hub.reasons("s-dlq").await;
    assert_eq!(reasons.len(), 5, "{reasons:?}");
    assert!(
        reasons[0].contains("\"bad name\" is not a metric name"),
        "{reasons:?}"
    );
    assert_eq!(
        reasons[1],
        "the value field value is missing or not a number"
    );
    assert_eq!(
        reasons[2],
        "the timestamp field ts is missing or not a number"
    );
    assert!(
        reasons[3].starts_with("the record is not JSON"),
        "{reasons:?}"
    );
    // Prometheus 2.42 answers 500 "too old sample" (newer ones 400 "out of bounds").
    assert!(
        reasons[4].contains("too old sample") || reasons[4].contains("out of bounds"),
        "{reasons:?}"
    );
}

/// `n` records of series `metric`, one every 50 ms from `t0`.
fn numbered(from: usize, n: usize, t0: i64) -> Vec<Record> {
    (from..from + n)
        .map(|i| Record::new(json!({"v": i, "ts": t0 + 50 * i as i64}).to_string()))
        .collect()
}

/// `kill -9` mid-stream, then a restart: every sample is there and none twice (the batch
/// written again is taken as duplicates of the same values).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_stream_then_restart_stores_each_sample_once() {
    const N: usize = 40_000;
    let prom = Prometheus::start();
    let hub = TempHub::new();
    let t0 = now_ms() - 40 * 60_000;
    hub.produce("s", numbered(0, N, t0)).await;
    let args = [
        "--metric",
        "killed",
        "--value-field",
        "v",
        "--timestamp-field",
        "ts",
        "--on-error",
        "dead-letter",
    ];
    let mut first = sink(&hub, &prom.write_url(), &args);
    wait_until(
        Duration::from_secs(60),
        "some samples committed",
        || async { hub.committed("s", "prom").await >= 10_000 },
    )
    .await;
    first.kill9();
    assert!(
        hub.committed("s", "prom").await < N as i64,
        "the kill came too late to test anything"
    );
    let mut second = sink(&hub, &prom.write_url(), &args);
    wait_until(
        Duration::from_secs(120),
        "every record committed",
        || async { hub.committed("s", "prom").await == N as i64 },
    )
    .await;
    second.stop().await;
    assert_eq!(samples(&prom, "killed", t0 + 50 * N as i64), N as u64);
    assert_eq!(
        hub.count("s-dlq").await,
        0,
        "{:?}",
        hub.reasons("s-dlq").await
    );
}

/// Prometheus stops mid-stream and comes back: `/readyz` says 503 meanwhile, the batch
/// waits and is written when it is back; every sample once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rides_out_a_server_restart() {
    const N: usize = 30_000;
    let mut prom = Prometheus::start();
    let hub = TempHub::new();
    let t0 = now_ms() - 30 * 60_000;
    hub.produce("s", numbered(0, N / 2, t0)).await;
    let args = [
        "--metric",
        "moved",
        "--value-field",
        "v",
        "--timestamp-field",
        "ts",
    ];
    let mut p = sink(&hub, &prom.write_url(), &args);
    wait_until(Duration::from_secs(60), "the first half", || async {
        hub.committed("s", "prom").await == (N / 2) as i64
    })
    .await;
    let port = p.health_port().await;
    prom.stop();
    hub.produce("s", numbered(N / 2, N / 2, t0)).await;
    wait_until(Duration::from_secs(30), "/readyz 503", || async {
        runnel_tests::get(&format!("http://127.0.0.1:{port}/readyz"))
            .await
            .is_some_and(|(code, _)| code == 503)
    })
    .await;
    assert!(hub.committed("s", "prom").await < N as i64);
    prom.start_again();
    wait_until(
        Duration::from_secs(60),
        "every record committed",
        || async { hub.committed("s", "prom").await == N as i64 },
    )
    .await;
    p.stop().await;
    assert_eq!(samples(&prom, "moved", t0 + 50 * N as i64), N as u64);
    assert!(
        p.output().contains("Cannot write to the server"),
        "{}",
        p.output()
    );
}

/// An endpoint that takes no remote writes (404) stops the connector (exit 1) with a hint,
/// and the bearer token is in no line of the output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_that_takes_no_writes_stops_the_connector() {
    let prom = Prometheus::start();
    let hub = TempHub::new();
    hub.produce("s", vec![Record::new(r#"{"value":1}"#)]).await;
    let secrets = hub.path("secrets.env");
    std::fs::write(&secrets, "PROM_TOKEN=t0ken-s3cr3t-x\n").unwrap();
    let config = hub.path("connect.yml");
    let url = prom.write_url().replace("/api/v1/write", "/api/v1/nowhere");
    std::fs::write(
        &config,
        format!(
            "meta:\n  version: latest\n  name: prom\n  type: prometheus-sink\n  topic: s\n  secrets:\n    - name: PROM_TOKEN\nprometheus:\n  endpoint: {url}\n  metric: up_runnel\n  bearer_token: ${{{{ secrets.PROM_TOKEN }}}}\n"
        ),
    )
    .unwrap();
    let mut cmd = connector("prometheus-sink", &hub);
    cmd.arg("-c").arg(&config).arg("--secrets").arg(&secrets);
    let mut p = Proc::spawn(cmd, hub.path("refused.log"));
    let out = p
        .expect_exit(
            Duration::from_secs(30),
            1,
            "--web.enable-remote-write-receiver",
        )
        .await;
    assert!(out.contains("404"), "{out}");
    assert!(
        !out.contains("t0ken-s3cr3t-x"),
        "the token is shown:\n{out}"
    );
}
