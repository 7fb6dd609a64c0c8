//! For the limit tests: a map that, on a record containing `hog`, allocates 1 MiB blocks
//! without bound and never frees them.

use fluvio_smartmodule::{RecordData, Result, SmartModuleRecord, smartmodule};

#[smartmodule(map)]
pub fn map(record: &SmartModuleRecord) -> Result<(Option<RecordData>, RecordData)> {
    let value = record.value.as_ref();
    if value.windows(3).any(|w| w == b"hog") {
        let mut blocks: Vec<Vec<u8>> = Vec::new();
        loop {
            blocks.push(std::hint::black_box(vec![1u8; 1 << 20]));
            if blocks.len() == usize::MAX {
                break;
            }
        }
        std::mem::forget(blocks);
    }
    Ok((record.key().cloned(), record.value.clone()))
}
