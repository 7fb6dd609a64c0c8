//! sql-source's config: poll a PostgreSQL or SQLite table (or a query) and hand each new row
//! on as a JSON object, in the modes Kafka Connect's JDBC source made standard: by an
//! incrementing column, by a timestamp column, by both, or the whole result each poll
//! (bulk). The position (the last row's column values) is checkpointed once the hub has
//! the row, so a restart neither skips nor repeats rows. The binary (feature `run`) does it.

use runnel_config::{ConnectorKind, Direction, FieldError, Grade, HumanDuration, Validate};
use runnel_core::retry::check_backoff;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sql_common::plain_name;

pub use sql_common::Database;

/// The sql-source connector type.
#[derive(Debug)]
pub struct SqlSource;

impl ConnectorKind for SqlSource {
    const TYPE: &'static str = "sql-source";
    const ALIASES: &'static [&'static str] = &[];
    const SECTION: &'static str = "sql";
    const SUMMARY: &'static str = "Polls a PostgreSQL or SQLite table or query for new rows (by an incrementing column, a timestamp column, both, or all each poll) and hands each on as a JSON object.";
    const GRADE: Grade = Grade::Alpha;
    const DIRECTION: Direction = Direction::Source;
    const KEEPS_POSITION: bool = true;
    type Config = SqlSourceConfig;
}

/// How new rows are told from rows already read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum Mode {
    /// The whole result on every poll; nothing is kept.
    #[serde(rename = "bulk")]
    Bulk,
    /// Rows whose incrementing column (an integer that only grows, such as a serial id) is
    /// past the last one read. Updated rows are not read again.
    #[serde(rename = "incrementing")]
    Incrementing,
    /// Rows whose timestamp column is past the last one read: new and updated rows. Rows
    /// sharing a timestamp are read together, never cut between two polls.
    #[serde(rename = "timestamp")]
    Timestamp,
    /// Rows past the last (timestamp, incrementing) pair read: new and updated rows, and
    /// a row that comes later with the last timestamp read and a greater id.
    #[serde(rename = "timestamp+incrementing")]
    TimestampIncrementing,
}

/// Where a source with no saved position starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Start {
    /// Every row there is (the default).
    #[default]
    Beginning,
    /// Only rows that come after the last one there is when the connector first starts.
    End,
}

/// Options of sql-source (the `sql:` section). Kafka Connect's JDBC source names are taken
/// where they mean the same (`incrementing.column.name`, `timestamp.column.name`,
/// `batch.max.rows`).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SqlSourceConfig {
    /// The database: `postgres://USER[:PASSWORD]@HOST[:PORT]/DB` (or `postgresql://`), or
    /// `sqlite:PATH` (opened read-only). Put a password in a secret.
    #[serde(serialize_with = "runnel_config::secrets::masked_url")]
    pub url: String,
    /// The table to read (`name` or `schema.name`). Give this or `query`.
    pub table: Option<String>,
    /// A SELECT to read instead of a table; the source wraps it
    /// (`SELECT .. FROM (query) AS q WHERE .. ORDER BY .. LIMIT ..`), so it must not order
    /// or limit its rows itself.
    pub query: Option<String>,
    /// bulk, incrementing, timestamp or timestamp+incrementing. Without it: the mode the
    /// columns given name (both: timestamp+incrementing; none: bulk).
    pub mode: Option<Mode>,
    /// The incrementing column: an integer that grows with each new row.
    #[serde(alias = "incrementing-column", alias = "incrementing.column.name")]
    pub incrementing_column: Option<String>,
    /// The timestamp column: when the row was last changed (timestamp, timestamptz or
    /// date in PostgreSQL; text in SQLite's `YYYY-MM-DD HH:MM:SS` form, or a number).
    #[serde(alias = "timestamp-column", alias = "timestamp.column.name")]
    pub timestamp_column: Option<String>,
    /// The column whose value (as text) becomes each record's key. Default: no key.
    #[serde(alias = "key-column")]
    pub key_column: Option<String>,
    /// How long to wait after a poll that found every new row. Default 1s.
    #[serde(default = "default_poll_interval", alias = "poll-interval")]
    pub poll_interval: HumanDuration,
    /// The most rows one query returns (1 to 100,000). Default 1000.
    #[serde(
        default = "default_batch_rows",
        alias = "batch-rows",
        alias = "batch.max.rows"
    )]
    pub batch_rows: u32,
    /// Rows are read only once their timestamp is this much older than the database's
    /// clock, so that writers committing late with an earlier timestamp are not passed
    /// by. Default 0s: no such wait. In SQLite it needs text timestamps.
    #[serde(default, alias = "timestamp-delay")]
    pub timestamp_delay: HumanDuration,
    /// beginning (the default) or end: where a first start (no saved position) begins.
    #[serde(default)]
    pub start: Start,
    /// How long connecting may take. Default 10s.
    #[serde(default = "default_connect_timeout", alias = "connect-timeout")]
    pub connect_timeout: HumanDuration,
    /// The first wait before connecting again after the database went away; doubles up to
    /// max_backoff. Default 500ms.
    #[serde(default = "default_initial_backoff", alias = "initial-backoff")]
    pub initial_backoff: HumanDuration,
    /// Default 30s.
    #[serde(default = "default_max_backoff", alias = "max-backoff")]
    pub max_backoff: HumanDuration,
}

