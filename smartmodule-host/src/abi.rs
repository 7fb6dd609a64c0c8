//! The bytes that cross the guest boundary, as Fluvio's SmartModule ABI lays them out
//! (fluvio-protocol encoding, protocol version 22).
//!
//! Inputs are written straight from the caller's records into one buffer: no intermediate
//! `Record` values, no byte-at-a-time encoding. Outputs are decoded from one copy of the
//! guest's output buffer; every record's key and value are slices of that copy.
//! The parts of the ABI that are not per-record (params, join record, errors) go through
//! fluvio-protocol's own encoder and decoder, so they cannot drift from Fluvio's.

use bytes::{Buf, Bytes};
use fluvio_protocol::record::RecordData;
use fluvio_protocol::{Decoder, DecoderVarInt, Encoder, EncoderVarInt, Version};
use fluvio_smartmodule::dataplane::smartmodule::{
    SmartModuleExtraParams, SmartModuleInitInput, SmartModuleInput,
    SmartModuleTransformRuntimeError,
};

/// The protocol version this host speaks: Fluvio's SMARTMODULE_TIMESTAMPS_VERSION.
pub const VERSION: Version = fluvio_smartmodule::SMARTMODULE_TIMESTAMPS_VERSION;

/// What a module is handed: a record's key, value and timestamp.
pub trait RecordView {
    fn key(&self) -> Option<&[u8]>;
    fn value(&self) -> &[u8];
    /// Milliseconds since the Unix epoch.
    fn timestamp(&self) -> i64;
}

/// Runnel's own record, as connectors hand it to their `transforms:` chain.
impl RecordView for runnel_core::Record {
    fn key(&self) -> Option<&[u8]> {
        self.key.as_deref()
    }
    fn value(&self) -> &[u8] {
        &self.value
    }
    fn timestamp(&self) -> i64 {
        self.timestamp
    }
}

/// A record a module gave back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutRecord {
    pub key: Option<Bytes>,
    pub value: Bytes,
    /// The offset delta the module left on the record: filter, map, filter_map and
    /// aggregate keep the input's, array_map sets 0.
    pub offset_delta: i64,
    pub timestamp_delta: i64,
}

/// A record a module failed on, as the module reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserError {
    /// `base_offset` plus the failing record's offset delta.
    pub offset: i64,
    /// The module's own words (its error, formatted by the SDK).
    pub hint: String,
    pub key: Option<Bytes>,
    pub value: Bytes,
}

/// One call's output: the records that made it, and the error that stopped the call.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Output {
    pub successes: Vec<OutRecord>,
    pub error: Option<UserError>,
    /// For aggregate: the accumulator after the last record that succeeded.
    pub accumulator: Option<Bytes>,
}

/// Encodes a `SmartModuleInput` (version 22) for `records` into `buf`, which is cleared
/// first. Record `i` gets offset delta `i` and a timestamp delta from `base_timestamp`.
pub fn encode_input<R: RecordView>(
    buf: &mut Vec<u8>,
    records: &[R],
    base_offset: i64,
    base_timestamp: i64,
) -> std::io::Result<()> {
    encode_with(buf, records, base_offset, base_timestamp, |i| i as i64)
}

fn encode_with<R: RecordView>(
    buf: &mut Vec<u8>,
    records: &[R],
    base_offset: i64,
    base_timestamp: i64,
    offset_delta: impl Fn(usize) -> i64,
) -> std::io::Result<()> {
    buf.clear();
    // The fixed fields come from fluvio-protocol: encode an input with no records, then
    // put the records where its empty `raw_bytes` was.
    let mut empty = Vec::with_capacity(32);
    SmartModuleInput::new(Vec::new(), base_offset, base_timestamp).encode(&mut empty, VERSION)?;
    // Layout: base_offset (8) | raw_bytes length (4) | raw_bytes | the rest.
    let (head, rest) = empty.split_at(12);
    buf.extend_from_slice(&head[..8]);
    buf.extend_from_slice(&[0; 4]);
    let raw_start = buf.len();
    buf.extend_from_slice(&(records.len() as u32).to_be_bytes());
    let mut body = Vec::with_capacity(256);
    for (i, r) in records.iter().enumerate() {
        body.clear();
        encode_record_body(
            &mut body,
            r,
            offset_delta(i),
            r.timestamp() - base_timestamp,
        )?;
        (body.len() as i64).encode_varint(buf)?;
        buf.extend_from_slice(&body);
    }
    let raw_len = buf.len() - raw_start;
    let raw_len = u32::try_from(raw_len).map_err(|_| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "batch larger than 4 GiB")
    })?;
    buf[8..12].copy_from_slice(&raw_len.to_be_bytes());
    buf.extend_from_slice(rest);
    Ok(())
}

