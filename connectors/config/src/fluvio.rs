//! The shapes of Fluvio's `connect.yml` formats, parsed as written. [`super::load`] turns
//! them into one [`super::Meta`].

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_yaml::Value;

use runnel_core::{ByteSize, HumanDuration};

/// The older flat format: everything at the top level, connector options under `parameters`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FlatConfig {
    #[allow(dead_code)]
    pub version: Option<Value>,
    /// The connector's image (Fluvio's `image:`).
    pub image: Option<String>,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub topic: String,
    pub direction: Option<FlatDirection>,
    #[serde(alias = "create-topic")]
    pub create_topic: Option<bool>,
    #[serde(default)]
    pub parameters: Option<Value>,
    /// Old Fluvio files carry secret values inline; they act like the secrets file.
    #[serde(default)]
    #[allow(dead_code)]
    pub secrets: Option<BTreeMap<String, String>>,
    pub producer: Option<ProducerConfig>,
    pub consumer: Option<ConsumerConfig>,
    #[allow(dead_code)]
    pub transforms: Option<Value>,
}

#[derive(Debug, Deserialize, PartialEq, Eq, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub(crate) enum FlatDirection {
    Source,
    Sink,
}

/// `meta:` of the versioned format.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MetaSection {
    pub version: Option<Value>,
    pub image: Option<String>,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub topic: Value,
    #[serde(rename = "create-topic", alias = "create_topic")]
    pub create_topic: Option<bool>,
    #[serde(default)]
    pub secrets: Vec<SecretDecl>,
    pub producer: Option<ProducerConfig>,
    pub consumer: Option<ConsumerConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SecretDecl {
    pub name: String,
}

/// A topic config (`apiVersion: 0.2.0`): the topic to create with its settings.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TopicConfig {
    pub meta: TopicMeta,
    pub partition: Option<PartitionConfig>,
    pub retention: Option<RetentionConfig>,
    pub compression: Option<TopicCompression>,
    pub deduplication: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TopicMeta {
    pub name: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PartitionConfig {
    pub count: Option<u32>,
    pub replication: Option<u32>,
    #[serde(alias = "ignore_rack_assignment")]
    pub ignore_rack_assignment: Option<bool>,
    pub maps: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RetentionConfig {
    pub time: Option<HumanDuration>,
    #[serde(alias = "segment_size")]
    pub segment_size: Option<ByteSize>,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TopicCompression {
    #[serde(rename = "type")]
    pub kind: String,
}

/// Producer settings: how records are batched on their way to the hub.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ProducerConfig {
    /// How long to wait for more records before sending a batch.
    pub linger: Option<HumanDuration>,
    /// The largest batch to send at once.
    #[serde(alias = "batch_size")]
    pub batch_size: Option<ByteSize>,
    /// Compression of batches on the wire, where the hub supports it.
    pub compression: Option<Compression>,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

/// Consumer settings of a sink: which records it reads and where it resumes.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ConsumerConfig {
    /// The consumer id under which offsets are stored; defaults to the connector name.
    pub id: Option<String>,
    /// The partition to read: a number, or `all` (Fluvio's word for every partition).
    pub partition: Option<ConsumerPartition>,
    #[serde(alias = "max_bytes")]
    pub max_bytes: Option<ByteSize>,
    pub offset: Option<OffsetConfig>,
}

/// The partition a sink reads: one by number, or `all` of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumerPartition {
    One(u32),
    All,
}

impl Serialize for ConsumerPartition {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ConsumerPartition::One(n) => s.serialize_u32(*n),
            ConsumerPartition::All => s.serialize_str("all"),
        }
    }
}

