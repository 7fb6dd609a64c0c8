//! redis-source and redis-sink against a real redis-server on 127.0.0.1 (each test starts
//! its own; it is up in a few hundredths of a second): 100,000 records each way with none
//! lost and order kept, acknowledgements only after the hub stored, a dead consumer's
//! entries claimed, `kill -9` and server restarts mid-stream, every sink mode, records the
//! server refuses, and credentials kept out of logs.

#![allow(clippy::unwrap_used)]

use std::{collections::HashMap, time::Duration};

use redis::{Value, aio::MultiplexedConnection};
use runnel_runtime::{ConsumedRecord, Record};
use runnel_tests::{
    Proc, TempHub, connector,
    contract::{self, Contract},
    redis::Redis,
    wait_until,
};

async fn conn(url: &str) -> MultiplexedConnection {
    // No response timeout: reading a stream of 100,000 entries back takes longer than
    // the client's default half second on a loaded machine.
    let config = redis::AsyncConnectionConfig::new().set_response_timeout(None);
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .unwrap()
}

/// XADDs `value` = `{prefix}{i}` for every i of `range`, pipelined by the thousand.
async fn xadd(
    c: &mut MultiplexedConnection,
    stream: &str,
    prefix: &str,
    range: std::ops::Range<usize>,
) {
    let all: Vec<usize> = range.collect();
    for chunk in all.chunks(1000) {
        let mut p = redis::pipe();
        for i in chunk {
            p.cmd("XADD")
                .arg(stream)
                .arg("*")
                .arg("value")
                .arg(format!("{prefix}{i}"))
                .ignore();
        }
        p.query_async::<()>(c).await.unwrap();
    }
}

async fn cmd<T: redis::FromRedisValue>(c: &mut MultiplexedConnection, args: &[&str]) -> T {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query_async(c).await.unwrap()
}

/// The number of entries the group read and never acknowledged.
async fn pending(c: &mut MultiplexedConnection, stream: &str, group: &str) -> i64 {
    let v: Value = cmd(c, &["XPENDING", stream, group]).await;
    match v {
        Value::Array(a) => match a.first() {
            Some(Value::Int(n)) => *n,
            _ => 0,
        },
        _ => 0,
    }
}

/// The values of a stream's entries, in order.
async fn stream_values(c: &mut MultiplexedConnection, stream: &str) -> Vec<String> {
    let v: Value = cmd(c, &["XRANGE", stream, "-", "+"]).await;
    let Value::Array(entries) = v else {
        return Vec::new();
    };
    entries
        .iter()
        .filter_map(|e| {
            let Value::Array(parts) = e else { return None };
            let Value::Array(kv) = &parts[1] else {
                return None;
            };
            kv.chunks(2).find_map(|p| match (&p[0], &p[1]) {
                (Value::BulkString(k), Value::BulkString(v)) if k == b"value" => {
                    Some(String::from_utf8_lossy(v).into_owned())
                }
                _ => None,
            })
        })
        .collect()
}

fn source(hub: &TempHub, url: &str, topic: &str) -> std::process::Command {
    let mut cmd = connector("redis-source", hub);
    cmd.args(["--name", topic, "--topic", topic, "--create-topic"])
        .args(["--url", url]);
    cmd
}

fn sink(hub: &TempHub, url: &str, topic: &str) -> std::process::Command {
    let mut cmd = connector("redis-sink", hub);
    cmd.args(["--name", &format!("{topic}-sink"), "--topic", topic])
        .args(["--url", url]);
    cmd
}

fn values(records: &[ConsumedRecord]) -> Vec<String> {
    records
        .iter()
        .map(|r| String::from_utf8_lossy(&r.record.value).into_owned())
        .collect()
}

fn all_present(got: &[String], prefix: &str, n: usize) -> bool {
    let got: std::collections::HashSet<&String> = got.iter().collect();
    (0..n).all(|i| got.contains(&format!("{prefix}{i}")))
}

