//! sql-sink's config: write records into PostgreSQL or SQLite tables. Each record is an
//! operation of Fluvio's SQL model (what Fluvio's json-sql SmartModule makes of a JSON
//! record): `{"Insert":{"table":..,"values":[{"column":..,"raw_value":..,"type":..}]}}` or
//! `{"Upsert":{..,"uniq_idx":..}}`. Fluvio's sql-sink connect.yml files run as they are.
//! The binary (feature `run`) does it.

use runnel_config::{
    ConnectorKind, DeliveryOptions, Direction, FieldError, Grade, HumanDuration, Validate,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The sql-sink connector type.
#[derive(Debug)]
pub struct SqlSink;

impl ConnectorKind for SqlSink {
    const TYPE: &'static str = "sql-sink";
    const ALIASES: &'static [&'static str] = &["sql"];
    const SECTION: &'static str = "sql";
    const SUMMARY: &'static str = "Writes Fluvio's SQL model (json-sql's output) into PostgreSQL or SQLite, a batch per transaction.";
    const GRADE: Grade = Grade::Alpha;
    const DIRECTION: Direction = Direction::Sink;
    type Config = SqlSinkConfig;
}

/// Options of sql-sink (the `sql:` section). Fluvio's keys are kebab-case
/// (`backoff-min`); both spellings are taken.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SqlSinkConfig {
    /// The database: `postgres://USER[:PASSWORD]@HOST[:PORT]/DB` (or `postgresql://`), or
    /// `sqlite:PATH` (`sqlite://PATH`, `sqlite::memory:`). Put a password in a secret.
    #[serde(serialize_with = "runnel_config::secrets::masked_url")]
    pub url: String,
    /// Fluvio's first wait before writing a failed batch again; sets `retry.initial_backoff`
    /// when `retry` does not.
    #[serde(alias = "backoff-min")]
    pub backoff_min: Option<HumanDuration>,
    /// Fluvio's longest wait between attempts; sets `retry.max_backoff` when `retry` does not.
    #[serde(alias = "backoff-max")]
    pub backoff_max: Option<HumanDuration>,
    /// Fluvio's batching options. Runnel writes every batch the hub gives (up to 1,000
    /// records) in one transaction, so they are taken and change nothing.
    #[serde(alias = "batch-size")]
    pub batch_size: Option<u64>,
    #[serde(alias = "batch-interval")]
    pub batch_interval: Option<HumanDuration>,
    /// at-least-once (the default: the hub offset is committed after the transaction, so a
    /// crash between the two writes the batch again) or exactly-once (the next offset is
    /// kept in the table `runnel_offsets` of the target database, written in the same
    /// transaction as the rows, and records before it are passed over after a restart).
    #[serde(default)]
    pub delivery: Guarantee,
    /// How long connecting may take. Default 10s.
    #[serde(default = "default_connect_timeout", alias = "connect-timeout")]
    pub connect_timeout: HumanDuration,
}

/// What a crash may do to the rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Guarantee {
    #[default]
    AtLeastOnce,
    ExactlyOnce,
}

fn default_connect_timeout() -> HumanDuration {
    HumanDuration::from_millis(10_000)
}

/// Which database a URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    Postgres(String),
    /// The file (or `:memory:`).
    Sqlite(String),
}

impl SqlSinkConfig {
    /// The database `url` names, checked.
    pub fn database(&self) -> Result<Database, FieldError> {
        let url = self.url.trim();
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Database::Postgres(url.to_string()));
        }
        if let Some(rest) = url.strip_prefix("sqlite:") {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            let path = path.split('?').next().unwrap_or_default();
            if path.is_empty() {
                return Err(FieldError::new(
                    "url",
                    "sqlite: needs a file (sqlite:/var/lib/app.db) or :memory:",
                ));
            }
            return Ok(Database::Sqlite(path.to_string()));
        }
        let scheme = url.split(':').next().unwrap_or_default();
        Err(FieldError::new(
            "url",
            format!(
                "{scheme:?} is not a database this sink writes to: give postgres://, postgresql:// or sqlite:"
            ),
        ))
    }
}

impl Validate for SqlSinkConfig {
    fn validate(&self) -> Result<(), FieldError> {
        self.database()?;
        for (field, d) in [
            ("backoff_min", self.backoff_min),
            ("backoff_max", self.backoff_max),
            ("connect_timeout", Some(self.connect_timeout)),
        ] {
            if d.is_some_and(|d| d.0.is_zero()) {
                return Err(FieldError::new(field, "must be more than 0"));
            }
        }
        if let (Some(min), Some(max)) = (self.backoff_min, self.backoff_max)
            && min.0 > max.0
        {
            return Err(FieldError::new(
                "backoff_min",
                "must not be more than backoff_max",
            ));
        }
        if self.batch_size == Some(0) {
            return Err(FieldError::new("batch_size", "must be more than 0"));
        }
        Ok(())
    }

    fn adjust_delivery(&self, d: &mut DeliveryOptions, retry_given: bool) {
        if retry_given {
            return;
        }
        if let Some(min) = self.backoff_min {
            d.retry.initial_backoff = min;
        }
        if let Some(max) = self.backoff_max {
            d.retry.max_backoff = max;
        }
    }
}
