//! For the limit tests: a filter that never returns on a record containing `spin`.

use fluvio_smartmodule::{Result, SmartModuleRecord, smartmodule};

#[smartmodule(filter)]
pub fn filter(record: &SmartModuleRecord) -> Result<bool> {
    let value = record.value.as_ref();
    if value.windows(4).any(|w| w == b"spin") {
        let mut n: u64 = 0;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }
    Ok(true)
}
