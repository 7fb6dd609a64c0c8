//! sql-sink into PostgreSQL against the bare tokio-postgres client, in the same run, on a
//! PostgreSQL 15 started here on 127.0.0.1 (`fsync=off`). Run with `cargo build --release
//! --locked -p sql-sink && cargo bench --locked -p sql-sink --bench sql`.
//! `RUNNEL_BENCH_RECORDS` sets N (default 200,000).
//!
//! - sql-sink: N records in the local hub, each an insert of Fluvio's SQL model
//!   (`{"Insert":{"table":..,"values":[id BigInt, v Text]}}`), timed from its start until
//!   its committed offset reaches N.
//! - bare: the same rows inserted with a prepared statement, typed parameters, 1,000 per
//!   transaction (the sink's batch), the statements of a transaction pipelined.
//! - COPY: the same rows with `COPY ... FROM STDIN`, 1,000 per COPY: the physical limit.

#![allow(clippy::unwrap_used)]

use std::time::Instant;

use futures_util::SinkExt;
use runnel_test_servers::{
    bench::{count, line, runtime, sink_rate},
    postgres::Postgres,
};
use tokio_postgres::NoTls;

const BATCH: usize = 1000;

fn value(i: usize) -> String {
    format!("m{i:099}")
}

fn body(i: usize) -> Vec<u8> {
    format!(
        r#"{{"Insert":{{"table":"ours","values":[{{"column":"id","type":"BigInt","raw_value":"{i}"}},{{"column":"v","type":"Text","raw_value":"{}"}}]}}}}"#,
        value(i)
    )
    .into_bytes()
}

async fn client(url: &str) -> tokio_postgres::Client {
    let (c, conn) = tokio_postgres::connect(url, NoTls).await.unwrap();
    tokio::spawn(conn);
    c
}

async fn bare(url: &str, n: usize) -> f64 {
    let mut c = client(url).await;
    let start = Instant::now();
    let s = c
        .prepare("INSERT INTO bare (id, v) VALUES ($1, $2)")
        .await
        .unwrap();
    for from in (0..n).step_by(BATCH) {
        let rows: Vec<(i64, String)> = (from..(from + BATCH).min(n))
            .map(|i| (i as i64, value(i)))
            .collect();
        let tx = c.transaction().await.unwrap();
        {
            let (t, s) = (&tx, &s);
            let writes = rows
                .iter()
                .map(|(id, v)| async move { t.execute(s, &[id, v]).await });
            futures_util::future::try_join_all(writes).await.unwrap();
        }
        tx.commit().await.unwrap();
    }
    n as f64 / start.elapsed().as_secs_f64()
}

async fn copy(url: &str, n: usize) -> f64 {
    let c = client(url).await;
    let start = Instant::now();
    for from in (0..n).step_by(BATCH) {
        let mut text = String::new();
        for i in from..(from + BATCH).min(n) {
            text.push_str(&format!("{i}\t{}\n", value(i)));
        }
        let sink = c.copy_in("COPY copied (id, v) FROM STDIN").await.unwrap();
        let mut sink = std::pin::pin!(sink);
        sink.send(bytes::Bytes::from(text)).await.unwrap();
        sink.as_mut().finish().await.unwrap();
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let n = count("RUNNEL_BENCH_RECORDS", 200_000);
    let pg = Postgres::start();
    pg.query(
        "CREATE TABLE ours (id bigint, v text); CREATE TABLE bare (id bigint, v text);
         CREATE TABLE copied (id bigint, v text);",
    );
    let url = pg.url();
    let bin =
        runnel_test_servers::release_bin("sql-sink", "cargo build --release --locked -p sql-sink");
    let rt = runtime();
    rt.block_on(async {
        let ours = sink_rate(
            &bin,
            &["--url", &url],
            n,
            body,
            runnel_test_servers::bench::UNTIL_COMMITTED,
        )
        .await;
        let peer = bare(&url, n).await;
        let limit = copy(&url, n).await;
        line(
            &format!("sql-sink into PostgreSQL, {n} inserts of 2 columns"),
            ours,
            "bare tokio-postgres, prepared, 1000 per transaction",
            peer,
        );
        line(
            &format!("sql-sink into PostgreSQL, {n} inserts of 2 columns"),
            ours,
            "COPY FROM STDIN, 1000 per COPY",
            limit,
        );
    });
    let counts = pg.query("SELECT (SELECT count(*) FROM ours), (SELECT count(*) FROM bare), (SELECT count(*) FROM copied)");
    assert_eq!(counts.trim(), format!("{n}|{n}|{n}"));
}
