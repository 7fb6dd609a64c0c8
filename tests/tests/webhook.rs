//! webhook-source against real HTTP senders (reqwest) on 127.0.0.1: 100,000 records pushed
//! in order, each answered only after the hub stored it; every refusal (404, 405, 401, 413,
//! 400) storing nothing; a signature check; `kill -9` mid-stream with senders that retry
//! until a 2xx losing nothing; a hub outage answered 503 and nothing lost; secrets kept out
//! of the log.

#![allow(clippy::unwrap_used)]

use std::{collections::HashSet, process::Command, time::Duration};

use hmac::{Hmac, Mac};
use runnel_runtime::ConsumedRecord;
use runnel_tests::{
    Proc, TempHub, connector,
    contract::{self, Contract},
    free_port,
    servers::Nats,
    wait_until,
};

fn source(hub: &TempHub, port: u16, topic: &str) -> Command {
    let mut cmd = connector("webhook-source", hub);
    cmd.args(["--name", topic, "--topic", topic, "--create-topic"])
        .args(["--listen", &format!("127.0.0.1:{port}")]);
    cmd
}

fn values(records: &[ConsumedRecord]) -> Vec<String> {
    records
        .iter()
        .map(|r| String::from_utf8_lossy(&r.record.value).into_owned())
        .collect()
}

fn header<'a>(r: &'a ConsumedRecord, name: &str) -> Option<&'a [u8]> {
    r.record
        .headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| &v[..])
}

/// Waits until the webhook answers on `port` (any status).
async fn listening(port: u16) {
    wait_until(Duration::from_secs(30), "the webhook listening", || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
    })
    .await;
}

/// POSTs `chunks` to `/` with chunked transfer encoding (no Content-Length) and returns
/// the answer's status.
async fn chunked(port: u16, token: &str, chunks: &[&str]) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut req = format!(
        "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    for c in chunks {
        req.push_str(&format!("{:x}\r\n{c}\r\n", c.len()));
    }
    req.push_str("0\r\n\r\n");
    // The server may answer and close before it read all of it.
    let _ = s.write_all(req.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer).await;
    let head = String::from_utf8_lossy(&answer);
    head.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// POSTs `body` until it is answered 2xx (a sender that retries, as webhook senders do);
/// returns how many answers were 503. Panics when no 2xx came within a minute.
async fn deliver(client: &reqwest::Client, url: &str, body: String) -> usize {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut unavailable = 0;
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "{body:?} was not taken within a minute ({unavailable} answers 503)"
        );
        match client.post(url).body(body.clone()).send().await {
            Ok(r) if r.status().is_success() => return unavailable,
            Ok(r) => {
                assert_eq!(r.status(), 503, "{}", r.text().await.unwrap_or_default());
                assert_eq!(r.headers()["retry-after"], "1");
                unavailable += 1;
            }
            // Not listening (restarting) or the connection dropped: send again.
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// 100,000 records in 1,000 JSON-array bodies, in order: each body answered 200 with its
/// count only once stored, and the records in the hub in the order sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arrays_of_records_arrive_in_order_and_are_answered_after_storing() {
    let hub = TempHub::new();
    let port = free_port();
    let mut cmd = source(&hub, port, "pushed");
    cmd.args(["--split", "array", "--format", "json", "--paths", "/events"]);
    let mut p = Proc::spawn(cmd, hub.path("webhook.log"));
    listening(port).await;
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/events");
    for b in 0..1000 {
        let items: Vec<String> = (0..100)
            .map(|i| format!("{{\"n\":{}}}", b * 100 + i))
            .collect();
        let r = client
            .post(&url)
            .header("content-type", "application/json")
            .body(format!("[{}]", items.join(",")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), "{\"records\":100}\n");
        // Answered only after the hub stored it: every record sent so far is readable.
        if b % 250 == 0 {
            assert_eq!(hub.count("pushed").await, (b as u64 + 1) * 100);
        }
    }
    let got = hub.read_all("pushed").await;
    let want: Vec<String> = (0..100_000).map(|n| format!("{{\"n\":{n}}}")).collect();
    assert_eq!(values(&got), want);
    assert_eq!(header(&got[0], "http-path"), Some(&b"/events"[..]));
    assert_eq!(header(&got[0], "http-method"), Some(&b"POST"[..]));
    assert_eq!(
        header(&got[0], "content-type"),
        Some(&b"application/json"[..])
    );
    contract::check(
        &mut p,
        Contract {
            kind: "webhook-source",
            name: "pushed",
            secrets: &[],
            ready: true,
        },
    )
    .await;
}

