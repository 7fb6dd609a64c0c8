//! A running sum: each record's value is an integer in text; each output is the sum so
//! far. The accumulator is the sum as text, empty at the start.

use fluvio_smartmodule::{RecordData, Result, SmartModuleRecord, smartmodule};

#[smartmodule(aggregate)]
pub fn aggregate(accumulator: RecordData, current: &SmartModuleRecord) -> Result<RecordData> {
    let acc = std::str::from_utf8(accumulator.as_ref())?.trim();
    let acc: i64 = if acc.is_empty() { 0 } else { acc.parse()? };
    let value: i64 = std::str::from_utf8(current.value.as_ref())?
        .trim()
        .parse()?;
    Ok(acc.wrapping_add(value).to_string().into())
}
