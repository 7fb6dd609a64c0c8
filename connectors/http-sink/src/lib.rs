//! http-sink's config: send each record of a topic as an HTTP request. The binary (feature `run`) does it.

use runnel_codec::{FormatOptions, Way};
use runnel_config::{ConnectorKind, Direction, FieldError, Grade, HumanDuration, Validate};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The http-sink connector type.
#[derive(Debug)]
pub struct HttpSink;

impl ConnectorKind for HttpSink {
    const TYPE: &'static str = "http-sink";
    const ALIASES: &'static [&'static str] = &["http"];
    const SECTION: &'static str = "http";
    const SUMMARY: &'static str = "Sends each record as an HTTP request.";
    const GRADE: Grade = Grade::Beta;
    const DIRECTION: Direction = Direction::Sink;
    type Config = HttpSinkConfig;
}

/// Options of http-sink (the `http:` section).
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpSinkConfig {
    /// The URL each record is sent to (http:// or https://).
    pub endpoint: String,
    /// The request method. Default POST.
    #[serde(default = "default_method")]
    pub method: String,
    /// Request headers, each written "Name: value".
    #[serde(default, serialize_with = "runnel_config::secrets::masked_headers")]
    pub headers: Vec<String>,
    /// The User-Agent header. Default runnel-http-sink/VERSION.
    #[serde(alias = "user-agent")]
    pub user_agent: Option<String>,
    /// How long one request may take. Default 30s.
    #[serde(default = "default_request_timeout", alias = "http-request-timeout")]
    pub http_request_timeout: HumanDuration,
    /// How long connecting may take. Default 15s.
    #[serde(default = "default_connect_timeout", alias = "http-connect-timeout")]
    pub http_connect_timeout: HumanDuration,
    /// What each request body is made as: bytes (the value as it is, the default), text or
    /// json (the value checked to be that), csv (a JSON object to a row of `columns`) or
    /// cloudevents (CloudEvents' HTTP binding: a structured event as
    /// application/cloudevents+json, or `mode: binary` with the record's ce- headers as
    /// HTTP headers and its data as the body). The Content-Type follows the format unless
    /// `headers` sets one. A record that cannot be made so follows on_error with the reason.
    #[serde(default)]
    pub format: FormatOptions,
}

fn default_method() -> String {
    "POST".into()
}
fn default_request_timeout() -> HumanDuration {
    HumanDuration::from_millis(30_000)
}
fn default_connect_timeout() -> HumanDuration {
    HumanDuration::from_millis(15_000)
}

impl Validate for HttpSinkConfig {
    fn validate(&self) -> Result<(), FieldError> {
        http_common::endpoint("endpoint", &self.endpoint)?;
        http_common::method("method", &self.method)?;
        http_common::header_map("headers", &self.headers)?;
        if self.http_request_timeout.0.is_zero() {
            return Err(FieldError::new(
                "http_request_timeout",
                "must be more than 0",
            ));
        }
        if self.http_connect_timeout.0.is_zero() {
            return Err(FieldError::new(
                "http_connect_timeout",
                "must be more than 0",
            ));
        }
        self.format.check("format", Way::Write)
    }
}
