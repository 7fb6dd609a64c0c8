//! sql-source against a real PostgreSQL (started here on 127.0.0.1) and real SQLite files:
//! rows arrive as JSON objects with every type as the database shows it, in order, each
//! once, while rows are inserted during polling, across a graceful restart, a `kill -9`
//! (exact accounting against the saved position) and a server restart; rows sharing a
//! timestamp are neither cut nor repeated; what the database refuses stops the connector
//! with the reason, and never shows the password.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use runnel_test_servers::postgres::Postgres;
use runnel_tests::{Proc, TempHub, connector, wait_until};
use serde_json::{Value, json};

fn source(hub: &TempHub, url: &str, args: &[&str]) -> Proc {
    let mut cmd = connector("sql-source", hub);
    cmd.args([
        "--name",
        "rows",
        "--topic",
        "t",
        "--create-topic",
        "--url",
        url,
    ])
    .args(["--poll-interval", "50ms"])
    .args(args);
    Proc::spawn(cmd, hub.path(&format!("source-{}.log", fastrand::u32(..))))
}

async fn values(hub: &TempHub) -> Vec<Value> {
    hub.read_all("t")
        .await
        .iter()
        .map(|r| serde_json::from_slice(&r.record.value).unwrap())
        .collect()
}

async fn wait_for(hub: &TempHub, n: u64) {
    wait_until(Duration::from_secs(60), &format!("{n} records"), || async {
        hub.count("t").await >= n
    })
    .await;
}

/// The `id` of each record, as an integer.
fn ids(got: &[Value]) -> Vec<i64> {
    got.iter().map(|v| v["id"].as_i64().unwrap()).collect()
}

/// Inserts `n` rows `(v)` into PostgreSQL table `ev`, `per` to a transaction.
fn pg_insert(pg: &Postgres, from: usize, n: usize, per: usize) {
    let mut at = from;
    while at < from + n {
        let k = per.min(from + n - at);
        pg.query(&format!(
            "INSERT INTO ev (v) SELECT 'r' || g FROM generate_series({at}, {}) g",
            at + k - 1
        ));
        at += k;
    }
}

/// Every type as PostgreSQL shows it in JSON, in column order, keyed by the id; rows
/// inserted while the source polls arrive once each and in order; after a graceful stop,
/// the restart reads only the rows that came since.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_rows_in_order_once_across_inserts_and_a_restart() {
    let pg = Postgres::start();
    let hub = TempHub::new();
    pg.query(
        "CREATE TABLE ev (id bigserial PRIMARY KEY, v text, b bool, n numeric, f float8, \
         j jsonb, ts timestamp, d date, by bytea, u uuid, none int)",
    );
    pg.query(
        "INSERT INTO ev (v, b, n, f, j, ts, d, by, u) VALUES \
         ('first', true, 10.25, 1.5, '{\"a\":[1,2]}', '2026-12-07 10:11:12.345', '2026-12-07', \
          '\\x0102ff', 'f0841d15-133a-48a7-b48c-ce1ba72f8c94')",
    );
    let args = [
        "--table",
        "ev",
        "--incrementing-column",
        "id",
        "--key-column",
        "id",
        "--batch-rows",
        "100",
    ];
    let mut p = source(&hub, &pg.url(), &args);
    wait_for(&hub, 1).await;
    let first = &hub.read_all("t").await[0];
    assert_eq!(first.record.key.as_deref(), Some(&b"1"[..]));
    assert_eq!(
        String::from_utf8(first.record.value.to_vec()).unwrap(),
        r#"{"id":1,"v":"first","b":true,"n":10.25,"f":1.5,"j":{"a": [1, 2]},"ts":"2026-12-07T10:11:12.345","d":"2026-12-07","by":"\\x0102ff","u":"f0841d15-133a-48a7-b48c-ce1ba72f8c94","none":null}"#
    );
    // 3,000 rows in 30 transactions while the source polls.
    pg_insert(&pg, 1, 3000, 100);
    wait_for(&hub, 3001).await;
    p.stop().await;
    pg_insert(&pg, 3001, 500, 500);
    let mut p = source(&hub, &pg.url(), &args);
    wait_for(&hub, 3501).await;
    // Nothing more comes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    p.stop().await;
    assert_eq!(ids(&values(&hub).await), (1..=3501).collect::<Vec<_>>());
    assert!(
        p.output().contains("Reading on after the saved position"),
        "{}",
        p.output()
    );
}