fn header<'a>(r: &'a ConsumedRecord, name: &str) -> Option<&'a [u8]> {
    r.record
        .headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| &v[..])
}

async fn readyz(port: u16) -> u16 {
    runnel_tests::get(&format!("http://127.0.0.1:{port}/readyz"))
        .await
        .map_or(0, |(code, _)| code)
}

/// 100,000 stream entries into the hub in order, every one acknowledged (XPENDING 0)
/// afterwards; an entry's other fields become headers, `key` the key, and an entry without
/// the value field a JSON object of its fields.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_source_moves_a_stream_in_order_and_acknowledges_every_entry() {
    const N: usize = 100_000;
    let r = Redis::start();
    let hub = TempHub::new();
    let mut c = conn(&r.url()).await;
    let _: Value = cmd(
        &mut c,
        &[
            "XADD", "events", "*", "value", "first", "key", "k1", "site", "north",
        ],
    )
    .await;
    let _: Value = cmd(&mut c, &["XADD", "events", "*", "temp", "21", "unit", "C"]).await;
    xadd(&mut c, "events", "m", 0..N).await;
    let mut cmd_ = source(&hub, &r.url(), "all");
    cmd_.args(["--stream", "events"]);
    let p = Proc::spawn(cmd_, hub.path("src.log"));
    wait_until(Duration::from_secs(120), "100,002 records", || async {
        hub.count("all").await >= N as u64 + 2
    })
    .await;
    let got = hub.read_all("all").await;
    assert_eq!(got.len(), N + 2);
    assert_eq!(got[0].record.value, "first");
    assert_eq!(got[0].record.key.as_deref(), Some(&b"k1"[..]));
    assert_eq!(header(&got[0], "site"), Some(&b"north"[..]));
    assert_eq!(header(&got[0], "redis-stream"), Some(&b"events"[..]));
    assert!(header(&got[0], "redis-id").is_some());
    let obj: serde_json::Value = serde_json::from_slice(&got[1].record.value).unwrap();
    assert_eq!(obj, serde_json::json!({"temp": "21", "unit": "C"}));
    let want: Vec<String> = (0..N).map(|i| format!("m{i}")).collect();
    assert_eq!(values(&got[2..]), want);
    wait_until(
        Duration::from_secs(30),
        "every entry acknowledged",
        || async { pending(&mut conn(&r.url()).await, "events", "runnel").await == 0 },
    )
    .await;
    drop(p);
}

/// `kill -9` mid-stream, then a restart with the same consumer name: what it had read and
/// not acknowledged is read again first; every entry is in the hub, repeats bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_source_kill_9_mid_stream_then_restart_loses_nothing() {
    const N: usize = 30_000;
    let r = Redis::start();
    let hub = TempHub::new();
    let mut c = conn(&r.url()).await;
    xadd(&mut c, "killed", "m", 0..N).await;
    let start = || {
        let mut cmd = source(&hub, &r.url(), "killed");
        cmd.args(["--stream", "killed", "--consumer", "c1"]);
        cmd
    };
    let mut p = Proc::spawn(start(), hub.path("first.log"));
    wait_until(Duration::from_secs(60), "some records", || async {
        hub.count("killed").await >= 5_000
    })
    .await;
    p.kill9();
    // Only an entry read and not acknowledged can come twice: what was pending at the kill
    // bounds the repeats exactly, however far the reads ran ahead of the hub.
    let unacked = pending(&mut conn(&r.url()).await, "killed", "runnel").await;
    let _again = Proc::spawn(start(), hub.path("second.log"));
    wait_until(Duration::from_secs(120), "every entry", || async {
        all_present(&values(&hub.read_all("killed").await), "m", N)
    })
    .await;
    let repeated = hub.read_all("killed").await.len() - N;
    assert!(
        repeated as i64 <= unacked,
        "{repeated} repeated, {unacked} pending at the kill"
    );
    wait_until(
        Duration::from_secs(30),
        "every entry acknowledged",
        || async { pending(&mut conn(&r.url()).await, "killed", "runnel").await == 0 },
    )
    .await;
}