fn default_poll_interval() -> HumanDuration {
    HumanDuration::from_millis(1000)
}
fn default_batch_rows() -> u32 {
    1000
}
fn default_connect_timeout() -> HumanDuration {
    HumanDuration::from_millis(10_000)
}
fn default_initial_backoff() -> HumanDuration {
    HumanDuration::from_millis(500)
}
fn default_max_backoff() -> HumanDuration {
    HumanDuration::from_millis(30_000)
}

impl SqlSourceConfig {
    /// The database `url` names, checked.
    pub fn database(&self) -> Result<Database, FieldError> {
        Database::from_url(&self.url, "reads from")
    }

    /// The mode given, or the one the columns name.
    pub fn mode(&self) -> Mode {
        self.mode
            .unwrap_or(match (&self.incrementing_column, &self.timestamp_column) {
                (Some(_), Some(_)) => Mode::TimestampIncrementing,
                (Some(_), None) => Mode::Incrementing,
                (None, Some(_)) => Mode::Timestamp,
                (None, None) => Mode::Bulk,
            })
    }

    /// What is read, as the FROM clause's subquery: the table's rows or the query (its
    /// trailing semicolons dropped).
    pub fn source(&self) -> String {
        match (&self.table, &self.query) {
            (Some(t), _) => format!("SELECT * FROM {t}"),
            (None, Some(q)) => q.trim().trim_end_matches(';').trim_end().to_string(),
            (None, None) => String::new(),
        }
    }
}

impl Validate for SqlSourceConfig {
    fn validate(&self) -> Result<(), FieldError> {
        self.database()?;
        match (&self.table, &self.query) {
            (None, None) => {
                return Err(FieldError::new(
                    "table",
                    "give the table to read, or a query",
                ));
            }
            (Some(_), Some(_)) => {
                return Err(FieldError::new(
                    "query",
                    "give a table or a query, not both",
                ));
            }
            (Some(t), None) => plain_name("table", t).map_err(|e| FieldError::new("table", e))?,
            (None, Some(q)) => {
                let q = q.trim().trim_end_matches(';').trim_end();
                let select = q.get(..6).is_some_and(|w| w.eq_ignore_ascii_case("select"))
                    || q.get(..4).is_some_and(|w| w.eq_ignore_ascii_case("with"));
                if !select {
                    return Err(FieldError::new(
                        "query",
                        "must be a SELECT (or WITH .. SELECT): the source reads its rows",
                    ));
                }
                if q.contains(';') {
                    return Err(FieldError::new("query", "must be one statement"));
                }
            }
        }
        for (field, column) in [
            ("incrementing_column", &self.incrementing_column),
            ("timestamp_column", &self.timestamp_column),
            ("key_column", &self.key_column),
        ] {
            if let Some(c) = column {
                plain_name("column", c).map_err(|e| FieldError::new(field, e))?;
                if c.contains('.') {
                    return Err(FieldError::new(
                        field,
                        "a column of the rows read, without a table name",
                    ));
                }
            }
        }
        let mode = self.mode();
        let needs = |field: &str, given: bool, why: &str| {
            if given {
                Ok(())
            } else {
                Err(FieldError::new(field, why))
            }
        };
        match mode {
            Mode::Bulk => {
                for (field, given) in [
                    ("incrementing_column", self.incrementing_column.is_some()),
                    ("timestamp_column", self.timestamp_column.is_some()),
                ] {
                    if given {
                        return Err(FieldError::new(
                            field,
                            "mode bulk reads every row on each poll and uses no column",
                        ));
                    }
                }
                if self.start == Start::End {
                    return Err(FieldError::new(
                        "start",
                        "mode bulk keeps no position: end would read nothing",
                    ));
                }
            }
            Mode::Incrementing => {
                needs(
                    "incrementing_column",
                    self.incrementing_column.is_some(),
                    "mode incrementing needs the column that grows with each row",
                )?;
                if self.timestamp_column.is_some() {
                    return Err(FieldError::new(
                        "timestamp_column",
                        "mode incrementing uses no timestamp: give mode timestamp+incrementing",
                    ));
                }
            }
            Mode::Timestamp => {
                needs(
                    "timestamp_column",
                    self.timestamp_column.is_some(),
                    "mode timestamp needs the column that says when a row changed",
                )?;
                if self.incrementing_column.is_some() {
                    return Err(FieldError::new(
                        "incrementing_column",
                        "mode timestamp uses no incrementing column: give mode timestamp+incrementing",
                    ));
                }
            }
            Mode::TimestampIncrementing => {
                needs(
                    "timestamp_column",
                    self.timestamp_column.is_some(),
                    "mode timestamp+incrementing needs a timestamp column",
                )?;
                needs(
                    "incrementing_column",
                    self.incrementing_column.is_some(),
                    "mode timestamp+incrementing needs an incrementing column",
                )?;
            }
        }
        if !self.timestamp_delay.0.is_zero() && self.timestamp_column.is_none() {
            return Err(FieldError::new(
                "timestamp_delay",
                "waits on the timestamp column, and none is given",
            ));
        }
        if !(1..=100_000).contains(&self.batch_rows) {
            return Err(FieldError::new(
                "batch_rows",
                "must be between 1 and 100000",
            ));
        }
        for (field, d) in [
            ("poll_interval", self.poll_interval),
            ("connect_timeout", self.connect_timeout),
            ("initial_backoff", self.initial_backoff),
        ] {
            if d.0.is_zero() {
                return Err(FieldError::new(field, "must be more than 0"));
            }
        }
        check_backoff(self.initial_backoff, self.max_backoff)
    }
}
