//! smartmodule-host against Fluvio's own engine (the oracle), and its limits.
//!
//! Differential: every example module, built with Fluvio's SDK for wasm32-unknown-unknown
//! and wasm32-wasip1, runs on the same generated batches in both engines; successes and
//! errors must be equal record for record.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use runnel_tests::oracle::{Rec, fluvio_call, fluvio_chain};
use runnel_tests::{smartmodules, wasm};
use smartmodule_host::{
    CallError, Chain, ChainBuilder, Engine, EngineConfig, Limits, LoadError, Reason,
};

fn engine() -> Engine {
    Engine::new(EngineConfig::default()).unwrap()
}

fn chain(engine: &Engine, limits: Limits, steps: &[(&Path, &[(&str, &str)])]) -> Chain {
    let mut b = ChainBuilder::new(engine, limits);
    for (path, params) in steps {
        b.add(
            engine.load_file(path).unwrap(),
            params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
    }
    b.build().unwrap()
}

/// Batches that cover what the issue names: empty batches and values, large values, keys
/// present and absent, invalid UTF-8, invalid JSON, arrays, numbers.
fn batches(seed: u64) -> Vec<Vec<Rec>> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut values: Vec<Vec<u8>> = vec![
        br#"{"type":"a","amount":1.25,"n":1}"#.to_vec(),
        br#"{"type":"b","amount":-3}"#.to_vec(),
        br#"{"type":"a"}"#.to_vec(),
        br#"{"type":1,"x":[1,2,3]}"#.to_vec(),
        br#"[1,"two",{"three":3},null]"#.to_vec(),
        b"[]".to_vec(),
        b"42".to_vec(),
        b"-7".to_vec(),
        b"".to_vec(),
        b"not json".to_vec(),
        vec![0xff, 0xfe, b'{', 0x80],
        br#"{"type":"a","s":"caf\u00e9 \ud83d\ude00"}"#.to_vec(),
    ];
    let mut big = br#"{"type":"a","blob":""#.to_vec();
    big.extend(std::iter::repeat_n(b'z', 1 << 20));
    big.extend_from_slice(b"\"}");
    values.push(big);
    let mut big_array = b"[".to_vec();
    for i in 0..5000 {
        big_array.extend_from_slice(format!("{i},").as_bytes());
    }
    big_array.extend_from_slice(b"0]");
    values.push(big_array);
    let mut out = vec![Vec::new()];
    for size in [1usize, 2, 7, 50, 300] {
        let batch = (0..size)
            .map(|_| {
                let v = &values[rng.usize(..values.len())];
                let key: Option<Vec<u8>> = match rng.u8(..4) {
                    0 => None,
                    1 => Some(Vec::new()),
                    2 => Some(vec![0xc3, 0x28]),
                    _ => Some(format!("k{}", rng.u32(..100)).into_bytes()),
                };
                Rec::new(key.as_deref(), v, 1_700_000_000_000 + rng.i64(-5000..5000))
            })
            .collect();
        out.push(batch);
    }
    // A batch of only good records, so the whole batch passes in every module that can.
    out.push(
        (0..100i64)
            .map(|i| {
                Rec::new(
                    Some(format!("k{i}").as_bytes()),
                    format!(
                        r#"{{"type":"{}","amount":{i}.5}}"#,
                        if i % 3 == 0 { "a" } else { "b" }
                    )
                    .as_bytes(),
                    1_700_000_000_000 + i,
                )
            })
            .collect(),
    );
    out
}

fn integer_batches(seed: u64) -> Vec<Vec<Rec>> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut out = Vec::new();
    for size in [0usize, 1, 10, 200] {
        out.push(
            (0..size)
                .map(|_| {
                    let v = match rng.u8(..20) {
                        0 => b"x1".to_vec(),
                        1 => vec![0xff],
                        _ => rng.i64(-1000..1000).to_string().into_bytes(),
                    };
                    Rec::new(None, &v, 1_700_000_000_000)
                })
                .collect(),
        );
    }
    out
}

