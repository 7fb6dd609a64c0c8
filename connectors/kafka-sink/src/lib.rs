//! kafka-sink's config: write every record of a hub topic to a topic on a Kafka cluster of
//! the user's own (not the hub), with `acks=all` and idempotence, the hub offset committed
//! only after the brokers acknowledged the batch. Fluvio's kafka-sink files (`url`,
//! `topic`, `partition`, `options`, `create-topic`, `security`) run unchanged. The binary
//! (feature `run`) does it.

use std::collections::BTreeMap;

use kafka_common::Security;
use runnel_codec::{FormatOptions, Way};
use runnel_config::{ConnectorKind, Direction, FieldError, Grade, HumanDuration, Validate};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The kafka-sink connector type.
#[derive(Debug)]
pub struct KafkaSink;

impl ConnectorKind for KafkaSink {
    const TYPE: &'static str = "kafka-sink";
    const ALIASES: &'static [&'static str] = &[];
    const SECTION: &'static str = "kafka";
    const SUMMARY: &'static str =
        "Writes records to a topic of a Kafka cluster with acks=all and idempotence.";
    const GRADE: Grade = Grade::Alpha;
    const DIRECTION: Direction = Direction::Sink;
    type Config = KafkaSinkConfig;
}

/// Options of kafka-sink (the `kafka:` section).
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkConfig {
    /// The brokers: host:port[,host:port...] (kafka:// in front is taken too). Fluvio's
    /// {secret: {name: NAME}} or ${{ secrets.NAME }} keep it out of the file.
    pub url: String,
    /// The topic to write to.
    pub topic: String,
    /// Write every record to this partition. Default: by the record's key (librdkafka's
    /// partitioner), records without a key spread over the partitions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<i32>,
    /// Create the topic at start when the cluster does not have it (one partition, the
    /// brokers' default replication).
    #[serde(default, alias = "create-topic")]
    pub create_topic: bool,
    /// TLS: security_protocol (ssl), ssl_key, ssl_cert and ssl_ca as {file: PATH} or
    /// {pem: TEXT}.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security: Option<Security>,
    /// librdkafka properties for the producer (linger.ms, compression.type,
    /// sasl.mechanisms, ...); values of the credential-like ones never printed. acks and
    /// enable.idempotence stay at all and true.
    #[serde(
        default,
        serialize_with = "kafka_common::masked_options",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub options: BTreeMap<String, String>,
    /// How each value is written: bytes (the record's value as it is, the default), text,
    /// json, csv or cloudevents. A record that does not fit follows on_error.
    #[serde(default)]
    pub format: FormatOptions,
    /// How long the brokers have to acknowledge a record before the batch is written
    /// again (librdkafka's message.timeout.ms). Default 30s.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
}

fn default_timeout() -> HumanDuration {
    HumanDuration::from_millis(30_000)
}

impl KafkaSinkConfig {
    /// The librdkafka properties of `security`, `options` and the timeout, checked.
    pub fn client_settings(&self) -> Result<Vec<(String, String)>, FieldError> {
        let mut out = vec![(
            "message.timeout.ms".to_string(),
            self.timeout.0.as_millis().to_string(),
        )];
        out.extend(kafka_common::client_settings(
            self.security.as_ref(),
            &self.options,
        )?);
        Ok(out)
    }
}

impl Validate for KafkaSinkConfig {
    fn validate(&self) -> Result<(), FieldError> {
        kafka_common::brokers(&self.url)?;
        if self.topic.trim().is_empty() {
            return Err(FieldError::new("topic", "is empty"));
        }
        if matches!(self.partition, Some(p) if p < 0) {
            return Err(FieldError::new("partition", "must be 0 or more"));
        }
        if self.timeout.0 < std::time::Duration::from_millis(1) {
            return Err(FieldError::new("timeout", "must be 1ms or more"));
        }
        if self.options.contains_key("message.timeout.ms") {
            return Err(FieldError::new(
                "options.message.timeout.ms",
                "is set by Runnel: use timeout",
            ));
        }
        self.client_settings()?;
        self.format.check("format", Way::Write)
    }
}
