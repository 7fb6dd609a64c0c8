//! file-sink's config: write a topic into files. The binary (feature `run`) does it.

use runnel_codec::{FormatKind, FormatOptions, Framing, FramingKind, Way, format::CloudEventsMode};
use runnel_config::{
    ByteSize, ConnectorKind, Direction, FieldError, Grade, HumanDuration, Validate,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The file-sink connector type.
#[derive(Debug)]
pub struct FileSink;

impl ConnectorKind for FileSink {
    const TYPE: &'static str = "file-sink";
    const ALIASES: &'static [&'static str] = &[];
    const SECTION: &'static str = "file";
    const SUMMARY: &'static str =
        "Appends records to files, rolled by size and time, committed once on disk.";
    const GRADE: Grade = Grade::Alpha;
    const DIRECTION: Direction = Direction::Sink;
    type Config = FileSinkConfig;
}

/// Options of file-sink (the `file:` section).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// The folder files are written in (created when missing). The file being written ends
    /// in `.part`; finished files are renamed to `PREFIX-FIRSTOFFSET.SUFFIX` at once.
    pub path: String,
    /// The start of every file name. Default `records`.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// The end of every finished file's name. Default `.log`.
    #[serde(default = "default_suffix")]
    pub suffix: String,
    /// How records are laid out in a file: newline (each value, then a newline),
    /// delimiter, length-prefixed, or bytes (values back to back).
    #[serde(default)]
    pub framing: FramingKind,
    /// The delimiter of `framing: delimiter`.
    pub delimiter: Option<String>,
    /// How each record is written: bytes (its value, the default), text, json (the value,
    /// checked), csv (a JSON object value as a row of `columns`, with a header row first in
    /// each file) or cloudevents (a structured JSON event from the record's `ce-` headers
    /// and value). A record that does not encode follows `on_error`.
    #[serde(default)]
    pub format: FormatOptions,
    /// Start a new file once the current one holds this much (a batch is never split).
    /// Default 128MiB.
    #[serde(default = "default_roll_size", alias = "roll-size")]
    pub roll_size: ByteSize,
    /// Also start a new file once the current one is this old. Off by default.
    #[serde(alias = "roll-interval")]
    pub roll_interval: Option<HumanDuration>,
    /// batch: each batch is synced to disk before its offsets are committed (a power cut
    /// loses nothing committed). never: the OS writes it when it likes (a crash of the
    /// connector still loses nothing; a power cut may).
    #[serde(default)]
    pub fsync: Fsync,
}

/// When written data is forced to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Fsync {
    #[default]
    Batch,
    Never,
}

fn default_prefix() -> String {
    "records".into()
}
fn default_suffix() -> String {
    ".log".into()
}
fn default_roll_size() -> ByteSize {
    ByteSize(128 << 20)
}

impl FileSinkConfig {
    /// The framing, checked.
    pub fn framing(&self) -> Result<Framing, FieldError> {
        self.framing.with(self.delimiter.as_deref())
    }
}

impl Validate for FileSinkConfig {
    fn validate(&self) -> Result<(), FieldError> {
        if self.path.trim().is_empty() {
            return Err(FieldError::new("path", "must name a folder"));
        }
        for (field, v) in [("prefix", &self.prefix), ("suffix", &self.suffix)] {
            if v.contains('/') || v.contains('\0') {
                return Err(FieldError::new(field, "must not contain / or NUL"));
            }
        }
        if self.prefix.is_empty() {
            return Err(FieldError::new("prefix", "must not be empty"));
        }
        if self.suffix.ends_with(".part") {
            return Err(FieldError::new(
                "suffix",
                "must not end in .part (the file being written does)",
            ));
        }
        if self.roll_size.0 == 0 {
            return Err(FieldError::new("roll_size", "must be more than 0"));
        }
        if self.roll_interval.is_some_and(|d| d.0.is_zero()) {
            return Err(FieldError::new("roll_interval", "must be more than 0"));
        }
        self.format.check("format", Way::Write)?;
        if self.format.kind == FormatKind::Cloudevents
            && self.format.cloudevents.mode == CloudEventsMode::Binary
        {
            return Err(FieldError::new(
                "format.cloudevents.mode",
                "a file has no headers for binary mode; write events structured",
            ));
        }
        self.framing().map(|_| ())
    }
}