/// Encodes a module's output records as the next module's input, keeping the offset and
/// timestamp deltas they carry, as Fluvio's chain does.
pub fn encode_out_records(
    buf: &mut Vec<u8>,
    records: &[OutRecord],
    base_offset: i64,
    base_timestamp: i64,
) -> std::io::Result<()> {
    struct Kept<'a>(&'a OutRecord, i64);
    impl RecordView for Kept<'_> {
        fn key(&self) -> Option<&[u8]> {
            self.0.key.as_deref()
        }
        fn value(&self) -> &[u8] {
            &self.0.value
        }
        fn timestamp(&self) -> i64 {
            self.1 + self.0.timestamp_delta
        }
    }
    let kept: Vec<Kept<'_>> = records.iter().map(|r| Kept(r, base_timestamp)).collect();
    encode_with(buf, &kept, base_offset, base_timestamp, |i| {
        records[i].offset_delta
    })
}

fn encode_record_body<R: RecordView>(
    out: &mut Vec<u8>,
    r: &R,
    offset_delta: i64,
    timestamp_delta: i64,
) -> std::io::Result<()> {
    out.push(0); // attributes
    timestamp_delta.encode_varint(out)?;
    offset_delta.encode_varint(out)?;
    match r.key() {
        Some(k) => {
            out.push(1);
            (k.len() as i64).encode_varint(out)?;
            out.extend_from_slice(k);
        }
        None => out.push(0),
    }
    let v = r.value();
    (v.len() as i64).encode_varint(out)?;
    out.extend_from_slice(v);
    0i64.encode_varint(out)?; // header count: Fluvio records carry none
    Ok(())
}

/// Appends an aggregate's accumulator: `SmartModuleAggregateInput` is the base input
/// followed by the accumulator bytes.
pub fn append_accumulator(buf: &mut Vec<u8>, accumulator: &[u8]) {
    buf.extend_from_slice(&(accumulator.len() as u32).to_be_bytes());
    buf.extend_from_slice(accumulator);
}

/// Encodes the input of `init`: the `with:` parameters.
pub fn encode_init(
    params: &std::collections::BTreeMap<String, String>,
) -> std::io::Result<Vec<u8>> {
    let input = SmartModuleInitInput {
        params: SmartModuleExtraParams::from(params.clone()),
    };
    let mut buf = Vec::new();
    input.encode(&mut buf, VERSION)?;
    Ok(buf)
}

/// Decodes the hint of an init error (`SmartModuleInitOutput`).
pub fn decode_init_error(bytes: &[u8]) -> std::io::Result<String> {
    let mut out = fluvio_smartmodule::dataplane::smartmodule::SmartModuleInitOutput::default();
    out.decode(&mut std::io::Cursor::new(bytes), VERSION)?;
    Ok(out.error.hint)
}

/// Decodes a `SmartModuleOutput`, or a `SmartModuleAggregateOutput` when `aggregate`.
pub fn decode_output(mut buf: Bytes, aggregate: bool) -> std::io::Result<Output> {
    let count = take_u32(&mut buf)? as usize;
    // Never trust a count from the guest for an allocation size.
    let mut successes = Vec::with_capacity(count.min(buf.remaining() / 6 + 1));
    for _ in 0..count {
        successes.push(decode_record(&mut buf)?);
    }
    let mut error: Option<SmartModuleTransformRuntimeError> = None;
    let mut cursor = std::io::Cursor::new(buf);
    error.decode(&mut cursor, VERSION)?;
    let accumulator = if aggregate {
        let pos = usize::try_from(cursor.position()).unwrap_or(usize::MAX);
        let mut rest = cursor.into_inner();
        if pos > rest.len() {
            return Err(short("the error"));
        }
        let mut rest = rest.split_off(pos);
        let len = take_u32(&mut rest)? as usize;
        if rest.remaining() < len {
            return Err(short("accumulator"));
        }
        Some(rest.copy_to_bytes(len))
    } else {
        None
    };
    Ok(Output {
        successes,
        error: error.map(|e| UserError {
            offset: e.offset,
            hint: e.hint,
            key: e.record_key.map(data_bytes),
            value: data_bytes(e.record_value),
        }),
        accumulator,
    })
}

fn data_bytes(d: RecordData) -> Bytes {
    Bytes::copy_from_slice(d.as_ref())
}

fn short(what: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        format!("output ends inside {what}"),
    )
}

fn take_u32(buf: &mut Bytes) -> std::io::Result<u32> {
    if buf.remaining() < 4 {
        return Err(short("a length"));
    }
    Ok(buf.get_u32())
}

fn take_varint(buf: &mut Bytes) -> std::io::Result<i64> {
    let mut v = 0i64;
    v.decode_varint(buf)?;
    Ok(v)
}

fn take_len(buf: &mut Bytes, what: &str) -> std::io::Result<usize> {
    let len = take_varint(buf)?;
    let len = usize::try_from(len).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("negative {what} length"),
        )
    })?;
    if buf.remaining() < len {
        return Err(short(what));
    }
    Ok(len)
}

