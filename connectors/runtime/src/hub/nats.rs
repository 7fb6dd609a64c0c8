//! The `nats://host:port[,host:port]` hub: NATS JetStream, through async-nats.
//!
//! - A topic is a stream with file storage holding one subject, `runnel.<topic>`. Stream
//!   names cannot hold `.`, so the stream of topic `a.b_c` is `runnel_a_2Eb_5Fc` (`.` and `_`
//!   escaped). A record's offset is its stream sequence minus one. One partition per topic.
//! - The value is the message payload. The key, timestamp and headers travel in message
//!   headers: `Runnel-Key` and `Runnel-Headers` (`name=value&...`, percent-encoded, order
//!   and duplicates kept), `Runnel-Timestamp` in milliseconds.
//! - Producers publish a batch and await the publish acknowledgements in windows (the
//!   client stalls when too many are outstanding).
//! - With a consumer id, a consumer is a durable pull consumer of that name with explicit
//!   acknowledgements (`AckPolicy::All`): `commit(n)` acknowledges the message at offset
//!   `n - 1`, and with it every earlier one, and waits for the server to confirm. On open it
//!   resumes from the stream's acknowledgement floor. Without an id it is an ephemeral
//!   consumer that acknowledges nothing.

use std::time::Duration;

use async_nats::{
    HeaderMap,
    jetstream::{
        self, AckKind,
        consumer::{AckPolicy, DeliverPolicy, pull},
        stream::{Config as StreamConfig, StorageType},
    },
};
use bytes::Bytes;
use futures_util::{FutureExt, StreamExt, TryStreamExt};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode, percent_encode};

use super::{HubError, TopicInfo};
use crate::{
    config::OffsetStart,
    record::{ConsumedRecord, Record},
};

/// Publish acknowledgements awaited at a time.
const ACK_WINDOW: usize = 1024;
/// How long an acknowledgement may be outstanding before the server redelivers.
const ACK_WAIT: Duration = Duration::from_secs(300);

/// What percent-encoding leaves alone in keys and header lists.
const KEEP: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b':')
    .remove(b'/');

/// A connection to a NATS server with JetStream. Cheap to clone.
#[derive(Clone)]
pub struct NatsHub {
    servers: String,
    js: jetstream::Context,
}

impl std::fmt::Debug for NatsHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsHub")
            .field("servers", &self.servers)
            .finish_non_exhaustive()
    }
}

/// A failed request: what was asked, and the client's error as the cause.
fn err(servers: &str, what: impl Into<String>, e: impl Into<crate::BoxError>) -> HubError {
    HubError::Remote {
        hub: format!("nats://{servers}"),
        what: what.into(),
        source: Some(e.into()),
    }
}

/// The stream holding `topic`: `runnel_` and the name with `.` and `_` escaped.
pub fn stream_name(topic: &str) -> String {
    let mut s = String::with_capacity(topic.len() + 8);
    s.push_str("runnel_");
    for c in topic.chars() {
        match c {
            '.' => s.push_str("_2E"),
            '_' => s.push_str("_5F"),
            c => s.push(c),
        }
    }
    s
}

/// The topic a stream holds, if it is one of ours.
fn topic_of(stream: &str) -> Option<String> {
    let rest = stream.strip_prefix("runnel_")?;
    Some(rest.replace("_2E", ".").replace("_5F", "_"))
}

fn subject(topic: &str) -> String {
    format!("runnel.{topic}")
}

