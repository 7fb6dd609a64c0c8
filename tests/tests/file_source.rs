//! file-source against real files: glob, appends, rotation, truncation, gzip, a huge line,
//! and `kill -9` then a restart from the saved position.

#![allow(clippy::unwrap_used)]

use std::{
    io::Write,
    path::{Path, PathBuf},
    time::Duration,
};

use runnel_tests::{
    Proc, TempHub, connector,
    contract::{self, Contract},
    wait_until,
};

fn append(path: &Path, lines: impl IntoIterator<Item = String>) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    let mut buf = String::new();
    for l in lines {
        buf.push_str(&l);
        buf.push('\n');
    }
    f.write_all(buf.as_bytes()).unwrap();
}

fn lines(prefix: &str, range: std::ops::Range<u32>) -> Vec<String> {
    range.map(|i| format!("{prefix}-{i}")).collect()
}

/// file-source on `glob` into topic `t`, following, polling fast.
fn source(hub: &TempHub, glob: &Path, extra: &[&str]) -> Proc {
    let mut cmd = connector("file-source", hub);
    cmd.args(["--name", "files", "--topic", "t", "--create-topic"])
        .arg("--path")
        .arg(glob)
        .args(["--poll-interval", "20ms"])
        .args(extra);
    Proc::spawn(cmd, hub.path(&format!("log-{}", fastrand::u32(..))))
}

async fn values(hub: &TempHub) -> Vec<String> {
    hub.read_all("t")
        .await
        .iter()
        .map(|r| String::from_utf8(r.record.value.to_vec()).unwrap())
        .collect()
}

async fn wait_for(hub: &TempHub, n: u64, what: &str) {
    wait_until(Duration::from_secs(60), what, || async {
        hub.count("t").await >= n
    })
    .await;
}

/// Appends are followed; a file renamed away is read to its end and the new file at its
/// path from its start; a truncated file is read again from its start; a new file that
/// matches the glob is picked up; nothing is read twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_appends_rotation_truncation_and_new_files() {
    let hub = TempHub::new();
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app.log");
    append(&app, lines("a", 0..100));
    let mut p = source(&hub, &dir.path().join("*.log"), &[]);
    wait_for(&hub, 100, "the first 100 lines").await;

    // Rotation: more lines, then rename and create while the source is running.
    append(&app, lines("a", 100..150));
    let rotated = dir.path().join("app.log.1");
    std::fs::rename(&app, &rotated).unwrap();
    append(&rotated, lines("a", 150..160));
    append(&app, lines("b", 0..40));
    wait_for(&hub, 200, "the rest of the rotated file and the new one").await;

    // Truncation (copytruncate): the file is cut to nothing and written again.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&app)
        .unwrap()
        .set_len(0)
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    append(&app, lines("c", 0..10));
    wait_for(&hub, 210, "the lines after the truncation").await;

    // A new match of the glob, and a file that does not match.
    append(&dir.path().join("other.log"), lines("d", 0..25));
    append(&dir.path().join("ignored.txt"), lines("x", 0..5));
    wait_for(&hub, 235, "the new file's lines").await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let got = values(&hub).await;
    let mut want: Vec<String> = lines("a", 0..160);
    want.extend(lines("b", 0..40));
    want.extend(lines("c", 0..10));
    want.extend(lines("d", 0..25));
    let mut sorted = got.clone();
    sorted.sort();
    want.sort();
    assert_eq!(sorted, want, "every line exactly once");
    // Within a file, order holds.
    let a: Vec<&String> = got.iter().filter(|v| v.starts_with("a-")).collect();
    assert_eq!(a, lines("a", 0..160).iter().collect::<Vec<_>>());
    let log = p.output();
    assert!(log.contains("rotated or removed"), "{log}");
    assert!(log.contains("was truncated"), "{log}");
    p.stop().await;
}

