//! The bottom layer of Runnel's connector framework: the types every other layer (config,
//! codecs, hubs, the pipeline, the SDK) and every connector speak, with no I/O and no heavy
//! dependency, so the operator and the CLI can link them too.
//!
//! - [`Record`] and [`ConsumedRecord`]: the unit that flows through every stage.
//! - [`topic`]: what a topic name may be.
//! - [`policy`]: what happens to a record that cannot be delivered, and delivery errors.
//! - [`FieldError`]: a config error at one field path.
//! - [`values`]: durations and sizes written the way Fluvio's files write them.
//! - [`retry`]: retry settings and backoff with jitter.
//! - [`mask`]: secret values replaced by `******` in any text.
//! - [`report`]: an error and its causes on one line.

mod field;
pub mod mask;
pub mod policy;
pub mod record;
pub mod report;
pub mod retry;
pub mod topic;
pub mod values;

pub use field::{FieldError, join_path};
pub use policy::{DeliveryError, ErrorPolicy};
pub use record::{ConsumedRecord, Record, now_millis};
pub use report::{Chain, chain};
pub use values::{ByteSize, HumanDuration, Seconds};

/// Errors from a protocol or an outside system, as a connector reports them.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;