fn differential(steps: &[(&Path, &[(&str, &str)])], batches: &[Vec<Rec>]) {
    let engine = engine();
    let mut ours = chain(&engine, Limits::default(), steps);
    let mut theirs = fluvio_chain(steps).unwrap();
    for (n, batch) in batches.iter().enumerate() {
        let base_offset = 1000 * n as i64;
        let base_ts = batch.first().map_or(0, |r| r.timestamp);
        let mine = ours.call_once(batch, base_offset, base_ts);
        let fluvio = fluvio_call(&mut theirs, batch, base_offset, base_ts);
        match (mine, fluvio) {
            (Ok(mut a), Ok(b)) => {
                a.accumulator = None;
                assert_eq!(
                    a.successes.len(),
                    b.successes.len(),
                    "{steps:?} batch {n}: success counts differ"
                );
                assert_eq!(a, b, "{steps:?} batch {n}: outputs differ");
            }
            (Err(a), Err(_)) => {
                // Both failed as a whole; ours says which kind of failure.
                assert!(
                    matches!(a, CallError::Engine { .. } | CallError::Trap { .. }),
                    "{a}"
                );
            }
            (a, b) => panic!("{steps:?} batch {n}: runnel {a:?}, fluvio {b:?}"),
        }
    }
}

const TARGETS: [&str; 2] = ["wasm32-unknown-unknown", "wasm32-wasip1"];

fn module(target: &'static str, name: &str) -> PathBuf {
    smartmodules(target).join(format!("{name}.wasm"))
}

#[test]
fn filter_with_params_matches_fluvio() {
    for target in TARGETS {
        let m = module(target, "json_filter");
        differential(&[(&m, &[("field", "type"), ("value", "a")])], &batches(1));
        differential(
            &[(&m, &[("field", "amount"), ("value", "-3")])],
            &batches(2),
        );
    }
}

#[test]
fn byte_filter_matches_fluvio() {
    for target in TARGETS {
        let m = module(target, "contains_filter");
        differential(&[(&m, &[("contains", "\"a\"")])], &batches(7));
    }
}

#[test]
fn map_matches_fluvio() {
    for target in TARGETS {
        differential(&[(&module(target, "json_map"), &[])], &batches(3));
    }
}

#[test]
fn array_map_matches_fluvio() {
    for target in TARGETS {
        differential(&[(&module(target, "json_array_split"), &[])], &batches(4));
    }
}

#[test]
fn filter_map_matches_fluvio() {
    for target in TARGETS {
        differential(&[(&module(target, "json_filter_map"), &[])], &batches(5));
    }
}

#[test]
fn aggregate_matches_fluvio_across_calls() {
    for target in TARGETS {
        differential(
            &[(&module(target, "running_sum"), &[])],
            &integer_batches(6),
        );
    }
}

#[test]
fn chains_match_fluvio() {
    let filter = wasm("json_filter");
    let map = wasm("json_map");
    let split = wasm("json_array_split");
    let fm = wasm("json_filter_map");
    let p: &[(&str, &str)] = &[("field", "type"), ("value", "a")];
    differential(&[(&filter, p), (&map, &[])], &batches(7));
    differential(&[(&split, &[]), (&fm, &[])], &batches(8));
    differential(
        &[(&map, &[]), (&filter, &[("field", "kind"), ("value", "a")])],
        &batches(9),
    );
}

#[test]
fn init_errors_match_fluvio() {
    let filter = wasm("json_filter");
    let engine = engine();
    let mut b = ChainBuilder::new(&engine, Limits::default());
    b.add(engine.load_file(&filter).unwrap(), Default::default());
    let ours = b.build().unwrap_err();
    let theirs = fluvio_chain(&[(&filter, &[])]).err().unwrap();
    assert!(matches!(ours, LoadError::Init { .. }), "{ours}");
    assert!(
        ours.to_string().contains("missing parameter `field`"),
        "{ours}"
    );
    assert!(
        format!("{theirs:#}").contains("missing parameter `field`"),
        "{theirs:#}"
    );
}

