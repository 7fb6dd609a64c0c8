//! One conformance suite every hub passes: the local store, Kafka (the tansu broker) and
//! NATS JetStream (nats-server), each started by the test on 127.0.0.1.
//!
//! Each property is a function over a hub URL; `conformance!` runs it against all three.

#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use runnel_runtime::{Record, config::OffsetStart, hub::HubError};
use runnel_tests::{
    Proc, Recorder, Reply, TempHub, connector, counts,
    servers::{Nats, Tansu},
    wait_until,
};

/// A running hub for one test: the broker (if any) lives as long as this.
enum Server {
    Local,
    Kafka(Tansu),
    Nats(Nats),
}

fn start(kind: &str) -> (Server, TempHub) {
    match kind {
        "local" => (Server::Local, TempHub::new()),
        "kafka" => {
            let t = Tansu::start();
            let h = TempHub::remote(&t.url());
            (Server::Kafka(t), h)
        }
        "nats" => {
            let n = Nats::start();
            let h = TempHub::remote(&n.url());
            (Server::Nats(n), h)
        }
        other => panic!("unknown hub {other}"),
    }
}

fn numbered(n: usize, from: usize) -> Vec<Record> {
    (from..from + n)
        .map(|i| {
            Record::new(format!("v{i}"))
                .with_key(format!("k{}", i % 5))
                .with_header("seq", i.to_string())
        })
        .collect()
}

/// Sends each record in its own batch. tansu 0.6 reports a partition's high watermark as
/// its last batch's base offset plus one, so the properties that read watermarks (record
/// counts, `end`, `from-end`) are checked with one record per batch; Kafka itself needs no
/// such care.
async fn send_one_by_one(h: &runnel_runtime::hub::Hub, topic: &str, records: Vec<Record>) {
    let mut p = h.producer(topic).await.unwrap();
    for r in records {
        p.send(vec![r]).await.unwrap();
    }
}

async fn order_within_a_partition(hub: &TempHub) {
    let h = hub.hub().await;
    h.ensure_topic("ordered", true, None).await.unwrap();
    let mut p = h.producer("ordered").await.unwrap();
    let mut expected_first = 0;
    for b in 0..3 {
        let first = p.send(numbered(500, b * 500)).await.unwrap();
        assert_eq!(first, expected_first, "offset of batch {b}'s first record");
        expected_first += 500;
    }
    let got = hub.read_all("ordered").await;
    assert_eq!(got.len(), 1500);
    for (i, r) in got.iter().enumerate() {
        assert_eq!(r.offset, i as i64, "offsets are dense and increasing");
        assert_eq!(r.record.value, Bytes::from(format!("v{i}")));
        assert_eq!(r.partition, 0);
        assert_eq!(r.topic, "ordered");
    }
}

async fn keys_and_headers_round_trip(hub: &TempHub) {
    let h = hub.hub().await;
    h.ensure_topic("shapes", true, None).await.unwrap();
    let binary: Vec<u8> = (0..=255u8).collect();
    let sent = vec![
        Record {
            key: None,
            value: Bytes::from_static(b"no key, no headers"),
            timestamp: 1_700_000_000_123,
            headers: vec![],
        },
        Record {
            key: Some(Bytes::from_static(b"text key with spaces & = %")),
            value: Bytes::new(),
            timestamp: 1_700_000_000_124,
            headers: vec![
                ("a".into(), Bytes::from_static(b"1")),
                ("a".into(), Bytes::from_static(b"2")),
                (
                    "content-type".into(),
                    Bytes::from_static(b"text/plain; x=y&z"),
                ),
                ("empty".into(), Bytes::new()),
            ],
        },
        Record {
            key: Some(Bytes::from(binary.clone())),
            value: Bytes::from(binary.clone()),
            timestamp: 1_700_000_000_125,
            headers: vec![("bin".into(), Bytes::from(binary))],
        },
        Record {
            key: Some(Bytes::new()),
            value: Bytes::from(vec![b'x'; 300_000]),
            timestamp: 1_700_000_000_126,
            headers: vec![],
        },
    ];
    h.producer("shapes")
        .await
        .unwrap()
        .send(sent.clone())
        .await
        .unwrap();
    let got: Vec<Record> = hub
        .read_all("shapes")
        .await
        .into_iter()
        .map(|r| r.record)
        .collect();
    assert_eq!(got, sent);
}

