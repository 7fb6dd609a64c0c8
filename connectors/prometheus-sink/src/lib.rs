//! prometheus-sink's config: turn JSON records into samples (a metric name, labels, a value,
//! a timestamp) and write them with Prometheus's remote-write protocol (1.0: a protobuf
//! `WriteRequest`, snappy-compressed, POSTed), to Prometheus itself or anything that
//! receives remote writes (Mimir, Thanos, VictoriaMetrics, Cortex). The binary (feature
//! `run`) does it.

use std::collections::BTreeMap;

use runnel_codec::template::Template;
use runnel_config::{
    ConnectorKind, Direction, FieldError, Grade, HumanDuration, Validate, secrets::Secret,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Remote-write 1.0's messages (Prometheus's prompb `types.proto` and `remote.proto`), the
/// fields it uses, and the body of a request.
#[cfg(feature = "run")]
pub mod proto {
    use prost::Message;

    #[derive(Clone, PartialEq, Message)]
    pub struct WriteRequest {
        #[prost(message, repeated, tag = "1")]
        pub timeseries: Vec<TimeSeries>,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct TimeSeries {
        #[prost(message, repeated, tag = "1")]
        pub labels: Vec<Label>,
        #[prost(message, repeated, tag = "2")]
        pub samples: Vec<Sample>,
    }

    #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Message)]
    pub struct Label {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub value: String,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct Sample {
        #[prost(double, tag = "1")]
        pub value: f64,
        #[prost(int64, tag = "2")]
        pub timestamp: i64,
    }

    impl WriteRequest {
        /// The request's body: the protobuf, snappy-compressed (block format).
        pub fn body(&self) -> Vec<u8> {
            snap::raw::Encoder::new()
                .compress_vec(&self.encode_to_vec())
                .unwrap_or_default()
        }
    }
}

/// The prometheus-sink connector type.
#[derive(Debug)]
pub struct PrometheusSink;

impl ConnectorKind for PrometheusSink {
    const TYPE: &'static str = "prometheus-sink";
    const ALIASES: &'static [&'static str] = &[];
    const SECTION: &'static str = "prometheus";
    const SUMMARY: &'static str = "Writes samples mapped from JSON records (metric, labels, value, time) with Prometheus remote-write.";
    const GRADE: Grade = Grade::Alpha;
    const DIRECTION: Direction = Direction::Sink;
    type Config = PrometheusSinkConfig;
}

/// The unit of `timestamp_field`'s numbers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    S,
    #[default]
    Ms,
    Us,
    Ns,
}

impl Unit {
    /// A time in this unit as milliseconds (what remote-write carries).
    pub fn to_millis(self, t: f64) -> f64 {
        match self {
            Unit::S => t * 1_000.0,
            Unit::Ms => t,
            Unit::Us => t / 1_000.0,
            Unit::Ns => t / 1_000_000.0,
        }
    }
}

/// Options of prometheus-sink (the `prometheus:` section).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PrometheusSinkConfig {
    /// The remote-write URL: `http://HOST:9090/api/v1/write` for Prometheus (started with
    /// `--web.enable-remote-write-receiver`), or any receiver's.
    #[serde(alias = "url", serialize_with = "runnel_config::secrets::masked_url")]
    pub endpoint: String,
    /// The metric name: a name, or a `{{.field}}` template taking it from each record.
    /// Give this or `values`.
    pub metric: Option<String>,
    /// The field holding the sample's value (a number, a boolean as 1 or 0, or a numeric
    /// string such as "NaN"). Default `value`.
    #[serde(default = "default_value_field", alias = "value-field")]
    pub value_field: String,
    /// Several samples per record: metric name → the field holding its value, instead of
    /// `metric` and `value_field`. A field missing from a record gives no sample.
    #[serde(default)]
    pub values: BTreeMap<String, String>,
    /// Label name → a fixed value or a `{{.field}}` template. A label whose field is
    /// missing, or that is empty, is left out (as Prometheus treats an empty label).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Fields that become labels of the same name, as text.
    #[serde(default, alias = "label-fields")]
    pub label_fields: Vec<String>,
    /// The field holding the sample's time (a number in `timestamp_unit`). Default: the
    /// record's timestamp.
    #[serde(alias = "timestamp-field")]
    pub timestamp_field: Option<String>,
    /// s, ms (the default), us or ns.
    #[serde(default, alias = "timestamp-unit")]
    pub timestamp_unit: Unit,
    /// Basic authentication.
    pub username: Option<String>,
    /// Write it as ${{ secrets.NAME }}. Never logged.
    pub password: Option<Secret>,
    /// A bearer token instead of basic authentication; write it as a secret too.
    #[serde(alias = "bearer-token")]
    pub bearer_token: Option<Secret>,
    /// How long one request may take. Default 10s.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
}

