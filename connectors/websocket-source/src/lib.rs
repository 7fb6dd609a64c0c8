//! websocket-source's config: connect to a `ws://` or `wss://` server as a client, send the
//! configured subscription messages after every (re)connect, and turn each text or binary
//! message into records through the codec. It reads Fluvio's files unchanged: Fluvio runs
//! WebSockets with its http connector, so the section may be called `http:` and takes
//! Fluvio's `endpoint`, `headers` and `websocket_config`. The binary (feature `run`) does it.

#[cfg(feature = "run")]
pub mod run;

use runnel_codec::{FormatOptions, MaxRecordSize, Way};
use runnel_config::{ConnectorKind, Direction, FieldError, Grade, HumanDuration, Validate};
use runnel_core::retry::check_backoff;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The websocket-source connector type.
#[derive(Debug)]
pub struct WebSocketSource;

impl ConnectorKind for WebSocketSource {
    const TYPE: &'static str = "websocket-source";
    const ALIASES: &'static [&'static str] = &["websocket", "ws-source"];
    const SECTION: &'static str = "websocket";
    const SECTION_ALIASES: &'static [&'static str] = &["http"];
    const SUMMARY: &'static str =
        "Connects to a WebSocket server, subscribes, and turns each message into records.";
    const GRADE: Grade = Grade::Alpha;
    const DIRECTION: Direction = Direction::Source;
    type Config = WebSocketSourceConfig;
}

/// Options of websocket-source (the `websocket:` section, or Fluvio's `http:`).
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebSocketSourceConfig {
    /// The server: ws://host[:port]/path or wss:// (TLS, the system's trusted roots).
    #[serde(alias = "url", serialize_with = "runnel_config::secrets::masked_url")]
    pub endpoint: String,
    /// Headers of the opening handshake, each written "Name: value" (an API key, a cookie).
    /// Put a credential in a secret: `"Authorization: Bearer ${{ secrets.TOKEN }}"`.
    #[serde(default, serialize_with = "runnel_config::secrets::masked_headers")]
    pub headers: Vec<String>,
    /// The subprotocol to ask for (Sec-WebSocket-Protocol), say graphql-transport-ws.
    pub subprotocol: Option<String>,
    /// Fluvio's WebSocket options: what to send after connecting, and how often to ping.
    #[serde(default, alias = "websocket-config")]
    pub websocket_config: WebSocketOptions,
    /// What each message is: bytes (as it is, the default), text, json, csv (rows to
    /// records) or cloudevents. Text and binary messages alike go through it; a message that
    /// does not decode is skipped with the reason in a log line and counted in
    /// records_failed.
    #[serde(default)]
    pub format: FormatOptions,
    /// The largest message taken. A larger one is refused by the WebSocket layer (close code
    /// 1009): it is logged, counted in records_failed, and the connector reconnects.
    /// Default 1MiB.
    #[serde(default, alias = "max-record-size")]
    pub max_record_size: MaxRecordSize,
    /// How long opening a connection (TCP, TLS, handshake) may take. Default 10s.
    #[serde(default = "default_connect_timeout", alias = "connect-timeout")]
    pub connect_timeout: HumanDuration,
    /// The first wait after a failed connect or a dropped connection; it doubles after each
    /// failure up to max_backoff, with jitter. Default 500ms.
    #[serde(default = "default_initial_backoff", alias = "initial-backoff")]
    pub initial_backoff: HumanDuration,
    /// The longest wait between reconnects. Default 30s.
    #[serde(default = "default_max_backoff", alias = "max-backoff")]
    pub max_backoff: HumanDuration,
}

/// Fluvio's `websocket_config`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebSocketOptions {
    /// Text messages sent, in order, after every connect and reconnect (a subscribe
    /// request).
    #[serde(default, alias = "subscription-messages")]
    pub subscription_messages: Vec<String>,
    /// One message sent before subscription_messages (Fluvio's older single form).
    #[serde(alias = "subscription-message")]
    pub subscription_message: Option<String>,
    /// How often to ping the server, in milliseconds; a server that answers nothing (no
    /// pong, no message) for two intervals is taken as dead and the connector reconnects.
    /// Default 10000; 0 sends no pings.
    #[serde(default = "default_ping_interval_ms", alias = "ping-interval-ms")]
    pub ping_interval_ms: u64,
}

impl Default for WebSocketOptions {
    fn default() -> Self {
        WebSocketOptions {
            subscription_messages: Vec::new(),
            subscription_message: None,
            ping_interval_ms: default_ping_interval_ms(),
        }
    }
}

impl WebSocketOptions {
    /// Every message to send after connecting, in order.
    pub fn subscriptions(&self) -> impl Iterator<Item = &str> {
        self.subscription_message
            .iter()
            .chain(&self.subscription_messages)
            .map(String::as_str)
    }
}

fn default_ping_interval_ms() -> u64 {
    10_000
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

impl Validate for WebSocketSourceConfig {
    fn validate(&self) -> Result<(), FieldError> {
        websocket_common::endpoint("endpoint", &self.endpoint)?;
        websocket_common::headers("headers", &self.headers)?;
        if let Some(p) = &self.subprotocol {
            websocket_common::subprotocol("subprotocol", p)?;
        }
        if self.connect_timeout.0.is_zero() {
            return Err(FieldError::new("connect_timeout", "must be more than 0"));
        }
        self.max_record_size.check("max_record_size")?;
        self.format.check("format", Way::Read)?;
        check_backoff(self.initial_backoff, self.max_backoff)
    }
}
