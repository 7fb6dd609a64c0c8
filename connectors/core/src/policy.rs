//! What happens to a record that cannot be delivered or processed, and how a sink says why.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What happens to a record that still fails after its retries.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorPolicy {
    /// Write it to the dead-letter topic with the error in its headers, then go on.
    #[default]
    DeadLetter,
    /// Log it (offset and error) and go on.
    Skip,
    /// Stop the connector without committing, so it is retried after a restart.
    Stop,
}

/// A failed delivery attempt, as a sink connector reports it.
#[derive(Debug, Clone)]
pub struct DeliveryError {
    /// Worth another attempt (timeouts, 5xx, 429); `false` for errors a retry cannot fix.
    pub retryable: bool,
    pub message: String,
}

impl DeliveryError {
    pub fn retryable(message: impl Into<String>) -> Self {
        DeliveryError {
            retryable: true,
            message: message.into(),
        }
    }
    pub fn permanent(message: impl Into<String>) -> Self {
        DeliveryError {
            retryable: false,
            message: message.into(),
        }
    }
}
