//! Splits a JSON array into one record per element (each element as compact JSON).
//! The input record's key is kept on every output record. Not an array: an error.

use fluvio_smartmodule::{RecordData, Result, SmartModuleRecord, eyre, smartmodule};
use serde_json::Value;

#[smartmodule(array_map)]
pub fn array_map(record: &SmartModuleRecord) -> Result<Vec<(Option<RecordData>, RecordData)>> {
    let doc: Value = serde_json::from_slice(record.value.as_ref())?;
    let Value::Array(items) = doc else {
        return Err(eyre!("record is not a JSON array"));
    };
    items
        .iter()
        .map(|item| Ok((record.key().cloned(), serde_json::to_vec(item)?.into())))
        .collect()
}
