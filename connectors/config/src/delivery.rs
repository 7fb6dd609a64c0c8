//! The delivery options every sink has, in one block: parsed and checked here once, accepted
//! in every sink's section beside the connector's own fields, which still refuse unknown
//! names.

use runnel_core::{ErrorPolicy, FieldError, retry::RetryConfig};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_yaml::{Mapping, Value};

use crate::{Meta, from_value, secrets::key_name};

/// How a sink delivers: how many records at once, retries, and what a record that still
/// fails does.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeliveryOptions {
    /// Records in flight at once, 1 to 1024. With 1 (the default) records are delivered in
    /// topic order; with more, records with the same key still are.
    #[serde(default = "one")]
    pub concurrency: usize,
    /// Retries of a failed delivery (the connector says which failures a retry can fix).
    #[serde(default)]
    pub retry: RetryConfig,
    /// What happens to a record that still fails: dead-letter (default), skip or stop.
    #[serde(default, alias = "on-error")]
    pub on_error: ErrorPolicy,
    /// The dead-letter topic. Default: the topic's name with -dlq.
    #[serde(alias = "dead-letter-topic")]
    pub dead_letter_topic: Option<String>,
}

fn one() -> usize {
    1
}

impl Default for DeliveryOptions {
    fn default() -> Self {
        DeliveryOptions {
            concurrency: 1,
            retry: RetryConfig::default(),
            on_error: ErrorPolicy::default(),
            dead_letter_topic: None,
        }
    }
}

/// The names (and their spellings) that belong to the block rather than to the connector.
pub(crate) const FIELDS: &[&str] = &[
    "concurrency",
    "retry",
    "on_error",
    "on-error",
    "dead_letter_topic",
    "dead-letter-topic",
];

/// Names listed in "unknown field, expected ..." messages of a sink's section.
pub(crate) const LISTED: &str = "concurrency, retry, on_error, dead_letter_topic";

impl DeliveryOptions {
    /// The block's fields taken out of a sink's section, parsed; paths are the section's.
    pub(crate) fn take_from(section: &mut Value, path: &str) -> Result<Self, FieldError> {
        let Value::Mapping(m) = section else {
            return Ok(Self::default());
        };
        let mut own = Mapping::new();
        let keys: Vec<Value> = m
            .keys()
            .filter(|k| FIELDS.contains(&key_name(k).as_str()))
            .cloned()
            .collect();
        for k in keys {
            if let Some(v) = m.remove(&k) {
                own.insert(k, v);
            }
        }
        let options: DeliveryOptions = from_value(Value::Mapping(own), path)?;
        options.check().map_err(|e| e.under(path))?;
        Ok(options)
    }

    /// The rules serde cannot express; paths are relative to the section.
    pub fn check(&self) -> Result<(), FieldError> {
        if !(1..=1024).contains(&self.concurrency) {
            return Err(FieldError::new(
                "concurrency",
                format!("{} is out of range: 1 to 1024", self.concurrency),
            ));
        }
        self.retry.check().map_err(|e| e.under("retry"))?;
        if let Some(t) = &self.dead_letter_topic {
            runnel_core::topic::validate(t)
                .map_err(|e| FieldError::new("dead_letter_topic", e.to_string()))?;
        }
        Ok(())
    }

    /// The dead-letter topic is not the topic the sink reads.
    pub(crate) fn check_with_meta(&self, meta: &Meta) -> Result<(), FieldError> {
        if self.dead_letter_topic.as_deref() == Some(meta.topic.as_str()) {
            return Err(FieldError::new(
                "dead_letter_topic",
                "is the topic this sink reads: failed records would come back forever",
            ));
        }
        Ok(())
    }

    /// The dead-letter topic of a sink reading `topic`.
    pub fn dead_letter_topic_for(&self, topic: &str) -> String {
        self.dead_letter_topic
            .clone()
            .unwrap_or_else(|| format!("{topic}-dlq"))
    }
}
