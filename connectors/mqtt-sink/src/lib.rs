//! mqtt-sink's config: publish each record of a hub topic to MQTT. The binary (feature `run`) does it.

use mqtt_common::{BrokerUrl, Secret};
use runnel_codec::{CloudEventsMode, FormatKind, FormatOptions, Way};
use runnel_config::{
    ConnectorKind, Direction, FieldError, Grade, HumanDuration, Seconds, Validate,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The mqtt-sink connector type.
#[derive(Debug)]
pub struct MqttSink;

impl ConnectorKind for MqttSink {
    const TYPE: &'static str = "mqtt-sink";
    const ALIASES: &'static [&'static str] = &[];
    const SECTION: &'static str = "mqtt";
    const SUMMARY: &'static str = "Publishes each record to an MQTT topic.";
    const GRADE: Grade = Grade::Beta;
    const DIRECTION: Direction = Direction::Sink;
    const FLAG_ALIASES: &'static [(&'static str, &'static str)] = &[("mqtt-url", "url")];
    type Config = MqttSinkConfig;
}

/// Options of mqtt-sink (the `mqtt:` section).
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MqttSinkConfig {
    /// The broker: mqtt://host[:port] (default port 1883) or mqtts://host[:port] (TLS with
    /// the system's trusted roots, default port 8883). User and password may be given in the
    /// URL; they are never logged.
    #[serde(
        alias = "mqtt-url",
        alias = "mqtt_url",
        serialize_with = "mqtt_common::masked_url"
    )]
    pub url: String,
    /// The MQTT topic every record is published to. Give it or topic_from_key.
    #[serde(alias = "mqtt-topic", alias = "mqtt_topic")]
    pub topic: Option<String>,
    /// Publish each record to the MQTT topic named by its key (UTF-8). A record without a
    /// key, or whose key is not a valid topic, fails for good and follows on_error.
    #[serde(default, alias = "topic-from-key")]
    pub topic_from_key: bool,
    /// 0 (at most once: delivered once written to the connection, the default) or 1 (at
    /// least once: delivered once the broker acknowledged it).
    #[serde(default)]
    pub qos: u8,
    /// Ask the broker to keep the last message of each topic for new subscribers.
    #[serde(default)]
    pub retain: bool,
    /// The MQTT client id. Default: a new random id at each start.
    #[serde(alias = "client-id")]
    pub client_id: Option<String>,
    /// The MQTT keep-alive. Default 60s; 0 turns it off. A bare number is seconds, as in
    /// Fluvio's mqtt connector; its {secs, nanos} form is read
    /// too.
    #[serde(default = "default_timeout")]
    pub timeout: Seconds,
    /// How long a publish may wait to be sent and (at QoS 1) acknowledged before the attempt
    /// counts as failed and is retried. Default 30s.
    #[serde(default = "default_publish_timeout", alias = "publish-timeout")]
    pub publish_timeout: HumanDuration,
    /// The user name to connect with; wins over one in the URL.
    pub username: Option<String>,
    /// The password to connect with; write it as ${{ secrets.NAME }}. Never logged.
    pub password: Option<Secret>,
    /// What each payload is made as: bytes (the value as it is, the default), text or json
    /// (the value checked to be that), csv (a JSON object to a row of `columns`) or
    /// cloudevents (a structured JSON event built from the record's ce- headers and
    /// `format.cloudevents`; MQTT 3.1.1 has no headers for binary mode). A record that
    /// cannot be made so follows on_error with the reason.
    #[serde(default)]
    pub format: FormatOptions,
}

fn default_timeout() -> Seconds {
    Seconds::from_millis(60_000)
}
fn default_publish_timeout() -> HumanDuration {
    HumanDuration::from_millis(30_000)
}

impl Validate for MqttSinkConfig {
    fn validate(&self) -> Result<(), FieldError> {
        BrokerUrl::parse("url", &self.url)?;
        match (&self.topic, self.topic_from_key) {
            (Some(_), true) => {
                return Err(FieldError::new(
                    "topic_from_key",
                    "cannot be used with topic: give one of them",
                ));
            }
            (None, false) => {
                return Err(FieldError::new(
                    "topic",
                    "missing: give the MQTT topic, or topic_from_key: true",
                ));
            }
            (Some(t), false) => {
                topic_check(t).map_err(|m| FieldError::new("topic", m))?;
            }
            (None, true) => {}
        }
        mqtt_common::qos("qos", self.qos)?;
        if let Some(id) = &self.client_id {
            mqtt_common::client_id("client_id", id)?;
        }
        mqtt_common::keep_alive("timeout", self.timeout)?;
        if self.publish_timeout.0.is_zero() {
            return Err(FieldError::new("publish_timeout", "must be more than 0"));
        }
        self.format.check("format", Way::Write)?;
        if self.format.kind == FormatKind::Cloudevents
            && self.format.cloudevents.mode == CloudEventsMode::Binary
        {
            return Err(FieldError::new(
                "format.cloudevents.mode",
                "binary mode puts the attributes in headers, which MQTT 3.1.1 messages do not have: use mode: structured",
            ));
        }
        Ok(())
    }
}

/// Why a string cannot be an MQTT topic to publish to.
pub fn topic_check(t: &str) -> Result<(), String> {
    if t.is_empty() {
        return Err("is empty: an MQTT topic needs at least one character".into());
    }
    if t.len() > 65_535 {
        return Err("is longer than 65535 bytes".into());
    }
    if t.contains(['+', '#']) {
        return Err(format!(
            "{t:?} holds a wildcard (+ or #): publish to a topic, not a filter"
        ));
    }
    if t.contains('\0') {
        return Err("holds a NUL character".into());
    }
    Ok(())
}
