//! log-sink and nop-sink against a real local hub: every record logged (cut, escaped, with
//! its key and headers) or discarded and counted, offsets committed, a record that does not
//! fit the format dead-lettered, and `kill -9` mid-stream then a restart that goes on from
//! the committed offset and loses nothing.

#![allow(clippy::unwrap_used)]

use std::{collections::HashMap, time::Duration};

use runnel_runtime::Record;
use runnel_tests::{
    Proc, TempHub, connector,
    contract::{self, Contract},
    metric, wait_until,
};

/// The records a log-sink wrote, from its JSON log: offset → the line's fields.
fn logged(log: &str) -> Vec<serde_json::Map<String, serde_json::Value>> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v.as_object().cloned())
        .filter(|o| o.get("message").and_then(|m| m.as_str()) == Some("Record."))
        .collect()
}

fn log_sink(hub: &TempHub, topic: &str, extra: &[&str]) -> std::process::Command {
    let mut cmd = connector("log-sink", hub);
    cmd.args(["--name", &format!("{topic}-log"), "--topic", topic])
        .args(["--log-format", "json"])
        .args(extra);
    cmd
}

fn nop_sink(hub: &TempHub, topic: &str, extra: &[&str]) -> std::process::Command {
    let mut cmd = connector("nop-sink", hub);
    cmd.args(["--name", &format!("{topic}-nop"), "--topic", topic])
        .args(extra);
    cmd
}

/// Every record is one line with its place, key, headers and value; a long value is cut
/// with its full length, one that is not UTF-8 escaped; the offset is committed; the
/// connector contract.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_sink_writes_each_record_as_one_line() {
    const N: usize = 3000;
    let hub = TempHub::new();
    let mut records: Vec<Record> = (0..N)
        .map(|i| {
            Record::new(format!("v{i}"))
                .with_key(format!("k{i}"))
                .with_header("site", "north")
        })
        .collect();
    records[10] = Record::new("x".repeat(5000));
    records[11] = Record::new(vec![0xffu8, b'a', 0]);
    hub.produce("events", records).await;
    let mut p = Proc::spawn(
        log_sink(&hub, "events", &["--max-bytes", "100"]),
        hub.path("log.log"),
    );
    wait_until(
        Duration::from_secs(60),
        "every record committed",
        || async { hub.committed("events", "events-log").await == N as i64 },
    )
    .await;
    let lines = logged(&p.output());
    assert_eq!(lines.len(), N, "one line per record");
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["offset"], i as u64, "in offset order");
        assert_eq!(l["topic"], "events");
        assert_eq!(l["level"], "INFO");
        if !(10..=11).contains(&i) {
            assert_eq!(l["value"], format!("v{i}"));
            assert_eq!(l["key"], format!("k{i}"));
            assert_eq!(l["headers"], "site=north");
        }
    }
    assert_eq!(
        lines[10]["value"],
        format!("{}… (5000 bytes in all)", "x".repeat(100))
    );
    assert_eq!(lines[11]["value"], "\\xffa\\x00");
    assert!(lines[11].get("key").is_none());
    contract::check(
        &mut p,
        Contract {
            kind: "log-sink",
            name: "events-log",
            secrets: &[],
            ready: true,
        },
    )
    .await;
}

