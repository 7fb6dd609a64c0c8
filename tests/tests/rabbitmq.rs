//! rabbitmq-source and rabbitmq-sink against a real RabbitMQ on 127.0.0.1 (one broker shared
//! by the tests of this binary, isolated by queue names; the restart test has its own):
//! 100,000 messages each way with none lost and order kept, acknowledgements only after
//! the hub stored, `kill -9` and broker restarts mid-stream, unroutable messages, and
//! credentials kept out of logs.

#![allow(clippy::unwrap_used)]

use std::{collections::HashMap, time::Duration};

use futures_util::StreamExt;
use lapin::{
    BasicProperties, Channel, Connection, ConnectionProperties,
    options::{
        BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions,
        QueueDeclareOptions,
    },
    types::FieldTable,
};
use runnel_runtime::Record;
use runnel_tests::{
    Proc, TempHub, connector,
    contract::{self, Contract},
    rabbitmq::RabbitMq,
    wait_until,
};

async fn channel(url: &str) -> (Connection, Channel) {
    let conn = Connection::connect(url, ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    (conn, ch)
}

async fn declare(ch: &Channel, queue: &str) -> u32 {
    ch.queue_declare(
        queue.into(),
        QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap()
    .message_count()
}

/// Publishes `n` persistent messages `m{i}` to `queue` through the default exchange, every
/// confirm awaited (in windows, so it stays fast).
async fn publish(url: &str, queue: &str, range: std::ops::Range<usize>) {
    let (_conn, ch) = channel(url).await;
    declare(&ch, queue).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let mut pending = Vec::new();
    for i in range {
        let c = ch
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                format!("m{i}").as_bytes(),
                BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .unwrap();
        pending.push(c);
        if pending.len() == 1000 {
            for c in pending.drain(..) {
                assert!(c.await.unwrap().is_ack());
            }
        }
    }
    for c in pending {
        assert!(c.await.unwrap().is_ack());
    }
}

/// Reads `n` messages from `queue`, acknowledging each.
async fn drain(url: &str, queue: &str, n: usize) -> Vec<String> {
    let (_conn, ch) = channel(url).await;
    declare(&ch, queue).await;
    let mut consumer = ch
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut got = Vec::with_capacity(n);
    while got.len() < n {
        let d = tokio::time::timeout(Duration::from_secs(60), consumer.next())
            .await
            .unwrap_or_else(|_| panic!("only {} of {n} messages in {queue}", got.len()))
            .unwrap()
            .unwrap();
        got.push(String::from_utf8(d.data.clone()).unwrap());
        d.ack(BasicAckOptions::default()).await.unwrap();
    }
    got
}

fn source(hub: &TempHub, url: &str, queue: &str, topic: &str) -> std::process::Command {
    let mut cmd = connector("rabbitmq-source", hub);
    cmd.args(["--name", topic, "--topic", topic, "--create-topic"])
        .args(["--url", url, "--queue", queue]);
    cmd
}

fn sink(hub: &TempHub, url: &str, topic: &str, routing_key: &str) -> std::process::Command {
    let mut cmd = connector("rabbitmq-sink", hub);
    cmd.args(["--name", &format!("{topic}-sink"), "--topic", topic])
        .args(["--url", url, "--routing-key", routing_key]);
    cmd
}

fn values(records: &[runnel_runtime::ConsumedRecord]) -> Vec<String> {
    records
        .iter()
        .map(|r| String::from_utf8_lossy(&r.record.value).into_owned())
        .collect()
}

/// Whether `{prefix}0` .. `{prefix}{n-1}` are all among the records.
fn all_present(records: &[runnel_runtime::ConsumedRecord], prefix: &str, n: usize) -> bool {
    let got: std::collections::HashSet<String> = values(records).into_iter().collect();
    (0..n).all(|i| got.contains(&format!("{prefix}{i}")))
}

async fn readyz(port: u16) -> u16 {
    runnel_tests::get(&format!("http://127.0.0.1:{port}/readyz"))
        .await
        .map_or(0, |(code, _)| code)
}

fn header<'a>(r: &'a runnel_runtime::ConsumedRecord, name: &str) -> Option<&'a [u8]> {
    r.record
        .headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| &v[..])
}

