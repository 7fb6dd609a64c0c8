//! file-source and file-sink against the physical limit, in the same run. Run with
//! `cargo build --release --locked -p file-source -p file-sink && cargo bench --locked -p
//! file-source --bench files`. Each case prints `CASE: runnel N unit/s, PEER M unit/s,
//! ratio R`.
//!
//! - file-source: 1 GB of 100-byte newline-delimited records read into the local hub
//!   (`follow: false`, so the connector exits when done), against a bare program that reads
//!   the same file with a buffered reader and splits it into lines, storing nothing.
//! - file-sink: 2,000,000 of those records from the local hub into files (`fsync: batch`,
//!   files rolled at 128 MiB), against a bare buffered writer writing the same lines to one
//!   file and syncing it at the end.
//!
//! - file-source against the store: the bare reader handing each line to the local hub's
//!   producer in batches, with nothing in between, which bounds any source into this hub.
//!
//! The file is read once before either side is timed, so both read from the page cache.

#![allow(clippy::unwrap_used)]

use std::{
    io::{BufRead, BufReader, BufWriter, Write},
    path::Path,
    process::Command,
    time::Instant,
};

use runnel_runtime::{
    Record,
    config::OffsetStart,
    hub::{Hub, HubUrl},
};

const RECORD: usize = 100;
const FILE_BYTES: usize = 1 << 30;
const SINK_N: usize = 2_000_000;

/// A local hub in a temporary folder.
struct TempHub {
    _dir: tempfile::TempDir,
    url: String,
}

impl TempHub {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("local:{}", dir.path().join("hub.db").display());
        TempHub { _dir: dir, url }
    }

    async fn hub(&self) -> Hub {
        Hub::connect(&self.url.parse::<HubUrl>().unwrap())
            .await
            .unwrap()
    }

    async fn produce(&self, topic: &str, records: Vec<Record>) {
        let hub = self.hub().await;
        hub.ensure_topic(topic, true, None).await.unwrap();
        let mut p = hub.producer(topic).await.unwrap();
        p.send(records).await.unwrap();
    }
}

fn release_bin(name: &str) -> std::path::PathBuf {
    runnel_test_servers::release_bin(
        name,
        "cargo build --release --locked -p file-source -p file-sink",
    )
}

fn line(case: &str, ours: f64, peer_name: &str, peer: f64, unit: &str) {
    println!(
        "{case}: runnel {ours:.0} {unit}, {peer_name} {peer:.0} {unit}, ratio {:.2}",
        ours / peer
    );
}

fn write_input(path: &Path) -> usize {
    let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    let lines = FILE_BYTES / RECORD;
    for i in 0..lines {
        writeln!(w, "{i:0width$}", width = RECORD - 1).unwrap();
    }
    w.flush().unwrap();
    lines
}

/// Lines per second of a bare buffered reader.
fn bare_read(path: &Path, want: usize) -> f64 {
    let start = Instant::now();
    let mut r = BufReader::with_capacity(64 << 10, std::fs::File::open(path).unwrap());
    let mut buf = Vec::with_capacity(256);
    let mut n = 0;
    while r.read_until(b'\n', &mut buf).unwrap() > 0 {
        n += 1;
        std::hint::black_box(&buf);
        buf.clear();
    }
    assert_eq!(n, want);
    n as f64 / start.elapsed().as_secs_f64()
}