impl NatsHub {
    pub async fn connect(servers: &str) -> Result<Self, HubError> {
        let addrs: Vec<async_nats::ServerAddr> = servers
            .split(',')
            .map(|s| format!("nats://{}", s.trim()).parse())
            .collect::<Result<_, _>>()
            .map_err(|e| HubError::InvalidUrl {
                url: format!("nats://{servers}"),
                reason: format!("{e}"),
            })?;
        let client = async_nats::ConnectOptions::new()
            .name("runnel")
            .connection_timeout(Duration::from_secs(10))
            // Reconnects go on forever; requests fail after their own timeout meanwhile.
            .max_reconnects(None)
            .connect(addrs)
            .await
            .map_err(|e| err(servers, "cannot connect", e))?;
        // Fails early and clearly when JetStream is not enabled on the server. (The raw
        // request, not `query_account`: its answer changed shape across server versions.)
        let info = client
            .request("$JS.API.INFO", Bytes::new())
            .await
            .map_err(|e| err(servers, "JetStream is not available", e))?;
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&info.payload)
            && let Some(e) = v.get("error")
        {
            let why = e.get("description").and_then(|d| d.as_str()).unwrap_or("");
            return Err(err(servers, "JetStream is not available", why.to_string()));
        }
        let js = jetstream::new(client);
        Ok(NatsHub {
            servers: servers.to_string(),
            js,
        })
    }

    pub async fn create_topic(&self, name: &str, partitions: u32) -> Result<(), HubError> {
        if partitions != 1 {
            return Err(HubError::Invalid(format!(
                "{partitions} partitions: a topic on the nats hub is one JetStream stream, one partition; use the kafka hub for more"
            )));
        }
        if self.topic(name).await?.is_some() {
            return Err(HubError::TopicExists(name.to_string()));
        }
        let config = StreamConfig {
            name: stream_name(name),
            subjects: vec![subject(name)],
            storage: StorageType::File,
            description: Some(format!("runnel topic {name}")),
            ..Default::default()
        };
        match self.js.create_stream(config).await {
            Ok(_) => Ok(()),
            Err(e) if e.to_string().contains("already in use") => {
                Err(HubError::TopicExists(name.to_string()))
            }
            Err(e) => Err(err(&self.servers, format!("creating topic {name:?}"), e)),
        }
    }

    async fn stream(&self, topic: &str) -> Result<Option<jetstream::stream::Stream>, HubError> {
        match self.js.get_stream(stream_name(topic)).await {
            Ok(s) => Ok(Some(s)),
            Err(e)
                if matches!(
                    e.kind(),
                    jetstream::context::GetStreamErrorKind::JetStream(ref j)
                        if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(err(&self.servers, format!("looking up topic {topic:?}"), e)),
        }
    }

    pub async fn topic(&self, name: &str) -> Result<Option<TopicInfo>, HubError> {
        let Some(mut s) = self.stream(name).await? else {
            return Ok(None);
        };
        let info = s
            .info()
            .await
            .map_err(|e| err(&self.servers, format!("describing topic {name:?}"), e))?;
        Ok(Some(TopicInfo {
            name: name.to_string(),
            partitions: 1,
            records: info.state.messages,
            next_offset: info.state.last_sequence as i64,
        }))
    }

    pub async fn list_topics(&self) -> Result<Vec<TopicInfo>, HubError> {
        let names: Vec<String> = self
            .js
            .stream_names()
            .try_collect()
            .await
            .map_err(|e| err(&self.servers, "listing topics", e))?;
        let mut out = Vec::new();
        for topic in names.iter().filter_map(|n| topic_of(n)) {
            if let Some(t) = self.topic(&topic).await? {
                out.push(t);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    pub async fn delete_topic(&self, name: &str) -> Result<(), HubError> {
        if self.stream(name).await?.is_none() {
            return Err(HubError::TopicNotFound(name.to_string()));
        }
        self.js
            .delete_stream(stream_name(name))
            .await
            .map(|_| ())
            .map_err(|e| err(&self.servers, format!("deleting topic {name:?}"), e))
    }

    pub async fn producer(&self, topic: &str) -> Result<NatsProducer, HubError> {
        if self.stream(topic).await?.is_none() {
            return Err(HubError::TopicNotFound(topic.to_string()));
        }
        Ok(NatsProducer {
            servers: self.servers.clone(),
            subject: subject(topic),
            js: self.js.clone(),
        })
    }

    pub async fn consumer(
        &self,
        topic: &str,
        partition: u32,
        consumer_id: Option<&str>,
        start: OffsetStart,
    ) -> Result<NatsConsumer, HubError> {
        if partition != 0 {
            return Err(HubError::Invalid(format!(
                "partition {partition}: a topic on the nats hub has one partition, 0"
            )));
        }
        let Some(mut stream) = self.stream(topic).await? else {
            return Err(HubError::TopicNotFound(topic.to_string()));
        };
        let state = stream
            .info()
            .await
            .map_err(|e| err(&self.servers, format!("describing topic {topic:?}"), e))?
            .state
            .clone();
        let (first, last) = (state.first_sequence.max(1), state.last_sequence);
        // The stream sequence to start at when nothing is stored.
        let from_start = match start {
            OffsetStart::Beginning => first,
            OffsetStart::End => last + 1,
            OffsetStart::Absolute(n) => (n.max(0) as u64 + 1).clamp(first, last + 1),
            OffsetStart::FromBeginning(n) => first.saturating_add(u64::from(n)).min(last + 1),
            OffsetStart::FromEnd(n) => (last + 1).saturating_sub(u64::from(n)).max(first),
        };
        let (durable, start_seq, ack_policy) = match consumer_id {
            Some(id) => {
                let name = stream_name(id);
                // Resume from the acknowledgement floor. The consumer is made afresh there,
                // so messages a killed process had fetched but not acknowledged come back
                // at once and in order, not after the acknowledgement wait.
                let floor = match stream.consumer_info(&name).await {
                    Ok(info) => {
                        let f = info.ack_floor.stream_sequence;
                        stream
                            .delete_consumer(&name)
                            .await
                            .map_err(|e| err(&self.servers, "replacing the consumer", e))?;
                        (f > 0).then_some(f)
                    }
                    Err(_) => None,
                };
                let seq = floor.map_or(from_start, |f| f + 1);
                (Some(name), seq, AckPolicy::All)
            }
            None => (None, from_start, AckPolicy::None),
        };
        let deliver_policy = if start_seq <= 1 {
            DeliverPolicy::All
        } else {
            DeliverPolicy::ByStartSequence {
                start_sequence: start_seq,
            }
        };
        let config = pull::Config {
            durable_name: durable.clone(),
            deliver_policy,
            ack_policy,
            ack_wait: ACK_WAIT,
            max_ack_pending: 100_000,
            inactive_threshold: if durable.is_some() {
                Duration::ZERO
            } else {
                Duration::from_secs(60)
            },
            ..Default::default()
        };
        let consumer = stream.create_consumer(config).await.map_err(|e| {
            err(
                &self.servers,
                format!("creating a consumer of {topic:?}"),
                e,
            )
        })?;
        let messages = consumer
            .stream()
            .max_messages_per_batch(1000)
            .heartbeat(Duration::from_secs(5))
            .expires(Duration::from_secs(30))
            .messages()
            .await
            .map_err(|e| err(&self.servers, format!("reading topic {topic:?}"), e))?;
        Ok(NatsConsumer {
            servers: self.servers.clone(),
            topic: topic.to_string(),
            stream,
            messages,
            acks: durable.is_some(),
            unacked: std::collections::VecDeque::new(),
            position: start_seq as i64 - 1,
        })
    }
}

fn encode(b: &[u8]) -> String {
    percent_encode(b, KEEP).to_string()
}

fn decode(s: &str) -> Bytes {
    Bytes::from(percent_decode(s.as_bytes()).collect::<Vec<u8>>())
}

fn headers_of(r: &Record) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("Runnel-Timestamp", r.timestamp.to_string().as_str());
    if let Some(k) = &r.key {
        h.insert("Runnel-Key", encode(k).as_str());
    }
    if !r.headers.is_empty() {
        let list: Vec<String> = r
            .headers
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k.as_bytes()), encode(v)))
            .collect();
        h.insert("Runnel-Headers", list.join("&").as_str());
    }
    h
}

