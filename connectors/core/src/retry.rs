//! Retries: exponential backoff with jitter, and the settings users write for it.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{FieldError, HumanDuration};

/// How failed deliveries are retried.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Attempts per record, the first included; 1 means no retry.
    pub max_attempts: u32,
    /// The wait before the second attempt; it doubles after each failure.
    pub initial_backoff: HumanDuration,
    /// The longest wait between attempts.
    pub max_backoff: HumanDuration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_attempts: 5,
            initial_backoff: HumanDuration::from_millis(100),
            max_backoff: HumanDuration::from_millis(10_000),
        }
    }
}

impl RetryConfig {
    /// Checks the settings; paths are relative to the field holding them.
    pub fn check(&self) -> Result<(), FieldError> {
        if self.max_attempts == 0 {
            return Err(FieldError::new("max_attempts", "must be at least 1"));
        }
        check_backoff(self.initial_backoff, self.max_backoff)
    }
}

/// Checks a pair of `initial_backoff` and `max_backoff` fields.
pub fn check_backoff(initial: HumanDuration, max: HumanDuration) -> Result<(), FieldError> {
    if initial > max {
        return Err(FieldError::new(
            "initial_backoff",
            format!("{initial} is longer than max_backoff ({max})"),
        ));
    }
    Ok(())
}

/// Exponential backoff with "equal jitter": each wait is between half and all of the
/// current step, so many connectors restarting together do not retry in lockstep.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    step: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        let initial = initial.max(Duration::from_millis(1));
        Backoff {
            initial,
            max: max.max(initial),
            step: initial,
        }
    }

    pub fn from_config(c: &RetryConfig) -> Self {
        Self::new(c.initial_backoff.0, c.max_backoff.0)
    }

    /// The next wait; each call doubles the step up to the maximum.
    pub fn next_delay(&mut self) -> Duration {
        let step = self.step;
        self.step = (self.step * 2).min(self.max);
        let half = step / 2;
        half + half.mul_f64(fastrand::f64())
    }

    pub fn reset(&mut self) {
        self.step = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_with_jitter() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(800));
        let waits: Vec<_> = (0..6).map(|_| b.next_delay()).collect();
        assert!(waits[0] >= Duration::from_millis(50) && waits[0] <= Duration::from_millis(100));
        assert!(waits[5] >= Duration::from_millis(400) && waits[5] <= Duration::from_millis(800));
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