/// Lines per second of the bare reader storing each line as a record in a fresh local
/// hub, in batches of the producer stage's size, straight through the hub's producer: no
/// pipeline, framing, codec or checkpoint. What any source can reach into this hub.
fn bare_store(path: &Path, want: usize) -> f64 {
    let hub = TempHub::new();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let h = hub.hub().await;
        h.ensure_topic("bench", true, None).await.unwrap();
        let mut p = h.producer("bench").await.unwrap();
        let start = Instant::now();
        let mut r = BufReader::with_capacity(64 << 10, std::fs::File::open(path).unwrap());
        let mut buf = Vec::with_capacity(256);
        let mut batch = Vec::with_capacity(4096);
        let mut n = 0;
        while r.read_until(b'\n', &mut buf).unwrap() > 0 {
            buf.pop();
            batch.push(Record::new(buf.clone()));
            buf.clear();
            n += 1;
            if batch.len() == 4096 {
                p.send(std::mem::replace(&mut batch, Vec::with_capacity(4096)))
                    .await
                    .unwrap();
            }
        }
        p.send(batch).await.unwrap();
        assert_eq!(n, want);
        n as f64 / start.elapsed().as_secs_f64()
    })
}

fn file_source(hub: &TempHub, path: &Path, want: usize) -> f64 {
    let start = Instant::now();
    let status = Command::new(release_bin("file-source"))
        .env("RUNNEL_HUB", &hub.url)
        .env("RUNNEL_HEALTH_ADDR", "off")
        .env("RUST_LOG", "warn")
        .args(["--name", "bench", "--topic", "bench", "--create-topic"])
        .args(["--follow=false", "--path"])
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
    want as f64 / start.elapsed().as_secs_f64()
}

fn file_sink(hub: &TempHub, out: &Path) -> f64 {
    let start = Instant::now();
    let mut child = Command::new(release_bin("file-sink"))
        .env("RUNNEL_HUB", &hub.url)
        .env("RUNNEL_HEALTH_ADDR", "off")
        .env("RUST_LOG", "warn")
        .args(["--name", "archive", "--topic", "sink"])
        .arg("--path")
        .arg(out)
        .spawn()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let elapsed = rt.block_on(async {
        let h = hub.hub().await;
        loop {
            let c = h
                .consumer("sink", 0, Some("archive"), OffsetStart::Beginning)
                .await
                .unwrap();
            if c.position() >= SINK_N as i64 {
                return start.elapsed();
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    });
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    SINK_N as f64 / elapsed.as_secs_f64()
}

fn bare_write(path: &Path) -> f64 {
    let start = Instant::now();
    let f = std::fs::File::create(path).unwrap();
    let mut w = BufWriter::with_capacity(1 << 20, &f);
    for i in 0..SINK_N {
        writeln!(w, "{i:0width$}", width = RECORD - 1).unwrap();
    }
    w.flush().unwrap();
    drop(w);
    f.sync_all().unwrap();
    SINK_N as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.log");
    let lines = write_input(&input);
    // Warm the page cache, then let the writes settle before anything is timed.
    bare_read(&input, lines);
    let _ = Command::new("sync").status();
    let peer = bare_read(&input, lines);
    let hub = TempHub::new();
    let ours = file_source(&hub, &input, lines);
    line(
        "file-source, 1 GB of 100-byte lines → local hub",
        ours,
        "bare BufReader::read_until",
        peer,
        "rec/s",
    );
    println!(
        "  (runnel {:.0} MB/s, bare reader {:.0} MB/s)",
        ours * RECORD as f64 / 1e6,
        peer * RECORD as f64 / 1e6
    );
    let store = bare_store(&input, lines);
    line(
        "file-source against the bare reader storing into the local hub",
        ours,
        "bare reader + hub producer",
        store,
        "rec/s",
    );

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        for chunk in 0..SINK_N / 10_000 {
            let records = (chunk * 10_000..(chunk + 1) * 10_000)
                .map(|i| Record::new(format!("{i:0width$}", width = RECORD - 1)))
                .collect();
            hub.produce("sink", records).await;
        }
    });
    let _ = Command::new("sync").status();
    let out = dir.path().join("out");
    let ours = file_sink(&hub, &out);
    let peer = bare_write(&dir.path().join("bare.log"));
    line(
        "file-sink, 2,000,000 records of 100 bytes, fsync per batch",
        ours,
        "bare BufWriter + one fsync",
        peer,
        "rec/s",
    );
}
