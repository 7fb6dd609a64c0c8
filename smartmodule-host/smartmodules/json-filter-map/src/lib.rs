//! Keeps JSON objects that have a numeric `amount` and outputs that amount in cents as
//! text (`{"amount": 1.25}` becomes `125`); objects without one are dropped. Not an
//! object: an error.

use fluvio_smartmodule::{RecordData, Result, SmartModuleRecord, eyre, smartmodule};
use serde_json::Value;

#[smartmodule(filter_map)]
pub fn filter_map(record: &SmartModuleRecord) -> Result<Option<(Option<RecordData>, RecordData)>> {
    let doc: Value = serde_json::from_slice(record.value.as_ref())?;
    let Value::Object(map) = doc else {
        return Err(eyre!("record is not a JSON object"));
    };
    Ok(match map.get("amount").and_then(Value::as_f64) {
        Some(amount) => {
            let cents = (amount * 100.0).round() as i64;
            Some((record.key().cloned(), cents.to_string().into()))
        }
        None => None,
    })
}