/// Entries a consumer read and never acknowledged (it died) are claimed by the connector
/// once they are idle longer than claim_idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_source_claims_what_a_dead_consumer_left() {
    let r = Redis::start();
    let hub = TempHub::new();
    let mut c = conn(&r.url()).await;
    let _: () = cmd(
        &mut c,
        &["XGROUP", "CREATE", "orders", "g", "0", "MKSTREAM"],
    )
    .await;
    xadd(&mut c, "orders", "o", 0..50).await;
    // Consumer "gone" reads all fifty and dies without acknowledging.
    let _: Value = cmd(
        &mut c,
        &[
            "XREADGROUP",
            "GROUP",
            "g",
            "gone",
            "COUNT",
            "100",
            "STREAMS",
            "orders",
            ">",
        ],
    )
    .await;
    assert_eq!(pending(&mut c, "orders", "g").await, 50);
    xadd(&mut c, "orders", "o", 50..60).await;
    let mut cmd_ = source(&hub, &r.url(), "claimed");
    cmd_.args(["--stream", "orders", "--group", "g", "--consumer", "alive"])
        .args(["--claim-idle", "1s"]);
    let p = Proc::spawn(cmd_, hub.path("src.log"));
    wait_until(Duration::from_secs(30), "all sixty", || async {
        hub.count("claimed").await >= 60
            && all_present(&values(&hub.read_all("claimed").await), "o", 60)
    })
    .await;
    wait_until(Duration::from_secs(30), "nothing pending", || async {
        pending(&mut conn(&r.url()).await, "orders", "g").await == 0
    })
    .await;
    assert!(p.output().contains("Claimed entries"), "{}", p.output());
}

/// A list as a reliable queue: 100,000 items in the order they were pushed, the list and
/// the processing list empty afterwards; after `kill -9` what was in the processing list
/// is read again and nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_source_is_a_reliable_queue_across_kill_9() {
    const N: usize = 100_000;
    let r = Redis::start();
    let hub = TempHub::new();
    let mut c = conn(&r.url()).await;
    let all: Vec<usize> = (0..N).collect();
    for chunk in all.chunks(1000) {
        let mut p = redis::pipe();
        for i in chunk {
            p.cmd("LPUSH").arg("jobs").arg(format!("j{i}")).ignore();
        }
        p.query_async::<()>(&mut c).await.unwrap();
    }
    let start = || {
        let mut cmd = source(&hub, &r.url(), "jobs");
        cmd.args(["--list", "jobs"]);
        cmd
    };
    let mut p = Proc::spawn(start(), hub.path("first.log"));
    wait_until(Duration::from_secs(60), "some records", || async {
        hub.count("jobs").await >= 20_000
    })
    .await;
    p.kill9();
    // Only an item moved to the processing list and not yet removed from it can come
    // twice: that list's length at the kill bounds the repeats exactly.
    let in_processing: i64 = cmd(&mut conn(&r.url()).await, &["LLEN", "jobs:processing"]).await;
    let _again = Proc::spawn(start(), hub.path("second.log"));
    wait_until(Duration::from_secs(120), "every item", || async {
        hub.count("jobs").await >= N as u64
            && all_present(&values(&hub.read_all("jobs").await), "j", N)
    })
    .await;
    let got = values(&hub.read_all("jobs").await);
    let repeated = got.len() - N;
    assert!(
        repeated as i64 <= in_processing,
        "{repeated} repeated, {in_processing} in the processing list at the kill"
    );
    // Order: first arrivals are in push order.
    let mut seen = std::collections::HashSet::new();
    let firsts: Vec<&String> = got.iter().filter(|v| seen.insert(*v)).collect();
    let mut sorted = firsts.clone();
    sorted.sort_by_key(|v| v[1..].parse::<usize>().unwrap());
    assert_eq!(firsts, sorted, "items kept their order");
    wait_until(Duration::from_secs(30), "both lists empty", || async {
        let mut c = conn(&r.url()).await;
        let a: i64 = cmd(&mut c, &["LLEN", "jobs"]).await;
        let b: i64 = cmd(&mut c, &["LLEN", "jobs:processing"]).await;
        a == 0 && b == 0
    })
    .await;
}

