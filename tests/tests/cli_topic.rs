//! `runnel topic` through the real binary.

#![allow(clippy::unwrap_used)]

use std::{
    io::Write,
    process::{Command, Stdio},
};

use runnel_tests::{TempHub, bin};

fn runnel(hub: &TempHub, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let mut child = Command::new(bin("runnel"))
        .env("RUNNEL_HUB", &hub.url)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn create_produce_consume_list_delete() {
    let hub = TempHub::new();
    assert_eq!(runnel(&hub, &["topic", "create", "events"], None).0, 0);
    let (code, _, err) = runnel(&hub, &["topic", "create", "events"], None);
    assert_eq!(code, 1);
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(
        runnel(
            &hub,
            &["topic", "create", "events", "--ignore-existing"],
            None
        )
        .0,
        0
    );

    let (code, _, err) = runnel(
        &hub,
        &["topic", "produce", "events", "--key-separator", "="],
        Some("a=1\nb=2\nplain\n"),
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("produced 3 record(s)"), "{err}");

    let (_, out, _) = runnel(&hub, &["topic", "consume", "events", "-B", "-d"], None);
    assert_eq!(out, "1\n2\nplain\n");
    let (_, out, _) = runnel(
        &hub,
        &["topic", "consume", "events", "-B", "-d", "-k"],
        None,
    );
    assert_eq!(out, "[a] 1\n[b] 2\n[null] plain\n");
    let (_, out, _) = runnel(
        &hub,
        &[
            "topic", "consume", "events", "--offset", "1", "-d", "-o", "json",
        ],
        None,
    );
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["offset"], 1);
    assert_eq!(lines[0]["key"], "b");
    assert_eq!(lines[1]["key"], serde_json::Value::Null);
    let (_, out, _) = runnel(
        &hub,
        &["topic", "consume", "events", "--offset=-1", "-d"],
        None,
    );
    assert_eq!(out, "plain\n");

    let (_, out, _) = runnel(&hub, &["topic", "list", "-o", "json"], None);
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list[0]["name"], "events");
    assert_eq!(list[0]["records"], 3);

    assert_eq!(runnel(&hub, &["topic", "delete", "events"], None).0, 0);
    let (code, _, err) = runnel(&hub, &["topic", "consume", "events", "-B", "-d"], None);
    assert_eq!(code, 1);
    assert!(err.contains("does not exist"), "{err}");
    let (code, _, err) = runnel(&hub, &["topic", "create", "bad name"], None);
    assert_eq!(code, 1);
    assert!(err.contains("invalid topic name"), "{err}");
}

#[test]
fn a_bad_hub_url_is_a_clear_error() {
    let hub = TempHub::new();
    let out = Command::new(bin("runnel"))
        .env("RUNNEL_HUB", "redis://x")
        .args(["topic", "list"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: invalid hub URL \"redis://x\": expected local:[PATH], kafka://HOST:PORT[,HOST:PORT] or nats://HOST:PORT[,HOST:PORT]\n"
    );
    drop(hub);
}
