//! kafka-source and kafka-sink against a real Kafka broker (tansu) on 127.0.0.1, each test
//! with its own: 100,000 records each way with none lost and order kept, the consumer
//! group's offset committed only for what the hub stored, `kill -9` mid-stream, a broker
//! outage mid-stream (every connection cut and refused for seconds, through a proxy, as a
//! restart looks to a client; tansu's only store here is memory, so a real restart would
//! empty it), records the broker refuses, an unreachable cluster, and Fluvio's own files.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use rdkafka::{
    ClientConfig, Message, Offset, TopicPartitionList,
    consumer::{Consumer, StreamConsumer},
    message::{Header, Headers, OwnedHeaders},
    producer::{FutureProducer, FutureRecord},
};
use runnel_runtime::{ConsumedRecord, Record};
use runnel_test_servers::tansu::create_topic;
use runnel_tests::{
    Proc, TempHub, connector,
    contract::{self, Contract},
    servers::Tansu,
    wait_until,
};

fn producer(brokers: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("acks", "all")
        .set("log_level", "3")
        .create()
        .unwrap()
}

/// Writes `{prefix}{i}` for every i of `range` to partition 0 of `topic` (created first
/// when missing), a thousand acknowledgements awaited at a time.
async fn produce(brokers: &str, topic: &str, prefix: &str, range: std::ops::Range<usize>) {
    create_topic(brokers, topic).await;
    let p = producer(brokers);
    let all: Vec<usize> = range.collect();
    for chunk in all.chunks(1000) {
        let values: Vec<String> = chunk.iter().map(|i| format!("{prefix}{i}")).collect();
        let mut acks = Vec::new();
        for v in &values {
            let r: FutureRecord<'_, (), str> =
                FutureRecord::to(topic).payload(v.as_str()).partition(0);
            acks.push(p.send_result(r).map_err(|(e, _)| e).unwrap());
        }
        for a in acks {
            a.await.unwrap().map_err(|(e, _)| e).unwrap();
        }
    }
}

/// Every record of partition 0 of `topic` now (key, value, headers), read from the start.
async fn read_topic(brokers: &str, topic: &str, at_least: usize) -> Vec<ConsumedRecord> {
    let c: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("reader-{}", fastrand::u64(..)))
        .set("enable.auto.commit", "false")
        .set("log_level", "3")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    c.assign(&tpl).unwrap();
    let mut out = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(3), c.recv()).await {
            Ok(Ok(m)) => {
                let mut r = Record::new(m.payload().unwrap_or_default().to_vec());
                r.key = m.key().map(|k| k.to_vec().into());
                if let Some(h) = m.headers() {
                    for h in h.iter() {
                        r.headers.push((
                            h.key.to_string(),
                            h.value.unwrap_or_default().to_vec().into(),
                        ));
                    }
                }
                out.push(ConsumedRecord {
                    topic: topic.to_string(),
                    partition: 0,
                    offset: m.offset(),
                    record: r,
                });
            }
            Ok(Err(_)) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(_) if out.len() >= at_least => return out,
            Err(_) => {}
        }
    }
}

/// The offset group `group` committed for partition 0 of `topic`, if any.
fn committed(brokers: &str, group: &str, topic: &str) -> Option<i64> {
    let c: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("log_level", "3")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, 0);
    let got = c.committed_offsets(tpl, Duration::from_secs(10)).ok()?;
    match got.find_partition(topic, 0)?.offset() {
        Offset::Offset(n) => Some(n),
        _ => None,
    }
}

fn source(hub: &TempHub, brokers: &str, from: &str, topic: &str) -> std::process::Command {
    let mut cmd = connector("kafka-source", hub);
    cmd.args(["--name", topic, "--topic", topic, "--create-topic"])
        .args(["--url", brokers, "--kafka-topic", from]);
    cmd
}

