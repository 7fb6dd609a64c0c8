//! file-source's config: read files into a topic. The binary (feature `run`) does it.

use runnel_codec::{FormatOptions, Framing, FramingKind, MaxRecordSize, Way};
use runnel_config::{ConnectorKind, Direction, FieldError, Grade, HumanDuration, Validate};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The file-source connector type.
#[derive(Debug)]
pub struct FileSource;

impl ConnectorKind for FileSource {
    const TYPE: &'static str = "file-source";
    const ALIASES: &'static [&'static str] = &[];
    const SECTION: &'static str = "file";
    const SUMMARY: &'static str =
        "Reads files or a glob of them, following appends, rotation and truncation; gzip too.";
    const GRADE: Grade = Grade::Alpha;
    const DIRECTION: Direction = Direction::Source;
    const KEEPS_POSITION: bool = true;
    type Config = FileSourceConfig;
}

/// Options of file-source (the `file:` section).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileSourceConfig {
    /// A file, or a glob of files (`/var/log/app/*.log`). Every match is read; with `follow`
    /// new matches are picked up as they appear. Files ending in `.gz` are decompressed.
    pub path: String,
    /// Where to start in a file that has no saved position: beginning or end. Files that
    /// appear after the connector started are read from the beginning.
    #[serde(default, alias = "read-from")]
    pub read_from: ReadFrom,
    /// Keep reading as files grow, are rotated or appear (tail). With false, what is there
    /// is read and the connector stops.
    #[serde(default = "yes")]
    pub follow: bool,
    /// How often followed files are checked for new data, rotation and new matches.
    #[serde(default = "default_poll", alias = "poll-interval")]
    pub poll_interval: HumanDuration,
    /// How the bytes become records: newline, delimiter, length-prefixed, or bytes (each
    /// file is one record).
    #[serde(default)]
    pub framing: FramingKind,
    /// The delimiter of `framing: delimiter`.
    pub delimiter: Option<String>,
    /// What each piece is: bytes (as they are, the default), text (UTF-8), json, csv (rows
    /// to JSON objects; a header row or `columns`) or cloudevents (structured JSON events,
    /// or `mode: binary` to make events of plain data). A piece that does not decode is
    /// skipped with the reason in a log line and counted in `records_failed`.
    #[serde(default)]
    pub format: FormatOptions,
    /// A longer record is skipped with a log line giving its size, and reading goes on at
    /// the next delimiter. Default 1MiB.
    #[serde(default, alias = "max-record-size")]
    pub max_record_size: MaxRecordSize,
    /// A record header that gets the path of the file it came from. None by default.
    #[serde(alias = "path-header")]
    pub path_header: Option<String>,
}

/// Where reading starts in a file without a saved position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ReadFrom {
    #[default]
    Beginning,
    End,
}

fn yes() -> bool {
    true
}

fn default_poll() -> HumanDuration {
    HumanDuration::from_millis(250)
}

impl FileSourceConfig {
    /// The framing, checked.
    pub fn framing(&self) -> Result<Framing, FieldError> {
        self.framing.with(self.delimiter.as_deref())
    }
}

impl Validate for FileSourceConfig {
    fn validate(&self) -> Result<(), FieldError> {
        if self.path.trim().is_empty() {
            return Err(FieldError::new("path", "must name a file or a glob"));
        }
        glob::Pattern::new(&self.path)
            .map_err(|e| FieldError::new("path", format!("is not a valid glob: {e}")))?;
        if self.poll_interval.0.is_zero() {
            return Err(FieldError::new("poll_interval", "must be more than 0"));
        }
        if self.path_header.as_deref().is_some_and(str::is_empty) {
            return Err(FieldError::new("path_header", "must not be empty"));
        }
        self.framing()?;
        self.format.check("format", Way::Read)?;
        self.max_record_size.check("max_record_size")
    }
}