/// `process` loses nothing: its outputs are what the module gives for each record alone,
/// and every record it fails on is rejected with the module's error and its source.
#[test]
fn process_resumes_after_a_bad_record() {
    let map = wasm("json_map");
    let engine = engine();
    let mut ours = chain(&engine, Limits::default(), &[(&map, &[])]);
    let mut theirs = fluvio_chain(&[(&map, &[])]).unwrap();
    for batch in batches(10) {
        let p = ours.process(&batch);
        let mut expected = Vec::new();
        let mut expected_rejects = Vec::new();
        for (i, r) in batch.iter().enumerate() {
            let one = fluvio_call(&mut theirs, std::slice::from_ref(r), 0, r.timestamp).unwrap();
            expected.extend(one.successes.into_iter().map(|s| (Some(i), s.key, s.value)));
            if let Some(e) = one.error {
                expected_rejects.push((Some(i), e.hint));
            }
        }
        let got: Vec<_> = p
            .records
            .iter()
            .map(|r| (r.source, r.key.clone(), r.value.clone()))
            .collect();
        assert_eq!(got, expected);
        let got_rejects: Vec<_> = p
            .rejected
            .iter()
            .map(|r| match &r.reason {
                Reason::Module { hint, .. } => (r.source, hint.clone()),
                other => panic!("unexpected {other}"),
            })
            .collect();
        assert_eq!(got_rejects, expected_rejects);
        for r in &p.records {
            let src = &batch[r.source.unwrap()];
            assert_eq!(
                r.timestamp, src.timestamp,
                "timestamps follow their records"
            );
        }
    }
}

#[test]
fn a_looping_module_is_stopped_within_its_budget() {
    let spin = wasm("spin");
    let engine = engine();
    let limits = Limits {
        call_timeout: Duration::from_millis(200),
        ..Limits::default()
    };
    let mut c = chain(&engine, limits, &[(&spin, &[])]);
    let batch = [
        Rec::new(None, b"one", 1),
        Rec::new(None, b"spin", 2),
        Rec::new(None, b"three", 3),
    ];
    let t = Instant::now();
    let err = c.call_once(&batch, 0, 0).unwrap_err();
    let took = t.elapsed();
    assert!(matches!(err, CallError::Timeout { .. }), "{err}");
    assert!(err.to_string().contains("spin"), "names the module: {err}");
    assert!(
        took >= Duration::from_millis(190) && took < Duration::from_millis(700),
        "{took:?}"
    );
    // The chain recovers: the two good records pass, the looping one is rejected.
    let t = Instant::now();
    let p = c.process(&batch);
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    let values: Vec<_> = p.records.iter().map(|r| r.value.clone()).collect();
    assert_eq!(
        values,
        [Bytes::from_static(b"one"), Bytes::from_static(b"three")]
    );
    assert_eq!(p.rejected.len(), 1);
    assert_eq!(p.rejected[0].source, Some(1));
    assert!(matches!(
        p.rejected[0].reason,
        Reason::Call(CallError::Timeout { .. })
    ));
}

#[test]
fn a_module_allocating_without_bound_hits_the_memory_cap() {
    let hog = wasm("hog");
    let engine = engine();
    let limits = Limits {
        max_memory: 64 << 20,
        ..Limits::default()
    };
    let mut c = chain(&engine, limits, &[(&hog, &[])]);
    let batch = [Rec::new(None, b"fine", 1), Rec::new(None, b"hog", 2)];
    let err = c.call_once(&batch, 0, 0).unwrap_err();
    match &err {
        CallError::MemoryLimit { module, limit, .. } => {
            assert_eq!(module, "hog");
            assert_eq!(*limit, 64 << 20);
        }
        other => panic!("expected the memory limit, got {other}"),
    }
    assert!(err.to_string().contains("memory limit"), "{err}");
    let p = c.process(&batch);
    assert_eq!(p.records.len(), 1);
    assert_eq!(p.rejected.len(), 1);
    assert!(c.memory_bytes() <= 64 << 20);
}