/// Every refusal stores nothing: an unknown path (404), another method (405 with Allow),
/// no token or a wrong one (401), a body over max_body (413, declared or streamed), a line
/// that is not JSON (400 with the reason, none of the body's lines stored). Lines split a
/// body; the key comes from a header and chosen headers are copied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_requests_store_nothing_and_say_why() {
    let hub = TempHub::new();
    let port = free_port();
    let mut cmd = source(&hub, port, "guarded");
    cmd.args(["--split", "lines", "--format", "json", "--max-body", "1KiB"])
        .args([
            "--token",
            "${{ secrets.HOOK_TOKEN }}",
            "--key-header",
            "X-Request-Id",
        ])
        .args(["--headers", "X-Source", "--methods", "POST"])
        .env("HOOK_TOKEN", "t0ken-t0ken");
    let p = Proc::spawn(cmd, hub.path("webhook.log"));
    listening(port).await;
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/");
    let ok = |rb: reqwest::RequestBuilder| rb.bearer_auth("t0ken-t0ken");

    let r = ok(client.post(format!("http://127.0.0.1:{port}/other")))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = ok(client.put(&url)).body("{}").send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST");
    let r = client.post(&url).body("{}").send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let r = client
        .post(&url)
        .bearer_auth("wrong")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(2000));
    let r = ok(client.post(&url))
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    // The same without a Content-Length (chunked): cut once past the limit.
    assert_eq!(
        chunked(port, "t0ken-t0ken", &[&big[..900], &big[900..]]).await,
        413
    );
    let r = ok(client.post(&url))
        .body("{\"a\":1}\nnot json\n{\"a\":3}\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let why = r.text().await.unwrap();
    assert!(
        why.starts_with("piece 2 of the body: the piece is not JSON"),
        "{why}"
    );
    assert_eq!(
        hub.count("guarded").await,
        0,
        "a refused request stored records"
    );

    let r = ok(client.post(&url))
        .header("X-Request-Id", "req-7")
        .header("X-Source", "sensor-3")
        .body("{\"a\":1}\r\n\n{\"a\":2}\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let got = hub.read_all("guarded").await;
    assert_eq!(values(&got), ["{\"a\":1}", "{\"a\":2}"]);
    assert_eq!(got[1].record.key.as_deref(), Some(&b"req-7"[..]));
    assert_eq!(header(&got[1], "x-source"), Some(&b"sensor-3"[..]));
    let failed = runnel_tests::metric(
        p.health_port().await,
        "runnel_connector_records_failed_total",
    )
    .await
    .unwrap();
    assert_eq!(failed, 1.0);
    assert!(
        p.output().contains("Refused a body that does not decode"),
        "{}",
        p.output()
    );
    assert!(!p.output().contains("t0ken-t0ken"), "{}", p.output());
}

/// An HMAC-SHA256 signature (GitHub's X-Hub-Signature-256) from a connect.yml with the
/// secret given as ${{ secrets.NAME }}: a signed body is taken, an unsigned or wrongly
/// signed one is 401; the secret is in no log line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_bodies_are_taken_and_others_refused() {
    let hub = TempHub::new();
    let port = free_port();
    let yml = hub.path("connect.yml");
    std::fs::write(
        &yml,
        format!(
            "apiVersion: 0.1.0\nmeta:\n  version: 0.1.0\n  name: signed\n  type: webhook-source\n  \
             topic: signed\n  create-topic: true\nwebhook:\n  listen: 127.0.0.1:{port}\n  \
             endpoint: /hook\n  hmac:\n    secret: ${{{{ secrets.HOOK_SECRET }}}}\n"
        ),
    )
    .unwrap();
    let mut cmd = connector("webhook-source", &hub);
    cmd.arg("--config")
        .arg(&yml)
        .env("HOOK_SECRET", "s1gn-s3cret");
    let mut p = Proc::spawn(cmd, hub.path("webhook.log"));
    listening(port).await;
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/hook");
    let sign = |body: &str, key: &str| {
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
        mac.update(body.as_bytes());
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    };
    let body = "{\"action\":\"opened\"}";
    let r = client.post(&url).body(body).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = client
        .post(&url)
        .header("X-Hub-Signature-256", sign(body, "not-the-secret"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = client
        .post(&url)
        .header("X-Hub-Signature-256", sign(body, "s1gn-s3cret"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(values(&hub.read_all("signed").await), [body]);
    contract::check(
        &mut p,
        Contract {
            kind: "webhook-source",
            name: "signed",
            secrets: &["s1gn-s3cret"],
            ready: true,
        },
    )
    .await;
}

/// `kill -9` mid-stream, then a restart on the same port, with eight senders that send
/// each body until it is answered 2xx: every record is in the hub, repeated at most once
/// per request in flight at the kill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_stream_with_retrying_senders_loses_nothing() {
    const SENDERS: usize = 8;
    const EACH: usize = 2_500;
    let hub = TempHub::new();
    let port = free_port();
    let start = || source(&hub, port, "killed");
    let mut p = Proc::spawn(start(), hub.path("first.log"));
    listening(port).await;
    let url = format!("http://127.0.0.1:{port}/");
    let mut senders = Vec::new();
    for s in 0..SENDERS {
        let url = url.clone();
        senders.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            for i in 0..EACH {
                deliver(&client, &url, format!("s{s}-{i}")).await;
            }
        }));
    }
    wait_until(Duration::from_secs(60), "some records", || async {
        hub.count("killed").await >= 4_000
    })
    .await;
    p.kill9();
    let _again = Proc::spawn(start(), hub.path("second.log"));
    for s in senders {
        s.await.unwrap();
    }
    let got: Vec<String> = values(&hub.read_all("killed").await);
    let set: HashSet<&String> = got.iter().collect();
    for s in 0..SENDERS {
        for i in 0..EACH {
            assert!(set.contains(&format!("s{s}-{i}")), "s{s}-{i} is missing");
        }
    }
    let repeated = got.len() - SENDERS * EACH;
    assert!(repeated <= SENDERS, "{repeated} repeated");
}