async fn offsets_resume_after_a_restart(hub: &TempHub) {
    let h = hub.hub().await;
    h.ensure_topic("resume", true, None).await.unwrap();
    send_one_by_one(&h, "resume", numbered(100, 0)).await;
    {
        let mut c = h
            .consumer("resume", 0, Some("group-a"), OffsetStart::Beginning)
            .await
            .unwrap();
        let mut read = Vec::new();
        while read.len() < 100 {
            read.extend(c.fetch(100, Duration::from_secs(5)).await.unwrap());
        }
        c.commit(60).await.unwrap();
    }
    // A new connection, as a restarted process has.
    let h = hub.hub().await;
    let mut c = h
        .consumer("resume", 0, Some("group-a"), OffsetStart::End)
        .await
        .unwrap();
    assert_eq!(c.position(), 60, "resumes from the committed offset");
    let next = c.fetch(10, Duration::from_secs(5)).await.unwrap();
    assert_eq!(next.first().map(|r| r.offset), Some(60));
    // Another id has nothing stored: `start` applies.
    let c = h
        .consumer("resume", 0, Some("group-b"), OffsetStart::End)
        .await
        .unwrap();
    assert_eq!(c.position(), 100);
    let c = h
        .consumer("resume", 0, Some("group-c"), OffsetStart::FromEnd(10))
        .await
        .unwrap();
    assert_eq!(c.position(), 90);
}

async fn create_topic_semantics(hub: &TempHub) {
    let h = hub.hub().await;
    assert!(h.topic("made").await.unwrap().is_none());
    assert!(matches!(
        h.ensure_topic("made", false, None).await,
        Err(HubError::TopicNotFound(_))
    ));
    h.create_topic("made", 1).await.unwrap();
    assert!(matches!(
        h.create_topic("made", 1).await,
        Err(HubError::TopicExists(_))
    ));
    // With create, an existing topic is left alone.
    h.ensure_topic("made", true, None).await.unwrap();
    let info = h.topic("made").await.unwrap().unwrap();
    assert_eq!((info.partitions, info.records), (1, 0));
    send_one_by_one(&h, "made", numbered(7, 0)).await;
    let info = h.topic("made").await.unwrap().unwrap();
    assert_eq!((info.records, info.next_offset), (7, 7));
    // Names with the characters topics allow, told apart.
    h.create_topic("a.b_c-d", 1).await.unwrap();
    h.create_topic("a_b.c-d", 1).await.unwrap();
    let names: Vec<String> = h
        .list_topics()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    for n in ["made", "a.b_c-d", "a_b.c-d"] {
        assert!(names.contains(&n.to_string()), "{n} missing from {names:?}");
    }
    assert!(matches!(
        h.create_topic("bad name", 1).await,
        Err(HubError::InvalidTopicName(_))
    ));
    h.delete_topic("made").await.unwrap();
    assert!(
        runnel_tests::eventually(Duration::from_secs(10), || async {
            h.topic("made").await.unwrap().is_none()
        })
        .await,
        "deleted topic still listed"
    );
    assert!(matches!(
        h.delete_topic("made").await,
        Err(HubError::TopicNotFound(_))
    ));
}

/// http-sink killed with SIGKILL mid-stream and started again: every record arrives,
/// duplicates only from the batch in flight.
async fn at_least_once_across_kill_9_of_a_sink(hub: &TempHub) {
    let n = 3000;
    let records: Vec<Record> = (0..n).map(|i| Record::new(format!("r{i}"))).collect();
    hub.produce("in", records).await;
    let server = Recorder::start(|_, _| Reply::Status(200)).await;
    let url = server.url("/");
    let sink = || {
        let mut cmd = connector("http-sink", hub);
        cmd.args(["--topic", "in", "--endpoint", &url]);
        cmd
    };
    let mut p = Proc::spawn(sink(), hub.path("log1"));
    wait_until(Duration::from_secs(60), "deliveries under way", || async {
        server.accepted().len() >= 500
    })
    .await;
    p.kill9();
    let at_kill = server.accepted().len();
    assert!(at_kill < n, "the crash must land mid-stream ({at_kill})");
    let p2 = Proc::spawn(sink(), hub.path("log2"));
    wait_until(Duration::from_secs(90), "every record", || async {
        let got: HashSet<String> = server.accepted().into_iter().collect();
        got.len() == n
    })
    .await;
    let got = server.accepted();
    let dup = counts(&got).values().filter(|c| **c > 1).count();
    assert!(dup <= 1000, "{dup} duplicates:\n{}", p2.output());
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                use super::*;

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn local() {
                    let (_s, hub) = start("local");
                    super::$name(&hub).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn kafka() {
                    let (_s, hub) = start("kafka");
                    super::$name(&hub).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn nats() {
                    let (_s, hub) = start("nats");
                    super::$name(&hub).await;
                }
            }
        )*
    };
}

