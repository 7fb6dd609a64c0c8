//! `cargo bench --bench smartmodule_vs_fluvio`: the same .wasm modules, the same records,
//! in Runnel's host and in Fluvio's engine (fluvio-smartengine 0.50.1), in one run.
//!
//! One line per case: `CASE: runnel N rec/s, fluvio-smartengine M rec/s, ratio R`.
//! A second line per case splits Runnel's time between the modules and the host.
//! Records: 1,000,000 JSON values of 100 bytes (objects; arrays for array_map), in
//! batches of 1,000 for both engines. Each case runs three rounds, alternating engines,
//! and keeps each engine's best round. Fluvio's inputs are encoded before its clock starts;
//! Runnel's encoding is inside its time. RUNNEL_BENCH_RECORDS changes the record count.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use runnel_tests::oracle::{Rec, fluvio_chain, fluvio_input};
use runnel_tests::wasm;
use smartmodule_host::{ChainBuilder, Engine, EngineConfig, Limits};

const BATCH: usize = 1000;
const ROUNDS: usize = 3;

fn object(i: usize) -> Vec<u8> {
    let kind = if i.is_multiple_of(2) { "a" } else { "b" };
    let head = format!(
        r#"{{"id":{i},"type":"{kind}","amount":{}.25,"name":""#,
        i % 1000
    );
    let mut v = head.into_bytes();
    while v.len() < 98 {
        v.push(b'x');
    }
    v.extend_from_slice(b"\"}");
    v
}

fn array(i: usize) -> Vec<u8> {
    let mut v = format!(r#"[{{"id":{i}}},{{"n":1}},{{"n":2}},"#).into_bytes();
    let pad = 100 - v.len() - 3;
    v.push(b'"');
    v.extend(std::iter::repeat_n(b'y', pad));
    v.extend_from_slice(b"\"]");
    v
}

type Steps<'a> = Vec<(&'a Path, &'a [(&'a str, &'a str)])>;

/// One round in Runnel's host: total time, records out, and the time spent inside the
/// modules.
fn runnel_round(
    engine: &Engine,
    steps: &Steps<'_>,
    records: &[Rec],
) -> (Duration, usize, Duration) {
    let mut builder = ChainBuilder::new(engine, Limits::default());
    for (path, params) in steps {
        let module = engine.load_file(path).unwrap();
        builder.add(
            module,
            params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
    }
    let mut chain = builder.build().unwrap();
    let start = Instant::now();
    let mut out = 0;
    for batch in records.chunks(BATCH) {
        let p = chain.process(batch);
        assert!(p.rejected.is_empty(), "{:?}", p.rejected.first());
        out += p.records.len();
    }
    (start.elapsed(), out, chain.stats().guest_time)
}

fn fluvio_round(steps: &Steps<'_>, records: &[Rec]) -> (Duration, usize) {
    let mut chain = fluvio_chain(steps).unwrap();
    let inputs: Vec<_> = records
        .chunks(BATCH)
        .map(|b| fluvio_input(b, 0, b[0].timestamp))
        .collect();
    let start = Instant::now();
    let mut out = 0;
    for input in inputs {
        let o = chain.process(input).unwrap();
        assert!(o.error.is_none());
        out += o.successes.len();
    }
    (start.elapsed(), out)
}

fn main() {
    let n: usize = std::env::var("RUNNEL_BENCH_RECORDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let objects: Vec<Rec> = (0..n)
        .map(|i| Rec::new(None, &object(i), 1_700_000_000_000 + i as i64))
        .collect();
    let arrays: Vec<Rec> = (0..n)
        .map(|i| Rec::new(None, &array(i), 1_700_000_000_000 + i as i64))
        .collect();
    assert!(objects.iter().all(|r| r.value.len() == 100));
    assert!(arrays.iter().all(|r| r.value.len() == 100));

    let filter = wasm("json_filter");
    let contains = wasm("contains_filter");
    let map = wasm("json_map");
    let split = wasm("json_array_split");
    let params: &[(&str, &str)] = &[("field", "type"), ("value", "a")];
    let needle: &[(&str, &str)] = &[("contains", r#""type":"a""#)];
    let cases: Vec<(&str, Steps<'_>, &[Rec])> = vec![
        ("filter", vec![(&filter, params)], &objects),
        ("filter-contains", vec![(&contains, needle)], &objects),
        ("map", vec![(&map, &[])], &objects),
        ("array_map", vec![(&split, &[])], &arrays),
        ("filter+map", vec![(&filter, params), (&map, &[])], &objects),
    ];
    let cache = tempfile::tempdir().unwrap();
    let engine = Engine::new(EngineConfig {
        cache_dir: Some(cache.path().to_path_buf()),
    })
    .unwrap();
    println!("{n} records of 100 bytes, batches of {BATCH}, best of {ROUNDS} rounds");
    for (name, steps, records) in &cases {
        let (mut ours, mut theirs, mut guest) = (Duration::MAX, Duration::MAX, Duration::MAX);
        for _ in 0..ROUNDS {
            let (t, out_a, g) = runnel_round(&engine, steps, records);
            let (u, out_b) = fluvio_round(steps, records);
            assert_eq!(
                out_a, out_b,
                "{name}: the engines disagree on the output count"
            );
            if t < ours {
                guest = g;
            }
            ours = ours.min(t);
            theirs = theirs.min(u);
        }
        let rate = |d: Duration| n as f64 / d.as_secs_f64();
        let per_record = |d: Duration| d.as_nanos() as f64 / n as f64;
        println!(
            "{name}: runnel {:.0} rec/s, fluvio-smartengine {:.0} rec/s, ratio {:.2}",
            rate(ours),
            rate(theirs),
            rate(ours) / rate(theirs),
        );
        // Where Runnel's time goes: inside the modules (the SDK's decoding and encoding
        // and the module's own work, which any engine runs) and in the host. The last
        // figure is the ratio a host that cost nothing would reach.
        println!(
            "    runnel {:.0} ns/record: {:.0} inside the modules, {:.0} in the host; ratio with a free host {:.2}",
            per_record(ours),
            per_record(guest),
            per_record(ours.saturating_sub(guest)),
            theirs.as_secs_f64() / guest.as_secs_f64()
        );
    }

    // Loading a module whose compiled code is in the cache.
    let fresh = Engine::new(EngineConfig {
        cache_dir: Some(cache.path().to_path_buf()),
    })
    .unwrap();
    let mut best = Duration::MAX;
    for _ in 0..20 {
        let t = Instant::now();
        let m = fresh.load_file(&map).unwrap();
        best = best.min(t.elapsed());
        drop(m);
    }
    let t = Instant::now();
    Engine::new(EngineConfig::default())
        .unwrap()
        .load_file(&map)
        .unwrap();
    println!(
        "load json_map: {:.2} ms from the cache, {:.0} ms compiling",
        best.as_secs_f64() * 1e3,
        t.elapsed().as_secs_f64() * 1e3
    );
}