/// The hub (NATS JetStream) goes away for four seconds under a running webhook: requests
/// are answered 503 with Retry-After (timeout 1s) instead of hanging, and once the hub is
/// back every record sent is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_outage_is_answered_503_and_loses_nothing() {
    let mut nats = Nats::start();
    let hub = TempHub::remote(&nats.url());
    let port = free_port();
    let mut cmd = source(&hub, port, "outage");
    cmd.args(["--timeout", "1s"]);
    let p = Proc::spawn(cmd, hub.path("webhook.log"));
    listening(port).await;
    let url = format!("http://127.0.0.1:{port}/");
    let sending = tokio::spawn(async move {
        let client = reqwest::Client::new();
        let mut unavailable = 0;
        for i in 0..600 {
            unavailable += deliver(&client, &url, format!("r{i}")).await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        unavailable
    });
    wait_until(Duration::from_secs(60), "records under way", || async {
        hub.count("outage").await >= 100
    })
    .await;
    // The server is handed back, or dropping it would stop it for good.
    let _nats = tokio::task::spawn_blocking(move || {
        nats.restart(Duration::from_secs(4));
        nats
    })
    .await
    .unwrap();
    let Ok(unavailable) = sending.await else {
        panic!("the sender failed:\n{}", p.output());
    };
    assert!(
        unavailable > 0,
        "no request was answered 503 while the hub was down:\n{}",
        p.output()
    );
    let got: HashSet<String> = values(&hub.read_all("outage").await).into_iter().collect();
    for i in 0..600 {
        assert!(got.contains(&format!("r{i}")), "r{i} is missing");
    }
}
