//! Keeps records whose top-level JSON field `field` equals `value` (both parameters).
//! A string field matches its text; any other field matches its JSON text (`42`, `true`).
//! A record that is not a JSON object is an error, so the connector's policy decides.

use std::sync::OnceLock;

use fluvio_smartmodule::dataplane::smartmodule::SmartModuleExtraParams;
use fluvio_smartmodule::{Result, SmartModuleRecord, eyre, smartmodule};
use serde_json::Value;

static PARAMS: OnceLock<(String, String)> = OnceLock::new();

#[smartmodule(init)]
fn init(params: SmartModuleExtraParams) -> Result<()> {
    let field = params
        .get("field")
        .ok_or_else(|| eyre!("missing parameter `field`"))?
        .clone();
    let value = params
        .get("value")
        .ok_or_else(|| eyre!("missing parameter `value`"))?
        .clone();
    PARAMS
        .set((field, value))
        .map_err(|_| eyre!("init called twice"))
}

#[smartmodule(filter)]
pub fn filter(record: &SmartModuleRecord) -> Result<bool> {
    let (field, wanted) = PARAMS.get().ok_or_else(|| eyre!("init was not called"))?;
    let doc: Value = serde_json::from_slice(record.value.as_ref())?;
    let Value::Object(map) = doc else {
        return Err(eyre!("record is not a JSON object"));
    };
    Ok(match map.get(field.as_str()) {
        Some(Value::String(s)) => s == wanted,
        Some(other) => other.to_string() == *wanted,
        None => false,
    })
}
