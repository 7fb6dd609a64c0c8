//! log-sink: each record becomes one log line (topic, partition, offset, key, headers and
//! the value as the format makes it, cut to `max_bytes`). A batch counts as delivered once
//! its lines are written; the offsets are committed as any sink's are.

use std::{fmt::Write as _, process::ExitCode};

use log_sink::{Level, LogSink, LogSinkConfig};
use runnel_runtime::{
    BoxError, ConsumedRecord, app,
    config::ConnectorConfig,
    pipeline::{DeliverBatch, DeliveryError, SinkContext},
};

struct Logger {
    level: Level,
    encoder: runnel_codec::Encoder,
    max_bytes: usize,
    headers: bool,
}

/// `bytes` for a log line: text when it is UTF-8 (cut on a character boundary), escaped
/// otherwise; a cut value ends with its full length.
fn shown(bytes: &[u8], max: usize) -> String {
    let cut = &bytes[..bytes.len().min(max)];
    let mut out = match std::str::from_utf8(cut) {
        Ok(s) => s.to_string(),
        // A character cut in two at the end still reads as text.
        Err(e) if e.error_len().is_none() => {
            String::from_utf8_lossy(&cut[..e.valid_up_to()]).into_owned()
        }
        Err(_) => cut.escape_ascii().to_string(),
    };
    if bytes.len() > max {
        let _ = write!(out, "… ({} bytes in all)", bytes.len());
    }
    out
}

impl Logger {
    fn line(&self, r: &ConsumedRecord) -> Result<(), DeliveryError> {
        let value = if self.encoder.is_passthrough() {
            shown(&r.record.value, self.max_bytes)
        } else {
            let id = format!("{}-{}-{}", r.topic, r.partition, r.offset);
            let v = self
                .encoder
                .encode(&r.record, &id)
                .map_err(|e| DeliveryError::permanent(runnel_runtime::chain(&e)))?;
            shown(&v, self.max_bytes)
        };
        let key = r.record.key.as_deref().map(|k| shown(k, self.max_bytes));
        let headers = if self.headers && !r.record.headers.is_empty() {
            let mut h = String::new();
            for (k, v) in &r.record.headers {
                if !h.is_empty() {
                    h.push_str(", ");
                }
                let _ = write!(h, "{k}={}", shown(v, self.max_bytes));
            }
            Some(h)
        } else {
            None
        };
        macro_rules! record {
            ($level:expr) => {
                tracing::event!(
                    $level,
                    topic = %r.topic,
                    partition = r.partition,
                    offset = r.offset,
                    record_timestamp = r.record.timestamp,
                    key = key.as_deref(),
                    headers = headers.as_deref(),
                    value = %value,
                    "Record."
                )
            };
        }
        match self.level {
            Level::Debug => record!(tracing::Level::DEBUG),
            Level::Info => record!(tracing::Level::INFO),
            Level::Warn => record!(tracing::Level::WARN),
            Level::Error => record!(tracing::Level::ERROR),
        }
        Ok(())
    }
}

impl DeliverBatch for Logger {
    async fn deliver_batch(
        &self,
        batch: &[ConsumedRecord],
    ) -> Result<Vec<(usize, DeliveryError)>, DeliveryError> {
        let mut failed = Vec::new();
        for (i, r) in batch.iter().enumerate() {
            if let Err(e) = self.line(r) {
                failed.push((i, e));
            }
        }
        Ok(failed)
    }
}

fn make(config: &ConnectorConfig<LogSinkConfig>, _: &SinkContext) -> Result<Logger, BoxError> {
    let c = &config.config;
    Ok(Logger {
        level: c.level,
        encoder: runnel_codec::Encoder::new(&c.format),
        max_bytes: usize::try_from(c.max_bytes.0).unwrap_or(usize::MAX),
        headers: c.headers,
    })
}

fn main() -> ExitCode {
    app::batch_sink_main::<LogSink, _, _>(|config, ctx| {
        ctx.set_ready(true);
        make(config, ctx)
    })
}

#[cfg(test)]
mod tests {
    use super::shown;

    #[test]
    fn values_are_cut_on_characters_and_escaped_when_not_text() {
        assert_eq!(shown(b"hello", 10), "hello");
        assert_eq!(shown(b"hello", 3), "hel… (5 bytes in all)");
        assert_eq!(shown("héllo".as_bytes(), 2), "h… (6 bytes in all)");
        assert_eq!(shown(&[0xff, b'a', 0], 10), "\\xffa\\x00");
    }
}