fn default_value_field() -> String {
    "value".into()
}

fn default_timeout() -> HumanDuration {
    HumanDuration::from_millis(10_000)
}

/// A metric name as Prometheus takes them.
pub fn metric_name_ok(n: &str) -> bool {
    let mut chars = n.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// A label name as Prometheus takes them (names starting with `__` are its own).
pub fn label_name_ok(n: &str) -> bool {
    let mut chars = n.chars();
    !n.starts_with("__")
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl PrometheusSinkConfig {
    /// The metric template, when samples come one per record.
    pub fn metric_template(&self) -> Result<Option<Template>, FieldError> {
        self.metric
            .as_deref()
            .map(|m| Template::parse("metric", m))
            .transpose()
    }

    /// The labels, parsed: name and template, sorted by name.
    pub fn label_templates(&self) -> Result<Vec<(String, Template)>, FieldError> {
        let mut out = Vec::new();
        for (k, v) in &self.labels {
            out.push((k.clone(), Template::parse(&format!("labels.{k}"), v)?));
        }
        for f in &self.label_fields {
            out.push((
                f.clone(),
                Template::parse("label_fields", &format!("{{{{.{f}}}}}"))?,
            ));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
}

impl Validate for PrometheusSinkConfig {
    fn validate(&self) -> Result<(), FieldError> {
        let url = http_common::endpoint("endpoint", &self.endpoint)?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(FieldError::new(
                "endpoint",
                "give the login as username and password, not in the URL",
            ));
        }
        match (&self.metric, self.values.is_empty()) {
            (None, true) => {
                return Err(FieldError::new(
                    "metric",
                    "give the metric name (or a {{.field}} template), or values: metric → field",
                ));
            }
            (Some(_), false) => {
                return Err(FieldError::new(
                    "values",
                    "give metric (one sample per record) or values (several), not both",
                ));
            }
            _ => {}
        }
        if let Some(t) = self.metric_template()?
            && let [runnel_codec::template::Piece::Text(name)] = t.0.as_slice()
            && !metric_name_ok(name)
        {
            return Err(FieldError::new(
                "metric",
                format!(
                    "{name:?} is not a metric name (letters, digits, _ and :, not starting with a digit)"
                ),
            ));
        }
        for name in self.values.keys() {
            if !metric_name_ok(name) {
                return Err(FieldError::new(
                    format!("values.{name}"),
                    "not a metric name (letters, digits, _ and :, not starting with a digit)",
                ));
            }
        }
        let labels = self.label_templates()?;
        for (i, (name, _)) in labels.iter().enumerate() {
            if !label_name_ok(name) {
                return Err(FieldError::new(
                    format!("labels.{name}"),
                    "not a label name (letters, digits and _, not starting with a digit or __)",
                ));
            }
            if i > 0 && labels[i - 1].0 == *name {
                return Err(FieldError::new(
                    format!("labels.{name}"),
                    "given twice (in labels and label_fields)",
                ));
            }
        }
        let has_user = self.username.as_deref().is_some_and(|u| !u.is_empty());
        if self.password.is_some() && !has_user {
            return Err(FieldError::new("password", "needs a username"));
        }
        if self.bearer_token.is_some() && has_user {
            return Err(FieldError::new(
                "bearer_token",
                "give a bearer token or a username and password, not both",
            ));
        }
        if self.timeout.0.is_zero() {
            return Err(FieldError::new("timeout", "must be more than 0"));
        }
        Ok(())
    }
}
