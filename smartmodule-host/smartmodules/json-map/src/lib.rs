//! Reshapes a JSON object `{"type": T, ...rest}` into `{"kind": T, "data": {...rest}}`,
//! and uses the record key as `"id"` when there is one. Not an object: an error.

use fluvio_smartmodule::{RecordData, Result, SmartModuleRecord, eyre, smartmodule};
use serde_json::{Map, Value};

#[smartmodule(map)]
pub fn map(record: &SmartModuleRecord) -> Result<(Option<RecordData>, RecordData)> {
    let doc: Value = serde_json::from_slice(record.value.as_ref())?;
    let Value::Object(mut rest) = doc else {
        return Err(eyre!("record is not a JSON object"));
    };
    let kind = rest.remove("type").unwrap_or(Value::Null);
    let mut out = Map::new();
    if let Some(key) = record.key() {
        out.insert(
            "id".into(),
            Value::String(String::from_utf8_lossy(key.as_ref()).into_owned()),
        );
    }
    out.insert("kind".into(), kind);
    out.insert("data".into(), Value::Object(rest));
    let bytes = serde_json::to_vec(&Value::Object(out))?;
    Ok((record.key().cloned(), bytes.into()))
}
