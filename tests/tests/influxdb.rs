//! influxdb-sink against a real InfluxDB 1.x (started here on 127.0.0.1): JSON records land
//! as the points eKuiper's options describe (measurement, templated tags, fields,
//! precision, timestamp field); a record that cannot be a point and a point InfluxDB
//! refuses follow on_error with the reason, and only they; `kill -9` and a server restart
//! lose nothing and, a point being its measurement, tags and time, store nothing twice; a
//! refused login or a missing database stops the connector without showing the password.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use runnel_runtime::Record;
use runnel_test_servers::influxdb::{ADMIN, Influx};
use runnel_tests::{Proc, TempHub, connector, wait_until};
use serde_json::{Value, json};

fn sink(hub: &TempHub, url: &str, args: &[&str]) -> Proc {
    let mut cmd = connector("influxdb-sink", hub);
    cmd.args(["--name", "influx", "--topic", "m", "--addr", url])
        .args(args);
    Proc::spawn(cmd, hub.path(&format!("sink-{}.log", fastrand::u32(..))))
}

/// The rows of an InfluxQL answer: each an object of column → value.
fn rows(answer: &str) -> Vec<serde_json::Map<String, Value>> {
    let v: Value = serde_json::from_str(answer).unwrap();
    let Some(series) = v["results"][0]["series"].as_array() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for s in series {
        let columns: Vec<String> = s["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_string())
            .collect();
        for values in s["values"].as_array().unwrap() {
            let mut row = serde_json::Map::new();
            for (c, v) in columns.iter().zip(values.as_array().unwrap()) {
                row.insert(c.clone(), v.clone());
            }
            out.push(row);
        }
    }
    out
}

fn count(influx: &Influx, db: &str, measurement: &str) -> u64 {
    rows(&influx.query(db, &format!("SELECT count(v) FROM {measurement}")))
        .first()
        .and_then(|r| r["count"].as_u64())
        .unwrap_or(0)
}

/// `n` records `{"v": i, "ts": T0 + i}` from `from`, each its own second.
fn numbered(from: usize, n: usize) -> Vec<Record> {
    (from..from + n)
        .map(|i| Record::new(json!({"v": i, "ts": 1_700_000_000 + i}).to_string()))
        .collect()
}

const NUMBERED: &[&str] = &["--measurement", "n", "--ts-field", "ts", "--precision", "s"];

/// eKuiper's options: tags from templates, fields from the rest (nested ones flattened),
/// the timestamp from a field; strings with quotes and a newline, booleans, floats. Three
/// records that cannot be points and one InfluxDB refuses (a field type conflict) go to
/// the dead-letter topic with the reason; the others of their batch are stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn points_as_ekuiper_describes_them_and_refusals_follow_on_error() {
    let influx = Influx::start();
    influx.query("", "CREATE DATABASE d");
    let hub = TempHub::new();
    let records = vec![
        json!({"device": "a 1", "site": "x,y", "temperature": 21.5, "humidity": 40,
               "ok": true, "note": "say \"hi\"\nbye", "pos": {"lat": 1.25, "lon": 2}, "ts": 1_700_000_000_000_i64}),
        json!({"device": "b", "temperature": 19, "ts": 1_700_000_001_000_i64}),
        json!({"device": "c", "temperature": "hot", "ts": 1_700_000_002_000_i64}),
        json!({"device": "d", "ts": 1_700_000_003_000_i64}),
        json!({"device": "e", "temperature": 1, "ts": "yesterday"}),
        json!([1, 2]),
    ];
    let mut records: Vec<Record> = records
        .into_iter()
        .map(|v| Record::new(v.to_string()))
        .collect();
    records.push(Record::new("not json"));
    hub.produce("m", records).await;
    let mut p = sink(
        &hub,
        &influx.url(),
        &[
            "--database",
            "d",
            "--measurement",
            "climate",
            "--tags",
            r#"{"device":"{{.device}}","site":"{{.site}}","source":"runnel"}"#,
            "--ts-field",
            "ts",
            "--on-error",
            "dead-letter",
        ],
    );
    wait_until(
        Duration::from_secs(60),
        "every record committed",
        || async { hub.committed("m", "influx").await == 7 },
    )
    .await;
    p.stop().await;
    let got = rows(&influx.query("d", "SELECT * FROM climate ORDER BY time"));
    assert_eq!(got.len(), 2, "{got:?}");
    let a = &got[0];
    assert_eq!(a["time"], json!("2023-11-14T22:13:20Z"));
    assert_eq!(a["device"], json!("a 1"));
    assert_eq!(a["site"], json!("x,y"));
    assert_eq!(a["source"], json!("runnel"));
    assert_eq!(a["temperature"], json!(21.5));
    assert_eq!(a["humidity"], json!(40));
    assert_eq!(a["ok"], json!(true));
    assert_eq!(a["note"], json!("say \"hi\"\nbye"));
    assert_eq!(a["pos_lat"], json!(1.25));
    assert_eq!(a["pos_lon"], json!(2));
    assert_eq!(got[1]["device"], json!("b"));
    assert_eq!(
        got[1]["site"],
        Value::Null,
        "a tag whose field is missing is left out"
    );
    // Every number is a float by default: 19 and 21.5 share the field.
    let types = rows(&influx.query("d", "SHOW FIELD KEYS FROM climate"));
    let t = types.iter().find(|r| r["fieldKey"] == json!("temperature"));
    assert_eq!(t.unwrap()["fieldType"], json!("float"));
    let reasons = hub.reasons("m-dlq").await;
    assert_eq!(reasons.len(), 5, "{reasons:?}");
    assert!(reasons[0].contains("field type conflict"), "{reasons:?}");
    assert_eq!(reasons[1], "no field to write (a point needs at least one)");
    assert_eq!(
        reasons[2],
        "the timestamp field ts is missing or not a whole number"
    );
    assert_eq!(reasons[3], "the record is not a JSON object");
    assert!(
        reasons[4].starts_with("the record is not JSON"),
        "{reasons:?}"
    );
}

