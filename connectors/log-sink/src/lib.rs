//! log-sink's config: write each record of a topic to the connector's log, its value made
//! by the codec and cut to a length (eKuiper's log sink). For seeing what flows through a
//! pipeline. The binary (feature `run`) does it.

use runnel_codec::{FormatOptions, Way};
use runnel_config::{ByteSize, ConnectorKind, Direction, FieldError, Grade, Validate};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The log-sink connector type.
#[derive(Debug)]
pub struct LogSink;

impl ConnectorKind for LogSink {
    const TYPE: &'static str = "log-sink";
    const ALIASES: &'static [&'static str] = &["log"];
    const SECTION: &'static str = "log";
    const SUMMARY: &'static str =
        "Writes each record to the log, its value through the codec and cut to a length.";
    const GRADE: Grade = Grade::Alpha;
    const DIRECTION: Direction = Direction::Sink;
    type Config = LogSinkConfig;
}

/// The level records are logged at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Debug,
    #[default]
    Info,
    Warn,
    Error,
}

/// Options of log-sink (the `log:` section; it may be left out).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogSinkConfig {
    /// debug, info (the default), warn or error. Lines below the connector's log level
    /// (RUST_LOG) are not written, and the records still count as delivered.
    #[serde(default)]
    pub level: Level,
    /// How each value is shown: bytes (the default: as text when it is UTF-8, escaped
    /// otherwise), text, json (checked), csv or cloudevents. A record that does not fit
    /// follows on_error.
    #[serde(default)]
    pub format: FormatOptions,
    /// The most of a value one line shows; the rest is cut and its full length given.
    /// Default 1KiB.
    #[serde(default = "default_max_bytes", alias = "max-bytes")]
    pub max_bytes: ByteSize,
    /// Show the record's headers too. Default true.
    #[serde(default = "yes")]
    pub headers: bool,
}

impl Default for LogSinkConfig {
    fn default() -> Self {
        LogSinkConfig {
            level: Level::default(),
            format: FormatOptions::default(),
            max_bytes: default_max_bytes(),
            headers: true,
        }
    }
}

fn default_max_bytes() -> ByteSize {
    ByteSize(1024)
}
fn yes() -> bool {
    true
}

impl Validate for LogSinkConfig {
    fn validate(&self) -> Result<(), FieldError> {
        if self.max_bytes.0 == 0 {
            return Err(FieldError::new("max_bytes", "must be more than 0"));
        }
        self.format.check("format", Way::Write)
    }
}