fn sink(hub: &TempHub, brokers: &str, topic: &str, to: &str) -> std::process::Command {
    let mut cmd = connector("kafka-sink", hub);
    cmd.args(["--name", &format!("{topic}-sink"), "--topic", topic])
        .args([
            "--url",
            brokers,
            "--kafka-topic",
            to,
            "--kafka-create-topic",
        ]);
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

async fn readyz(port: u16) -> u16 {
    runnel_tests::get(&format!("http://127.0.0.1:{port}/readyz"))
        .await
        .map_or(0, |(code, _)| code)
}

/// 100,000 records of a Kafka partition into the hub in order, with their key and
/// headers; the group's offset committed up to the last of them; the connector contract.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_moves_a_partition_in_order_and_commits_the_group_offset() {
    const N: usize = 100_000;
    let t = Tansu::start();
    let brokers = t.brokers();
    let hub = TempHub::new();
    create_topic(&brokers, "orders").await;
    let p = producer(&brokers);
    let headers = OwnedHeaders::new().insert(Header {
        key: "site",
        value: Some("north"),
    });
    let first: FutureRecord<'_, str, str> = FutureRecord::to("orders")
        .payload("first")
        .key("k1")
        .headers(headers)
        .partition(0);
    p.send(first, Duration::from_secs(10)).await.unwrap();
    produce(&brokers, "orders", "m", 0..N).await;
    let mut src = Proc::spawn(source(&hub, &brokers, "orders", "all"), hub.path("src.log"));
    wait_until(Duration::from_secs(180), "100,001 records", || async {
        hub.count("all").await > N as u64
    })
    .await;
    let got = hub.read_all("all").await;
    assert_eq!(got.len(), N + 1);
    assert_eq!(got[0].record.value, "first");
    assert_eq!(got[0].record.key.as_deref(), Some(&b"k1"[..]));
    assert!(
        got[0]
            .record
            .headers
            .iter()
            .any(|(k, v)| k == "site" && v == "north")
    );
    let want: Vec<String> = (0..N).map(|i| format!("m{i}")).collect();
    assert_eq!(values(&got[1..]), want);
    wait_until(Duration::from_secs(30), "the group's offset", || async {
        let b = brokers.clone();
        tokio::task::spawn_blocking(move || committed(&b, "fluvio-kafka-source", "orders"))
            .await
            .unwrap()
            == Some(N as i64 + 1)
    })
    .await;
    contract::check(
        &mut src,
        Contract {
            kind: "kafka-source",
            name: "all",
            secrets: &[],
            ready: true,
        },
    )
    .await;
}

/// `kill -9` mid-stream, then a restart in the same group: it goes on from the last
/// commit. Exact accounting: the group's offset never passes what the hub stored, and the
/// repeats are exactly the records stored after that offset, in order, nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_kill_9_mid_stream_then_restart_loses_nothing() {
    const N: usize = 30_000;
    let t = Tansu::start();
    let brokers = t.brokers();
    let hub = TempHub::new();
    produce(&brokers, "killed", "m", 0..N).await;
    let group_offset = || {
        let b = brokers.clone();
        async move {
            tokio::task::spawn_blocking(move || committed(&b, "fluvio-kafka-source", "killed"))
                .await
                .unwrap()
                .unwrap_or(0)
        }
    };
    let start = || source(&hub, &brokers, "killed", "killed");
    let mut p = Proc::spawn(start(), hub.path("first.log"));
    wait_until(
        Duration::from_secs(60),
        "some records stored and committed",
        || async { hub.count("killed").await >= 5_000 && group_offset().await > 0 },
    )
    .await;
    p.kill9();
    let stored = hub.count("killed").await as i64;
    let offset = group_offset().await;
    assert!(offset <= stored, "committed {offset} with {stored} stored");
    let _again = Proc::spawn(start(), hub.path("second.log"));
    wait_until(Duration::from_secs(120), "every record", || async {
        all_present(&values(&hub.read_all("killed").await), "m", N)
    })
    .await;
    let got = values(&hub.read_all("killed").await);
    let want: Vec<String> = (0..stored as usize)
        .chain(offset as usize..N)
        .map(|i| format!("m{i}"))
        .collect();
    assert_eq!(got.len(), want.len(), "{} repeated", got.len() - N);
    assert!(
        got == want,
        "the hub is not the first run followed by the rest from the group's offset"
    );
}

