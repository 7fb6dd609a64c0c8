//! file-sink against a real folder: rolling by size and by age with whole files only, and
//! `kill -9` mid-stream: nothing committed that is not on disk, nothing lost after restart.

#![allow(clippy::unwrap_used)]

use std::{path::Path, time::Duration};

use runnel_runtime::{Record, config::OffsetStart};
use runnel_tests::{
    Proc, TempHub, connector,
    contract::{self, Contract},
    counts, wait_until,
};

fn sink(hub: &TempHub, dir: &Path, extra: &[&str]) -> Proc {
    let mut cmd = connector("file-sink", hub);
    cmd.args(["--name", "archive", "--topic", "t"])
        .arg("--path")
        .arg(dir)
        .args(extra);
    Proc::spawn(cmd, hub.path(&format!("log-{}", fastrand::u32(..))))
}

/// The folder's files by name: (name, lines). While the sink runs, a `.part` file listed
/// may be renamed before it is read: it is left out of this look (the caller looks again).
fn files(dir: &Path) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let e = e.unwrap();
            let text = match std::fs::read_to_string(e.path()) {
                Ok(t) => t,
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => return None,
                Err(err) => panic!("{}: {err}", e.path().display()),
            };
            let name = e.file_name().to_string_lossy().into_owned();
            Some((name, text.lines().map(str::to_string).collect()))
        })
        .collect();
    out.sort();
    out
}

async fn produce(hub: &TempHub, range: std::ops::Range<u32>) {
    let records = range.map(|i| Record::new(format!("{i:08}"))).collect();
    hub.produce("t", records).await;
}

async fn committed(hub: &TempHub) -> i64 {
    let h = hub.hub().await;
    let c = h
        .consumer("t", 0, Some("archive"), OffsetStart::Beginning)
        .await
        .unwrap();
    c.position()
}

/// Files roll at roll_size (never splitting a batch) and at roll_interval; finished files
/// are named by their first offset, hold the records in order, and a stop finishes the last
/// one: no `.part` file is left and every record is in exactly one file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolls_by_size_and_age_and_leaves_only_whole_files() {
    let hub = TempHub::new();
    let out = tempfile::tempdir().unwrap();
    produce(&hub, 0..5000).await;
    let mut p = sink(
        &hub,
        out.path(),
        &["--roll-size", "10KB", "--roll-interval", "300ms"],
    );
    wait_until(
        Duration::from_secs(60),
        "every record committed",
        || async { committed(&hub).await == 5000 },
    )
    .await;
    // Age: with nothing more coming, the open file is finished without a stop; so is the
    // next one, after a few records.
    let no_part = || async {
        let fs = files(out.path());
        !fs.is_empty() && fs.iter().all(|(n, _)| !n.ends_with(".part"))
    };
    wait_until(
        Duration::from_secs(30),
        "the last file rolled by age",
        no_part,
    )
    .await;
    produce(&hub, 5000..5003).await;
    wait_until(
        Duration::from_secs(30),
        "the small file rolled by age",
        || async {
            files(out.path())
                .iter()
                .any(|(n, l)| n == "records-00000000000000005000.log" && l.len() == 3)
        },
    )
    .await;
    p.stop().await;
    let fs = files(out.path());
    assert!(fs.len() >= 2, "{fs:?}");
    let mut all = Vec::new();
    for (name, lines) in &fs {
        assert!(!name.ends_with(".part"), "{name} left behind");
        let first: u32 = lines[0].parse().unwrap();
        assert_eq!(name, &format!("records-{first:020}.log"));
        all.extend(lines.iter().cloned());
    }
    let want: Vec<String> = (0..5003).map(|i| format!("{i:08}")).collect();
    assert_eq!(all, want, "every record once, in order across the files");
}

/// `kill -9` while the sink writes: every committed record is on disk; after the restart
/// (which finishes the `.part` file left behind) every record is in the folder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_stream_commits_nothing_that_is_not_on_disk() {
    let hub = TempHub::new();
    let out = tempfile::tempdir().unwrap();
    const N: u32 = 300_000;
    produce(&hub, 0..N).await;
    let mut p = sink(&hub, out.path(), &["--roll-size", "256KB"]);
    wait_until(
        Duration::from_secs(60),
        "part of the topic committed",
        || async { committed(&hub).await >= 30_000 },
    )
    .await;
    p.kill9();
    let at_kill = committed(&hub).await;
    assert!(
        at_kill < i64::from(N),
        "the kill came too late to test anything"
    );
    let on_disk: Vec<String> = files(out.path()).into_iter().flat_map(|(_, l)| l).collect();
    let seen = counts(&on_disk);
    for i in 0..at_kill {
        assert!(
            seen.contains_key(&format!("{i:08}")),
            "record {i} was committed (offset {at_kill}) but is not on disk"
        );
    }
    assert!(
        files(out.path()).iter().any(|(n, _)| n.ends_with(".part")),
        "the file being written is left as .part"
    );

    let mut p = sink(&hub, out.path(), &["--roll-size", "256KB"]);
    wait_until(
        Duration::from_secs(120),
        "every record committed",
        || async { committed(&hub).await == i64::from(N) },
    )
    .await;
    p.stop().await;
    let fs = files(out.path());
    assert!(
        fs.iter().all(|(n, _)| !n.ends_with(".part")),
        "{:?}",
        fs.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    let all: Vec<String> = fs.into_iter().flat_map(|(_, l)| l).collect();
    let repeated = runnel_tests::each_present(&all, (0..N).map(|i| format!("{i:08}")));
    assert!(
        repeated <= 2000,
        "{repeated} records written twice (at most the batch being written and the one before it, whose commit goes out while the next is written; a batch is 1000)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meets_the_connector_contract() {
    let hub = TempHub::new();
    let out = tempfile::tempdir().unwrap();
    produce(&hub, 0..10).await;
    let mut p = sink(&hub, out.path(), &[]);
    wait_until(Duration::from_secs(30), "the records committed", || async {
        committed(&hub).await == 10
    })
    .await;
    let c = Contract {
        kind: "file-sink",
        name: "archive",
        secrets: &[],
        ready: true,
    };
    contract::check(&mut p, c).await;
}
