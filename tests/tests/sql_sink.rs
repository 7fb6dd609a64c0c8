//! sql-sink against a real PostgreSQL (started here on 127.0.0.1) and a real SQLite file:
//! records in Fluvio's SQL model (json-sql's output) land as the rows Fluvio's sink would
//! write, every model type included; upserts update; a record that is not an operation, a
//! value that does not fit its type and a row the database refuses follow on_error with
//! the reason, and only they; the password never reaches the log.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use runnel_runtime::Record;
use runnel_test_servers::postgres::Postgres;
use runnel_tests::{
    Proc, TempHub, connector,
    contract::{self, Contract},
    wait_until,
};

/// An insert of `(column, type, raw_value)` into `table`.
fn insert(table: &str, values: &[(&str, &str, &str)]) -> Record {
    op("Insert", table, None, values)
}

fn op(kind: &str, table: &str, uniq: Option<&str>, values: &[(&str, &str, &str)]) -> Record {
    let values: Vec<serde_json::Value> = values
        .iter()
        .map(|(c, t, v)| serde_json::json!({"column": c, "type": t, "raw_value": v}))
        .collect();
    let mut body = serde_json::json!({"table": table, "values": values});
    if let Some(u) = uniq {
        body["uniq_idx"] = u.into();
    }
    Record::new(serde_json::json!({ kind: body }).to_string())
}

