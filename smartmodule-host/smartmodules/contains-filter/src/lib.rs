//! Keeps records whose value contains the bytes of the `contains` parameter: a filter whose
//! own work is small, so a benchmark with it shows what the SDK and the engine cost.

use std::sync::OnceLock;

use fluvio_smartmodule::dataplane::smartmodule::SmartModuleExtraParams;
use fluvio_smartmodule::{Result, SmartModuleRecord, eyre, smartmodule};

static NEEDLE: OnceLock<Vec<u8>> = OnceLock::new();

#[smartmodule(init)]
fn init(params: SmartModuleExtraParams) -> Result<()> {
    let needle = params
        .get("contains")
        .ok_or_else(|| eyre!("missing parameter `contains`"))?;
    if needle.is_empty() {
        return Err(eyre!("parameter `contains` is empty"));
    }
    NEEDLE
        .set(needle.as_bytes().to_vec())
        .map_err(|_| eyre!("init called twice"))
}

#[smartmodule(filter)]
pub fn filter(record: &SmartModuleRecord) -> Result<bool> {
    let needle = NEEDLE.get().ok_or_else(|| eyre!("init was not called"))?;
    Ok(record
        .value
        .as_ref()
        .windows(needle.len())
        .any(|w| w == needle.as_slice()))
}