impl<'de> Deserialize<'de> for ConsumerPartition {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = ConsumerPartition;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a partition number or all")
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Self::Value, E> {
                u32::try_from(n)
                    .map(ConsumerPartition::One)
                    .map_err(|_| E::custom(format!("partition {n} is out of range")))
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Self::Value, E> {
                u64::try_from(n)
                    .map_err(|_| E::custom(format!("partition {n}: expected 0 or more, or all")))
                    .and_then(|n| self.visit_u64(n))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Self::Value, E> {
                match s.trim() {
                    "all" => Ok(ConsumerPartition::All),
                    t => t.parse::<u32>().map(ConsumerPartition::One).map_err(|_| {
                        E::custom(format!("{s:?}: expected a partition number or all"))
                    }),
                }
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for ConsumerPartition {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ConsumerPartition".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A partition number, or all.",
            "oneOf": [
                {"type": "integer", "minimum": 0},
                {"const": "all"}
            ]
        })
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct OffsetConfig {
    /// Where to start when no offset is stored for the consumer id.
    pub start: Option<OffsetStart>,
    /// `none`: never store offsets; `auto` and `manual`: store them after delivery.
    pub strategy: Option<OffsetStrategy>,
    #[serde(alias = "flush_period")]
    pub flush_period: Option<HumanDuration>,
}

/// Where a consumer starts: `beginning`, `end`, `{absolute: N}`, `{from-beginning: N}` or
/// `{from-end: N}`.
#[derive(Debug, Clone, Copy, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum OffsetStart {
    Beginning,
    End,
    Absolute(i64),
    FromBeginning(u32),
    FromEnd(u32),
}

const OFFSET_START_FORMS: &str =
    "expected beginning, end, {absolute: N}, {from-beginning: N} or {from-end: N}";

impl Serialize for OffsetStart {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let (key, n) = match *self {
            OffsetStart::Beginning => return s.serialize_str("beginning"),
            OffsetStart::End => return s.serialize_str("end"),
            OffsetStart::Absolute(n) => ("absolute", n),
            OffsetStart::FromBeginning(n) => ("from-beginning", i64::from(n)),
            OffsetStart::FromEnd(n) => ("from-end", i64::from(n)),
        };
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry(key, &n)?;
        m.end()
    }
}

// By hand: serde_yaml reads externally tagged enums only from YAML tags (`!absolute 5`),
// while Fluvio's files write them as one-key mappings.
impl<'de> Deserialize<'de> for OffsetStart {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let v = Value::deserialize(d)?;
        match &v {
            Value::String(s) => match s.as_str() {
                "beginning" => Ok(OffsetStart::Beginning),
                "end" => Ok(OffsetStart::End),
                "absolute" | "from-beginning" | "from-end" => Err(D::Error::custom(format!(
                    "{s} needs a number: write {{{s}: N}}"
                ))),
                other => Err(D::Error::custom(format!(
                    "unknown value {other:?}, {OFFSET_START_FORMS}"
                ))),
            },
            Value::Mapping(m) if m.len() == 1 => {
                let Some((k, n)) = m.iter().next() else {
                    return Err(D::Error::custom(OFFSET_START_FORMS));
                };
                let key = k.as_str().unwrap_or_default();
                let Some(n) = n.as_i64() else {
                    return Err(D::Error::custom(format!(
                        "{key} needs a whole number: write {{{key}: N}}"
                    )));
                };
                let count = || {
                    u32::try_from(n).map_err(|_| {
                        D::Error::custom(format!("{key}: {n} is out of range (0 or more)"))
                    })
                };
                match key {
                    "absolute" => Ok(OffsetStart::Absolute(n)),
                    "from-beginning" | "from_beginning" => Ok(OffsetStart::FromBeginning(count()?)),
                    "from-end" | "from_end" => Ok(OffsetStart::FromEnd(count()?)),
                    other => Err(D::Error::custom(format!(
                        "unknown value {other:?}, {OFFSET_START_FORMS}"
                    ))),
                }
            }
            _ => Err(D::Error::custom(OFFSET_START_FORMS)),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum OffsetStrategy {
    None,
    #[default]
    Auto,
    Manual,
}

/// One step of the `transforms:` chain.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Transform {
    /// A .wasm file path, or `name@version` looked up in the module directory.
    pub uses: String,
    /// Parameters passed to the module's `init`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub with: BTreeMap<String, serde_json::Value>,
    /// Fluvio's `invoke:` (json-sql's examples write `invoke: insert`); taken, and the
    /// module decides what it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invoke: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lookback: Option<Lookback>,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Lookback {
    pub age: Option<HumanDuration>,
    pub last: Option<u64>,
}