/// `kill -9` in the middle of a big file; the restart resumes at the saved position. The
/// accounting is exact, whatever the timing: after the kill the hub holds lines `0..H` and
/// the checkpoint says byte offset `O` (line `C = O / 100`, each line is 100 bytes); the
/// saved position never passes what the hub stored (`C <= H`), and after the restart the
/// topic is exactly lines `0..H` followed by lines `C..N`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_file_then_restart_loses_nothing() {
    let hub = TempHub::new();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.log");
    const N: u64 = 400_000;
    let line = |i: u64| format!("{i:099}");
    append(&file, (0..N).map(line));
    let mut p = source(&hub, &file, &["--follow=false"]);
    wait_until(Duration::from_secs(60), "part of the file", || async {
        hub.count("t").await >= 50_000
    })
    .await;
    p.kill9();
    let stored = hub.count("t").await;
    assert!(stored < N, "the kill came too late to test anything");
    let saved = std::fs::read_to_string(hub.path("state/files.checkpoint.json")).unwrap();
    let saved: serde_json::Value = serde_json::from_str(&saved).unwrap();
    let offset = saved
        .as_object()
        .and_then(|m| m.values().find(|v| v["path"].as_str() == file.to_str()))
        .and_then(|v| v["offset"].as_u64())
        .unwrap_or_else(|| panic!("no position for big.log in {saved}"));
    assert_eq!(offset % 100, 0, "a position inside a line: {offset}");
    let resume = offset / 100;
    assert!(
        resume <= stored,
        "the saved position (line {resume}) passes what the hub stored ({stored})"
    );

    let mut p = source(&hub, &file, &["--follow=false"]);
    let status = p.wait_timeout(Duration::from_secs(120)).await.unwrap();
    assert!(status.success(), "{}", p.output());
    let got = values(&hub).await;
    let want: Vec<String> = (0..stored).chain(resume..N).map(line).collect();
    assert_eq!(
        got.len(),
        want.len(),
        "stored {stored}, resumed at {resume}"
    );
    if let Some(i) = (0..got.len()).find(|&i| got[i] != want[i]) {
        panic!(
            "record {i} is {:?}, not {:?} (stored {stored}, resumed at {resume})",
            got[i], want[i]
        );
    }
}

/// Gzip files are read decompressed, once; with follow false the connector exits 0 when
/// every file is read, and a second run reads nothing again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_gzip_once_and_stops_without_follow() {
    let hub = TempHub::new();
    let dir = tempfile::tempdir().unwrap();
    let gz = dir.path().join("old.log.gz");
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "seq 1 1000 | gzip > {0} && printf 'tail' | gzip >> {0}",
            gz.display()
        ))
        .status()
        .unwrap();
    assert!(status.success());
    append(&dir.path().join("new.log"), lines("n", 0..3));
    for _ in 0..2 {
        let mut p = source(&hub, &dir.path().join("*.log*"), &["--follow=false"]);
        let status = p.wait_timeout(Duration::from_secs(60)).await.unwrap();
        assert!(status.success(), "{}", p.output());
    }
    let got = values(&hub).await;
    let mut want: Vec<String> = (1..=1000).map(|i| i.to_string()).collect();
    // Two gzip members, one stream; the last line has no newline and is still a record.
    want.push("tail".into());
    want.extend(lines("n", 0..3));
    let mut sorted = got.clone();
    sorted.sort();
    want.sort();
    assert_eq!(sorted, want);
}

/// A 300 MB line is skipped with its size named, memory stays under 200 MB, and the line
/// after it is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_line_is_skipped_with_its_size_and_memory_stays_bounded() {
    let hub = TempHub::new();
    let dir = tempfile::tempdir().unwrap();
    let file: PathBuf = dir.path().join("huge.log");
    {
        let mut f = std::fs::File::create(&file).unwrap();
        f.write_all(b"before\n").unwrap();
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..300 {
            f.write_all(&chunk).unwrap();
        }
        f.write_all(b"\nafter\n").unwrap();
    }
    let mut p = source(&hub, &file, &[]);
    wait_for(&hub, 2, "the line after the huge one").await;
    assert_eq!(values(&hub).await, ["before", "after"]);
    let rss = runnel_tests::peak_rss(p.pid());
    assert!(rss < 200 << 20, "peak RSS {rss} bytes");
    let log = p.output();
    assert!(
        log.contains(&format!(
            "a record of {} bytes is over the maximum record size of 1048576 bytes",
            300 << 20
        )),
        "{log}"
    );
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meets_the_connector_contract() {
    let hub = TempHub::new();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.log");
    append(&file, lines("a", 0..10));
    let mut p = source(&hub, &file, &[]);
    wait_for(&hub, 10, "the lines").await;
    let c = Contract {
        kind: "file-source",
        name: "files",
        secrets: &[],
        ready: true,
    };
    contract::check(&mut p, c).await;
}