/// The broker goes away mid-stream for seconds (every connection cut, connects refused)
/// and comes back: `/readyz` says 503 meanwhile, the source goes on by itself, and the
/// records written before, during (held by the producer) and after are all in the hub.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_rides_out_a_broker_outage() {
    const N: usize = 20_000;
    let t = Tansu::behind_proxy();
    let brokers = t.brokers();
    let hub = TempHub::new();
    produce(&brokers, "flaky", "a", 0..N).await;
    let p = Proc::spawn(
        source(&hub, &brokers, "flaky", "flaky"),
        hub.path("src.log"),
    );
    let port = p.health_port().await;
    wait_until(Duration::from_secs(60), "the first records", || async {
        hub.count("flaky").await >= 1_000
    })
    .await;
    let proxy = t.proxy();
    let outage = tokio::task::spawn_blocking(move || proxy.outage(Duration::from_secs(12)));
    wait_until(Duration::from_secs(11), "/readyz 503", || async {
        readyz(port).await == 503
    })
    .await;
    outage.await.unwrap();
    produce(&brokers, "flaky", "b", 0..N).await;
    wait_until(Duration::from_secs(120), "every record", || async {
        let v = values(&hub.read_all("flaky").await);
        all_present(&v, "a", N) && all_present(&v, "b", N)
    })
    .await;
    assert_eq!(readyz(port).await, 200);
}

/// 100,000 hub records written to Kafka in order, with their keys and headers; the hub
/// offset committed only up to what the broker acknowledged; the connector contract.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_writes_records_in_order_and_commits_after_the_broker_acknowledged() {
    const N: usize = 100_000;
    let t = Tansu::start();
    let brokers = t.brokers();
    let hub = TempHub::new();
    let mut first = Record::new("first");
    first.key = Some("k1".into());
    first.headers.push(("site".into(), "north".into()));
    hub.produce("out", vec![first]).await;
    for from in (0..N).step_by(10_000) {
        hub.produce(
            "out",
            (from..from + 10_000)
                .map(|i| Record::new(format!("m{i}")))
                .collect(),
        )
        .await;
    }
    let mut p = Proc::spawn(sink(&hub, &brokers, "out", "moved"), hub.path("sink.log"));
    let got = read_topic(&brokers, "moved", N + 1).await;
    assert_eq!(got.len(), N + 1, "every record once");
    assert_eq!(got[0].record.value, "first");
    assert_eq!(got[0].record.key.as_deref(), Some(&b"k1"[..]));
    assert!(
        got[0]
            .record
            .headers
            .iter()
            .any(|(k, v)| k == "site" && v == "north")
    );
    let want: Vec<String> = (0..N).map(|i| format!("m{i}")).collect();
    assert_eq!(values(&got[1..]), want);
    wait_until(
        Duration::from_secs(30),
        "the hub offset committed",
        || async { hub.committed("out", "out-sink").await == N as i64 + 1 },
    )
    .await;
    contract::check(
        &mut p,
        Contract {
            kind: "kafka-sink",
            name: "out-sink",
            secrets: &[],
            ready: true,
        },
    )
    .await;
}

/// `kill -9` mid-stream, then a restart: every record reaches Kafka, repeats bounded by
/// the batches in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_kill_9_mid_stream_then_restart_loses_nothing() {
    const N: usize = 30_000;
    let t = Tansu::start();
    let brokers = t.brokers();
    let hub = TempHub::new();
    hub.produce("in", (0..N).map(|i| Record::new(format!("m{i}"))).collect())
        .await;
    let mut p = Proc::spawn(sink(&hub, &brokers, "in", "killed"), hub.path("first.log"));
    wait_until(Duration::from_secs(60), "some committed", || async {
        hub.committed("in", "in-sink").await >= 3_000
    })
    .await;
    p.kill9();
    let _again = Proc::spawn(sink(&hub, &brokers, "in", "killed"), hub.path("second.log"));
    wait_until(Duration::from_secs(120), "all committed", || async {
        hub.committed("in", "in-sink").await == N as i64
    })
    .await;
    let got = values(&read_topic(&brokers, "killed", N).await);
    assert!(all_present(&got, "m", N));
    let repeated = got.len() - N;
    assert!(repeated <= 5_000, "{repeated} repeated");
}