/// One value of every model type, as json-sql would write them.
const ALL_TYPES: &[(&str, &str, &str)] = &[
    ("b", "Bool", "true"),
    ("c", "Char", "126"),
    ("si", "SmallInt", "-12"),
    ("i", "Int", "40"),
    ("bi", "BigInt", "9223372036854775807"),
    ("f", "Float", "3.5"),
    ("d", "DoublePrecision", "3.333333333"),
    ("t", "Text", "some text"),
    ("by", "Bytes", "some bytes"),
    ("n", "Numeric", "10.25"),
    ("ts", "Timestamp", "2026-12-07 10:11:12.345"),
    ("da", "Date", "2026-12-07"),
    ("ti", "Time", "10:11:12"),
    ("u", "Uuid", "f0841d15-133a-48a7-b48c-ce1ba72f8c94"),
    ("j", "Json", r#"{"json_key":"json_value"}"#),
];

/// The records every database test writes: json-sql's own record, every type, two
/// upserts of one key, and three that must be refused.
fn records() -> Vec<Record> {
    vec![
        // What json-sql makes of {"device":{"device_id":1}} with Fluvio's example mapping.
        Record::new(
            r#"{"Insert":{"table":"topic_message","values":[{"column":"record","raw_value":"{\"device\":{\"device_id\":1}}","type":"Json"},{"column":"device_id","raw_value":"1","type":"Int"}]}}"#,
        ),
        insert("every_type", ALL_TYPES),
        op(
            "Upsert",
            "users",
            Some("name"),
            &[("name", "Text", "John"), ("age", "Int", "66")],
        ),
        op(
            "Upsert",
            "users",
            Some("name"),
            &[("name", "Text", "John"), ("age", "Int", "67")],
        ),
        insert("users", &[("name", "Text", "Ann"), ("age", "Int", "old")]),
        Record::new("not an operation"),
        insert(
            "users",
            &[("name", "Text", "Bo"), ("no_such_column", "Int", "1")],
        ),
        insert("users", &[("name", "Text", "Cy"), ("age", "Int", "30")]),
    ]
}

fn sink(hub: &TempHub, url: &str) -> Proc {
    let mut cmd = connector("sql-sink", hub);
    cmd.args(["--name", "db", "--topic", "ops", "--url", url]);
    Proc::spawn(cmd, hub.path("sink.log"))
}

/// The three refused records are in the dead-letter topic with their reasons.
async fn check_dead_letters(hub: &TempHub, missing_column: &str) {
    let reasons = hub.reasons("ops-dlq").await;
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(
        reasons[0].contains("column age (Int): \"old\" is not a 32-bit integer"),
        "{reasons:?}"
    );
    assert!(
        reasons[1].contains("the record is not an operation of Fluvio's SQL model"),
        "{reasons:?}"
    );
    assert!(reasons[2].contains(missing_column), "{reasons:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_gets_the_rows_fluvio_would_write_and_refusals_follow_on_error() {
    let pg = Postgres::start();
    pg.query(
        "CREATE TABLE topic_message (device_id int, record jsonb);
         CREATE TABLE users (name text PRIMARY KEY, age int);
         CREATE TABLE every_type (b bool, c smallint, si smallint, i int, bi bigint, f real,
           d double precision, t varchar(20), by bytea, n numeric, ts timestamp, da date,
           ti time, u uuid, j json);",
    );
    let hub = TempHub::new();
    let n = records().len() as i64;
    hub.produce("ops", records()).await;
    // A password in the URL (trust authentication ignores it): never in the log.
    let url = pg.url().replace("postgres@", "postgres:pg-s3cret-pw@");
    let mut p = sink(&hub, &url);
    wait_until(
        Duration::from_secs(60),
        "every record committed",
        || async { hub.committed("ops", "db").await == n },
    )
    .await;
    assert_eq!(
        pg.query("SELECT device_id, record FROM topic_message"),
        "1|{\"device\": {\"device_id\": 1}}\n"
    );
    assert_eq!(
        pg.query("SELECT name, age FROM users ORDER BY name"),
        "Cy|30\nJohn|67\n"
    );
    assert_eq!(
        pg.query(
            "SELECT b, c, si, i, bi, f, d, t, encode(by, 'escape'), n, ts, da, ti, u, j FROM every_type"
        ),
        "t|126|-12|40|9223372036854775807|3.5|3.333333333|some text|some bytes|10.25|\
         2026-12-07 10:11:12.345|2026-12-07|10:11:12|f0841d15-133a-48a7-b48c-ce1ba72f8c94|\
         {\"json_key\":\"json_value\"}\n"
    );
    check_dead_letters(&hub, "no_such_column").await;
    contract::check(
        &mut p,
        Contract {
            kind: "sql-sink",
            name: "db",
            secrets: &["pg-s3cret-pw"],
            ready: true,
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_gets_the_rows_fluvio_would_write_and_refusals_follow_on_error() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch(
        "CREATE TABLE topic_message (device_id INTEGER, record TEXT);
         CREATE TABLE users (name TEXT PRIMARY KEY, age INTEGER);
         CREATE TABLE every_type (b BOOLEAN, c INTEGER, si INTEGER, i INTEGER, bi BIGINT,
           f REAL, d REAL, t TEXT, by BLOB, n REAL, ts DATETIME, da DATE, ti TIME, u BLOB,
           j TEXT);",
    )
    .unwrap();
    let hub = TempHub::new();
    let n = records().len() as i64;
    hub.produce("ops", records()).await;
    let mut p = sink(&hub, &format!("sqlite:{}", db.display()));
    wait_until(
        Duration::from_secs(60),
        "every record committed",
        || async { hub.committed("ops", "db").await == n },
    )
    .await;
    let one = |sql: &str| -> String { c.query_row(sql, [], |r| r.get::<_, String>(0)).unwrap() };
    assert_eq!(
        one("SELECT device_id || '|' || record FROM topic_message"),
        r#"1|{"device":{"device_id":1}}"#
    );
    assert_eq!(
        one(
            "SELECT group_concat(name || '|' || age, ',') FROM (SELECT * FROM users ORDER BY name)"
        ),
        "Cy|30,John|67"
    );
    use rusqlite::types::Value as V;
    let row: Vec<V> = c
        .query_row(
            "SELECT b, c, bi, f, t, by, n, ts, u, j FROM every_type",
            [],
            |r| (0..10).map(|i| r.get(i)).collect(),
        )
        .unwrap();
    assert_eq!(
        row,
        [
            V::Integer(1),
            V::Integer(126),
            V::Integer(i64::MAX),
            V::Real(3.5),
            V::Text("some text".into()),
            V::Blob(b"some bytes".to_vec()),
            V::Real(10.25),
            V::Text("2026-12-07 10:11:12.345".into()),
            // A UUID is its 16 bytes, as Fluvio's sink binds it.
            V::Blob(hex::decode("f0841d15133a48a7b48cce1ba72f8c94").unwrap()),
            V::Text(r#"{"json_key":"json_value"}"#.into()),
        ]
    );
    check_dead_letters(&hub, "no_such_column").await;
    p.stop().await;
}

/// `n` inserts of `(id, v)` into `table`, ids from `from`.
fn numbered(table: &str, from: usize, n: usize) -> Vec<Record> {
    (from..from + n)
        .map(|i| {
            insert(
                table,
                &[
                    ("id", "BigInt", &i.to_string()),
                    ("v", "Text", &format!("m{i}")),
                ],
            )
        })
        .collect()
}

/// `(rows, distinct ids)` of `table`.
fn counted(pg: &Postgres, table: &str) -> (usize, usize) {
    let out = pg.query(&format!("SELECT count(*), count(DISTINCT id) FROM {table}"));
    let (a, b) = out.trim().split_once('|').unwrap();
    (a.parse().unwrap(), b.parse().unwrap())
}

async fn readyz(port: u16) -> u16 {
    runnel_tests::get(&format!("http://127.0.0.1:{port}/readyz"))
        .await
        .map_or(0, |(code, _)| code)
}

/// `kill -9` of the sink mid-stream, then a restart: every row is in the table; repeats
/// are at most the batch in flight and the one before it (at least once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_stream_then_restart_loses_nothing() {
    const N: usize = 100_000;
    let pg = Postgres::start();
    pg.query("CREATE TABLE killed (id bigint, v text)");
    let hub = TempHub::new();
    hub.produce("ops", numbered("killed", 0, N)).await;
    let mut first = sink(&hub, &pg.url());
    wait_until(Duration::from_secs(60), "some rows committed", || async {
        hub.committed("ops", "db").await >= 10_000
    })
    .await;
    first.kill9();
    let at_kill = hub.committed("ops", "db").await;
    assert!(
        at_kill < N as i64,
        "the kill came too late to test anything"
    );
    let _second = sink(&hub, &pg.url());
    wait_until(
        Duration::from_secs(120),
        "every record committed",
        || async { hub.committed("ops", "db").await == N as i64 },
    )
    .await;
    let (rows, distinct) = counted(&pg, "killed");
    assert_eq!(distinct, N, "a row was lost");
    assert!(rows - N <= 2000, "{} rows written twice", rows - N);
}

/// PostgreSQL stops mid-stream and comes back: `/readyz` says 503 meanwhile, the sink
/// connects again by itself, and every row is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rides_out_a_server_restart() {
    const N: usize = 50_000;
    let mut pg = Postgres::start();
    pg.query("CREATE TABLE moved (id bigint, v text)");
    let hub = TempHub::new();
    hub.produce("ops", numbered("moved", 0, N / 2)).await;
    let p = sink(&hub, &pg.url());
    let port = p.health_port().await;
    wait_until(
        Duration::from_secs(60),
        "the first half committed",
        || async { hub.committed("ops", "db").await == (N / 2) as i64 },
    )
    .await;
    pg.stop();
    hub.produce("ops", numbered("moved", N / 2, N / 2)).await;
    wait_until(Duration::from_secs(30), "/readyz 503", || async {
        readyz(port).await == 503
    })
    .await;
    pg.start_again();
    wait_until(
        Duration::from_secs(120),
        "every record committed",
        || async { hub.committed("ops", "db").await == N as i64 },
    )
    .await;
    let (_, distinct) = counted(&pg, "moved");
    assert_eq!(distinct, N, "a row was lost");
    wait_until(Duration::from_secs(10), "/readyz 200", || async {
        readyz(port).await == 200
    })
    .await;
    let dlq = hub.hub().await.topic("ops-dlq").await.unwrap();
    assert!(
        dlq.is_none_or(|t| t.records == 0),
        "nothing dead-lettered by the outage"
    );
}

/// A database that does not exist does not come by waiting: exit 1 with the server's
/// reason and without the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_does_not_exist_stops_the_sink() {
    let pg = Postgres::start();
    let hub = TempHub::new();
    hub.produce("ops", numbered("t", 0, 1)).await;
    let base = pg.url().rsplit_once('/').unwrap().0.to_string();
    let url = format!("{base}/nosuchdb").replace("postgres@", "postgres:pg-s3cret-pw@");
    let mut p = sink(&hub, &url);
    let status = p.wait_timeout(Duration::from_secs(30)).await;
    let log = p.output();
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{log}");
    assert!(
        log.contains("database \"nosuchdb\" does not exist"),
        "{log}"
    );
    assert!(!log.contains("pg-s3cret-pw"), "{log}");
}

/// `delivery: exactly-once`: ten `kill -9`s in a 100,000-record run, then a last run to the
/// end: every id is in the table exactly once, and runnel_offsets holds the end.
async fn exactly_once_through_kills(url: &str, count: impl Fn() -> (usize, usize)) {
    const N: usize = 100_000;
    let hub = TempHub::new();
    hub.produce("ops", numbered("once", 0, N)).await;
    let start = || {
        let mut cmd = connector("sql-sink", &hub);
        cmd.args(["--name", "db", "--topic", "ops", "--url", url])
            .args(["--delivery", "exactly-once"]);
        Proc::spawn(cmd, hub.path(&format!("sink-{}.log", fastrand::u32(..))))
    };
    let mut kills = 0;
    while kills < 10 {
        let before = count().0;
        if before >= N {
            break;
        }
        let mut p = start();
        // Killed once it wrote something, at a moment the test does not choose.
        wait_until(Duration::from_secs(60), "rows written", || async {
            count().0 > before
        })
        .await;
        tokio::time::sleep(Duration::from_millis(fastrand::u64(0..40))).await;
        p.kill9();
        kills += 1;
    }
    assert!(
        kills >= 10,
        "only {kills} kills before the end: too few to test anything"
    );
    let _last = start();
    wait_until(Duration::from_secs(120), "every row", || async {
        count().1 >= N
    })
    .await;
    // Let a repeat, if there were one, land before counting.
    wait_until(
        Duration::from_secs(30),
        "every record committed",
        || async { hub.committed("ops", "db").await == N as i64 },
    )
    .await;
    let (rows, distinct) = count();
    assert_eq!(
        (rows, distinct),
        (N, N),
        "rows and distinct ids after {kills} kills"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_exactly_once_through_ten_kill_9s() {
    let pg = Postgres::start();
    pg.query("CREATE TABLE once (id bigint, v text)");
    exactly_once_through_kills(&pg.url(), || counted(&pg, "once")).await;
    assert_eq!(
        pg.query("SELECT consumer, topic, partition, next_offset FROM runnel_offsets"),
        "db|ops|0|100000\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_exactly_once_through_ten_kill_9s() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("once.db");
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE once (id BIGINT, v TEXT);")
        .unwrap();
    let count = || {
        c.query_row("SELECT count(*), count(DISTINCT id) FROM once", [], |r| {
            Ok((r.get::<_, i64>(0)? as usize, r.get::<_, i64>(1)? as usize))
        })
        .unwrap()
    };
    exactly_once_through_kills(&format!("sqlite:{}", db.display()), count).await;
}

/// Plain JSON records and Fluvio's json-sql step in `transforms:` (its integration test's
/// mapping: the device id as an int, the whole record as json), done by the sink itself:
/// the rows json-sql and Fluvio's sink would write; a record without the required key
/// follows on_error with json-sql's message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_json_with_json_sqls_mapping() {
    let pg = Postgres::start();
    pg.query("CREATE TABLE topic_message (device_id int, record json)");
    let hub = TempHub::new();
    let mut records: Vec<Record> = (0..100)
        .map(|i| Record::new(format!(r#"{{"device":{{"device_id":{i}}}}}"#)))
        .collect();
    records.push(Record::new(r#"{"other":1}"#));
    hub.produce("devices", records).await;
    let cfg = hub.path("connect.yml");
    std::fs::write(
        &cfg,
        format!(
            "apiVersion: 0.1.0
meta:
  version: latest
  name: db
  type: sql-sink
  topic: devices
sql:
  url: {}
transforms:
  - uses: infinyon/json-sql@0.2.1
    invoke: insert
    with:
      mapping:
        table: topic_message
        map-columns:
          device_id:
            json-key: device.device_id
            value:
              type: int
              required: true
          record:
            json-key: $
            value:
              type: jsonb
              required: true
",
            pg.url()
        ),
    )
    .unwrap();
    let mut cmd = connector("sql-sink", &hub);
    cmd.arg("--config").arg(&cfg);
    let mut p = Proc::spawn(cmd, hub.path("mapped.log"));
    wait_until(
        Duration::from_secs(60),
        "every record committed",
        || async { hub.committed("devices", "db").await == 101 },
    )
    .await;
    assert_eq!(
        pg.query("SELECT count(*), sum(device_id) FROM topic_message"),
        "100|4950\n"
    );
    assert_eq!(
        pg.query("SELECT record FROM topic_message WHERE device_id = 7"),
        "{\"device\":{\"device_id\":7}}\n"
    );
    let why = hub.reasons("devices-dlq").await;
    assert_eq!(why.len(), 1);
    assert!(
        why[0].contains("Missing required field: device.device_id"),
        "{why:?}"
    );
    p.stop().await;
}
