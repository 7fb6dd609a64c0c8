//! nop-sink's config: read a topic and discard its records, counting them (eKuiper's nop
//! sink). For measuring what a pipeline costs without an outside system, and for draining a
//! topic. The binary (feature `run`) does it.

use runnel_config::{ConnectorKind, Direction, FieldError, Grade, HumanDuration, Validate};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The nop-sink connector type.
#[derive(Debug)]
pub struct NopSink;

impl ConnectorKind for NopSink {
    const TYPE: &'static str = "nop-sink";
    const ALIASES: &'static [&'static str] = &["nop"];
    const SECTION: &'static str = "nop";
    const SUMMARY: &'static str =
        "Discards every record and counts it: measures a pipeline, drains a topic.";
    const GRADE: Grade = Grade::Alpha;
    const DIRECTION: Direction = Direction::Sink;
    type Config = NopSinkConfig;
}

/// Options of nop-sink (the `nop:` section; it may be left out).
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NopSinkConfig {
    /// Log each record's place (topic, partition, offset, size) at debug level, as
    /// eKuiper's `log: true` does. Default false.
    #[serde(default)]
    pub log: bool,
    /// Log the records and bytes discarded so far, and the rate since the last line, this
    /// often while records flow. Off by default (the counts are in `/metrics` anyway).
    #[serde(alias = "report-every")]
    pub report_every: Option<HumanDuration>,
}

impl Validate for NopSinkConfig {
    fn validate(&self) -> Result<(), FieldError> {
        if self.report_every.is_some_and(|d| d.0.is_zero()) {
            return Err(FieldError::new("report_every", "must be more than 0"));
        }
        Ok(())
    }
}