#[test]
fn guest_memory_stays_flat_over_ten_million_records() {
    // The spin filter passes every record that does not contain "spin", so every call
    // returns a full output buffer: the buffers Fluvio's engine never frees.
    let spin = wasm("spin");
    let engine = engine();
    let mut c = chain(&engine, Limits::default(), &[(&spin, &[])]);
    let batch: Vec<Rec> = (0..1000)
        .map(|i| Rec::new(None, format!("record number {i:>80}").as_bytes(), i))
        .collect();
    for _ in 0..10 {
        assert_eq!(c.process(&batch).records.len(), 1000);
    }
    let after_10k = c.memory_bytes();
    for _ in 10..10_000 {
        c.process(&batch);
    }
    let after_10m = c.memory_bytes();
    assert!(
        after_10m <= after_10k + (1 << 20),
        "guest memory grew from {after_10k} to {after_10m} bytes"
    );
}

#[test]
fn bad_modules_are_refused_at_load_time_with_the_reason() {
    let engine = engine();
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    let text = write("text.wasm", b"hello, not wasm");
    let err = engine.load_file(&text).unwrap_err();
    assert!(matches!(err, LoadError::NotWasm { .. }), "{err}");

    let good = std::fs::read(wasm("json_map")).unwrap();
    let truncated = write("truncated.wasm", &good[..good.len() / 2]);
    let err = engine.load_file(&truncated).unwrap_err();
    assert!(matches!(err, LoadError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("truncated"), "{err}");

    let empty = write(
        "empty.wasm",
        &wat::parse_str("(module (memory (export \"memory\") 1))").unwrap(),
    );
    let err = engine.load_file(&empty).unwrap_err();
    assert!(matches!(err, LoadError::NoTransform { .. }), "{err}");
    assert!(
        err.to_string().contains("memory"),
        "lists the exports: {err}"
    );

    let wrong_sig = write(
        "wrong.wasm",
        &wat::parse_str(
            r#"(module
                (import "env" "copy_records" (func (param i32 i32)))
                (memory (export "memory") 1)
                (func (export "alloc") (param i32) (result i32) i32.const 0)
                (func (export "filter") (param i32) (result i32) i32.const 0))"#,
        )
        .unwrap(),
    );
    let err = engine.load_file(&wrong_sig).unwrap_err();
    assert!(matches!(err, LoadError::Abi { .. }), "{err}");
    assert!(err.to_string().contains("`filter` has type"), "{err}");

    let foreign_import = write(
        "import.wasm",
        &wat::parse_str(
            r#"(module
                (import "env" "copy_records" (func (param i32 i32)))
                (import "env" "open_socket" (func))
                (memory (export "memory") 1)
                (func (export "alloc") (param i32) (result i32) i32.const 0)
                (func (export "map") (param i32 i32 i32) (result i32) i32.const 0))"#,
        )
        .unwrap(),
    );
    let err = engine.load_file(&foreign_import).unwrap_err();
    assert!(err.to_string().contains("env.open_socket"), "{err}");
}

#[test]
fn compiled_modules_are_cached_on_disk() {
    let cache = tempfile::tempdir().unwrap();
    let config = || EngineConfig {
        cache_dir: Some(cache.path().to_path_buf()),
    };
    let map = wasm("json_map");
    Engine::new(config()).unwrap().load_file(&map).unwrap();
    let files: Vec<_> = std::fs::read_dir(cache.path()).unwrap().collect();
    assert_eq!(files.len(), 1, "one compiled module in the cache");
    // A new engine (a restarted connector) loads it without compiling, and it works.
    let engine = Engine::new(config()).unwrap();
    let t = Instant::now();
    let m = engine.load_file(&map).unwrap();
    let took = t.elapsed();
    let mut b = ChainBuilder::new(&engine, Limits::default());
    b.add(m, Default::default());
    let out = b
        .build()
        .unwrap()
        .process(&[Rec::new(None, br#"{"type":"t","v":1}"#, 0)]);
    assert_eq!(
        out.records[0].value,
        Bytes::from_static(br#"{"data":{"v":1},"kind":"t"}"#)
    );
    assert!(
        took < Duration::from_millis(500),
        "a cached load took {took:?}"
    );
    // A damaged cache file is ignored and replaced, not trusted.
    let path = std::fs::read_dir(cache.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::write(&path, b"garbage").unwrap();
    Engine::new(config()).unwrap().load_file(&map).unwrap();
    assert!(std::fs::metadata(&path).unwrap().len() > 1000);
}
