//! mqtt-source's config: subscribe to MQTT topics and produce each message into a hub topic. The binary (feature `run`) does it.

use mqtt_common::{BrokerUrl, Secret};
use runnel_codec::{FormatKind, FormatOptions, Way};
use runnel_config::{
    ConnectorKind, Direction, FieldError, Grade, HumanDuration, Seconds, Validate,
};
use runnel_core::retry::check_backoff;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The mqtt-source connector type.
#[derive(Debug)]
pub struct MqttSource;

impl ConnectorKind for MqttSource {
    const TYPE: &'static str = "mqtt-source";
    const ALIASES: &'static [&'static str] = &["mqtt"];
    const SECTION: &'static str = "mqtt";
    const SUMMARY: &'static str =
        "Subscribes to MQTT topics and produces each message as a record.";
    const GRADE: Grade = Grade::Beta;
    const DIRECTION: Direction = Direction::Source;
    const FLAG_ALIASES: &'static [(&'static str, &'static str)] = &[("mqtt-url", "url")];
    type Config = MqttSourceConfig;
}

/// Options of mqtt-source (the `mqtt:` section).
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MqttSourceConfig {
    /// The broker: mqtt://host[:port] (default port 1883) or mqtts://host[:port] (TLS with
    /// the system's trusted roots, default port 8883). User and password may be given in the
    /// URL (mqtt://user:password@host); they are never logged. Fluvio's name mqtt-url is
    /// accepted too.
    #[serde(
        alias = "mqtt-url",
        alias = "mqtt_url",
        serialize_with = "mqtt_common::masked_url"
    )]
    pub url: String,
    /// The MQTT topic filter to subscribe to; + and # wildcards allowed (sensors/+/temp,
    /// sensors/#). Fluvio's name mqtt-topic is accepted too.
    #[serde(alias = "mqtt-topic", alias = "mqtt_topic")]
    pub topic: String,
    /// The subscription's QoS: 0 (at most once, the default) or 1 (at least once: a message
    /// is acknowledged to the broker only after the hub stored it).
    #[serde(default)]
    pub qos: u8,
    /// The MQTT client id. Default: a new random id at each start (runnel-<16 hex digits>).
    /// Required with clean_session false, so the broker can find the session again.
    #[serde(alias = "client-id")]
    pub client_id: Option<String>,
    /// The MQTT keep-alive: the broker drops the connection after 1.5 times this without a
    /// packet. Default 60s; 0 turns it off. A bare number is seconds, as in Fluvio's mqtt
    /// connector; its {secs, nanos} form is read too.
    #[serde(default = "default_timeout")]
    pub timeout: Seconds,
    /// Start with a new session at each connect (true, the default). With false and a fixed
    /// client_id the broker keeps the subscription and queues QoS 1 messages while the
    /// connector is away.
    #[serde(default = "default_clean_session", alias = "clean-session")]
    pub clean_session: bool,
    /// What a record's value holds: binary (the default: the payload as it came) or json
    /// ({"mqtt_topic": "...", "payload": ...}, the payload as JSON when it parses, else as a
    /// string).
    #[serde(default, alias = "payload-output-type")]
    pub payload_output_type: PayloadOutputType,
    /// What each payload is: bytes (as it came, the default), text (UTF-8), json, csv (rows
    /// to JSON objects; one message may hold several rows, and its own header row) or
    /// cloudevents (structured events to records with ce- headers, or `mode: binary` to
    /// make events of plain payloads). A payload that does not decode is skipped (and
    /// acknowledged) with the reason in a log line and counted in records_failed. Not with
    /// payload_output_type: json, Fluvio's own way of shaping a record.
    #[serde(default)]
    pub format: FormatOptions,
    /// The user name to connect with; wins over one in the URL.
    pub username: Option<String>,
    /// The password to connect with; write it as ${{ secrets.NAME }}. Never logged.
    pub password: Option<Secret>,
    /// The first wait after a failed connection; it doubles after each failure up to
    /// max_backoff, with jitter. Default 500ms.
    #[serde(default = "default_initial_backoff", alias = "initial-backoff")]
    pub initial_backoff: HumanDuration,
    /// The longest wait between reconnects. Default 30s.
    #[serde(default = "default_max_backoff", alias = "max-backoff")]
    pub max_backoff: HumanDuration,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PayloadOutputType {
    #[default]
    Binary,
    Json,
}

fn default_timeout() -> Seconds {
    Seconds::from_millis(60_000)
}
fn default_clean_session() -> bool {
    true
}
fn default_initial_backoff() -> HumanDuration {
    HumanDuration::from_millis(500)
}
fn default_max_backoff() -> HumanDuration {
    HumanDuration::from_millis(30_000)
}

impl Validate for MqttSourceConfig {
    fn validate(&self) -> Result<(), FieldError> {
        let url = BrokerUrl::parse("url", &self.url)?;
        if !mqtt_common::valid_filter(&self.topic) {
            return Err(FieldError::new(
                "topic",
                format!(
                    "{:?} is not a valid MQTT topic filter (+ and # must fill a whole level; # only last)",
                    self.topic
                ),
            ));
        }
        mqtt_common::qos("qos", self.qos)?;
        if let Some(id) = &self.client_id {
            mqtt_common::client_id("client_id", id)?;
        }
        mqtt_common::keep_alive("timeout", self.timeout)?;
        self.format.check("format", Way::Read)?;
        if self.format.kind != FormatKind::Bytes
            && self.payload_output_type != PayloadOutputType::Binary
        {
            return Err(FieldError::new(
                "format",
                "cannot be combined with payload_output_type: json (Fluvio's older option shapes the record itself): use one or the other",
            ));
        }
        if !self.clean_session && self.client_id.is_none() && url.client_id.is_none() {
            return Err(FieldError::new(
                "client_id",
                "required when clean_session is false: a generated id changes at every start, so the broker could never resume the session",
            ));
        }
        check_backoff(self.initial_backoff, self.max_backoff)
    }
}