/// The broker goes away mid-stream for seconds and comes back: `/readyz` says 503
/// meanwhile, the batches wait for it instead of using up their attempts, and every
/// record reaches Kafka.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_rides_out_a_broker_outage() {
    const N: usize = 20_000;
    let t = Tansu::behind_proxy();
    let brokers = t.brokers();
    let hub = TempHub::new();
    hub.produce("in", (0..N).map(|i| Record::new(format!("a{i}"))).collect())
        .await;
    let p = Proc::spawn(sink(&hub, &brokers, "in", "flaky"), hub.path("sink.log"));
    let port = p.health_port().await;
    wait_until(Duration::from_secs(60), "some committed", || async {
        hub.committed("in", "in-sink").await >= 1_000
    })
    .await;
    let proxy = t.proxy();
    let outage = tokio::task::spawn_blocking(move || proxy.outage(Duration::from_secs(12)));
    hub.produce("in", (0..N).map(|i| Record::new(format!("b{i}"))).collect())
        .await;
    wait_until(Duration::from_secs(11), "/readyz 503", || async {
        readyz(port).await == 503
    })
    .await;
    outage.await.unwrap();
    wait_until(Duration::from_secs(120), "all committed", || async {
        hub.committed("in", "in-sink").await == 2 * N as i64
    })
    .await;
    let got = values(&read_topic(&brokers, "flaky", 2 * N).await);
    assert!(all_present(&got, "a", N) && all_present(&got, "b", N));
    assert_eq!(hub.count("in-dlq").await, 0, "nothing dead-lettered");
}

/// A record larger than the producer may send follows on_error (the dead-letter topic,
/// with the reason); the records around it go through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_sends_a_record_too_large_to_the_dead_letter_topic() {
    let t = Tansu::start();
    let brokers = t.brokers();
    let hub = TempHub::new();
    hub.produce(
        "big",
        vec![
            Record::new("before"),
            Record::new("x".repeat(10_000)),
            Record::new("after"),
        ],
    )
    .await;
    let file = hub.path("connect.yml");
    std::fs::write(
        &file,
        format!(
            "apiVersion: 0.1.0\nmeta:\n  version: latest\n  name: big-sink\n  type: kafka-sink\n  topic: big\nkafka:\n  url: {brokers}\n  topic: sized\n  create-topic: true\n  options:\n    message.max.bytes: \"2000\"\n"
        ),
    )
    .unwrap();
    let mut cmd = connector("kafka-sink", &hub);
    cmd.arg("--config").arg(&file);
    let _p = Proc::spawn(cmd, hub.path("sink.log"));
    wait_until(Duration::from_secs(60), "one dead letter", || async {
        hub.count("big-dlq").await == 1
    })
    .await;
    let dead = hub.read_all("big-dlq").await;
    let reason = dead[0]
        .record
        .headers
        .iter()
        .find(|(k, _)| k.contains("error"))
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default();
    assert!(reason.contains("MessageSizeTooLarge"), "{reason}");
    let got = values(&read_topic(&brokers, "sized", 2).await);
    assert_eq!(got, ["before", "after"]);
}

/// A cluster that does not answer: both connectors keep trying, `/readyz` says 503 and the
/// log says why; a client setting librdkafka refuses stops the connector with exit 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_cluster_and_refused_settings() {
    let hub = TempHub::new();
    let nowhere = format!("127.0.0.1:{}", runnel_tests::free_port());
    let src = Proc::spawn(source(&hub, &nowhere, "x", "x"), hub.path("src.log"));
    hub.produce("in", vec![Record::new("waits")]).await;
    let snk = Proc::spawn(sink(&hub, &nowhere, "in", "x"), hub.path("sink.log"));
    for p in [&src, &snk] {
        let port = p.health_port().await;
        wait_until(
            Duration::from_secs(20),
            "/readyz 503 and the reason",
            || async {
                readyz(port).await == 503 && p.output().contains("Cannot reach the Kafka cluster")
            },
        )
        .await;
    }
    assert_eq!(hub.committed("in", "in-sink").await, 0);
    let file = hub.path("bad.yml");
    std::fs::write(
        &file,
        format!(
            "apiVersion: 0.1.0\nmeta:\n  version: latest\n  name: bad\n  type: kafka-source\n  topic: bad\n  create-topic: true\nkafka:\n  url: {nowhere}\n  topic: t\n  options:\n    no.such.property: \"1\"\n"
        ),
    )
    .unwrap();
    let mut cmd = connector("kafka-source", &hub);
    cmd.arg("--config").arg(&file);
    let mut p = Proc::spawn(cmd, hub.path("bad.log"));
    p.expect_exit(Duration::from_secs(20), 1, "no.such.property")
        .await;
}