/// Mode timestamp: rows sharing a timestamp (more than a batch of them) are read
/// together, each once; later rows follow; a restart reads only what came since.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_timestamp_mode_never_cuts_a_timestamp() {
    let pg = Postgres::start();
    let hub = TempHub::new();
    pg.query("CREATE TABLE ev (ts timestamptz NOT NULL, v int NOT NULL)");
    pg.query("SET TIME ZONE 'UTC'");
    let at = |ts: &str, from: u32, n: u32| {
        pg.query(&format!(
            "INSERT INTO ev SELECT '{ts}+00', g FROM generate_series({from}, {}) g",
            from + n - 1
        ))
    };
    // 250 at one timestamp (more than the batch of 100), 150 each at its own, then 120 at
    // one again.
    at("2026-01-01 00:00:00", 0, 250);
    for i in 0..150 {
        pg.query(&format!(
            "INSERT INTO ev VALUES ('2026-01-02 00:00:00+00'::timestamptz + interval '{i} seconds', {})",
            250 + i
        ));
    }
    at("2026-01-03 00:00:00", 400, 120);
    let args = [
        "--table",
        "ev",
        "--timestamp-column",
        "ts",
        "--batch-rows",
        "100",
    ];
    let mut p = source(&hub, &pg.url(), &args);
    wait_for(&hub, 520).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    p.stop().await;
    at("2026-01-04 00:00:00", 520, 30);
    let mut p = source(&hub, &pg.url(), &args);
    wait_for(&hub, 550).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    p.stop().await;
    // With timestamp-delay, a row is read only once the database's clock is that far
    // past its timestamp.
    let mut delayed = args.to_vec();
    delayed.extend(["--timestamp-delay", "2s"]);
    let mut p = source(&hub, &pg.url(), &delayed);
    pg.query("INSERT INTO ev VALUES (now(), 550)");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(hub.count("t").await, 550, "read before the delay passed");
    wait_for(&hub, 551).await;
    p.stop().await;
    let mut got: Vec<i64> = values(&hub)
        .await
        .iter()
        .map(|v| v["v"].as_i64().unwrap())
        .collect();
    assert_eq!(got.len(), 551, "each row once");
    got.sort_unstable();
    assert_eq!(got, (0..551).collect::<Vec<_>>());
}