fn record_of(m: &async_nats::Message, published_ms: i64) -> Record {
    let get = |name: &str| {
        m.headers
            .as_ref()
            .and_then(|h| h.get(name))
            .map(|v| v.as_str())
    };
    Record {
        key: get("Runnel-Key").map(decode),
        value: m.payload.clone(),
        timestamp: get("Runnel-Timestamp")
            .and_then(|t| t.parse().ok())
            .unwrap_or(published_ms),
        headers: get("Runnel-Headers")
            .map(|list| {
                list.split('&')
                    .filter(|p| !p.is_empty())
                    .map(|p| {
                        let (k, v) = p.split_once('=').unwrap_or((p, ""));
                        (String::from_utf8_lossy(&decode(k)).into_owned(), decode(v))
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// Writes records into one topic's stream.
pub struct NatsProducer {
    servers: String,
    subject: String,
    js: jetstream::Context,
}

impl std::fmt::Debug for NatsProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsProducer")
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

impl NatsProducer {
    pub async fn send(&mut self, records: std::sync::Arc<Vec<Record>>) -> Result<i64, HubError> {
        let mut first = None;
        for window in records.chunks(ACK_WINDOW) {
            let mut acks = Vec::with_capacity(window.len());
            for r in window {
                let ack = self
                    .js
                    .publish_with_headers(self.subject.clone(), headers_of(r), r.value.clone())
                    .await
                    .map_err(|e| err(&self.servers, "publishing", e))?;
                acks.push(ack);
            }
            for ack in acks {
                let a = ack
                    .await
                    .map_err(|e| err(&self.servers, "awaiting a publish ack", e))?;
                first.get_or_insert(a.sequence as i64 - 1);
            }
        }
        Ok(first.unwrap_or(-1))
    }
}

/// Reads a topic's stream through a pull consumer.
pub struct NatsConsumer {
    servers: String,
    topic: String,
    stream: jetstream::stream::Stream,
    messages: pull::Stream,
    acks: bool,
    /// Fetched and not yet acknowledged, oldest first, with their offsets.
    unacked: std::collections::VecDeque<(i64, jetstream::Message)>,
    position: i64,
}

impl std::fmt::Debug for NatsConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsConsumer")
            .field("topic", &self.topic)
            .field("position", &self.position)
            .finish_non_exhaustive()
    }
}

impl NatsConsumer {
    fn take(&mut self, m: jetstream::Message, out: &mut Vec<ConsumedRecord>) {
        let Ok(info) = m.info() else {
            return;
        };
        let offset = info.stream_sequence as i64 - 1;
        let published = (info.published.unix_timestamp_nanos() / 1_000_000) as i64;
        // A redelivery of something already handed out is skipped.
        if offset < self.position {
            return;
        }
        self.position = offset + 1;
        out.push(ConsumedRecord {
            topic: self.topic.clone(),
            partition: 0,
            offset,
            record: record_of(&m, published),
        });
        if self.acks {
            self.unacked.push_back((offset, m));
        }
    }

    pub async fn fetch(
        &mut self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<ConsumedRecord>, HubError> {
        let mut out = Vec::new();
        let first = match tokio::time::timeout(wait, self.messages.next()).await {
            Ok(Some(m)) => m,
            Ok(None) | Err(_) => return Ok(out),
        };
        let mut next = Some(first);
        while let Some(m) = next.take() {
            match m {
                Ok(m) => self.take(m, &mut out),
                // Heartbeats missed while the server restarts: the stream carries on.
                Err(e) => {
                    tracing::debug!(topic = %self.topic, error = %e, "NATS pull consumer hiccup.");
                    if out.is_empty() {
                        return Ok(out);
                    }
                }
            }
            if out.len() < max {
                next = self.messages.next().now_or_never().flatten();
            }
        }
        Ok(out)
    }

    pub async fn commit(&mut self, next_offset: i64) -> Result<(), HubError> {
        let mut last = None;
        while self
            .unacked
            .front()
            .is_some_and(|(offset, _)| *offset < next_offset)
        {
            last = self.unacked.pop_front();
        }
        if let Some((_, m)) = last {
            m.double_ack_with(AckKind::Ack)
                .await
                .map_err(|e| err(&self.servers, "acknowledging", e))?;
        }
        Ok(())
    }

    pub fn position(&self) -> i64 {
        self.position
    }

    pub async fn end_offset(&mut self) -> Result<i64, HubError> {
        let info = self
            .stream
            .info()
            .await
            .map_err(|e| err(&self.servers, "reading the stream's end", e))?;
        Ok(info.state.last_sequence as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_names_escape_and_come_back() {
        for t in ["a", "a.b", "a_b", "a_2Eb", "x.y_z-9", "_", "."] {
            let s = stream_name(t);
            assert!(!s.contains('.'), "{s}");
            assert_eq!(topic_of(&s).as_deref(), Some(t), "{t} -> {s}");
        }
        assert_ne!(stream_name("a.b"), stream_name("a_b"));
        assert_eq!(topic_of("KV_bucket"), None);
    }

    #[test]
    fn records_survive_the_header_encoding() {
        let r = Record {
            key: Some(Bytes::from_static(b"k &=%\n\xff")),
            value: Bytes::from_static(b"v"),
            timestamp: 42,
            headers: vec![
                ("a b".into(), Bytes::from_static(b"1&2=3")),
                ("a b".into(), Bytes::new()),
            ],
        };
        let m = async_nats::Message {
            subject: "runnel.t".into(),
            reply: None,
            payload: r.value.clone(),
            headers: Some(headers_of(&r)),
            status: None,
            description: None,
            length: 0,
        };
        assert_eq!(record_of(&m, 0), r);
    }
}
