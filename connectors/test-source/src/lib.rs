//! test-source's config: Fluvio's test connector, which produces a record every `interval`
//! from a template, `count` times or until stopped. The binary (feature `run`) produces them.

use runnel_config::{ConnectorKind, Direction, FieldError, Grade, HumanDuration, Validate};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The test-source connector type.
#[derive(Debug)]
pub struct TestSource;

impl ConnectorKind for TestSource {
    const TYPE: &'static str = "test-source";
    const ALIASES: &'static [&'static str] = &["test-connector"];
    const SECTION: &'static str = "test";
    const SUMMARY: &'static str =
        "Produces records from a template, for trying a hub, a sink or a SmartModule.";
    const GRADE: Grade = Grade::Beta;
    const DIRECTION: Direction = Direction::Source;
    const FLAG_ALIASES: &'static [(&'static str, &'static str)] = &[("timeout", "interval")];
    const FLUVIO_TOPIC_PARAMETERS: &'static [&'static str] = &["topic"];
    type Config = TestConfig;
}

/// Options of test-source (the `test:` section).
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TestConfig {
    /// Time between records (Fluvio's name: timeout); 0 produces as fast as the hub takes
    /// them. Default 1000 ms.
    #[serde(alias = "timeout", default = "default_interval")]
    pub interval: HumanDuration,
    /// How many records to produce before exiting; unbounded when absent.
    pub count: Option<u64>,
    /// The value of each record. {{count}} becomes the record's number (from 0), {{timestamp}}
    /// the time in milliseconds; {} is the counter too, as in Fluvio's test connector.
    /// Default: {"count":{{count}},"timestamp":{{timestamp}}}
    pub template: Option<String>,
    /// A key template with the same placeholders; records have no key when absent.
    pub key: Option<String>,
}

fn default_interval() -> HumanDuration {
    HumanDuration::from_millis(1000)
}

impl Validate for TestConfig {
    fn validate(&self) -> Result<(), FieldError> {
        if self.template.as_deref() == Some("") {
            return Err(FieldError::new(
                "template",
                "empty: give the value to produce",
            ));
        }
        Ok(())
    }
}
