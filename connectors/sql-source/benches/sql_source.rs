//! sql-source reading a PostgreSQL table into the local hub against the bare tokio-postgres
//! client paging through the same table with the same query, in the same run, on a
//! PostgreSQL 15 started here on 127.0.0.1. Run with `cargo build --release --locked -p
//! sql-source && cargo bench --locked -p sql-source --bench sql_source`.
//! `RUNNEL_BENCH_RECORDS` sets N (default 300,000).
//!
//! - sql-source: mode incrementing over N rows (`id bigint`, `v text` of 100 bytes,
//!   `at timestamp`), 1,000 rows per query, timed from its start until the hub holds N
//!   records.
//! - bare: the same keyset pages (`WHERE id > $1 ORDER BY id LIMIT 1000`), each row's
//!   JSON made by the server (`row_to_json`) as the connector asks for it, read and
//!   dropped.
//! - bare, typed: the same pages as plain typed columns (no JSON), dropped.
//! - bare into the hub: the JSON pages, each stored as records into a local hub topic
//!   through one producer, a page stored while the next is read (what the connector
//!   does, without anything else).

#![allow(clippy::unwrap_used)]

use std::time::Instant;

use runnel_runtime::Record;
use runnel_test_servers::{
    bench::{BenchHub, count, line, runtime, source_rate},
    postgres::Postgres,
};
use tokio_postgres::NoTls;

async fn pages(url: &str, n: usize, sql: &str) -> f64 {
    let (c, conn) = tokio_postgres::connect(url, NoTls).await.unwrap();
    tokio::spawn(conn);
    let start = Instant::now();
    let s = c.prepare(sql).await.unwrap();
    let (mut last, mut got) = (0i64, 0usize);
    loop {
        let rows = c.query(&s, &[&last]).await.unwrap();
        let Some(end) = rows.last() else { break };
        last = end.get::<_, i64>(0);
        got += rows.len();
        // What a reader would keep: the row's text.
        let bytes: usize = rows.iter().map(|r| r.get::<_, &str>(1).len()).sum();
        std::hint::black_box(bytes);
    }
    assert_eq!(got, n);
    n as f64 / start.elapsed().as_secs_f64()
}

async fn pages_into_hub(url: &str, n: usize, sql: &str) -> f64 {
    let hub = BenchHub::new();
    let h = hub.hub().await;
    h.ensure_topic("peer", true, None).await.unwrap();
    let mut producer = h.producer("peer").await.unwrap();
    let (c, conn) = tokio_postgres::connect(url, NoTls).await.unwrap();
    tokio::spawn(conn);
    let start = Instant::now();
    let s = c.prepare(sql).await.unwrap();
    let mut last = 0i64;
    let mut stored = None;
    loop {
        let rows = c.query(&s, &[&last]).await.unwrap();
        let Some(end) = rows.last() else { break };
        last = end.get::<_, i64>(0);
        let records: Vec<Record> = rows
            .iter()
            .map(|r| Record::new(r.get::<_, String>(1)))
            .collect();
        let pending = producer
            .enqueue(std::sync::Arc::new(records))
            .await
            .unwrap();
        if let Some(previous) = stored.replace(pending) {
            previous.await.unwrap();
        }
    }
    if let Some(p) = stored {
        p.await.unwrap();
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    assert_eq!(h.topic("peer").await.unwrap().unwrap().records, n as u64);
    rate
}

fn main() {
    let n = count("RUNNEL_BENCH_RECORDS", 300_000);
    let pg = Postgres::start();
    pg.query(&format!(
        "CREATE TABLE ev (id bigint PRIMARY KEY, v text, at timestamp);
         INSERT INTO ev SELECT g, repeat('x', 100), '2026-12-07'::timestamp + g * interval '1 ms'
           FROM generate_series(1, {n}) g;"
    ));
    pg.query("VACUUM ANALYZE ev");
    let url = pg.url();
    let bin = runnel_test_servers::release_bin(
        "sql-source",
        "cargo build --release --locked -p sql-source",
    );
    let rt = runtime();
    rt.block_on(async {
        let ours = source_rate(
            &bin,
            &[
                "--url",
                &url,
                "--table",
                "ev",
                "--incrementing-column",
                "id",
                "--poll-interval",
                "1s",
            ],
            n,
        )
        .await;
        let json = pages(
            &url,
            n,
            "SELECT q.id, row_to_json(q)::text FROM (SELECT * FROM ev) AS q \
             WHERE q.id > $1 ORDER BY q.id LIMIT 1000",
        )
        .await;
        let stored = pages_into_hub(
            &url,
            n,
            "SELECT q.id, row_to_json(q)::text FROM (SELECT * FROM ev) AS q \
             WHERE q.id > $1 ORDER BY q.id LIMIT 1000",
        )
        .await;
        let typed = pages(
            &url,
            n,
            "SELECT id, v, at::text FROM ev WHERE id > $1 ORDER BY id LIMIT 1000",
        )
        .await;
        let case = format!("sql-source from PostgreSQL into the local hub, {n} rows");
        line(
            &case,
            ours,
            "bare tokio-postgres, the same pages as JSON, dropped",
            json,
        );
        line(
            &case,
            ours,
            "bare tokio-postgres, the same pages as JSON, into the hub",
            stored,
        );
        line(
            &case,
            ours,
            "bare tokio-postgres, the same pages typed, dropped",
            typed,
        );
    });
}