/// 100,000 messages from a queue into the hub, in order, and the queue empty afterwards:
/// every delivery was acknowledged, and only after its record was stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_moves_a_queue_in_order_and_acknowledges_every_message() {
    const N: usize = 100_000;
    let r = RabbitMq::shared();
    let hub = TempHub::new();
    publish(&r.url(), "src-all", 0..N).await;
    let p = Proc::spawn(
        source(&hub, &r.url(), "src-all", "all"),
        hub.path("src.log"),
    );
    wait_until(Duration::from_secs(120), "100,000 records", || async {
        hub.count("all").await >= N as u64
    })
    .await;
    let got = hub.read_all("all").await;
    let want: Vec<String> = (0..N).map(|i| format!("m{i}")).collect();
    assert_eq!(values(&got), want);
    assert_eq!(header(&got[0], "amqp-routing-key"), Some(&b"src-all"[..]));
    assert_eq!(header(&got[0], "amqp-redelivered"), None);
    let (_c, ch) = channel(&r.url()).await;
    wait_until(
        Duration::from_secs(30),
        "every message acknowledged",
        || async { declare(&ch, "src-all").await == 0 },
    )
    .await;
    drop(p);
}

/// `kill -9` mid-stream, then a restart: every message is in the hub; what was delivered
/// but not acknowledged comes again (at most the prefetch window), marked redelivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_kill_9_mid_stream_then_restart_loses_nothing() {
    const N: usize = 30_000;
    let r = RabbitMq::shared();
    let hub = TempHub::new();
    publish(&r.url(), "src-kill", 0..N).await;
    let mut cmd = source(&hub, &r.url(), "src-kill", "killed");
    cmd.args(["--prefetch", "500"]);
    let mut p = Proc::spawn(cmd, hub.path("first.log"));
    wait_until(Duration::from_secs(60), "some records", || async {
        hub.count("killed").await >= 5_000
    })
    .await;
    p.kill9();
    let mut cmd = source(&hub, &r.url(), "src-kill", "killed");
    cmd.args(["--prefetch", "500"]);
    let _again = Proc::spawn(cmd, hub.path("second.log"));
    wait_until(Duration::from_secs(120), "every message", || async {
        all_present(&hub.read_all("killed").await, "m", N)
    })
    .await;
    let got = hub.read_all("killed").await;
    let repeated = got.len() - N;
    assert!(
        repeated <= 500,
        "{repeated} repeated, more than the prefetch window"
    );
    if repeated > 0 {
        assert!(
            got.iter()
                .any(|r| header(r, "amqp-redelivered") == Some(&b"true"[..])),
            "messages delivered again carry amqp-redelivered"
        );
    }
}

/// 100,000 records from the hub to a queue, in order, each confirmed by the broker; a
/// record no queue takes is returned (mandatory) and goes to the dead-letter topic with
/// the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_publishes_in_order_with_confirms_and_dead_letters_the_unroutable() {
    const N: usize = 100_000;
    let r = RabbitMq::shared();
    let hub = TempHub::new();
    let (_c, ch) = channel(&r.url()).await;
    declare(&ch, "sink-all").await;
    hub.produce(
        "out",
        (0..N).map(|i| Record::new(format!("m{i}"))).collect(),
    )
    .await;
    let _p = Proc::spawn(
        sink(&hub, &r.url(), "out", "sink-all"),
        hub.path("sink.log"),
    );
    let got = drain(&r.url(), "sink-all", N).await;
    let want: Vec<String> = (0..N).map(|i| format!("m{i}")).collect();
    assert_eq!(got, want);

    hub.produce(
        "keyed",
        vec![
            Record::new("to a").with_key("sink-a"),
            Record::new("to nowhere").with_key("no-such-queue"),
            Record::new("no key"),
        ],
    )
    .await;
    declare(&ch, "sink-a").await;
    let mut cmd = connector("rabbitmq-sink", &hub);
    cmd.args([
        "--name",
        "keyed-sink",
        "--topic",
        "keyed",
        "--url",
        &r.url(),
    ])
    .args(["--routing-key-from", "key"]);
    let p = Proc::spawn(cmd, hub.path("keyed.log"));
    assert_eq!(drain(&r.url(), "sink-a", 1).await, ["to a"]);
    wait_until(Duration::from_secs(30), "two dead letters", || async {
        hub.count("keyed-dlq").await == 2
    })
    .await;
    let dl = hub.read_all("keyed-dlq").await;
    let reasons: HashMap<String, String> = dl
        .iter()
        .map(|r| {
            (
                String::from_utf8_lossy(&r.record.value).into_owned(),
                String::from_utf8_lossy(header(r, "runnel-error").unwrap()).into_owned(),
            )
        })
        .collect();
    assert!(
        reasons["to nowhere"]
            .starts_with("unroutable: no queue takes routing key \"no-such-queue\""),
        "{reasons:?}"
    );
    assert_eq!(
        reasons["no key"],
        "the record has no key to route by (routing_key_from: key)"
    );
    drop(p);
}