/// Fluvio's SSL example, as its files write it, against a broker reached only over TLS
/// with a client certificate: kafka-sink with key, certificate and CA as files and the URL
/// from a secret in Fluvio's {secret: {name}} form, kafka-source with them as PEM text; the
/// records go through both ways. A client without the certificate is refused by the broker
/// and waits with /readyz 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_client_certificates_as_fluvio_writes_them() {
    let certs = runnel_test_servers::tls::Certs::generate();
    let t = Tansu::behind_tls(&certs);
    let brokers = t.brokers();
    let hub = TempHub::new();
    hub.produce(
        "plain",
        (0..1000).map(|i| Record::new(format!("s{i}"))).collect(),
    )
    .await;
    let sink_file = hub.path("sink.yml");
    std::fs::write(
        &sink_file,
        format!(
            "meta:\n  version: latest\n  name: tls-sink\n  type: kafka-sink\n  topic: plain\n  secrets:\n    - name: BROKER_URL\n  consumer:\n    partition: all\nkafka:\n  url:\n    secret:\n      name: BROKER_URL\n  topic: secured\n  create-topic: true\n  security:\n    ssl_key:\n      file: {}\n    ssl_cert:\n      file: {}\n    ssl_ca:\n      file: {}\n    security_protocol: ssl\n",
            certs.client_key.display(),
            certs.client_cert.display(),
            certs.ca.display()
        ),
    )
    .unwrap();
    let mut cmd = connector("kafka-sink", &hub);
    cmd.arg("--config")
        .arg(&sink_file)
        .env("BROKER_URL", &brokers);
    let _sink = Proc::spawn(cmd, hub.path("sink.log"));
    wait_until(
        Duration::from_secs(60),
        "1,000 written over TLS",
        || async { hub.committed("plain", "tls-sink").await == 1000 },
    )
    .await;

    let indent = |path: &std::path::Path| {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| format!("        {l}\n"))
            .collect::<String>()
    };
    let source_file = hub.path("source.yml");
    std::fs::write(
        &source_file,
        format!(
            "apiVersion: 0.1.0\nmeta:\n  version: latest\n  name: tls-source\n  type: kafka-source\n  topic: back\n  create-topic: true\nkafka:\n  url: {brokers}\n  topic: secured\n  security:\n    ssl_key:\n      pem: |\n{}    ssl_cert:\n      pem: |\n{}    ssl_ca:\n      pem: |\n{}",
            indent(&certs.client_key),
            indent(&certs.client_cert),
            indent(&certs.ca)
        ),
    )
    .unwrap();
    let mut cmd = connector("kafka-source", &hub);
    cmd.arg("--config").arg(&source_file);
    let _source = Proc::spawn(cmd, hub.path("source.log"));
    wait_until(Duration::from_secs(60), "1,000 read over TLS", || async {
        hub.count("back").await == 1000
    })
    .await;
    let want: Vec<String> = (0..1000).map(|i| format!("s{i}")).collect();
    assert_eq!(values(&hub.read_all("back").await), want);

    // Without the client certificate the broker refuses the handshake.
    let no_cert = hub.path("no-cert.yml");
    std::fs::write(
        &no_cert,
        format!(
            "apiVersion: 0.1.0\nmeta:\n  version: latest\n  name: refused\n  type: kafka-source\n  topic: refused\n  create-topic: true\nkafka:\n  url: {brokers}\n  topic: secured\n  security:\n    ssl_ca:\n      file: {}\n",
            certs.ca.display()
        ),
    )
    .unwrap();
    let mut cmd = connector("kafka-source", &hub);
    cmd.arg("--config").arg(&no_cert);
    let refused = Proc::spawn(cmd, hub.path("refused.log"));
    let port = refused.health_port().await;
    wait_until(
        Duration::from_secs(30),
        "/readyz 503 without the certificate",
        || async {
            readyz(port).await == 503 && refused.output().contains("Cannot reach the Kafka cluster")
        },
    )
    .await;
    assert_eq!(hub.count("refused").await, 0);
}
