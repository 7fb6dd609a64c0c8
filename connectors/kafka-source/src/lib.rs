//! kafka-source's config: read one partition of a topic on a Kafka cluster of the user's
//! own (not the hub) in a consumer group, and commit the group's offset only once the hub
//! stored what was read. Fluvio's kafka-source files (`url`, `topic`, `partition`,
//! `group`, `fetch-max-bytes-per-partition`) run unchanged; TLS (`security`) and raw
//! librdkafka `options` as in Fluvio's kafka-sink. The binary (feature `run`) does it.

use std::collections::BTreeMap;

use kafka_common::Security;
use runnel_codec::{FormatOptions, Way};
use runnel_config::{ConnectorKind, Direction, FieldError, Grade, Validate};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The kafka-source connector type.
#[derive(Debug)]
pub struct KafkaSource;

impl ConnectorKind for KafkaSource {
    const TYPE: &'static str = "kafka-source";
    const ALIASES: &'static [&'static str] = &[];
    const SECTION: &'static str = "kafka";
    const SUMMARY: &'static str = "Reads a topic partition of a Kafka cluster in a consumer group; commits after the hub stored.";
    const GRADE: Grade = Grade::Alpha;
    const DIRECTION: Direction = Direction::Source;
    type Config = KafkaSourceConfig;
}

/// Where a group without a committed offset starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Start {
    /// The oldest record the partition holds (Fluvio's choice).
    Beginning,
    /// Only records written from now on.
    End,
}

/// Options of kafka-source (the `kafka:` section).
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceConfig {
    /// The brokers: host:port[,host:port...] (kafka:// in front is taken too). Fluvio's
    /// {secret: {name: NAME}} or ${{ secrets.NAME }} keep it out of the file.
    pub url: String,
    /// The topic to read.
    pub topic: String,
    /// The partition to read. Default 0.
    #[serde(default)]
    pub partition: i32,
    /// The consumer group whose offset is committed. Default fluvio-kafka-source, as in
    /// Fluvio, so a connector moved from Fluvio goes on where it was.
    #[serde(default = "default_group")]
    pub group: String,
    /// Where a group without a committed offset starts: beginning (default) or end.
    #[serde(default = "default_start")]
    pub start: Start,
    /// The most bytes one fetch asks of the partition (librdkafka's
    /// max.partition.fetch.bytes). Default 1048576.
    #[serde(
        default,
        alias = "fetch-max-bytes-per-partition",
        skip_serializing_if = "Option::is_none"
    )]
    pub fetch_max_bytes_per_partition: Option<i32>,
    /// Records handed on per read, at most. Default 1000.
    #[serde(default = "default_count")]
    pub count: usize,
    /// TLS: security_protocol (ssl), ssl_key, ssl_cert and ssl_ca as {file: PATH} or
    /// {pem: TEXT}.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security: Option<Security>,
    /// librdkafka properties for the consumer (sasl.mechanisms, ...); values of the
    /// credential-like ones never printed.
    #[serde(
        default,
        serialize_with = "kafka_common::masked_options",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub options: BTreeMap<String, String>,
    /// How each value becomes records: bytes (as it is, the default), text, json
    /// (a JSON array may become many records), csv or cloudevents.
    #[serde(default)]
    pub format: FormatOptions,
}

fn default_group() -> String {
    "fluvio-kafka-source".into()
}
fn default_start() -> Start {
    Start::Beginning
}
fn default_count() -> usize {
    1000
}

impl KafkaSourceConfig {
    /// The librdkafka properties of `security`, `options` and the fetch size, checked.
    pub fn client_settings(&self) -> Result<Vec<(String, String)>, FieldError> {
        let mut out = kafka_common::client_settings(self.security.as_ref(), &self.options)?;
        if let Some(n) = self.fetch_max_bytes_per_partition {
            out.push(("max.partition.fetch.bytes".into(), n.to_string()));
        }
        Ok(out)
    }
}

impl Validate for KafkaSourceConfig {
    fn validate(&self) -> Result<(), FieldError> {
        kafka_common::brokers(&self.url)?;
        if self.topic.trim().is_empty() {
            return Err(FieldError::new("topic", "is empty"));
        }
        if self.partition < 0 {
            return Err(FieldError::new("partition", "must be 0 or more"));
        }
        if self.group.trim().is_empty() {
            return Err(FieldError::new("group", "is empty"));
        }
        if matches!(self.fetch_max_bytes_per_partition, Some(n) if n <= 0) {
            return Err(FieldError::new(
                "fetch_max_bytes_per_partition",
                "must be more than 0",
            ));
        }
        if self.count == 0 {
            return Err(FieldError::new("count", "must be 1 or more"));
        }
        self.client_settings()?;
        self.format.check("format", Way::Read)
    }
}