/// Pub/Sub: messages published while it is subscribed arrive, with their channel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pubsub_source_takes_what_is_published_while_subscribed() {
    let r = Redis::start();
    let hub = TempHub::new();
    let mut cmd_ = source(&hub, &r.url(), "live");
    cmd_.args(["--channels", "alerts", "--patterns", "sensor.*"]);
    let p = Proc::spawn(cmd_, hub.path("src.log"));
    let port = p.health_port().await;
    wait_until(Duration::from_secs(30), "subscribed", || async {
        readyz(port).await == 200
    })
    .await;
    let mut c = conn(&r.url()).await;
    wait_until(Duration::from_secs(10), "both subscriptions", || async {
        let mut c = conn(&r.url()).await;
        let pats: i64 = cmd(&mut c, &["PUBSUB", "NUMPAT"]).await;
        let subs: (String, i64) = cmd(&mut c, &["PUBSUB", "NUMSUB", "alerts"]).await;
        pats == 1 && subs.1 == 1
    })
    .await;
    for i in 0..500 {
        let _: i64 = cmd(&mut c, &["PUBLISH", "alerts", &format!("a{i}")]).await;
        let _: i64 = cmd(&mut c, &["PUBLISH", "sensor.7", &format!("s{i}")]).await;
    }
    wait_until(Duration::from_secs(30), "1,000 messages", || async {
        hub.count("live").await >= 1_000
    })
    .await;
    let got = hub.read_all("live").await;
    let alerts: Vec<String> = got
        .iter()
        .filter(|r| header(r, "redis-channel") == Some(&b"alerts"[..]))
        .map(|r| String::from_utf8_lossy(&r.record.value).into_owned())
        .collect();
    assert_eq!(
        alerts,
        (0..500).map(|i| format!("a{i}")).collect::<Vec<_>>()
    );
    drop(p);
}

/// 100,000 records XADDed in order, trimmed with MAXLEN ~ when asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_xadds_in_order() {
    const N: usize = 100_000;
    let r = Redis::start();
    let hub = TempHub::new();
    hub.produce(
        "out",
        (0..N)
            .map(|i| Record::new(format!("m{i}")).with_key(format!("k{}", i % 7)))
            .collect(),
    )
    .await;
    let mut cmd_ = sink(&hub, &r.url(), "out");
    cmd_.args(["--mode", "xadd", "--key", "sunk"]);
    let _p = Proc::spawn(cmd_, hub.path("sink.log"));
    let mut c = conn(&r.url()).await;
    wait_until(Duration::from_secs(120), "100,000 entries", || async {
        cmd::<i64>(&mut conn(&r.url()).await, &["XLEN", "sunk"]).await >= N as i64
    })
    .await;
    let got = stream_values(&mut c, "sunk").await;
    assert_eq!(got, (0..N).map(|i| format!("m{i}")).collect::<Vec<_>>());

    hub.produce(
        "trim",
        (0..5_000).map(|i| Record::new(format!("t{i}"))).collect(),
    )
    .await;
    let mut cmd_ = sink(&hub, &r.url(), "trim");
    cmd_.args(["--mode", "xadd", "--key", "trimmed", "--maxlen", "1000"]);
    let _t = Proc::spawn(cmd_, hub.path("trim.log"));
    wait_until(Duration::from_secs(60), "the last entry", || async {
        stream_values(&mut conn(&r.url()).await, "trimmed")
            .await
            .last()
            .is_some_and(|v| v == "t4999")
    })
    .await;
    let len: i64 = cmd(&mut c, &["XLEN", "trimmed"]).await;
    assert!(len < 3_000, "trimmed to about 1,000, found {len}");
}