/// `kill -9` mid-stream, then a restart: every point is there, and none twice (a point
/// written again overwrites itself).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_stream_then_restart_stores_each_point_once() {
    const N: usize = 60_000;
    let influx = Influx::start();
    influx.query("", "CREATE DATABASE k");
    let hub = TempHub::new();
    hub.produce("m", numbered(0, N)).await;
    let mut args = vec!["--database", "k"];
    args.extend_from_slice(NUMBERED);
    let mut first = sink(&hub, &influx.url(), &args);
    wait_until(Duration::from_secs(60), "some points committed", || async {
        hub.committed("m", "influx").await >= 10_000
    })
    .await;
    first.kill9();
    assert!(
        hub.committed("m", "influx").await < N as i64,
        "the kill came too late to test anything"
    );
    let mut second = sink(&hub, &influx.url(), &args);
    wait_until(
        Duration::from_secs(120),
        "every record committed",
        || async { hub.committed("m", "influx").await == N as i64 },
    )
    .await;
    second.stop().await;
    assert_eq!(count(&influx, "k", "n"), N as u64);
}

/// InfluxDB stops mid-stream and comes back: `/readyz` says 503 meanwhile, the batch waits
/// and is written when it is back; every point once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rides_out_a_server_restart() {
    const N: usize = 40_000;
    let mut influx = Influx::start();
    influx.query("", "CREATE DATABASE r");
    let hub = TempHub::new();
    hub.produce("m", numbered(0, N / 2)).await;
    let mut args = vec!["--database", "r"];
    args.extend_from_slice(NUMBERED);
    let mut p = sink(&hub, &influx.url(), &args);
    wait_until(Duration::from_secs(60), "the first half", || async {
        hub.committed("m", "influx").await == (N / 2) as i64
    })
    .await;
    let port = p.health_port().await;
    influx.stop();
    hub.produce("m", numbered(N / 2, N / 2)).await;
    wait_until(Duration::from_secs(30), "/readyz 503", || async {
        runnel_tests::get(&format!("http://127.0.0.1:{port}/readyz"))
            .await
            .is_some_and(|(code, _)| code == 503)
    })
    .await;
    assert!(hub.committed("m", "influx").await < N as i64);
    influx.start_again();
    wait_until(
        Duration::from_secs(60),
        "every record committed",
        || async { hub.committed("m", "influx").await == N as i64 },
    )
    .await;
    p.stop().await;
    assert_eq!(count(&influx, "r", "n"), N as u64);
    assert!(
        p.output().contains("Cannot write to the server"),
        "{}",
        p.output()
    );
}

/// With authentication on: the right login from a secret writes; a wrong password and a
/// missing database stop the connector (exit 1) with InfluxDB's reason, and the password
/// is in no line of the output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_and_databases_refused_stop_the_connector() {
    let influx = Influx::start_with_auth();
    influx.query("", "CREATE DATABASE a");
    let hub = TempHub::new();
    hub.produce("m", numbered(0, 3)).await;
    let secrets = hub.path("secrets.env");
    let cases = [
        (ADMIN.1, "a", None),
        ("wr0ng-pw-x", "a", Some("authorization failed")),
        (ADMIN.1, "nope", Some("database not found")),
    ];
    for (password, db, refused) in cases {
        std::fs::write(&secrets, format!("INFLUX_PASSWORD={password}\n")).unwrap();
        let config = hub.path("connect.yml");
        std::fs::write(
            &config,
            format!(
                "meta:\n  version: latest\n  name: influx\n  type: influxdb-sink\n  topic: m\n  secrets:\n    - name: INFLUX_PASSWORD\ninfluxdb:\n  addr: {}\n  database: {db}\n  username: {}\n  password: ${{{{ secrets.INFLUX_PASSWORD }}}}\n  measurement: n\n  tsFieldName: ts\n  precision: s\n",
                influx.url(),
                ADMIN.0
            ),
        )
        .unwrap();
        let mut cmd = connector("influxdb-sink", &hub);
        cmd.arg("-c").arg(&config).arg("--secrets").arg(&secrets);
        let mut p = Proc::spawn(cmd, hub.path(&format!("auth-{db}-{}.log", password.len())));
        match refused {
            None => {
                wait_until(Duration::from_secs(60), "three points", || async {
                    hub.committed("m", "influx").await == 3
                })
                .await;
                p.stop().await;
                assert_eq!(count(&influx, "a", "n"), 3);
            }
            Some(why) => {
                let out = p.expect_exit(Duration::from_secs(30), 1, why).await;
                assert!(!out.contains(password), "the password is shown:\n{out}");
            }
        }
    }
}
