//! Fluvio's own engine (fluvio-smartengine 0.50), driven the way Fluvio drives it: the
//! oracle for the differential tests and the peer in the benchmark.

use std::path::Path;

use bytes::Bytes;
use fluvio_protocol::record::{Record, RecordKey};
use fluvio_smartengine::{
    SmartEngine, SmartModuleChainBuilder, SmartModuleChainInstance, SmartModuleConfig,
};
use fluvio_smartmodule::dataplane::smartmodule::SmartModuleInput;
use smartmodule_host::{OutRecord, Output, UserError};

/// A test record: key, value, timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rec {
    pub key: Option<Bytes>,
    pub value: Bytes,
    pub timestamp: i64,
}

impl Rec {
    pub fn new(key: Option<&[u8]>, value: &[u8], timestamp: i64) -> Self {
        Rec {
            key: key.map(Bytes::copy_from_slice),
            value: Bytes::copy_from_slice(value),
            timestamp,
        }
    }
}

impl smartmodule_host::RecordView for Rec {
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

/// A chain in Fluvio's engine: `(module path, params)` in order.
pub fn fluvio_chain(
    modules: &[(&Path, &[(&str, &str)])],
) -> anyhow::Result<SmartModuleChainInstance> {
    let engine = SmartEngine::new();
    let mut builder = SmartModuleChainBuilder::default();
    for (path, params) in modules {
        let mut config = SmartModuleConfig::builder();
        config.smartmodule_names(vec![path.display().to_string()]);
        for (k, v) in *params {
            config.param(*k, *v);
        }
        builder.add_smart_module(config.build()?, std::fs::read(path)?);
    }
    builder.initialize(&engine)
}

/// The input Fluvio's engine gets for `records`: offset deltas 0.., timestamp deltas from
/// `base_timestamp`.
pub fn fluvio_input(records: &[Rec], base_offset: i64, base_timestamp: i64) -> SmartModuleInput {
    let recs: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut rec = match &r.key {
                Some(k) => Record::new_key_value(RecordKey::from(k.to_vec()), r.value.to_vec()),
                None => Record::new(r.value.to_vec()),
            };
            rec.preamble.set_offset_delta(i as i64);
            rec.preamble
                .set_timestamp_delta(r.timestamp - base_timestamp);
            rec
        })
        .collect();
    let mut input = SmartModuleInput::try_from_records(recs, smartmodule_host::abi::VERSION)
        .expect("encode fluvio input");
    input.set_base_offset(base_offset);
    input.set_base_timestamp(base_timestamp);
    input
}

/// Runs Fluvio's chain once and puts its answer in the host's terms. `Err` is an engine
/// error (a trap, a negative return code), with Fluvio's message.
pub fn fluvio_call(
    chain: &mut SmartModuleChainInstance,
    records: &[Rec],
    base_offset: i64,
    base_timestamp: i64,
) -> Result<Output, String> {
    let out = chain
        .process(fluvio_input(records, base_offset, base_timestamp))
        .map_err(|e| format!("{e:#}"))?;
    Ok(Output {
        successes: out
            .successes
            .iter()
            .map(|r| OutRecord {
                key: r.key.as_ref().map(|k| Bytes::copy_from_slice(k.as_ref())),
                value: Bytes::copy_from_slice(r.value.as_ref()),
                offset_delta: r.preamble.offset_delta(),
                timestamp_delta: r.preamble.get_timestamp_delta(),
            })
            .collect(),
        error: out.error.map(|e| UserError {
            offset: e.offset,
            hint: e.hint,
            key: e.record_key.map(|k| Bytes::copy_from_slice(k.as_ref())),
            value: Bytes::copy_from_slice(e.record_value.as_ref()),
        }),
        accumulator: None,
    })
}