/// PUBLISH, LPUSH and RPUSH, SET with the key from a JSON field and an expiry (eKuiper's
/// options), HSET with the key from the record's key; a key of another type, a record
/// without its key and a value longer than the server takes go to the dead-letter topic
/// with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_modes_and_refused_records() {
    let r = Redis::start_with(&[
        "--save",
        "",
        "--appendonly",
        "no",
        "--proto-max-bulk-len",
        "1mb",
    ]);
    let hub = TempHub::new();
    let mut c = conn(&r.url()).await;

    // RPUSH and LPUSH keep their ends.
    hub.produce(
        "q",
        (0..100).map(|i| Record::new(format!("q{i}"))).collect(),
    )
    .await;
    let mut cmd_ = sink(&hub, &r.url(), "q");
    cmd_.args(["--mode", "rpush", "--key", "queue"]);
    let _q = Proc::spawn(cmd_, hub.path("q.log"));
    wait_until(Duration::from_secs(30), "100 items", || async {
        cmd::<i64>(&mut conn(&r.url()).await, &["LLEN", "queue"]).await == 100
    })
    .await;
    let items: Vec<String> = cmd(&mut c, &["LRANGE", "queue", "0", "-1"]).await;
    assert_eq!(items, (0..100).map(|i| format!("q{i}")).collect::<Vec<_>>());

    // SET by a JSON field (eKuiper's field, expiration in seconds, dataType string).
    let devices = [
        r#"{"deviceName":"abc","t":1}"#,
        r#"{"deviceName":"def","t":2}"#,
        r#"{"t":3}"#,
        &format!(
            r#"{{"deviceName":"big","pad":"{}"}}"#,
            "x".repeat(1_100_000)
        ),
    ];
    hub.produce(
        "dev",
        devices.iter().map(|d| Record::new(d.to_string())).collect(),
    )
    .await;
    let mut cmd_ = sink(&hub, &r.url(), "dev");
    cmd_.args([
        "--data-type",
        "string",
        "--field",
        "deviceName",
        "--expiration",
        "100",
    ]);
    let _d = Proc::spawn(cmd_, hub.path("dev.log"));
    wait_until(Duration::from_secs(30), "two dead letters", || async {
        hub.count("dev-dlq").await == 2
    })
    .await;
    let v: String = cmd(&mut c, &["GET", "abc"]).await;
    assert_eq!(v, devices[0]);
    let ttl: i64 = cmd(&mut c, &["PTTL", "def"]).await;
    assert!((1..=100_000).contains(&ttl), "{ttl}");
    let reasons: Vec<String> = hub
        .read_all("dev-dlq")
        .await
        .iter()
        .map(|r| String::from_utf8_lossy(header(r, "runnel-error").unwrap()).into_owned())
        .collect();
    assert_eq!(
        reasons[0],
        "the value has no field \"deviceName\" to take its key from"
    );
    assert!(
        reasons[1].contains("more than the server's proto-max-bulk-len (1048576)"),
        "{reasons:?}"
    );

    // HSET by the record's key; a key that holds a list is refused (WRONGTYPE).
    hub.produce(
        "h",
        vec![
            Record::new(r#"{"name":"pump","rpm":1200,"on":true}"#).with_key("dev:1"),
            Record::new(r#"{"name":"fan"}"#).with_key("queue"),
            Record::new(r#"{"name":"valve"}"#).with_key("dev:2"),
        ],
    )
    .await;
    let mut cmd_ = sink(&hub, &r.url(), "h");
    cmd_.args(["--mode", "hset", "--key-from", "key", "--expiry", "1h"]);
    let _h = Proc::spawn(cmd_, hub.path("h.log"));
    wait_until(Duration::from_secs(30), "a dead letter", || async {
        hub.count("h-dlq").await == 1
    })
    .await;
    let h: HashMap<String, String> = cmd(&mut c, &["HGETALL", "dev:1"]).await;
    assert_eq!(h["name"], "pump");
    assert_eq!(h["rpm"], "1200");
    assert_eq!(h["on"], "true");
    let h2: HashMap<String, String> = cmd(&mut c, &["HGETALL", "dev:2"]).await;
    assert_eq!(h2["name"], "valve");
    let dl = hub.read_all("h-dlq").await;
    assert!(
        String::from_utf8_lossy(header(&dl[0], "runnel-error").unwrap()).starts_with("WRONGTYPE"),
        "{:?}",
        header(&dl[0], "runnel-error")
    );

    // PUBLISH reaches a subscriber.
    let client = redis::Client::open(r.url()).unwrap();
    let mut ps = client.get_async_pubsub().await.unwrap();
    ps.subscribe("news").await.unwrap();
    hub.produce("n", (0..10).map(|i| Record::new(format!("n{i}"))).collect())
        .await;
    let mut cmd_ = sink(&hub, &r.url(), "n");
    cmd_.args(["--mode", "publish", "--key", "news"]);
    let _n = Proc::spawn(cmd_, hub.path("n.log"));
    use futures_util::StreamExt;
    let mut msgs = ps.on_message();
    for i in 0..10 {
        let m = tokio::time::timeout(Duration::from_secs(30), msgs.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(m.get_payload_bytes(), format!("n{i}").as_bytes());
    }
}

/// `kill -9` of the sink mid-stream, then a restart: every record is in the stream,
/// repeats at most the batches in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_kill_9_mid_stream_then_restart_loses_nothing() {
    const N: usize = 50_000;
    let r = Redis::start();
    let hub = TempHub::new();
    hub.produce(
        "out",
        (0..N).map(|i| Record::new(format!("m{i}"))).collect(),
    )
    .await;
    let start = || {
        let mut cmd = sink(&hub, &r.url(), "out");
        cmd.args(["--mode", "xadd", "--key", "k9"]);
        cmd
    };
    let mut p = Proc::spawn(start(), hub.path("first.log"));
    wait_until(Duration::from_secs(60), "some entries", || async {
        cmd::<i64>(&mut conn(&r.url()).await, &["XLEN", "k9"]).await >= 5_000
    })
    .await;
    p.kill9();
    let _again = Proc::spawn(start(), hub.path("second.log"));
    wait_until(Duration::from_secs(120), "every record", || async {
        all_present(
            &stream_values(&mut conn(&r.url()).await, "k9").await,
            "m",
            N,
        )
    })
    .await;
    let got = stream_values(&mut conn(&r.url()).await, "k9").await;
    assert!(got.len() - N <= 2_000, "{} repeated", got.len() - N);
}

/// The server stopped and started again mid-stream, both ways: the connectors reconnect by
/// themselves, `/readyz` says 503 while it is down, nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_survive_a_server_restart_mid_stream() {
    const N: usize = 50_000;
    let mut r = Redis::durable();
    let hub = TempHub::new();
    let mut c = conn(&r.url()).await;
    xadd(&mut c, "in", "m", 0..N).await;
    drop(c);
    let mut cmd_ = source(&hub, &r.url(), "moved");
    cmd_.args(["--stream", "in", "--consumer", "c1", "--count", "20"]);
    let src = Proc::spawn(cmd_, hub.path("src.log"));
    hub.produce(
        "back",
        (0..N).map(|i| Record::new(format!("b{i}"))).collect(),
    )
    .await;
    let mut cmd_ = sink(&hub, &r.url(), "back");
    cmd_.args(["--mode", "xadd", "--key", "out"]);
    let snk = Proc::spawn(cmd_, hub.path("sink.log"));
    let sink_port = snk.health_port().await;
    let src_port = src.health_port().await;
    wait_until(Duration::from_secs(60), "records moving", || async {
        hub.count("moved").await >= 2_000
    })
    .await;
    r.stop();
    wait_until(Duration::from_secs(30), "/readyz 503 on both", || async {
        readyz(sink_port).await == 503 && readyz(src_port).await == 503
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    r.start_again();
    wait_until(
        Duration::from_secs(120),
        "every entry in the hub",
        || async { all_present(&values(&hub.read_all("moved").await), "m", N) },
    )
    .await;
    wait_until(
        Duration::from_secs(120),
        "every record in the stream",
        || async {
            all_present(
                &stream_values(&mut conn(&r.url()).await, "out").await,
                "b",
                N,
            )
        },
    )
    .await;
    let repeated = stream_values(&mut conn(&r.url()).await, "out").await.len() - N;
    assert!(repeated <= 2_000, "{repeated} repeats");
    assert!(
        src.output()
            .contains("Redis connection lost; reconnecting with backoff."),
        "{}",
        src.output()
    );
    drop((src, snk));
}

/// A wrong password stops the source and the sink with exit 1 and a message without the
/// password; both meet the connector contract with a password given as a secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_fail_clearly_and_both_meet_the_contract() {
    let r = Redis::start_with(&[
        "--save",
        "",
        "--appendonly",
        "no",
        "--requirepass",
        "s3cret-pa55",
    ]);
    let hub = TempHub::new();
    let bad = format!("redis://:n0t-the-pa55@127.0.0.1:{}/0", r.port);
    let mut cmd_ = source(&hub, &bad, "creds");
    cmd_.args(["--stream", "x"]);
    let mut p = Proc::spawn(cmd_, hub.path("bad.log"));
    let status = p.wait_timeout(Duration::from_secs(60)).await.unwrap();
    let out = p.output();
    assert_eq!(status.code(), Some(1), "{out}");
    assert!(!out.contains("n0t-the-pa55"), "{out}");
    assert!(
        out.contains("the server refused the username or password"),
        "{out}"
    );
    // The sink too: exit 1, the reason, no password.
    hub.produce("creds-out", vec![Record::new("z")]).await;
    let mut cmd_ = sink(&hub, &bad, "creds-out");
    cmd_.args(["--mode", "lpush", "--key", "never"]);
    let mut p = Proc::spawn(cmd_, hub.path("bad-sink.log"));
    let out = p
        .expect_exit(Duration::from_secs(60), 1, "Redis refused the login")
        .await;
    assert!(!out.contains("n0t-the-pa55"), "{out}");

    let good = format!("redis://:s3cret-pa55@127.0.0.1:{}/0", r.port);
    let mut c = conn(&good).await;
    xadd(&mut c, "cin", "c", 0..1).await;
    let mut cmd_ = connector("redis-source", &hub);
    cmd_.args(["--name", "csrc", "--topic", "csrc", "--create-topic"])
        .args([
            "--addr",
            &format!("127.0.0.1:{}", r.port),
            "--stream",
            "cin",
        ])
        .args(["--password", "${{ secrets.REDIS_PASSWORD }}"])
        .env("REDIS_PASSWORD", "s3cret-pa55");
    let mut src = Proc::spawn(cmd_, hub.path("csrc.log"));
    wait_until(Duration::from_secs(30), "the entry", || async {
        hub.count("csrc").await >= 1
    })
    .await;
    hub.produce("cout", vec![Record::new("y")]).await;
    let mut cmd_ = sink(&hub, &good, "cout");
    cmd_.args(["--mode", "lpush", "--key", "cl"]);
    let mut snk = Proc::spawn(cmd_, hub.path("csnk.log"));
    let port = snk.health_port().await;
    wait_until(Duration::from_secs(30), "the sink ready", || async {
        readyz(port).await == 200
    })
    .await;
    for (p, kind, name) in [
        (&mut src, "redis-source", "csrc"),
        (&mut snk, "redis-sink", "cout-sink"),
    ] {
        contract::check(
            p,
            Contract {
                kind,
                name,
                secrets: &["s3cret-pa55"],
                ready: true,
            },
        )
        .await;
    }
}
