//! The hub: where topics live.
//!
//! Selected by a URL (`RUNNEL_HUB` or `--hub`):
//!
//! - `local:` or `local:PATH`: an embedded SQLite store ([`local`]), the default. Several
//!   processes on one machine may share one file.
//! - `kafka://host:port[,host:port]`: Apache Kafka or a compatible broker ([`kafka`]).
//! - `nats://host:port[,host:port]`: NATS JetStream ([`nats`]).
//!
//! Every hub gives the same guarantees: records in a topic partition have dense, increasing
//! offsets; a producer's `send` returns only once the records are durable in the hub; a
//! consumer's committed offset is the next offset it will read after a restart.

pub mod kafka;
pub mod local;
pub mod nats;

use std::{fmt, path::PathBuf, str::FromStr, time::Duration};

use crate::{
    BoxError,
    config::OffsetStart,
    record::{ConsumedRecord, Record},
};

/// Errors of any hub.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error(
        "topic {0:?} does not exist: create it with `runnel topic create {0}`, or set create-topic: true in the connector's meta"
    )]
    TopicNotFound(String),
    #[error("topic {0:?} already exists")]
    TopicExists(String),
    #[error(transparent)]
    InvalidTopicName(#[from] runnel_core::topic::InvalidTopicName),
    #[error("invalid hub URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// A Kafka or NATS request failed; `what` says which, `source` why.
    #[error("{hub}: {what}")]
    Remote {
        hub: String,
        what: String,
        #[source]
        source: Option<BoxError>,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("local hub {path}")]
    Local {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    /// The local hub's file or its worker failed; `what` says how, `source` why.
    #[error("local hub {path}: {what}")]
    Io {
        path: String,
        what: String,
        #[source]
        source: Option<BoxError>,
    },
}

/// Where the hub is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HubUrl {
    /// The embedded store in this file.
    Local(PathBuf),
    /// Kafka bootstrap servers, `host:port[,host:port]`.
    Kafka(String),
    /// NATS servers, `host:port[,host:port]`.
    Nats(String),
}

impl HubUrl {
    /// The hub selected by `RUNNEL_HUB`, or the default local store.
    pub fn from_env() -> Result<Self, HubError> {
        match std::env::var("RUNNEL_HUB") {
            Ok(s) if !s.trim().is_empty() => s.parse(),
            _ => Ok(HubUrl::Local(default_local_path())),
        }
    }
}

/// Where `local:` keeps its file when no path is given: `$RUNNEL_HOME/hub.db`, else
/// `$XDG_DATA_HOME/runnel/hub.db`, else `~/.local/share/runnel/hub.db`, else `./runnel-hub.db`.
pub fn default_local_path() -> PathBuf {
    if let Some(home) = std::env::var_os("RUNNEL_HOME").filter(|s| !s.is_empty()) {
        return PathBuf::from(home).join("hub.db");
    }
    if let Some(data) = std::env::var_os("XDG_DATA_HOME").filter(|s| !s.is_empty()) {
        return PathBuf::from(data).join("runnel/hub.db");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|s| !s.is_empty()) {
        return PathBuf::from(home).join(".local/share/runnel/hub.db");
    }
    PathBuf::from("runnel-hub.db")
}

impl FromStr for HubUrl {
    type Err = HubError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if let Some(path) = s.strip_prefix("local:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            return Ok(HubUrl::Local(if path.is_empty() {
                default_local_path()
            } else {
                PathBuf::from(path)
            }));
        }
        for (scheme, make) in [
            ("kafka://", HubUrl::Kafka as fn(String) -> HubUrl),
            ("nats://", HubUrl::Nats as fn(String) -> HubUrl),
        ] {
            if let Some(rest) = s.strip_prefix(scheme) {
                return servers(rest)
                    .map(make)
                    .map_err(|reason| HubError::InvalidUrl {
                        url: s.to_string(),
                        reason,
                    });
            }
        }
        Err(HubError::InvalidUrl {
            url: s.to_string(),
            reason: "expected local:[PATH], kafka://HOST:PORT[,HOST:PORT] or nats://HOST:PORT[,HOST:PORT]".into(),
        })
    }
}

impl fmt::Display for HubUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HubUrl::Local(p) => write!(f, "local:{}", p.display()),
            HubUrl::Kafka(s) => write!(f, "kafka://{s}"),
            HubUrl::Nats(s) => write!(f, "nats://{s}"),
        }
    }
}

/// A topic as `runnel topic list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TopicInfo {
    pub name: String,
    pub partitions: u32,
    /// Records currently held.
    pub records: u64,
    /// The offset the next record will get.
    pub next_offset: i64,
}

/// A connection to a hub.
#[derive(Debug, Clone)]
pub enum Hub {
    Local(local::LocalHub),
    Kafka(kafka::KafkaHub),
    Nats(nats::NatsHub),
}