fn decode_record(buf: &mut Bytes) -> std::io::Result<OutRecord> {
    let len = take_len(buf, "a record")?;
    let mut rec = buf.split_to(len);
    if rec.remaining() < 1 {
        return Err(short("a record"));
    }
    let _attributes = rec.get_i8();
    let timestamp_delta = take_varint(&mut rec)?;
    let offset_delta = take_varint(&mut rec)?;
    if rec.remaining() < 1 {
        return Err(short("a record key"));
    }
    let key = match rec.get_u8() {
        0 => None,
        1 => {
            let n = take_len(&mut rec, "a record key")?;
            Some(rec.split_to(n))
        }
        other => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("record key marker {other} is neither 0 nor 1"),
            ));
        }
    };
    let n = take_len(&mut rec, "a record value")?;
    let value = rec.split_to(n);
    let _headers = take_varint(&mut rec)?;
    Ok(OutRecord {
        key,
        value,
        offset_delta,
        timestamp_delta,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use fluvio_protocol::record::Record;
    use fluvio_smartmodule::dataplane::smartmodule::SmartModuleOutput;

    struct R(Option<&'static [u8]>, &'static [u8], i64);
    impl RecordView for R {
        fn key(&self) -> Option<&[u8]> {
            self.0
        }
        fn value(&self) -> &[u8] {
            self.1
        }
        fn timestamp(&self) -> i64 {
            self.2
        }
    }

    fn fluvio_record(r: &R, i: i64, base_ts: i64) -> Record {
        let mut rec = match r.0 {
            Some(k) => Record::new_key_value(k, r.1),
            None => Record::new(r.1),
        };
        rec.preamble.set_offset_delta(i);
        rec.preamble.set_timestamp_delta(r.2 - base_ts);
        rec
    }

    #[test]
    fn input_is_byte_for_byte_what_fluvio_encodes() {
        let records = [
            R(None, b"", 1_000),
            R(Some(b"k"), b"hello", 1_003),
            R(Some(b""), &[0xff, 0xfe, 0], 999),
            R(None, &[b'x'; 300], 5_000_000),
        ];
        let mut ours = Vec::new();
        encode_input(&mut ours, &records, 42, 1_000).unwrap();
        let fl: Vec<Record> = records
            .iter()
            .enumerate()
            .map(|(i, r)| fluvio_record(r, i as i64, 1_000))
            .collect();
        let mut input = SmartModuleInput::try_from_records(fl, VERSION).unwrap();
        input.set_base_offset(42);
        input.set_base_timestamp(1_000);
        let mut theirs = Vec::new();
        input.encode(&mut theirs, VERSION).unwrap();
        assert_eq!(ours, theirs);

        let empty: [R; 0] = [];
        encode_input(&mut ours, &empty, 0, 0).unwrap();
        let mut theirs = Vec::new();
        SmartModuleInput::try_from_records(vec![], VERSION)
            .unwrap()
            .encode(&mut theirs, VERSION)
            .unwrap();
        assert_eq!(ours, theirs);
    }

    #[test]
    fn output_decodes_as_fluvio_encodes_it() {
        let mut a = Record::new_key_value("key", "value");
        a.preamble.set_offset_delta(7);
        a.preamble.set_timestamp_delta(-3);
        let b = Record::new(vec![0u8, 1, 2]);
        let err = SmartModuleTransformRuntimeError::new(
            &a,
            100,
            fluvio_smartmodule::dataplane::smartmodule::SmartModuleKind::Filter,
            fluvio_smartmodule::eyre!("boom"),
        );
        let out = SmartModuleOutput::with_error(vec![a, b], Some(err));
        let mut bytes = Vec::new();
        out.encode(&mut bytes, VERSION).unwrap();
        let ours = decode_output(Bytes::from(bytes), false).unwrap();
        assert_eq!(ours.successes.len(), 2);
        assert_eq!(ours.successes[0].key.as_deref(), Some(&b"key"[..]));
        assert_eq!(ours.successes[0].value, Bytes::from_static(b"value"));
        assert_eq!(ours.successes[0].offset_delta, 7);
        assert_eq!(ours.successes[0].timestamp_delta, -3);
        assert_eq!(ours.successes[1].key, None);
        let e = ours.error.unwrap();
        assert_eq!(e.offset, 107);
        assert!(e.hint.contains("boom"));
        assert_eq!(e.value, Bytes::from_static(b"value"));
    }

    #[test]
    fn truncated_or_lying_output_is_an_error_not_a_panic() {
        let out = SmartModuleOutput::new(vec![Record::new("abc"), Record::new("defgh")]);
        let mut bytes = Vec::new();
        out.encode(&mut bytes, VERSION).unwrap();
        for cut in 0..bytes.len() {
            let _ = decode_output(Bytes::copy_from_slice(&bytes[..cut]), false);
        }
        let mut lying = bytes.clone();
        lying[..4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(decode_output(Bytes::from(lying), false).is_err());
    }
}
