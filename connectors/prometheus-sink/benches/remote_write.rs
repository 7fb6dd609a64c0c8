//! prometheus-sink into Prometheus against a bare client (reqwest, prost, snap) writing
//! the same samples, in the same run, on a Prometheus started here on 127.0.0.1. Run with
//! `cargo build --release --locked -p prometheus-sink && cargo bench --locked -p
//! prometheus-sink --bench remote_write`. `RUNNEL_BENCH_RECORDS` sets N (default 200,000).
//!
//! - prometheus-sink: N JSON records in the local hub (`{"host":"hK","v":I,"ts":T}`), the
//!   metric fixed, a label from a template, the time from a field, timed from its start
//!   until its committed offset reaches N.
//! - bare: the same samples as WriteRequests of 1,000 (the sink's batch), encoded and
//!   compressed per request, one request at a time, as the sink sends them.
//! - bare, from JSON: the same, each request's samples taken from the JSON records just
//!   before it (serde_json), as the sink must.

#![allow(clippy::unwrap_used)]

use std::time::Instant;

use prometheus_sink::proto::{Label, Sample, TimeSeries, WriteRequest};
use runnel_test_servers::{
    bench::{count, line, runtime, sink_rate},
    prometheus::Prometheus,
};

const BATCH: usize = 1000;
const HOSTS: usize = 100;

fn body(t0: i64) -> impl Fn(usize) -> Vec<u8> {
    move |i| {
        format!(
            r#"{{"host":"h{}","v":{i},"ts":{}}}"#,
            i % HOSTS,
            t0 + i as i64
        )
        .into_bytes()
    }
}

async fn bare(url: &str, n: usize, t0: i64, json: bool) -> f64 {
    let client = reqwest::Client::new();
    let records: Vec<Vec<u8>> = if json {
        (0..n).map(body(t0)).collect()
    } else {
        Vec::new()
    };
    let metric = if json { "bare_json" } else { "bare" };
    let start = Instant::now();
    for from in (0..n).step_by(BATCH) {
        let mut series: Vec<TimeSeries> = (0..HOSTS)
            .map(|h| TimeSeries {
                labels: vec![
                    Label {
                        name: "__name__".into(),
                        value: metric.into(),
                    },
                    Label {
                        name: "host".into(),
                        value: format!("h{h}"),
                    },
                ],
                samples: Vec::new(),
            })
            .collect();
        for i in from..(from + BATCH).min(n) {
            let (h, value, timestamp) = if json {
                let v: serde_json::Value = serde_json::from_slice(records.get(i).unwrap()).unwrap();
                let h: usize = v["host"].as_str().unwrap()[1..].parse().unwrap();
                (h, v["v"].as_f64().unwrap(), v["ts"].as_i64().unwrap())
            } else {
                (i % HOSTS, i as f64, t0 + i as i64)
            };
            series[h].samples.push(Sample { value, timestamp });
        }
        let resp = client
            .post(url)
            .header("Content-Type", "application/x-protobuf")
            .header("Content-Encoding", "snappy")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .body(WriteRequest { timeseries: series }.body())
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{}", resp.status());
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn samples(p: &Prometheus, metric: &str, at_ms: i64) -> u64 {
    let answer = p.query(
        &format!("sum(count_over_time({metric}[1h]))"),
        Some(at_ms as f64 / 1000.0),
    );
    let v: serde_json::Value = serde_json::from_str(&answer).unwrap();
    v["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let n = count("RUNNEL_BENCH_RECORDS", 200_000);
    let prom = Prometheus::start();
    let url = prom.write_url();
    // One sample per millisecond of the last minutes, so Prometheus takes them all.
    let t0 = runnel_runtime::record::now_millis() - n as i64 - 60_000;
    let bin = runnel_test_servers::release_bin(
        "prometheus-sink",
        "cargo build --release --locked -p prometheus-sink",
    );
    let rt = runtime();
    rt.block_on(async {
        let ours = sink_rate(
            &bin,
            &[
                "--endpoint",
                &url,
                "--metric",
                "ours",
                "--labels",
                r#"{"host":"{{.host}}"}"#,
                "--value-field",
                "v",
                "--timestamp-field",
                "ts",
            ],
            n,
            body(t0),
            runnel_test_servers::bench::UNTIL_COMMITTED,
        )
        .await;
        let peer = bare(&url, n, t0, false).await;
        let from_json = bare(&url, n, t0, true).await;
        let case = format!("prometheus-sink into Prometheus, {n} samples of {HOSTS} series");
        line(
            &case,
            ours,
            "bare reqwest + prost + snap, 1000 samples per request",
            peer,
        );
        line(
            &case,
            ours,
            "the same, samples from the JSON records",
            from_json,
        );
    });
    let end = t0 + n as i64;
    assert_eq!(samples(&prom, "ours", end), n as u64);
    assert_eq!(samples(&prom, "bare", end), n as u64);
    assert_eq!(samples(&prom, "bare_json", end), n as u64);
}
