//! http-source's config: poll an HTTP endpoint every `interval`, or keep one response open and split it into records (`stream: true`), as Fluvio's http-source does; a ws:// or wss:// endpoint runs websocket-source's client, as Fluvio's http connector serves WebSockets too. The binary (feature `run`) does it.

use runnel_codec::{FormatKind, FormatOptions, Framing, FramingKind, MaxRecordSize, Way};
use runnel_config::{
    ConnectorKind, Direction, FieldError, Grade, HumanDuration, Seconds, Validate,
};
use runnel_core::retry::check_backoff;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use websocket_source::{WebSocketOptions, WebSocketSourceConfig};

/// The http-source connector type.
#[derive(Debug)]
pub struct HttpSource;

impl ConnectorKind for HttpSource {
    const TYPE: &'static str = "http-source";
    const ALIASES: &'static [&'static str] = &["http"];
    const SECTION: &'static str = "http";
    const SUMMARY: &'static str =
        "Polls an HTTP endpoint, or splits one streamed response, into records.";
    const GRADE: Grade = Grade::Beta;
    const DIRECTION: Direction = Direction::Source;
    type Config = HttpSourceConfig;
}

/// Options of http-source (the `http:` section).
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpSourceConfig {
    /// The URL to request (http:// or https://).
    pub endpoint: String,
    /// The request method. Default GET.
    #[serde(default = "default_method")]
    pub method: String,
    /// Request headers, each written "Name: value".
    #[serde(default, serialize_with = "runnel_config::secrets::masked_headers")]
    pub headers: Vec<String>,
    /// A body to send with each request.
    pub body: Option<String>,
    /// The User-Agent header. Default runnel-http-source/VERSION.
    #[serde(alias = "user-agent")]
    pub user_agent: Option<String>,
    /// Time between polls. Default 10s; a bare number is seconds, as in Fluvio's http
    /// connector (`interval: 10`).
    #[serde(default = "default_interval")]
    pub interval: Seconds,
    /// What a record holds: body (default), or full (status line, headers and body).
    #[serde(default, alias = "output-parts")]
    pub output_parts: OutputParts,
    /// How the parts are written: text (default), or json ({"body": ...} with
    /// "status" and "header" for full).
    #[serde(default, alias = "output-type")]
    pub output_type: OutputType,
    /// Keep one response open and turn each delimited piece of it into a record.
    #[serde(default)]
    pub stream: bool,
    /// What separates records in stream mode. Default "\n".
    #[serde(default = "default_delimiter")]
    pub delimiter: String,
    /// How stream mode cuts the response into records: delimiter (the default, by
    /// `delimiter`), newline, or length-prefixed (a 4-byte big-endian length before each).
    /// A polled body is always one piece.
    pub framing: Option<FramingKind>,
    /// What each body or piece is: bytes (as it is, the default), text (UTF-8), json, csv
    /// (rows to JSON objects, so one body may give many records) or cloudevents
    /// (structured events to records with ce- headers, or `mode: binary` to make events of
    /// plain data). A piece that does not decode is skipped with the reason in a log line
    /// and counted in records_failed. Not with output_parts: full or output_type: json,
    /// Fluvio's own way of shaping a record.
    #[serde(default)]
    pub format: FormatOptions,
    /// How long one poll may take, from connecting to the end of the body. Default 30s.
    #[serde(default = "default_timeout", alias = "request-timeout")]
    pub request_timeout: HumanDuration,
    /// What a non-2xx response does: skip (log it, count it in records_failed and, for 429
    /// and 5xx, back off; the default), record (write it as a record like any other), or
    /// stop (exit with an error).
    #[serde(default, alias = "on-error-status")]
    pub on_error_status: StatusPolicy,
    /// The first wait after a failed request or a dropped stream; it doubles after each
    /// failure up to max_backoff, with jitter. Default 500ms.
    #[serde(default = "default_initial_backoff", alias = "initial-backoff")]
    pub initial_backoff: HumanDuration,
    /// The longest wait between reconnects. Default 30s.
    #[serde(default = "default_max_backoff", alias = "max-backoff")]
    pub max_backoff: HumanDuration,
    /// Fluvio's WebSocket options, read with a ws:// or wss:// endpoint: http-source then
    /// runs as websocket-source does (`subscription_messages`, `ping_interval_ms`).
    #[serde(
        default,
        alias = "websocket-config",
        skip_serializing_if = "Option::is_none"
    )]
    pub websocket_config: Option<WebSocketOptions>,
    /// The largest record: a polled body, or one delimited piece of a stream. A larger one
    /// is not kept: it is skipped with a warning naming its size and counted in
    /// records_failed, and a stream resumes at the next delimiter. Default 1MiB (Kafka's
    /// default message size).
    #[serde(default, alias = "max-record-size")]
    pub max_record_size: MaxRecordSize,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OutputParts {
    #[default]
    Body,
    Full,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OutputType {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StatusPolicy {
    #[default]
    Skip,
    Record,
    Stop,
}

fn default_method() -> String {
    "GET".into()
}
fn default_interval() -> Seconds {
    Seconds::from_millis(10_000)
}
fn default_delimiter() -> String {
    "\n".into()
}
fn default_timeout() -> HumanDuration {
    HumanDuration::from_millis(30_000)
}
fn default_initial_backoff() -> HumanDuration {
    HumanDuration::from_millis(500)
}
fn default_max_backoff() -> HumanDuration {
    HumanDuration::from_millis(30_000)
}

impl HttpSourceConfig {
    /// Whether the endpoint is a WebSocket (ws:// or wss://), which Fluvio's http connector
    /// also serves.
    pub fn is_websocket(&self) -> bool {
        let e = self.endpoint.trim().to_ascii_lowercase();
        e.starts_with("ws://") || e.starts_with("wss://")
    }

    /// The options as websocket-source reads them, for a WebSocket endpoint.
    pub fn websocket(&self) -> WebSocketSourceConfig {
        WebSocketSourceConfig {
            endpoint: self.endpoint.clone(),
            headers: self.headers.clone(),
            subprotocol: None,
            websocket_config: self.websocket_config.clone().unwrap_or_default(),
            format: self.format.clone(),
            max_record_size: self.max_record_size,
            connect_timeout: self.request_timeout,
            initial_backoff: self.initial_backoff,
            max_backoff: self.max_backoff,
        }
    }

    /// How stream mode cuts the response, checked.
    pub fn stream_framing(&self) -> Result<Framing, FieldError> {
        match self.framing {
            Some(_) if !self.stream => Err(FieldError::new(
                "framing",
                "is only read with stream: true (a polled body is one piece)",
            )),
            None | Some(FramingKind::Delimiter) => {
                let d = http_common::unescape(&self.delimiter);
                if self.stream && d.is_empty() {
                    return Err(FieldError::new(
                        "delimiter",
                        "empty: stream mode needs a separator",
                    ));
                }
                Ok(Framing::Delimiter(d.into_bytes()))
            }
            Some(FramingKind::Newline) => Ok(Framing::Newline),
            Some(FramingKind::LengthPrefixed) => Ok(Framing::LengthPrefixed),
            Some(FramingKind::Bytes) => Err(FieldError::new(
                "framing",
                "bytes would cut a stream wherever the network splits it: use newline, delimiter or length-prefixed",
            )),
        }
    }
}

impl Validate for HttpSourceConfig {
    fn validate(&self) -> Result<(), FieldError> {
        if self.is_websocket() {
            return self.websocket().validate();
        }
        if self.websocket_config.is_some() {
            return Err(FieldError::new(
                "websocket_config",
                "is read with a ws:// or wss:// endpoint only",
            ));
        }
        http_common::endpoint("endpoint", &self.endpoint)?;
        http_common::method("method", &self.method)?;
        http_common::header_map("headers", &self.headers)?;
        if self.request_timeout.0.is_zero() {
            return Err(FieldError::new("request_timeout", "must be more than 0"));
        }
        if !self.stream && self.interval.0.is_zero() {
            return Err(FieldError::new(
                "interval",
                "must be more than 0 when polling",
            ));
        }
        self.max_record_size.check("max_record_size")?;
        self.format.check("format", Way::Read)?;
        if self.format.kind != FormatKind::Bytes
            && (self.output_parts != OutputParts::Body || self.output_type != OutputType::Text)
        {
            return Err(FieldError::new(
                "format",
                "cannot be combined with output_parts: full or output_type: json (Fluvio's older options shape the record themselves): use one or the other",
            ));
        }
        self.stream_framing()?;
        check_backoff(self.initial_backoff, self.max_backoff)
    }
}
