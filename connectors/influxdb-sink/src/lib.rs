//! influxdb-sink's config: write JSON records into InfluxDB 1.x as points, with the options
//! of eKuiper's InfluxDB sink (`addr`, `database`, `measurement`, `tags` whose values may be
//! `{{.field}}` templates, `fields`, `precision`, `tsFieldName`). The binary (feature `run`)
//! does it: line protocol over HTTP `/write`, a batch per request.

use std::collections::BTreeMap;

use runnel_codec::template::Template;
use runnel_config::{
    ConnectorKind, Direction, FieldError, Grade, HumanDuration, Validate, secrets::Secret,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The influxdb-sink connector type.
#[derive(Debug)]
pub struct InfluxdbSink;

impl ConnectorKind for InfluxdbSink {
    const TYPE: &'static str = "influxdb-sink";
    const ALIASES: &'static [&'static str] = &[];
    const SECTION: &'static str = "influxdb";
    const SECTION_ALIASES: &'static [&'static str] = &["influx"];
    const SUMMARY: &'static str = "Writes JSON records into InfluxDB 1.x as points (line protocol), tags and fields mapped from each record.";
    const GRADE: Grade = Grade::Alpha;
    const DIRECTION: Direction = Direction::Sink;
    type Config = InfluxdbSinkConfig;
}

/// The unit of timestamps, in the request and in `ts_field`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    Ns,
    Us,
    #[default]
    Ms,
    S,
}

impl Precision {
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::Ns => "ns",
            Precision::Us => "u",
            Precision::Ms => "ms",
            Precision::S => "s",
        }
    }

    /// Milliseconds in this unit.
    pub fn from_millis(self, ms: i64) -> i64 {
        match self {
            Precision::Ns => ms.saturating_mul(1_000_000),
            Precision::Us => ms.saturating_mul(1_000),
            Precision::Ms => ms,
            Precision::S => ms.div_euclid(1_000),
        }
    }
}

/// Tags as a map, or as the JSON text of one (as eKuiper's examples write them).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum Tags {
    Map(BTreeMap<String, String>),
    Json(String),
}

/// Fields as a list, or as one comma-separated string (eKuiper's older form).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum Fields {
    List(Vec<String>),
    Text(String),
}

/// Options of influxdb-sink (the `influxdb:` section; eKuiper's `influx` too). eKuiper's
/// camelCase names are taken.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InfluxdbSinkConfig {
    /// The server: http://HOST:PORT or https://.
    #[serde(alias = "url", serialize_with = "runnel_config::secrets::masked_url")]
    pub addr: String,
    /// The database points are written to.
    #[serde(alias = "databasename", alias = "databaseName")]
    pub database: String,
    /// The user to log in as (basic authentication).
    pub username: Option<String>,
    /// Its password; write it as ${{ secrets.NAME }}. Never logged.
    pub password: Option<Secret>,
    /// The measurement: a name, or a template such as `{{.kind}}` taking it from each
    /// record.
    pub measurement: String,
    /// Tag name → value: a fixed value or a `{{.field}}` template (`{{.a.b}}` reaches into
    /// objects). A tag whose field is missing is left out.
    pub tags: Option<Tags>,
    /// The record's fields to write as fields. Default: every field that is not a tag's
    /// template or the timestamp field, objects flattened (`a_b`).
    pub fields: Option<Fields>,
    /// ns, us, ms (the default) or s: the unit of the timestamps written and of ts_field.
    #[serde(default)]
    pub precision: Precision,
    /// The field holding each point's timestamp (a number in `precision`). Default: the
    /// record's timestamp, so a batch written again overwrites the same points.
    #[serde(alias = "tsFieldName", alias = "ts-field")]
    pub ts_field: Option<String>,
    /// The retention policy to write into. Default: the database's default one.
    #[serde(alias = "rp", alias = "retention-policy", alias = "retentionPolicy")]
    pub retention_policy: Option<String>,
    /// Write JSON integers as InfluxDB integers (`5i`). Default false: every number is a
    /// float, as eKuiper and Telegraf's JSON parser write them, so a field never changes
    /// type between points.
    #[serde(default)]
    pub integers: bool,
    /// How long one write request may take. Default 10s.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
}

fn default_timeout() -> HumanDuration {
    HumanDuration::from_millis(10_000)
}

impl InfluxdbSinkConfig {
    /// The tags, parsed: name and template.
    pub fn tag_templates(&self) -> Result<Vec<(String, Template)>, FieldError> {
        let map = match &self.tags {
            None => BTreeMap::new(),
            Some(Tags::Map(m)) => m.clone(),
            Some(Tags::Json(text)) if text.trim().is_empty() => BTreeMap::new(),
            Some(Tags::Json(text)) => serde_json::from_str(text).map_err(|e| {
                FieldError::new(
                    "tags",
                    format!("not a map of tag names to values, nor the JSON text of one: {e}"),
                )
            })?,
        };
        let mut out = Vec::new();
        for (k, v) in map {
            if k.is_empty() {
                return Err(FieldError::new("tags", "a tag needs a name"));
            }
            out.push((k.clone(), Template::parse(&format!("tags.{k}"), &v)?));
        }
        Ok(out)
    }

    /// The fields listed, if any.
    pub fn field_names(&self) -> Option<Vec<String>> {
        match &self.fields {
            None => None,
            Some(Fields::List(l)) => Some(l.clone()),
            Some(Fields::Text(t)) => Some(
                t.split(',')
                    .map(|f| f.trim().to_string())
                    .filter(|f| !f.is_empty())
                    .collect(),
            ),
        }
        .filter(|l| !l.is_empty())
    }
}

impl Validate for InfluxdbSinkConfig {
    fn validate(&self) -> Result<(), FieldError> {
        let url = http_common::endpoint("addr", &self.addr)?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(FieldError::new(
                "addr",
                "give the login as username and password, not in the address",
            ));
        }
        if self.database.trim().is_empty() {
            return Err(FieldError::new("database", "must not be empty"));
        }
        if self.measurement.trim().is_empty() {
            return Err(FieldError::new("measurement", "must not be empty"));
        }
        Template::parse("measurement", &self.measurement)?;
        self.tag_templates()?;
        if self.password.is_some() && self.username.is_none() {
            return Err(FieldError::new("password", "needs a username"));
        }
        if self.timeout.0.is_zero() {
            return Err(FieldError::new("timeout", "must be more than 0"));
        }
        Ok(())
    }
}