/// SQLite, mode timestamp+incrementing: text timestamps shared by many rows, rows
/// inserted while the source polls, a restart; SQLite's values as JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_timestamp_and_incrementing_once_each() {
    let hub = TempHub::new();
    let file = hub.path("app.db");
    let db = rusqlite::Connection::open(&file).unwrap();
    db.execute_batch(
        "PRAGMA journal_mode=WAL;
         CREATE TABLE ev (id INTEGER PRIMARY KEY, ts TEXT NOT NULL, v TEXT, r REAL, b BLOB);
         INSERT INTO ev (ts, v, r, b) VALUES ('2026-12-07 10:00:00', 'first', 2.5, x'00ff');",
    )
    .unwrap();
    let url = format!("sqlite:{}", file.display());
    let args = [
        "--table",
        "ev",
        "--timestamp-column",
        "ts",
        "--incrementing-column",
        "id",
        "--batch-rows",
        "100",
    ];
    let mut p = source(&hub, &url, &args);
    wait_for(&hub, 1).await;
    assert_eq!(
        String::from_utf8(hub.read_all("t").await[0].record.value.to_vec()).unwrap(),
        r#"{"id":1,"ts":"2026-12-07 10:00:00","v":"first","r":2.5,"b":"\\x00ff"}"#
    );
    // 2,000 rows in 20 transactions, 10 timestamps of 200 rows each.
    for k in 0..20 {
        let tx = db.unchecked_transaction().unwrap();
        for i in 0..100 {
            let n = k * 100 + i;
            tx.execute(
                "INSERT INTO ev (ts, v) VALUES (?1, ?2)",
                rusqlite::params![format!("2026-12-07 11:00:{:02}", n / 200), format!("r{n}")],
            )
            .unwrap();
        }
        tx.commit().unwrap();
    }
    wait_for(&hub, 2001).await;
    p.stop().await;
    // A row at the last timestamp read, with a greater id, is still new.
    db.execute(
        "INSERT INTO ev (ts, v) VALUES ('2026-12-07 11:00:09', 'late')",
        [],
    )
    .unwrap();
    let mut p = source(&hub, &url, &args);
    wait_for(&hub, 2002).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    p.stop().await;
    let got = values(&hub).await;
    assert_eq!(ids(&got), (1..=2002).collect::<Vec<_>>());
    assert_eq!(got[2001]["v"], json!("late"));
}

/// `kill -9` mid-table: the saved position never passes what the hub has, and after the
/// restart the topic is exactly ids `1..=H` (stored before the kill) then from the saved
/// position on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_table_then_restart_loses_nothing() {
    const N: i64 = 60_000;
    let pg = Postgres::start();
    let hub = TempHub::new();
    pg.query("CREATE TABLE ev (id bigint PRIMARY KEY, v text)");
    pg.query(&format!(
        "INSERT INTO ev SELECT g, repeat('x', 100) FROM generate_series(1, {N}) g"
    ));
    let args = ["--table", "ev", "--incrementing-column", "id"];
    let mut p = source(&hub, &pg.url(), &args);
    wait_for(&hub, 10_000).await;
    p.kill9();
    let stored = hub.count("t").await as i64;
    assert!(stored < N, "the kill came too late to test anything");
    let saved = std::fs::read_to_string(hub.path("state/rows.checkpoint.json")).unwrap();
    let saved: Value = serde_json::from_str(&saved).unwrap();
    let resume: i64 = saved["rows"]["incrementing"]
        .as_str()
        .unwrap_or_else(|| panic!("no position in {saved}"))
        .parse()
        .unwrap();
    assert!(resume <= stored, "saved {resume}, stored {stored}");
    let mut p = source(&hub, &pg.url(), &args);
    wait_for(&hub, (stored + N - resume) as u64).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    p.stop().await;
    let want: Vec<i64> = (1..=stored).chain(resume + 1..=N).collect();
    assert_eq!(ids(&values(&hub).await), want);
}

/// PostgreSQL stops mid-table and comes back: the source connects again and reads on
/// from the last row it read: every row once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_on_once_after_postgres_restarts() {
    const N: i64 = 40_000;
    let mut pg = Postgres::start();
    let hub = TempHub::new();
    pg.query("CREATE TABLE ev (id bigint PRIMARY KEY, v text)");
    pg.query(&format!(
        "INSERT INTO ev SELECT g, 'v' FROM generate_series(1, {N}) g"
    ));
    let args = [
        "--table",
        "ev",
        "--incrementing-column",
        "id",
        "--batch-rows",
        "200",
        "--initial-backoff",
        "100ms",
        "--max-backoff",
        "500ms",
    ];
    let mut p = source(&hub, &pg.url(), &args);
    wait_for(&hub, 2_000).await;
    pg.stop();
    let during = hub.count("t").await as i64;
    tokio::time::sleep(Duration::from_secs(1)).await;
    pg.start_again();
    wait_for(&hub, N as u64).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    p.stop().await;
    assert!(during < N, "the server stopped too late to test anything");
    assert_eq!(ids(&values(&hub).await), (1..=N).collect::<Vec<_>>());
    let log = p.output();
    assert!(
        log.contains("Lost the database") || log.contains("Cannot reach"),
        "{log}"
    );
}

