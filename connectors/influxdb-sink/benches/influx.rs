//! influxdb-sink into InfluxDB 1.x against a bare reqwest client POSTing the same points,
//! in the same run, on an InfluxDB started here on 127.0.0.1. Run with `cargo build
//! --release --locked -p influxdb-sink && cargo bench --locked -p influxdb-sink --bench
//! influx`. `RUNNEL_BENCH_RECORDS` sets N (default 200,000).
//!
//! - influxdb-sink: N JSON records in the local hub (`{"device":"dK","v":I,"ts":T}`), a
//!   tag from a template, the time from a field, timed from its start until its committed
//!   offset reaches N.
//! - bare: the same points as line protocol made in the bench beforehand, 1,000 per
//!   request (the sink's batch), one request at a time, as the sink sends them.
//! - bare, from JSON: the same, each request's lines made from the JSON records just
//!   before it (parsed with serde_json, written with format!), as the sink must.

#![allow(clippy::unwrap_used)]

use std::time::Instant;

use runnel_test_servers::{
    bench::{count, line, runtime, sink_rate},
    influxdb::Influx,
};

const BATCH: usize = 1000;
const T0: usize = 1_700_000_000;

fn body(i: usize) -> Vec<u8> {
    format!(r#"{{"device":"d{}","v":{i},"ts":{}}}"#, i % 100, T0 + i).into_bytes()
}

async fn bare(url: &str, n: usize) -> f64 {
    let client = reqwest::Client::new();
    let bodies: Vec<String> = (0..n)
        .step_by(BATCH)
        .map(|from| {
            (from..(from + BATCH).min(n))
                .map(|i| format!("bare,device=d{} v={i} {}\n", i % 100, T0 + i))
                .collect()
        })
        .collect();
    let write = format!("{url}/write?db=b&precision=s");
    let start = Instant::now();
    for b in bodies {
        let resp = client.post(&write).body(b).send().await.unwrap();
        assert!(resp.status().is_success(), "{}", resp.status());
    }
    n as f64 / start.elapsed().as_secs_f64()
}

async fn bare_from_json(url: &str, n: usize) -> f64 {
    let client = reqwest::Client::new();
    let records: Vec<Vec<u8>> = (0..n).map(body).collect();
    let write = format!("{url}/write?db=b&precision=s");
    let start = Instant::now();
    for chunk in records.chunks(BATCH) {
        let mut lines = String::with_capacity(chunk.len() * 48);
        for r in chunk {
            let v: serde_json::Value = serde_json::from_slice(r).unwrap();
            let device = v["device"].as_str().unwrap();
            lines.push_str(&format!("json,device={device} v={} {}\n", v["v"], v["ts"]));
        }
        let resp = client.post(&write).body(lines).send().await.unwrap();
        assert!(resp.status().is_success(), "{}", resp.status());
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn points(influx: &Influx, measurement: &str) -> u64 {
    let answer = influx.query("b", &format!("SELECT count(v) FROM {measurement}"));
    let v: serde_json::Value = serde_json::from_str(&answer).unwrap();
    v["results"][0]["series"][0]["values"][0][1]
        .as_u64()
        .unwrap_or(0)
}

fn main() {
    let n = count("RUNNEL_BENCH_RECORDS", 200_000);
    let influx = Influx::start();
    influx.query("", "CREATE DATABASE b");
    let url = influx.url();
    let bin = runnel_test_servers::release_bin(
        "influxdb-sink",
        "cargo build --release --locked -p influxdb-sink",
    );
    let rt = runtime();
    rt.block_on(async {
        let ours = sink_rate(
            &bin,
            &[
                "--addr",
                &url,
                "--database",
                "b",
                "--measurement",
                "ours",
                "--tags",
                r#"{"device":"{{.device}}"}"#,
                "--ts-field",
                "ts",
                "--precision",
                "s",
            ],
            n,
            body,
            runnel_test_servers::bench::UNTIL_COMMITTED,
        )
        .await;
        let peer = bare(&url, n).await;
        let from_json = bare_from_json(&url, n).await;
        let case = format!("influxdb-sink into InfluxDB 1.x, {n} points");
        line(
            &case,
            ours,
            "bare reqwest, the same points, 1000 per request",
            peer,
        );
        line(
            &case,
            ours,
            "bare reqwest, lines made from the JSON records",
            from_json,
        );
    });
    assert_eq!(points(&influx, "ours"), n as u64);
    assert_eq!(points(&influx, "bare"), n as u64);
    assert_eq!(points(&influx, "json"), n as u64);
}