/// `format: json` and a value that is not JSON: the record goes to the dead-letter topic
/// with the reason, the others are logged, and the offset moves past all of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_sink_dead_letters_a_value_that_does_not_fit_the_format() {
    let hub = TempHub::new();
    hub.produce(
        "j",
        vec![
            Record::new(r#"{"a":1}"#),
            Record::new("not json"),
            Record::new("[2]"),
        ],
    )
    .await;
    let mut p = Proc::spawn(
        log_sink(
            &hub,
            "j",
            &["--format", "json", "--on-error", "dead-letter"],
        ),
        hub.path("j.log"),
    );
    wait_until(Duration::from_secs(60), "all committed", || async {
        hub.committed("j", "j-log").await == 3
    })
    .await;
    let dl = hub.read_all("j-dlq").await;
    assert_eq!(dl.len(), 1);
    assert_eq!(dl[0].record.value, "not json");
    let lines = logged(&p.output());
    let values: Vec<&str> = lines.iter().map(|l| l["value"].as_str().unwrap()).collect();
    assert_eq!(values, [r#"{"a":1}"#, "[2]"]);
    p.stop().await;
}

/// Fills `topic` with `n` records, runs `start()` until consumer `id` committed `some`,
/// kills it with `kill -9`, and runs `start()` again until all `n` are committed. Returns
/// both runs and the committed offset at the kill.
async fn kill_9_and_restart(
    hub: &TempHub,
    (topic, id): (&str, &str),
    (n, some): (usize, i64),
    start: impl Fn(&str) -> Proc,
) -> (Proc, Proc, i64) {
    hub.produce(
        topic,
        (0..n).map(|i| Record::new(format!("m{i}"))).collect(),
    )
    .await;
    let mut first = start("first.log");
    wait_until(
        Duration::from_secs(60),
        "some records committed",
        || async { hub.committed(topic, id).await >= some },
    )
    .await;
    first.kill9();
    let at_kill = hub.committed(topic, id).await;
    assert!(
        at_kill < n as i64,
        "the kill came too late to test anything"
    );
    let second = start("second.log");
    wait_until(
        Duration::from_secs(120),
        "every record committed",
        || async { hub.committed(topic, id).await == n as i64 },
    )
    .await;
    (first, second, at_kill)
}

/// `kill -9` of a log-sink mid-stream, then a restart: the two logs hold every record;
/// repeats are at most the batch in flight and the one before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_sink_kill_9_then_restart_loses_nothing() {
    const N: usize = 100_000;
    let hub = TempHub::new();
    let (first, second, at_kill) = kill_9_and_restart(&hub, ("k", "k-log"), (N, 5_000), |log| {
        Proc::spawn(log_sink(&hub, "k", &[]), hub.path(log))
    })
    .await;
    let mut seen: HashMap<u64, usize> = HashMap::new();
    for l in logged(&first.output())
        .into_iter()
        .chain(logged(&second.output()))
    {
        *seen.entry(l["offset"].as_u64().unwrap()).or_default() += 1;
    }
    assert!(
        (0..N as u64).all(|o| seen.contains_key(&o)),
        "a record was lost"
    );
    let repeated: usize = seen.values().map(|n| n - 1).sum();
    assert!(
        repeated <= 2000,
        "{repeated} logged twice (a batch is 1000)"
    );
    // The second run began at the committed offset, not at the start.
    let second_first = logged(&second.output())[0]["offset"].as_u64().unwrap();
    assert_eq!(second_first, at_kill as u64);
}

/// nop-sink counts and discards: 100,000 records committed, counted in /metrics and in its
/// report line; a `kill -9` and a restart go on from the committed offset (the second run
/// reads only what was left); the connector contract.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nop_sink_counts_commits_and_resumes_after_kill_9() {
    const N: usize = 100_000;
    let hub = TempHub::new();
    let (_, mut second, at_kill) = kill_9_and_restart(&hub, ("n", "n-nop"), (N, 3_000), |log| {
        Proc::spawn(
            nop_sink(&hub, "n", &["--report-every", "10ms"]),
            hub.path(log),
        )
    })
    .await;
    let port = second.health_port().await;
    let read = metric(port, "runnel_connector_records_in_total")
        .await
        .unwrap() as i64;
    assert_eq!(
        read,
        N as i64 - at_kill,
        "the second run read only the rest"
    );
    assert!(
        second.output().contains("Discarded so far."),
        "{}",
        second.output()
    );
    contract::check(
        &mut second,
        Contract {
            kind: "nop-sink",
            name: "n-nop",
            secrets: &[],
            ready: true,
        },
    )
    .await;
}