/// The broker stopped and started again mid-stream, both ways: the connectors reconnect by
/// themselves, `/readyz` says 503 while it is down, and nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_survive_a_broker_restart_mid_stream() {
    const N: usize = 20_000;
    let mut r = RabbitMq::start();
    let hub = TempHub::new();
    publish(&r.url(), "restart-in", 0..N).await;
    let src = Proc::spawn(
        source(&hub, &r.url(), "restart-in", "moved"),
        hub.path("src.log"),
    );
    let (_c, ch) = channel(&r.url()).await;
    declare(&ch, "restart-out").await;
    drop(ch);
    hub.produce(
        "back",
        (0..N).map(|i| Record::new(format!("b{i}"))).collect(),
    )
    .await;
    let snk = Proc::spawn(
        sink(&hub, &r.url(), "back", "restart-out"),
        hub.path("sink.log"),
    );
    let sink_port = snk.health_port().await;
    wait_until(Duration::from_secs(60), "records moving", || async {
        hub.count("moved").await >= 2_000
    })
    .await;
    r.stop();
    wait_until(Duration::from_secs(30), "/readyz 503", || async {
        readyz(sink_port).await == 503
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    r.start_again();
    wait_until(
        Duration::from_secs(120),
        "every message in the hub",
        || async { all_present(&hub.read_all("moved").await, "m", N) },
    )
    .await;
    // Everything the sink took is confirmed in the durable queue; what it had in flight
    // when the broker went away is sent again.
    let (_c, ch) = channel(&r.url()).await;
    let mut consumer = ch
        .basic_consume(
            "restart-out".into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut seen = std::collections::HashSet::new();
    let mut read = 0;
    while seen.len() < N {
        let d = tokio::time::timeout(Duration::from_secs(60), consumer.next())
            .await
            .unwrap_or_else(|_| panic!("{} of {N} distinct messages arrived", seen.len()))
            .unwrap()
            .unwrap();
        read += 1;
        seen.insert(String::from_utf8(d.data.clone()).unwrap());
        d.ack(BasicAckOptions::default()).await.unwrap();
    }
    assert!((0..N).all(|i| seen.contains(&format!("b{i}"))));
    assert!(read - N <= 1_000, "{} repeats", read - N);
    assert!(
        src.output()
            .contains("RabbitMQ connection lost; reconnecting with backoff.")
    );
    drop((src, snk));
}

/// A wrong password stops the source and the sink with exit 1 and a clear message that
/// does not hold the password; both meet the connector contract.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_fail_clearly_and_both_meet_the_contract() {
    let r = RabbitMq::shared();
    let hub = TempHub::new();
    let bad = r.url().replace("guest:guest", "guest:n0t-the-pa55");
    let mut p = Proc::spawn(source(&hub, &bad, "creds", "creds"), hub.path("bad.log"));
    let status = p.wait_timeout(Duration::from_secs(60)).await.unwrap();
    assert_eq!(status.code(), Some(1), "{}", p.output());
    let out = p.output();
    assert!(!out.contains("n0t-the-pa55"), "{out}");
    assert!(out.contains("ACCESS_REFUSED"), "{out}");
    // The sink too: exit 1, the reason, no password.
    hub.produce("creds-out", vec![Record::new("z")]).await;
    let mut p = Proc::spawn(
        sink(&hub, &bad, "creds-out", "creds"),
        hub.path("bad-sink.log"),
    );
    let out = p
        .expect_exit(Duration::from_secs(60), 1, "RabbitMQ refused the login")
        .await;
    assert!(!out.contains("n0t-the-pa55"), "{out}");

    publish(&r.url(), "contract-in", 0..1).await;
    let mut src = Proc::spawn(
        source(&hub, &r.url(), "contract-in", "csrc"),
        hub.path("csrc.log"),
    );
    wait_until(Duration::from_secs(30), "the message", || async {
        hub.count("csrc").await >= 1
    })
    .await;
    hub.produce("cout", vec![Record::new("y")]).await;
    let mut snk = Proc::spawn(
        sink(&hub, &r.url(), "cout", "contract-out"),
        hub.path("csnk.log"),
    );
    let port = snk.health_port().await;
    wait_until(Duration::from_secs(30), "the sink ready", || async {
        readyz(port).await == 200
    })
    .await;
    for (p, kind, name) in [
        (&mut src, "rabbitmq-source", "csrc"),
        (&mut snk, "rabbitmq-sink", "cout-sink"),
    ] {
        contract::check(
            p,
            Contract {
                kind,
                name,
                secrets: &[],
                ready: true,
            },
        )
        .await;
    }
}
