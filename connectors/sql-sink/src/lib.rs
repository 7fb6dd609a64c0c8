//! sql-sink's config: write records into PostgreSQL or SQLite tables. Each record is an
//! operation of Fluvio's SQL model (what Fluvio's json-sql SmartModule makes of a JSON
//! record): `{"Insert":{"table":..,"values":[{"column":..,"raw_value":..,"type":..}]}}` or
//! `{"Upsert":{..,"uniq_idx":..}}`. Fluvio's sql-sink connect.yml files run as they are.
//! The binary (feature `run`) does it.

use runnel_config::{
    ConnectorKind, DeliveryOptions, Direction, FieldError, Grade, HumanDuration, Transform,
    Validate,
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
    /// For records that are plain JSON rather than operations of Fluvio's model: the
    /// mapping Fluvio's json-sql SmartModule takes under `with: mapping:` (`table`,
    /// `operation`, `unique-columns`, `map-columns`), applied by the sink itself.
    pub mapping: Option<Mapping>,
    /// How long connecting may take. Default 10s.
    #[serde(default = "default_connect_timeout", alias = "connect-timeout")]
    pub connect_timeout: HumanDuration,
}

/// json-sql's mapping: which table, and each column from where in the JSON record.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    pub table: String,
    /// insert (the default) or upsert.
    #[serde(default)]
    pub operation: MappingOperation,
    /// The conflict target of an upsert.
    #[serde(default, alias = "unique-columns")]
    pub unique_columns: Vec<String>,
    /// Column name → where its value comes from.
    #[serde(alias = "map-columns")]
    pub columns: std::collections::BTreeMap<String, MappedColumn>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MappingOperation {
    #[default]
    Insert,
    Upsert,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MappedColumn {
    /// A dotted path into the record (`device.id`, `$.device.id`, `metrics.0`); `$` is the
    /// whole record.
    #[serde(alias = "json-key")]
    pub json_key: String,
    pub value: MappedValue,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MappedValue {
    /// json-sql's type names: int, bigint, smallint, bool, bytea, text, float,
    /// doubleprecision, numeric, date, time, timestamp, json, jsonb, uuid (and aliases).
    #[serde(rename = "type")]
    pub kind: ValueType,
    /// The value when the key is missing (a string or a number).
    pub default: Option<DefaultValue>,
    /// A missing key without a default refuses the record. Default false (the value is
    /// then empty).
    #[serde(default)]
    pub required: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum DefaultValue {
    Text(String),
    Int(i64),
    Float(f64),
}

impl DefaultValue {
    pub fn text(&self) -> String {
        match self {
            DefaultValue::Text(s) => s.clone(),
            DefaultValue::Int(n) => n.to_string(),
            DefaultValue::Float(f) => f.to_string(),
        }
    }
}

/// json-sql's column types, as its mappings spell them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ValueType {
    #[serde(alias = "int8")]
    Bigint,
    #[serde(alias = "int4", alias = "integer")]
    Int,
    #[serde(alias = "int2")]
    Smallint,
    #[serde(alias = "boolean")]
    Bool,
    #[serde(alias = "bytes")]
    Bytea,
    Text,
    #[serde(alias = "float4", alias = "real")]
    Float,
    #[serde(alias = "double precision", alias = "float8")]
    Doubleprecision,
    #[serde(alias = "decimal")]
    Numeric,
    Date,
    Time,
    Timestamp,
    #[serde(alias = "jsonb")]
    Json,
    Uuid,
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

pub use sql_common::Database;

impl SqlSinkConfig {
    /// The database `url` names, checked.
    pub fn database(&self) -> Result<Database, FieldError> {
        Database::from_url(&self.url, "writes to")
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
        if let Some(m) = &self.mapping {
            if m.columns.is_empty() {
                return Err(FieldError::new("mapping.map-columns", "names no column"));
            }
            if m.operation == MappingOperation::Upsert && m.unique_columns.is_empty() {
                return Err(FieldError::new(
                    "mapping.unique-columns",
                    "an upsert needs the columns that identify a row",
                ));
            }
        }
        if self.batch_size == Some(0) {
            return Err(FieldError::new("batch_size", "must be more than 0"));
        }
        Ok(())
    }

    /// Fluvio's `uses: infinyon/json-sql[@VERSION]` step (the last of the chain: it makes
    /// the operations this sink writes) is done by the sink itself with the step's
    /// `with: mapping:`, exactly as `sql: mapping:`.
    fn take_transforms(&mut self, transforms: &mut Vec<Transform>) -> Result<(), FieldError> {
        let is_json_sql = |t: &Transform| {
            let name = t.uses.split('@').next().unwrap_or_default();
            name == "infinyon/json-sql" || name == "json-sql"
        };
        let Some(i) = transforms.iter().position(is_json_sql) else {
            return Ok(());
        };
        let field = format!("transforms[{i}]");
        if i + 1 != transforms.len() {
            return Err(FieldError::new(
                field,
                "json-sql makes the operations sql-sink writes: it must be the last step",
            ));
        }
        if self.mapping.is_some() {
            return Err(FieldError::new(
                field,
                "json-sql's mapping and sql.mapping are the same thing: give one",
            ));
        }
        let step = transforms.remove(i);
        let Some(mapping) = step.with.get("mapping") else {
            return Err(FieldError::new(
                format!("{field}.with.mapping"),
                "no json-sql mapping supplied (with: mapping: table:, map-columns:)",
            ));
        };
        let mapping: Mapping = serde_json::from_value(mapping.clone()).map_err(|e| {
            FieldError::new(
                format!("{field}.with.mapping"),
                format!("could not parse json-sql mapping: {e}"),
            )
        })?;
        self.mapping = Some(mapping);
        self.validate()
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
