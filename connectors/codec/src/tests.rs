#![allow(clippy::unwrap_used)]

use proptest::prelude::*;

use super::*;

fn run(framing: Framing, max: u64, input: &[u8], chunk: usize) -> (Vec<Frame>, usize) {
    let mut d = Deframer::new(framing, ByteSize(max));
    let mut out = Vec::new();
    let mut peak = 0;
    for c in input.chunks(chunk.max(1)) {
        d.push(c);
        while let Some(f) = d.next_frame() {
            out.push(f);
        }
        peak = peak.max(d.buffered());
    }
    out.extend(d.finish());
    (out, peak)
}

fn records(frames: &[Frame]) -> Vec<Vec<u8>> {
    frames
        .iter()
        .filter_map(|f| match f {
            Frame::Record(b) => Some(b.to_vec()),
            _ => None,
        })
        .collect()
}

#[test]
fn newline_splits_and_drops_cr_and_empty_lines() {
    let (f, _) = run(Framing::Newline, 100, b"a\r\nbb\n\nccc", 2);
    assert_eq!(
        records(&f),
        [b"a".to_vec(), b"bb".to_vec(), b"ccc".to_vec()]
    );
}

#[test]
fn a_multi_byte_delimiter_split_across_chunks() {
    let (f, _) = run(
        Framing::Delimiter(b"<>".to_vec()),
        100,
        b"one<>two<><>three<",
        1,
    );
    assert_eq!(
        records(&f),
        [b"one".to_vec(), b"two".to_vec(), b"three<".to_vec()]
    );
}

#[test]
fn an_oversized_line_is_reported_with_its_size_and_reading_resumes() {
    let mut input = b"ok\n".to_vec();
    input.extend(std::iter::repeat_n(b'x', 10_000));
    input.extend(b"\nafter\n");
    let (f, peak) = run(Framing::Newline, 100, &input, 7);
    assert_eq!(
        f,
        [
            Frame::Record(Bytes::from_static(b"ok")),
            Frame::Oversized {
                size: 10_000,
                complete: true
            },
            Frame::Record(Bytes::from_static(b"after")),
        ]
    );
    assert!(peak <= 100 + 7, "held {peak} bytes");
}

#[test]
fn an_endless_stream_without_a_delimiter_stays_bounded() {
    let mut d = Deframer::new(Framing::Newline, ByteSize(1 << 20));
    let chunk = vec![b'z'; 64 << 10];
    for _ in 0..(300 << 20) / chunk.len() {
        d.push(&chunk);
        assert!(d.next_frame().is_none());
        assert!(d.buffered() <= (1 << 20) + chunk.len());
    }
    assert_eq!(
        d.finish(),
        Some(Frame::Oversized {
            size: 300 << 20,
            complete: false
        })
    );
}

#[test]
fn bytes_framing_is_one_record_or_one_oversized() {
    let (f, _) = run(Framing::Bytes, 10, b"0123456789", 3);
    assert_eq!(records(&f), [b"0123456789".to_vec()]);
    let (f, peak) = run(Framing::Bytes, 10, &[b'a'; 1000], 64);
    assert_eq!(
        f,
        [Frame::Oversized {
            size: 1000,
            complete: true
        }]
    );
    assert!(peak <= 10 + 64);
    assert_eq!(run(Framing::Bytes, 10, b"", 3).0, []);
}

#[test]
fn length_prefixed_frames_oversized_and_truncated() {
    let mut input = Vec::new();
    for r in [&b"abc"[..], &[b'q'; 50][..], b"", b"de"] {
        input.extend((r.len() as u32).to_be_bytes());
        input.extend(r);
    }
    input.extend(9u32.to_be_bytes());
    input.extend(b"cut");
    let (f, _) = run(Framing::LengthPrefixed, 10, &input, 5);
    assert_eq!(
        f,
        [
            Frame::Record(Bytes::from_static(b"abc")),
            Frame::Oversized {
                size: 50,
                complete: true
            },
            Frame::Record(Bytes::new()),
            Frame::Record(Bytes::from_static(b"de")),
            Frame::Truncated {
                size: 3,
                expected: 9
            },
        ]
    );
}

#[test]
fn the_reason_names_the_size_and_the_limit() {
    assert_eq!(
        oversized_reason(314_572_800, true, 1 << 20),
        "a record of 314572800 bytes is over the maximum record size of 1048576 bytes (max_record_size)"
    );
    assert!(oversized_reason(5, false, 4).contains("at least 5 bytes"));
}

proptest! {
    /// Any records (invalid UTF-8, empty, long) joined with a delimiter they do not hold
    /// come back whole, whatever the chunking; longer ones come back as oversized with
    /// their exact size; memory stays within the maximum plus a chunk.
    #[test]
    fn delimited_round_trip(
        recs in proptest::collection::vec(proptest::collection::vec(any::<u8>().prop_filter("no delimiter", |b| *b != b'|'), 1..300), 0..40),
        chunk in 1usize..97,
        max in 1u64..200,
    ) {
        let mut input = Vec::new();
        for r in &recs {
            input.extend(r);
            input.push(b'|');
        }
        let (f, peak) = run(Framing::Delimiter(b"|".to_vec()), max, &input, chunk);
        let want: Vec<Frame> = recs
            .iter()
            .map(|r| if r.len() as u64 > max {
                Frame::Oversized { size: r.len() as u64, complete: true }
            } else {
                Frame::Record(Bytes::from(r.clone()))
            })
            .collect();
        prop_assert_eq!(f, want);
        prop_assert!(peak as u64 <= max + chunk as u64);
    }

    #[test]
    fn length_prefixed_round_trip(
        recs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..40),
        chunk in 1usize..97,
    ) {
        let mut input = Vec::new();
        for r in &recs {
            input.extend((r.len() as u32).to_be_bytes());
            input.extend(r);
        }
        let (f, _) = run(Framing::LengthPrefixed, 1 << 20, &input, chunk);
        prop_assert_eq!(records(&f), recs);
    }
}