conformance!(
    order_within_a_partition,
    keys_and_headers_round_trip,
    offsets_resume_after_a_restart,
    create_topic_semantics,
    at_least_once_across_kill_9_of_a_sink,
);

/// test-source writing into NATS while nats-server restarts (file storage): the
/// connector reconnects and every record is there at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_restart_mid_run_loses_nothing() {
    let (server, hub) = start("nats");
    let Server::Nats(mut nats) = server else {
        unreachable!()
    };
    let n = 20_000u64;
    let mut cmd = connector("test-source", &hub);
    cmd.args([
        "--topic",
        "ticks",
        "--create-topic",
        "--interval",
        "0",
        "--count",
        &n.to_string(),
        "--template",
        "{{count}}",
    ]);
    let mut p = Proc::spawn(cmd, hub.path("source.log"));
    wait_until(Duration::from_secs(60), "records under way", || async {
        hub.count("ticks").await > 2000
    })
    .await;
    nats.restart(Duration::from_millis(1500));
    let status = p.wait_timeout(Duration::from_secs(120)).await;
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "test-source did not finish cleanly:\n{}",
        p.output()
    );
    let got: HashSet<Bytes> = hub
        .read_all("ticks")
        .await
        .into_iter()
        .map(|r| r.record.value)
        .collect();
    for i in 0..n {
        assert!(
            got.contains(&Bytes::from(i.to_string())),
            "record {i} is missing:\n{}",
            p.output()
        );
    }
}

/// The broker goes away under a running source and comes back (tansu keeps its data in
/// memory, so what was written before is gone): the connector keeps running and writes
/// into the new broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_restart_the_connector_reconnects() {
    let (server, hub) = start("kafka");
    let Server::Kafka(mut tansu) = server else {
        unreachable!()
    };
    let mut cmd = connector("test-source", &hub);
    cmd.args([
        "--topic",
        "ticks",
        "--create-topic",
        "--interval",
        "5ms",
        "--template",
        "{{count}}",
    ]);
    let mut p = Proc::spawn(cmd, hub.path("source.log"));
    wait_until(Duration::from_secs(60), "records under way", || async {
        hub.count("ticks").await > 100
    })
    .await;
    tansu.restart(Duration::from_millis(500));
    // The memory store starts empty: the topic comes back when the connector, which
    // creates topics, is told again, as an operator would after losing a cluster.
    let h = hub.hub().await;
    h.ensure_topic("ticks", true, None).await.unwrap();
    let resumed = runnel_tests::eventually(Duration::from_secs(90), || async {
        hub.count("ticks").await > 50
    })
    .await;
    assert!(
        resumed,
        "no records in the new broker after 90 s:\n{}",
        p.output()
    );
    assert!(
        p.wait_timeout(Duration::ZERO).await.is_none(),
        "the connector exited:\n{}",
        p.output()
    );
    // librdkafka's own account of the outage reaches the log (through the `log` bridge).
    let out = p.output();
    assert!(out.contains("librdkafka: "), "no librdkafka line:\n{out}");
}

/// No broker where the Kafka hub URL points: the connector exits non-zero, and its error
/// carries librdkafka's own reason, not just rdkafka's "BrokerTransportFailure".
#[tokio::test]
async fn an_unreachable_kafka_hub_says_why() {
    let port = runnel_tests::free_port();
    let hub = TempHub::remote(&format!("kafka://127.0.0.1:{port}"));
    let mut cmd = connector("test-source", &hub);
    cmd.args(["--topic", "ticks", "--create-topic", "--interval", "100ms"]);
    let mut p = Proc::spawn(cmd, hub.path("source.log"));
    let status = p
        .wait_timeout(Duration::from_secs(60))
        .await
        .expect("the connector kept running without a broker");
    assert!(!status.success());
    let out = p.output();
    let error = out
        .lines()
        .find(|l| l.contains("Connector failed."))
        .unwrap_or_else(|| panic!("no failure line:\n{out}"));
    assert!(
        error.contains("cannot reach the brokers")
            && error.contains(&format!("127.0.0.1:{port} failed: Connection refused")),
        "the error does not say why:\n{out}"
    );
}