impl Hub {
    pub async fn connect(url: &HubUrl) -> Result<Hub, HubError> {
        match url {
            HubUrl::Local(path) => Ok(Hub::Local(local::LocalHub::open(path.clone()).await?)),
            HubUrl::Kafka(s) => Ok(Hub::Kafka(kafka::KafkaHub::connect(s).await?)),
            HubUrl::Nats(s) => Ok(Hub::Nats(nats::NatsHub::connect(s).await?)),
        }
    }

    /// Producer settings (linger, batch size, compression) for the producers made from now
    /// on, where the hub has such settings (Kafka). The local hub stores each batch as it
    /// comes and NATS publishes each record, so they have none.
    pub fn set_producer_config(&mut self, config: &crate::config::ProducerConfig) {
        if let Hub::Kafka(h) = self {
            h.set_producer_config(config);
        }
    }

    pub async fn create_topic(&self, name: &str, partitions: u32) -> Result<(), HubError> {
        validate_topic_name(name)?;
        match self {
            Hub::Local(h) => h.create_topic(name, partitions).await,
            Hub::Kafka(h) => h.create_topic(name, partitions).await,
            Hub::Nats(h) => h.create_topic(name, partitions).await,
        }
    }

    /// Fluvio's topic rule for a connector: with `create`, a missing topic is created and an
    /// existing one left alone; without it, a missing topic is an error.
    pub async fn ensure_topic(
        &self,
        name: &str,
        create: bool,
        partitions: Option<u32>,
    ) -> Result<(), HubError> {
        if self.topic(name).await?.is_some() {
            return Ok(());
        }
        if !create {
            return Err(HubError::TopicNotFound(name.to_string()));
        }
        match self.create_topic(name, partitions.unwrap_or(1)).await {
            // Another process created it between our look and our create.
            Ok(()) | Err(HubError::TopicExists(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    pub async fn topic(&self, name: &str) -> Result<Option<TopicInfo>, HubError> {
        match self {
            Hub::Local(h) => h.topic(name).await,
            Hub::Kafka(h) => h.topic(name).await,
            Hub::Nats(h) => h.topic(name).await,
        }
    }

    pub async fn list_topics(&self) -> Result<Vec<TopicInfo>, HubError> {
        match self {
            Hub::Local(h) => h.list_topics().await,
            Hub::Kafka(h) => h.list_topics().await,
            Hub::Nats(h) => h.list_topics().await,
        }
    }

    pub async fn delete_topic(&self, name: &str) -> Result<(), HubError> {
        match self {
            Hub::Local(h) => h.delete_topic(name).await,
            Hub::Kafka(h) => h.delete_topic(name).await,
            Hub::Nats(h) => h.delete_topic(name).await,
        }
    }

    pub async fn producer(&self, topic: &str) -> Result<Producer, HubError> {
        match self {
            Hub::Local(h) => Ok(Producer::Local(h.producer(topic).await?)),
            Hub::Kafka(h) => Ok(Producer::Kafka(h.producer(topic).await?)),
            Hub::Nats(h) => Ok(Producer::Nats(h.producer(topic).await?)),
        }
    }

    /// A consumer of one partition. With `consumer_id`, it resumes from that id's committed
    /// offset and `start` applies only when none is stored.
    pub async fn consumer(
        &self,
        topic: &str,
        partition: u32,
        consumer_id: Option<&str>,
        start: OffsetStart,
    ) -> Result<Consumer, HubError> {
        match self {
            Hub::Local(h) => Ok(Consumer::Local(
                h.consumer(topic, partition, consumer_id, start).await?,
            )),
            Hub::Kafka(h) => Ok(Consumer::Kafka(
                h.consumer(topic, partition, consumer_id, start).await?,
            )),
            Hub::Nats(h) => Ok(Consumer::Nats(Box::new(
                h.consumer(topic, partition, consumer_id, start).await?,
            ))),
        }
    }
}

/// Writes records into one topic.
#[derive(Debug)]
pub enum Producer {
    Local(local::LocalProducer),
    Kafka(kafka::KafkaProducer),
    Nats(nats::NatsProducer),
}

/// A batch queued by [`Producer::enqueue`]: resolves to the offset of its first record once
/// the whole batch is durable.
pub type Pending =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<i64, HubError>> + Send>>;

impl Producer {
    /// Appends `records` in order; returns the offset of the first once they are durable.
    pub async fn send(&mut self, records: Vec<Record>) -> Result<i64, HubError> {
        self.send_shared(std::sync::Arc::new(records)).await
    }

    /// How many batches may be queued before the oldest is acknowledged. More than one only
    /// where the client keeps queued batches in order even across its own retries: Kafka's
    /// idempotent producer does, and the local hub's writer thread refuses what follows a
    /// failed batch until it is sent again. NATS already keeps a window of publishes in
    /// flight inside one batch.
    pub fn max_in_flight(&self) -> usize {
        match self {
            Producer::Kafka(_) | Producer::Local(_) => 4,
            Producer::Nats(_) => 1,
        }
    }

    /// After a queued batch failed: starts the client afresh where one can be wedged by a
    /// broker that lost its state (Kafka's idempotent producer); the batches still queued
    /// in the old one fail and are written again.
    pub fn recover(&mut self) -> Result<(), HubError> {
        match self {
            Producer::Kafka(p) => p.restart(),
            Producer::Local(_) | Producer::Nats(_) => Ok(()),
        }
    }

    /// Queues `records` behind every batch queued before; the returned future resolves once
    /// they are durable. Where [`Producer::max_in_flight`] is 1 the batch is written before
    /// this returns.
    pub async fn enqueue(
        &mut self,
        records: std::sync::Arc<Vec<Record>>,
    ) -> Result<Pending, HubError> {
        match self {
            Producer::Kafka(p) => p.enqueue(records).await,
            Producer::Local(p) => p.enqueue(&records),
            other => {
                let done = other.send_shared(records).await;
                Ok(Box::pin(std::future::ready(done)))
            }
        }
    }

    /// [`Producer::send`] for a batch the caller keeps, to retry it without copying.
    pub async fn send_shared(
        &mut self,
        records: std::sync::Arc<Vec<Record>>,
    ) -> Result<i64, HubError> {
        match self {
            Producer::Local(p) => p.send(records).await,
            Producer::Kafka(p) => p.send(records).await,
            Producer::Nats(p) => p.send(records).await,
        }
    }
}

/// Reads records from one topic partition.
#[derive(Debug)]
pub enum Consumer {
    Local(local::LocalConsumer),
    Kafka(kafka::KafkaConsumer),
    Nats(Box<nats::NatsConsumer>),
}

impl Consumer {
    /// Up to `max` records from the current position; waits up to `wait` for the first one.
    /// An empty result means nothing arrived in time.
    pub async fn fetch(
        &mut self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<ConsumedRecord>, HubError> {
        match self {
            Consumer::Local(c) => c.fetch(max, wait).await,
            Consumer::Kafka(c) => c.fetch(max, wait).await,
            Consumer::Nats(c) => c.fetch(max, wait).await,
        }
    }

    /// Stores `next_offset` as the position this consumer id resumes from.
    pub async fn commit(&mut self, next_offset: i64) -> Result<(), HubError> {
        match self {
            Consumer::Local(c) => c.commit(next_offset).await,
            Consumer::Kafka(c) => c.commit(next_offset).await,
            Consumer::Nats(c) => c.commit(next_offset).await,
        }
    }

    /// The offset the next fetch starts at.
    pub fn position(&self) -> i64 {
        match self {
            Consumer::Local(c) => c.position(),
            Consumer::Kafka(c) => c.position(),
            Consumer::Nats(c) => c.position(),
        }
    }

    /// The offset one past the last record in the partition.
    pub async fn end_offset(&mut self) -> Result<i64, HubError> {
        match self {
            Consumer::Local(c) => c.end_offset().await,
            Consumer::Kafka(c) => c.end_offset().await,
            Consumer::Nats(c) => c.end_offset().await,
        }
    }
}

/// `host:port[,host:port]`, each with a port.
fn servers(list: &str) -> Result<String, String> {
    let list = list.trim_end_matches('/');
    if list.is_empty() {
        return Err("no servers: expected HOST:PORT[,HOST:PORT]".into());
    }
    for s in list.split(',') {
        let s = s.trim();
        match s.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {}
            _ => return Err(format!("{s:?} is not HOST:PORT")),
        }
        if s.contains('@') {
            return Err("credentials in the hub URL are not supported".into());
        }
    }
    Ok(list.split(',').map(str::trim).collect::<Vec<_>>().join(","))
}

pub fn validate_topic_name(name: &str) -> Result<(), HubError> {
    Ok(runnel_core::topic::validate(name)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hub_urls() {
        assert_eq!(
            "kafka://a:9092, b:9093".parse::<HubUrl>().unwrap(),
            HubUrl::Kafka("a:9092,b:9093".into())
        );
        assert_eq!(
            "nats://127.0.0.1:4222/".parse::<HubUrl>().unwrap(),
            HubUrl::Nats("127.0.0.1:4222".into())
        );
        assert_eq!(
            "local:/tmp/x.db".parse::<HubUrl>().unwrap(),
            HubUrl::Local("/tmp/x.db".into())
        );
        for bad in [
            "kafka://",
            "kafka://host",
            "nats://h:port",
            "nats://u:p@h:4222",
            "redis://h:1",
        ] {
            let e = bad.parse::<HubUrl>().unwrap_err().to_string();
            assert!(e.contains("invalid hub URL"), "{bad}: {e}");
        }
        let e = "nats://user:secret@h:4222"
            .parse::<HubUrl>()
            .unwrap_err()
            .to_string();
        assert!(e.contains("credentials"), "{e}");
    }

    #[test]
    fn hub_urls_print_as_parsed() {
        for s in ["kafka://a:1,b:2", "nats://h:4222"] {
            assert_eq!(s.parse::<HubUrl>().unwrap().to_string(), s);
        }
    }
}