/// What the database refuses stops the connector (exit 1) with the reason; a password in
/// the URL is never shown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_stop_with_the_reason() {
    let pg = Postgres::start();
    let hub = TempHub::new();
    pg.query("CREATE TABLE ev (id bigint, name text, at timestamp)");
    let url_with_password = pg.url().replace("postgres@", "postgres:s3cr3t-pw@");
    let cases: Vec<(String, Vec<&str>, &str)> = vec![
        (
            pg.url(),
            vec!["--table", "nope", "--incrementing-column", "id"],
            "relation \"nope\" does not exist",
        ),
        (
            pg.url(),
            vec!["--table", "ev", "--incrementing-column", "name"],
            "column name is text: the incrementing column must be an integer",
        ),
        (
            pg.url(),
            vec!["--table", "ev", "--timestamp-column", "id"],
            "column id is int8: the timestamp column must be a timestamp",
        ),
        (
            pg.url(),
            vec!["--query", "SELECT id FROM ev", "--timestamp-column", "at"],
            "column q.at does not exist",
        ),
        (
            format!("{}/nodb", url_with_password.rsplit_once('/').unwrap().0),
            vec!["--table", "ev", "--incrementing-column", "id"],
            "database \"nodb\" does not exist",
        ),
        (
            format!("sqlite:{}", hub.path("missing.db").display()),
            vec!["--table", "ev", "--incrementing-column", "id"],
            "cannot open SQLite database",
        ),
    ];
    for (url, args, want) in cases {
        let mut p = source(&hub, &url, &args);
        let status = p.wait_timeout(Duration::from_secs(30)).await;
        let log = p.output();
        assert_eq!(status.and_then(|s| s.code()), Some(1), "{args:?}: {log}");
        assert!(log.contains(want), "{args:?}: want {want:?} in {log}");
        assert!(!log.contains("s3cr3t-pw"), "the password is shown: {log}");
    }
}

/// Mode bulk reads the whole query on every poll; start: end reads only rows that come
/// after the first start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_every_poll_and_start_at_the_end() {
    let hub = TempHub::new();
    let file = hub.path("app.db");
    let db = rusqlite::Connection::open(&file).unwrap();
    db.execute_batch(
        "CREATE TABLE ev (id INTEGER PRIMARY KEY, v TEXT);
         INSERT INTO ev (v) VALUES ('a1'), ('b1'), ('a2');",
    )
    .unwrap();
    let url = format!("sqlite:{}", file.display());
    let mut p = source(
        &hub,
        &url,
        &["--query", "SELECT v FROM ev WHERE v LIKE 'a%';"],
    );
    wait_for(&hub, 6).await;
    p.stop().await;
    let got = values(&hub).await;
    assert_eq!(
        &got[..4],
        &[
            json!({"v":"a1"}),
            json!({"v":"a2"}),
            json!({"v":"a1"}),
            json!({"v":"a2"})
        ]
    );

    let hub = TempHub::new();
    let args = [
        "--table",
        "ev",
        "--incrementing-column",
        "id",
        "--start",
        "end",
    ];
    let mut p = source(&hub, &url, &args);
    wait_until(Duration::from_secs(30), "the start at the end", || async {
        p.output().contains("Starting after the last row there is")
    })
    .await;
    db.execute("INSERT INTO ev (v) VALUES ('new1'), ('new2')", [])
        .unwrap();
    wait_for(&hub, 2).await;
    p.stop().await;
    // The restart keeps the position: neither the old rows nor the new ones again.
    db.execute("INSERT INTO ev (v) VALUES ('new3')", [])
        .unwrap();
    let mut p = source(&hub, &url, &args);
    wait_for(&hub, 3).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    p.stop().await;
    assert_eq!(ids(&values(&hub).await), vec![4, 5, 6]);
}