/// Runs file-sink on topic `t` until it wrote a file, stops it, and gives the file.
async fn sink_once(hub: &TempHub, extra: &[&str]) -> String {
    let out = tempfile::tempdir().unwrap();
    let mut cmd = connector("file-sink", hub);
    cmd.args(["--name", "out", "--topic", "t", "--path"])
        .arg(out.path())
        .args(extra);
    let mut sink = Proc::spawn(cmd, hub.path("sink-log"));
    wait_until(Duration::from_secs(30), "the file", || async {
        std::fs::read_dir(out.path()).unwrap().count() > 0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    sink.stop().await;
    let file = std::fs::read_dir(out.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    std::fs::read_to_string(file.path()).unwrap()
}

/// Formats through the hub: a CSV file with a header row, quoting and typed columns becomes
/// JSON objects (a row that does not decode is skipped with the reason), and file-sink
/// writes them back as CSV; plain lines become CloudEvents (binary mode, ids from the file
/// and offset) and are written as structured events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_and_cloudevents_through_the_hub() {
    let hub = TempHub::new();
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("people.csv");
    std::fs::write(
        &csv,
        "name,age,admin\n\"Lovelace, Ada\",36,true\n\"Hopper \"\"Amazing\"\" Grace\",85,false\nBabbage,old,false\nTuring,41,\n",
    )
    .unwrap();
    let columns = "{type: csv, csv: {columns: [{name: name}, {name: age, type: integer}, {name: admin, type: boolean}]}}";
    let mut p = source(&hub, &csv, &["--follow=false", "--format", columns]);
    assert!(
        p.wait_timeout(Duration::from_secs(60))
            .await
            .unwrap()
            .success(),
        "{}",
        p.output()
    );
    let rows: Vec<serde_json::Value> = values(&hub)
        .await
        .iter()
        .map(|v| serde_json::from_str(v).unwrap())
        .collect();
    assert_eq!(
        rows,
        [
            serde_json::json!({"name": "Lovelace, Ada", "age": 36, "admin": true}),
            serde_json::json!({"name": "Hopper \"Amazing\" Grace", "age": 85, "admin": false}),
            serde_json::json!({"name": "Turing", "age": 41, "admin": null}),
        ]
    );
    let log = p.output();
    assert!(
        log.contains(r#"does not decode: CSV column "age": "old" is not an integer"#),
        "{log}"
    );

    assert_eq!(
        sink_once(&hub, &["--suffix", ".csv", "--format", columns]).await,
        "name,age,admin\n\"Lovelace, Ada\",36,true\n\"Hopper \"\"Amazing\"\" Grace\",85,false\nTuring,41,\n"
    );

    // Plain lines as CloudEvents, then written out structured.
    let hub = TempHub::new();
    let log = dir.path().join("events.log");
    append(&log, lines("e", 0..3));
    let binary = "{type: cloudevents, cloudevents: {mode: binary, source: /files/events, type: line, datacontenttype: text/plain}}";
    let mut p = source(&hub, &log, &["--follow=false", "--format", binary]);
    assert!(
        p.wait_timeout(Duration::from_secs(60))
            .await
            .unwrap()
            .success(),
        "{}",
        p.output()
    );
    let events: Vec<serde_json::Value> = sink_once(&hub, &["--format", "cloudevents"])
        .await
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 3);
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["specversion"], "1.0");
        assert_eq!(e["source"], "/files/events");
        assert_eq!(e["type"], "line");
        assert_eq!(e["datacontenttype"], "text/plain");
        assert_eq!(e["data"], format!("e-{i}"));
        let id = e["id"].as_str().unwrap();
        assert!(
            id.ends_with(&format!("@{}", 4 * (i + 1))),
            "{id}: the file and the offset"
        );
    }
}
