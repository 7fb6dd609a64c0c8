//! Logs and metrics.
//!
//! Logs go to stderr as text or JSON through a writer that replaces every secret value the
//! config uses with `******`, so no code path can leak one by formatting an error or a URL.
//! Metrics live in one Prometheus registry with the prefix `runnel_connector` and the
//! connector's name and type as labels.

use std::{
    io::{self, Write},
    sync::{Arc, Mutex},
    time::Duration,
};

use prometheus_client::{
    metrics::{counter::Counter, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};
use tracing_subscriber::{EnvFilter, fmt::MakeWriter};

use crate::config::secrets::MASK;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Starts logging to stderr. The level comes from `RUST_LOG` (default `info`). Secret values
/// of fewer than 3 characters are not masked: masking them would garble every line. Lines
/// logged through the `log` crate (librdkafka's own, by way of rdkafka; rumqttc; rustls) go
/// through the same filter and masking.
pub fn init_logging(format: LogFormat, secrets: &[String]) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let writer = RedactingWriter::new(secrets);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_target(false);
    let result = match format {
        LogFormat::Text => builder.with_ansi(false).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    // Already set (tests run several connectors in one process): keep the first.
    let _ = result;
}

/// A `MakeWriter` for stderr that masks secret values. tracing-subscriber writes each event
/// with one `write_all` of the whole line, so a value is never split across writes.
#[derive(Clone)]
pub struct RedactingWriter {
    secrets: Arc<Vec<String>>,
}

impl RedactingWriter {
    pub fn new(secrets: &[String]) -> Self {
        let mut s: Vec<String> = secrets.iter().filter(|s| s.len() >= 3).cloned().collect();
        s.sort_by_key(|v| std::cmp::Reverse(v.len()));
        RedactingWriter {
            secrets: Arc::new(s),
        }
    }

    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in self.secrets.iter() {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), MASK);
            }
        }
        out
    }
}

pub struct RedactingStderr {
    secrets: Arc<Vec<String>>,
}

impl Write for RedactingStderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.secrets.is_empty() {
            return io::stderr().write(buf);
        }
        let text = String::from_utf8_lossy(buf);
        let w = RedactingWriter {
            secrets: self.secrets.clone(),
        };
        io::stderr().write_all(w.redact(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

impl<'a> MakeWriter<'a> for RedactingWriter {
    type Writer = RedactingStderr;
    fn make_writer(&'a self) -> Self::Writer {
        RedactingStderr {
            secrets: self.secrets.clone(),
        }
    }
}

/// The metrics every connector exports.
pub struct Metrics {
    registry: Mutex<Registry>,
    /// Records taken from the outside system (source) or the hub (sink).
    pub records_in: Counter,
    /// Records accepted by the hub (source) or the outside system (sink).
    pub records_out: Counter,
    /// Records a filter dropped on purpose.
    pub records_filtered: Counter,
    /// Records that could not be delivered and went to the error policy.
    pub records_failed: Counter,
    pub records_dead_lettered: Counter,
    pub retries: Counter,
    pub bytes_in: Counter,
    pub bytes_out: Counter,
    /// Seconds from a record entering the connector to its acceptance downstream.
    pub delivery_latency: Histogram,
    /// 1 while the connector is ready.
    pub up: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    pub fn new(connector: &str, kind: &str) -> Arc<Self> {
        let mut root = Registry::default();
        let reg = root
            .sub_registry_with_prefix("runnel_connector")
            .sub_registry_with_labels(
                [
                    ("connector".into(), connector.to_string().into()),
                    ("type".into(), kind.to_string().into()),
                ]
                .into_iter(),
            );
        let m = Metrics {
            registry: Mutex::new(Registry::default()),
            records_in: Counter::default(),
            records_out: Counter::default(),
            records_filtered: Counter::default(),
            records_failed: Counter::default(),
            records_dead_lettered: Counter::default(),
            retries: Counter::default(),
            bytes_in: Counter::default(),
            bytes_out: Counter::default(),
            delivery_latency: Histogram::new([
                0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0,
            ]),
            up: Gauge::default(),
        };
        reg.register("records_in", "Records taken in", m.records_in.clone());
        reg.register(
            "records_out",
            "Records accepted downstream",
            m.records_out.clone(),
        );
        reg.register(
            "records_filtered",
            "Records dropped by a filter",
            m.records_filtered.clone(),
        );
        reg.register(
            "records_failed",
            "Records that failed delivery",
            m.records_failed.clone(),
        );
        reg.register(
            "records_dead_lettered",
            "Records written to the dead-letter topic",
            m.records_dead_lettered.clone(),
        );
        reg.register("retries", "Delivery attempts retried", m.retries.clone());
        reg.register("bytes_in", "Bytes taken in", m.bytes_in.clone());
        reg.register(
            "bytes_out",
            "Bytes accepted downstream",
            m.bytes_out.clone(),
        );
        reg.register(
            "delivery_latency_seconds",
            "Seconds from a record entering the connector to its acceptance downstream",
            m.delivery_latency.clone(),
        );
        reg.register("ready", "1 while the connector is ready", m.up.clone());
        *m.registry.lock().unwrap_or_else(|p| p.into_inner()) = root;
        Arc::new(m)
    }

    pub fn observe_latency(&self, d: Duration) {
        self.delivery_latency.observe(d.as_secs_f64());
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let reg = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        if prometheus_client::encoding::text::encode(&mut out, &reg).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_secrets_longest_first() {
        let w = RedactingWriter::new(&["abc".into(), "abcdef".into(), "x".into()]);
        assert_eq!(w.redact("k=abcdef y=abc x"), "k=****** y=****** x");
    }

    #[test]
    fn metrics_encode_with_labels() {
        let m = Metrics::new("c1", "test-source");
        m.records_out.inc_by(3);
        let text = m.encode();
        assert!(
            text.contains(
                "runnel_connector_records_out_total{connector=\"c1\",type=\"test-source\"} 3"
            ),
            "{text}"
        );
    }
}
