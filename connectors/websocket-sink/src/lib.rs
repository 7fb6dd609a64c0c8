//! websocket-sink's config: connect to a `ws://` or `wss://` server as a client and send
//! each record as one text or binary message, in order. A batch counts as delivered only
//! once the server answered a ping sent after its last message (`confirm: ping`, the
//! default): the peer's WebSocket layer has then read every message before it. The binary
//! (feature `run`) does it.

use runnel_codec::{FormatOptions, Way};
use runnel_config::{ConnectorKind, Direction, FieldError, Grade, HumanDuration, Validate};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The websocket-sink connector type.
#[derive(Debug)]
pub struct WebSocketSink;

impl ConnectorKind for WebSocketSink {
    const TYPE: &'static str = "websocket-sink";
    const ALIASES: &'static [&'static str] = &["ws-sink"];
    const SECTION: &'static str = "websocket";
    const SUMMARY: &'static str =
        "Sends each record as a WebSocket message, in order, confirmed by a ping per batch.";
    const GRADE: Grade = Grade::Alpha;
    const DIRECTION: Direction = Direction::Sink;
    type Config = WebSocketSinkConfig;
}

/// How a record is sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MessageType {
    /// A text message: the value must be UTF-8 (one that is not follows on_error).
    #[default]
    Text,
    /// A binary message: the value's bytes as they are.
    Binary,
}

/// What makes a batch delivered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Confirm {
    /// A ping after the batch's last message, answered by the server's pong: every
    /// message before it was read by the server's WebSocket layer.
    #[default]
    Ping,
    /// Written and flushed to the connection: a server that closes before reading loses
    /// what was in flight.
    Flush,
}

/// Options of websocket-sink (the `websocket:` section).
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebSocketSinkConfig {
    /// The server: ws://host[:port]/path or wss:// (TLS, the system's trusted roots).
    #[serde(alias = "url", serialize_with = "runnel_config::secrets::masked_url")]
    pub endpoint: String,
    /// Headers of the opening handshake, each written "Name: value". Put a credential in a
    /// secret: `"Authorization: Bearer ${{ secrets.TOKEN }}"`.
    #[serde(default, serialize_with = "runnel_config::secrets::masked_headers")]
    pub headers: Vec<String>,
    /// The subprotocol to ask for (Sec-WebSocket-Protocol).
    pub subprotocol: Option<String>,
    /// text (the default) or binary.
    #[serde(default, alias = "message-type")]
    pub message_type: MessageType,
    /// ping (the default) or flush: what makes a batch delivered.
    #[serde(default)]
    pub confirm: Confirm,
    /// How each value is made: bytes (the record's value as it is, the default), text,
    /// json, csv or cloudevents. A record that does not fit follows on_error.
    #[serde(default)]
    pub format: FormatOptions,
    /// How long opening a connection (TCP, TLS, handshake) may take. Default 10s.
    #[serde(default = "default_connect_timeout", alias = "connect-timeout")]
    pub connect_timeout: HumanDuration,
    /// How long a batch may take to be written and confirmed before the attempt counts as
    /// failed (the connection is then made again and the batch sent again). Default 10s.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
}

fn default_connect_timeout() -> HumanDuration {
    HumanDuration::from_millis(10_000)
}
fn default_timeout() -> HumanDuration {
    HumanDuration::from_millis(10_000)
}

impl Validate for WebSocketSinkConfig {
    fn validate(&self) -> Result<(), FieldError> {
        websocket_common::endpoint("endpoint", &self.endpoint)?;
        websocket_common::headers("headers", &self.headers)?;
        if let Some(p) = &self.subprotocol {
            websocket_common::subprotocol("subprotocol", p)?;
        }
        for (field, d) in [
            ("connect_timeout", self.connect_timeout),
            ("timeout", self.timeout),
        ] {
            if d.0.is_zero() {
                return Err(FieldError::new(field, "must be more than 0"));
            }
        }
        self.format.check("format", Way::Write)
    }
}
