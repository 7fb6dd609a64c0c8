//! The `kafka://host:port[,host:port]` hub: Apache Kafka and compatible brokers, through
//! rdkafka (librdkafka, bundled).
//!
//! - Producers write with `acks=all` and idempotence, so a retried batch keeps its order
//!   within a partition; linger, batch size and compression come from the connector's
//!   `producer:` settings. `send` returns once every record of the batch is acknowledged.
//! - Consumers read one partition by explicit assignment. With a consumer id they belong to
//!   the consumer group of that name, start from its committed offset, and commit only what
//!   the pipeline says was delivered (auto-commit is off).
//! - Topics are created with the requested partitions and the broker's default replication.
//!
//! librdkafka's calls that wait on the broker (metadata, watermarks, commits) block, so they
//! run on tokio's blocking pool.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use rdkafka::{
    ClientConfig, Message, Offset, TopicPartitionList,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::ClientContext,
    config::RDKafkaLogLevel,
    consumer::{BaseConsumer, CommitMode, Consumer as _, ConsumerContext, StreamConsumer},
    error::{KafkaError, RDKafkaErrorCode},
    message::{Header, Headers, OwnedHeaders},
    producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer as _},
};

use super::{HubError, Pending, TopicInfo};
use crate::{
    config::{Compression, OffsetStart, ProducerConfig},
    record::{ConsumedRecord, Record},
};

/// A librdkafka client that is destroyed on a thread of its own. Destroying one joins its
/// threads, which takes about 100 ms per client (measured against tansu), and would
/// otherwise block the async worker that drops it; a connector holding three clients spent
/// 0.3 s stopping. Whoever drops it has already awaited what it owed (deliveries,
/// commits), so nothing waits for the destruction to finish.
struct Detached<T: Send + 'static>(Option<T>);

impl<T: Send + 'static> Detached<T> {
    fn new(client: T) -> Self {
        Detached(Some(client))
    }
}

impl<T: Send + 'static> std::ops::Deref for Detached<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // Only `drop` takes the client out.
        self.0.as_ref().unwrap_or_else(|| unreachable!())
    }
}

impl<T: Send + 'static> Drop for Detached<T> {
    fn drop(&mut self) {
        if let Some(client) = self.0.take() {
            // Should the thread not start, the closure (and the client) drops right here.
            let _ = std::thread::Builder::new()
                .name("rdkafka-close".into())
                .spawn(move || drop(client));
        }
    }
}

/// The context of the admin and metadata clients: librdkafka's log lines and errors go to
/// the connector's log as they would by default, and the last error either client reported
/// is kept, so a failed start can say why (connection refused, unknown host, TLS) where
/// rdkafka's error says only "BrokerTransportFailure".
#[derive(Default, Clone)]
struct MetaContext {
    last_error: Arc<Mutex<Option<String>>>,
}

impl MetaContext {
    fn record(&self, reason: &str) {
        let mut last = self.last_error.lock().unwrap_or_else(|e| e.into_inner());
        *last = Some(reason.to_string());
    }

    fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl ClientContext for MetaContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                self.record(message);
                tracing::error!("librdkafka: {fac} {message}");
            }
            RDKafkaLogLevel::Warning => tracing::warn!("librdkafka: {fac} {message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!("librdkafka: {fac} {message}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!("librdkafka: {fac} {message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.record(reason);
        tracing::error!("librdkafka: {error}: {reason}");
    }
}

impl ConsumerContext for MetaContext {}

/// How long a metadata or watermark request may take.
const META_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection to a Kafka cluster: the bootstrap list, an admin client and a metadata
/// client. Cheap to clone.
#[derive(Clone)]
pub struct KafkaHub {
    brokers: String,
    /// librdkafka properties every client of this hub gets after Runnel's own (TLS, and
    /// the options of kafka-source and kafka-sink); empty for a hub given by URL.
    settings: Arc<Vec<(String, String)>>,
    producer_config: ProducerConfig,
    admin: Arc<Detached<AdminClient<MetaContext>>>,
    meta: Arc<Detached<BaseConsumer<MetaContext>>>,
}

impl std::fmt::Debug for KafkaHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaHub")
            .field("brokers", &self.brokers)
            .finish_non_exhaustive()
    }
}

/// A failed request: what was asked, and librdkafka's error as the cause.
fn err(brokers: &str, what: impl Into<String>, e: impl Into<crate::BoxError>) -> HubError {
    HubError::Remote {
        hub: format!("kafka://{brokers}"),
        what: what.into(),
        source: Some(e.into()),
    }
}

fn base_config(brokers: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers)
        .set("client.id", "runnel")
        // librdkafka's own log lines (rdkafka hands them to the `log` crate, whose records
        // the connector's log takes in): keep them to real problems.
        .set("log_level", "3");
    c
}

/// `settings` over `c`, last, so they win over Runnel's defaults.
fn with_settings<'a>(
    c: &'a mut ClientConfig,
    settings: &[(String, String)],
) -> &'a mut ClientConfig {
    for (k, v) in settings {
        c.set(k, v);
    }
    c
}

impl KafkaHub {
    /// Connects to `brokers` (comma-separated `host:port`) and checks that the cluster
    /// answers, so a wrong address fails at start with a clear error.
    pub async fn connect(brokers: &str) -> Result<Self, HubError> {
        Self::connect_with(brokers, Vec::new()).await
    }

    /// Whether librdkafka takes `settings` for a client of `brokers` (known properties,
    /// values it accepts, TLS files it can read), without reaching the cluster: a connector
    /// checks at start what no retry could mend.
    pub fn check_settings(brokers: &str, settings: &[(String, String)]) -> Result<(), HubError> {
        let client: BaseConsumer = with_settings(
            base_config(brokers).set("group.id", "runnel-check"),
            settings,
        )
        .create()
        .map_err(|e| HubError::Invalid(format!("librdkafka refused the client settings: {e}")))?;
        drop(Detached::new(client));
        Ok(())
    }

    /// [`KafkaHub::connect`] with librdkafka properties every client gets on top of
    /// Runnel's own (TLS files, timeouts): how kafka-source and kafka-sink reach a cluster
    /// of their users' with the code the hub uses.
    pub async fn connect_with(
        brokers: &str,
        settings: Vec<(String, String)>,
    ) -> Result<Self, HubError> {
        let context = MetaContext::default();
        let admin: AdminClient<MetaContext> = with_settings(&mut base_config(brokers), &settings)
            .create_with_context(context.clone())
            .map_err(|e| err(brokers, "creating the admin client", e))?;
        let meta: BaseConsumer<MetaContext> = with_settings(
            base_config(brokers).set("group.id", "runnel-metadata"),
            &settings,
        )
        .create_with_context(context.clone())
        .map_err(|e| err(brokers, "creating the metadata client", e))?;
        let hub = KafkaHub {
            brokers: brokers.to_string(),
            settings: Arc::new(settings),
            producer_config: ProducerConfig::default(),
            admin: Arc::new(Detached::new(admin)),
            meta: Arc::new(Detached::new(meta)),
        };
        let m = hub.meta.clone();
        let reached = hub
            .blocking("reading the cluster metadata", move || {
                m.fetch_metadata(None, META_TIMEOUT).map(|_| ())
            })
            .await;
        match reached {
            Ok(()) => Ok(hub),
            Err(HubError::Remote {
                hub: url, source, ..
            }) => {
                // rdkafka queues librdkafka's log lines and errors until the client is
                // polled (nothing else polls the metadata client); the cause is logged at
                // about the moment the request fails, so give it a moment to arrive.
                let mut cause = None;
                for _ in 0..20 {
                    while hub.meta.poll(Duration::ZERO).is_some() {}
                    cause = context.last_error();
                    if cause.is_some() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                // librdkafka's logged reason says more than the request's error.
                let what = match cause {
                    Some(c) => format!("cannot reach the brokers (librdkafka: {c})"),
                    None => "cannot reach the brokers".to_string(),
                };
                Err(HubError::Remote {
                    hub: url,
                    what,
                    source,
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Settings for the producers this hub creates from now on.
    pub fn set_producer_config(&mut self, config: &ProducerConfig) {
        self.producer_config = config.clone();
    }

    async fn blocking<T: Send + 'static>(
        &self,
        what: &str,
        f: impl FnOnce() -> Result<T, KafkaError> + Send + 'static,
    ) -> Result<T, HubError> {
        let brokers = self.brokers.clone();
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| err(&brokers, what, e))?
            .map_err(|e| err(&brokers, what, e))
    }

    pub async fn create_topic(&self, name: &str, partitions: u32) -> Result<(), HubError> {
        let partitions = i32::try_from(partitions)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| {
                HubError::Invalid(format!("{partitions} partitions: expected 1 or more"))
            })?;
        // -1: the broker's default replication factor (KIP-464).
        let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(-1));
        let opts = AdminOptions::new().operation_timeout(Some(META_TIMEOUT));
        let results = self
            .admin
            .create_topics([&topic], &opts)
            .await
            .map_err(|e| err(&self.brokers, format!("creating topic {name:?}"), e))?;
        for r in results {
            match r {
                Ok(_) => {}
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {
                    return Err(HubError::TopicExists(name.to_string()));
                }
                Err((t, code)) => {
                    return Err(err(&self.brokers, format!("creating topic {t:?}"), code));
                }
            }
        }
        // Metadata reaches every broker a moment after the create returns.
        for _ in 0..50 {
            if self.topic(name).await?.is_some() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// Asks the cluster for `topic`'s metadata, waiting at most `timeout`: whether the
    /// cluster answers (`Err` when it does not) and has the topic. A health check.
    pub async fn probe(&self, topic: &str, timeout: Duration) -> Result<bool, HubError> {
        let (m, t) = (self.meta.clone(), topic.to_string());
        self.blocking("reading the cluster metadata", move || {
            let md = m.fetch_metadata(Some(&t), timeout)?;
            Ok(md
                .topics()
                .iter()
                .any(|x| x.name() == t && x.error().is_none() && !x.partitions().is_empty()))
        })
        .await
    }

    pub async fn topic(&self, name: &str) -> Result<Option<TopicInfo>, HubError> {
        let (m, topic) = (self.meta.clone(), name.to_string());
        self.blocking(&format!("describing topic {name:?}"), move || {
            topic_info(&m, &topic)
        })
        .await
    }

    pub async fn list_topics(&self) -> Result<Vec<TopicInfo>, HubError> {
        let m = self.meta.clone();
        self.blocking("listing topics", move || {
            let md = m.fetch_metadata(None, META_TIMEOUT)?;
            let mut names: Vec<String> = md
                .topics()
                .iter()
                .map(|t| t.name().to_string())
                .filter(|n| !n.starts_with("__"))
                .collect();
            names.sort();
            let mut out = Vec::new();
            for n in names {
                if let Some(t) = topic_info(&m, &n)? {
                    out.push(t);
                }
            }
            Ok(out)
        })
        .await
    }

    pub async fn delete_topic(&self, name: &str) -> Result<(), HubError> {
        let opts = AdminOptions::new().operation_timeout(Some(META_TIMEOUT));
        let results = self
            .admin
            .delete_topics(&[name], &opts)
            .await
            .map_err(|e| err(&self.brokers, format!("deleting topic {name:?}"), e))?;
        for r in results {
            match r {
                Ok(_) => {}
                Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {
                    return Err(HubError::TopicNotFound(name.to_string()));
                }
                Err((t, code)) => {
                    return Err(err(&self.brokers, format!("deleting topic {t:?}"), code));
                }
            }
        }
        Ok(())
    }

    pub async fn producer(&self, topic: &str) -> Result<KafkaProducer, HubError> {
        self.producer_to(topic, None).await
    }

    /// A producer that writes every record to `partition`, or where librdkafka's
    /// partitioner puts it (by key) when `None`.
    pub async fn producer_to(
        &self,
        topic: &str,
        partition: Option<i32>,
    ) -> Result<KafkaProducer, HubError> {
        let mut c = base_config(&self.brokers);
        c.set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            // A record not acknowledged within this fails, and the pipeline writes it again
            // on a new producer (librdkafka's default is five minutes).
            .set("message.timeout.ms", "30000");
        let p = &self.producer_config;
        if let Some(l) = &p.linger {
            c.set("linger.ms", l.0.as_millis().to_string());
        }
        if let Some(b) = &p.batch_size {
            c.set("batch.size", b.0.to_string());
        }
        if let Some(z) = p.compression {
            c.set(
                "compression.type",
                match z {
                    Compression::None => "none",
                    Compression::Gzip => "gzip",
                    Compression::Snappy => "snappy",
                    Compression::Lz4 => "lz4",
                    Compression::Zstd => "zstd",
                },
            );
        }
        with_settings(&mut c, &self.settings);
        let producer: FutureProducer = c
            .create()
            .map_err(|e| err(&self.brokers, "creating a producer", e))?;
        Ok(KafkaProducer {
            brokers: self.brokers.clone(),
            topic: topic.to_string(),
            partition,
            producer: Detached::new(producer),
            config: c,
        })
    }

    pub async fn consumer(
        &self,
        topic: &str,
        partition: u32,
        consumer_id: Option<&str>,
        start: OffsetStart,
    ) -> Result<KafkaConsumer, HubError> {
        let group = match consumer_id {
            Some(id) => id.to_string(),
            None => format!("runnel-reader-{:016x}", fastrand::u64(..)),
        };
        let consumer: StreamConsumer = with_settings(
            base_config(&self.brokers)
                .set("group.id", &group)
                .set("enable.auto.commit", "false")
                .set("enable.auto.offset.store", "false")
                .set("enable.partition.eof", "false"),
            &self.settings,
        )
        .create()
        .map_err(|e| err(&self.brokers, "creating a consumer", e))?;
        let consumer = Arc::new(consumer);
        let p = i32::try_from(partition)
            .map_err(|_| HubError::Invalid(format!("partition {partition} is out of range")))?;
        let (c, t, stored) = (consumer.clone(), topic.to_string(), consumer_id.is_some());
        let position = self
            .blocking(&format!("positioning a consumer of {topic:?}"), move || {
                let (low, high) = c.fetch_watermarks(&t, p, META_TIMEOUT)?;
                let mut committed = None;
                if stored {
                    let mut tpl = TopicPartitionList::new();
                    tpl.add_partition(&t, p);
                    let got = c.committed_offsets(tpl, META_TIMEOUT)?;
                    if let Some(Offset::Offset(n)) = got.find_partition(&t, p).map(|e| e.offset()) {
                        committed = Some(n);
                    }
                }
                let position = match committed {
                    // Not clamped to the high watermark: some brokers (tansu 0.6) report
                    // it short of the last record.
                    Some(n) => n.max(low),
                    None => match start {
                        OffsetStart::Beginning => low,
                        OffsetStart::End => high,
                        OffsetStart::Absolute(n) => n.clamp(low, high),
                        OffsetStart::FromBeginning(n) => low.saturating_add(i64::from(n)).min(high),
                        OffsetStart::FromEnd(n) => high.saturating_sub(i64::from(n)).max(low),
                    },
                };
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition_offset(&t, p, Offset::Offset(position))?;
                c.assign(&tpl)?;
                Ok(position)
            })
            .await
            .map_err(|e| match e {
                HubError::Remote {
                    source: Some(ref s),
                    ..
                } if s.to_string().contains("Unknown topic")
                    || s.to_string().contains("UnknownTopic") =>
                {
                    HubError::TopicNotFound(topic.to_string())
                }
                e => e,
            })?;
        Ok(KafkaConsumer {
            brokers: self.brokers.clone(),
            topic: topic.to_string(),
            partition,
            consumer,
            position,
        })
    }
}

fn topic_info(m: &BaseConsumer<MetaContext>, name: &str) -> Result<Option<TopicInfo>, KafkaError> {
    let md = m.fetch_metadata(Some(name), META_TIMEOUT)?;
    let Some(t) = md.topics().iter().find(|t| t.name() == name) else {
        return Ok(None);
    };
    if t.error().is_some() || t.partitions().is_empty() {
        return Ok(None);
    }
    let (mut records, mut next) = (0u64, 0i64);
    for p in t.partitions() {
        let (low, high) = m.fetch_watermarks(name, p.id(), META_TIMEOUT)?;
        records += (high - low).max(0) as u64;
        next += high;
    }
    Ok(Some(TopicInfo {
        name: name.to_string(),
        partitions: t.partitions().len() as u32,
        records,
        next_offset: next,
    }))
}

/// Writes records into one topic.
pub struct KafkaProducer {
    brokers: String,
    topic: String,
    partition: Option<i32>,
    producer: Detached<FutureProducer>,
    config: ClientConfig,
}

impl std::fmt::Debug for KafkaProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaProducer")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl KafkaProducer {
    /// Queues every record, then waits for all acknowledgements; returns the offset of the
    /// first record.
    pub async fn send(&mut self, records: Arc<Vec<Record>>) -> Result<i64, HubError> {
        let result = self.try_send(records).await;
        if let Err(e) = &result {
            // An idempotent producer whose broker lost its state (a restarted or replaced
            // cluster) can stay wedged, retrying forever or failed for good; a new producer
            // starts clean. The caller retries the batch on it.
            let fatal = self.producer.client().fatal_error();
            tracing::warn!(topic = %self.topic, error = %crate::Chain(e), fatal = ?fatal, "Kafka delivery failed; starting a new producer.");
            self.restart()?;
        }
        result
    }

    /// Replaces the producer; what the old one still held fails (and is retried by whoever
    /// queued it).
    pub fn restart(&mut self) -> Result<(), HubError> {
        let fresh = self
            .config
            .create()
            .map_err(|e| err(&self.brokers, "creating a producer", e))?;
        // The old one purges its queue as it is destroyed, on its own thread.
        self.producer = Detached::new(fresh);
        Ok(())
    }

    async fn try_send(&mut self, records: Arc<Vec<Record>>) -> Result<i64, HubError> {
        self.enqueue(records).await?.await
    }

    /// Hands one record to librdkafka, waiting while its queue is full. An error is
    /// librdkafka refusing the record before sending it (too large, no such partition).
    async fn queue_one(&self, r: &Record) -> Result<DeliveryFuture, KafkaError> {
        let mut headers = OwnedHeaders::new_with_capacity(r.headers.len());
        for (k, v) in &r.headers {
            headers = headers.insert(Header {
                key: k,
                value: Some(v.as_ref()),
            });
        }
        let mut fr = FutureRecord::to(&self.topic)
            .payload(r.value.as_ref())
            .timestamp(r.timestamp)
            .headers(headers);
        if let Some(k) = &r.key {
            fr = fr.key(k.as_ref());
        }
        if let Some(p) = self.partition {
            fr = fr.partition(p);
        }
        loop {
            match self.producer.send_result(fr) {
                Ok(f) => return Ok(f),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    // librdkafka's queue is full: let it drain, then queue again.
                    fr = back;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((e, _)) => return Err(e),
            }
        }
    }

    /// Hands every record to librdkafka (waiting while its queue is full) and returns a
    /// future of their acknowledgements. librdkafka keeps the order of queued records.
    pub async fn enqueue(&mut self, records: Arc<Vec<Record>>) -> Result<Pending, HubError> {
        let mut pending = Vec::with_capacity(records.len());
        for r in records.iter() {
            let f = self
                .queue_one(r)
                .await
                .map_err(|e| err(&self.brokers, "queueing a record", e))?;
            pending.push(f);
        }
        let brokers = self.brokers.clone();
        Ok(Box::pin(async move {
            let mut first = None;
            for f in pending {
                match f.await {
                    Ok(Ok(d)) => {
                        first.get_or_insert(d.offset);
                    }
                    Ok(Err((e, _))) => return Err(err(&brokers, "delivering a record", e)),
                    Err(e) => return Err(err(&brokers, "the producer was dropped", e)),
                }
            }
            Ok(first.unwrap_or(-1))
        }))
    }

    /// Writes every record and says, for each, whether the brokers acknowledged it: `None`
    /// when they did, the refusal otherwise. One record refused (too large for the broker,
    /// say) does not stop the others. A producer that failed as a whole is replaced, as in
    /// [`KafkaProducer::send`].
    pub async fn send_each(&mut self, records: &[Record]) -> Vec<Option<Refusal>> {
        let mut queued = Vec::with_capacity(records.len());
        for r in records {
            queued.push(self.queue_one(r).await);
        }
        let mut out = Vec::with_capacity(records.len());
        let mut wedged = false;
        for q in queued {
            let result = match q {
                Ok(f) => match f.await {
                    Ok(Ok(_)) => None,
                    Ok(Err((e, _))) => Some(e),
                    Err(_) => Some(KafkaError::Canceled),
                },
                Err(e) => Some(e),
            };
            out.push(result.map(|e| {
                let r = Refusal::of(&e);
                wedged |= !r.permanent;
                r
            }));
        }
        if wedged {
            let fatal = self.producer.client().fatal_error();
            tracing::debug!(topic = %self.topic, fatal = ?fatal, "Kafka delivery failed; starting a new producer.");
            if let Err(e) = self.restart() {
                tracing::warn!(error = %crate::Chain(&e), "Could not start a new producer.");
            }
        }
        out
    }
}

/// Why the brokers (or librdkafka) did not take a record.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// Writing the same record again cannot succeed (too large, malformed, no such
    /// partition); otherwise it may (a timeout, a lost connection, a leader election).
    pub permanent: bool,
    pub message: String,
}

impl Refusal {
    fn of(e: &KafkaError) -> Self {
        use RDKafkaErrorCode as C;
        let permanent = matches!(
            e.rdkafka_error_code(),
            Some(
                C::MessageSizeTooLarge
                    | C::InvalidMessageSize
                    | C::InvalidMessage
                    | C::InvalidRecord
                    | C::InvalidTimestamp
                    | C::UnknownPartition
                    | C::InvalidPartitions
            )
        );
        let message = match e.rdkafka_error_code() {
            Some(code) => format!("{e} ({code:?})"),
            None => e.to_string(),
        };
        Refusal { permanent, message }
    }
}

/// Reads one partition of a topic.
pub struct KafkaConsumer {
    brokers: String,
    topic: String,
    partition: u32,
    consumer: Arc<StreamConsumer>,
    position: i64,
}

impl std::fmt::Debug for KafkaConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaConsumer")
            .field("topic", &self.topic)
            .field("partition", &self.partition)
            .field("position", &self.position)
            .finish_non_exhaustive()
    }
}

impl KafkaConsumer {
    pub async fn fetch(
        &mut self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<ConsumedRecord>, HubError> {
        let mut out = Vec::new();
        let first = match tokio::time::timeout(wait, self.consumer.recv()).await {
            Ok(m) => m,
            Err(_) => return Ok(out),
        };
        let mut next = Some(first);
        while let Some(m) = next.take() {
            let m = match m {
                Ok(m) => m,
                // librdkafka reports broker trouble (a restart, a lost connection) here
                // and recovers by itself; the consumer goes on from its position.
                Err(e) => {
                    tracing::warn!(topic = %self.topic, error = %e, "Kafka consumer error; continuing.");
                    break;
                }
            };
            // After a reconnect librdkafka may hand back what it already gave; skip it.
            if m.offset() >= self.position {
                self.position = m.offset() + 1;
                out.push(ConsumedRecord {
                    topic: self.topic.clone(),
                    partition: self.partition,
                    offset: m.offset(),
                    record: Record {
                        key: m.key().map(bytes::Bytes::copy_from_slice),
                        value: bytes::Bytes::copy_from_slice(m.payload().unwrap_or_default()),
                        timestamp: m.timestamp().to_millis().unwrap_or(0),
                        headers: m
                            .headers()
                            .map(|h| {
                                h.iter()
                                    .map(|h| {
                                        (
                                            h.key.to_string(),
                                            bytes::Bytes::copy_from_slice(
                                                h.value.unwrap_or_default(),
                                            ),
                                        )
                                    })
                                    .collect()
                            })
                            .unwrap_or_default(),
                    },
                });
            }
            if out.len() < max {
                next = self.consumer.recv().now_or_never();
            }
        }
        Ok(out)
    }

    /// Commits `next_offset` for the consumer group, synchronously with the broker.
    pub async fn commit(&mut self, next_offset: i64) -> Result<(), HubError> {
        self.committer().commit(next_offset).await
    }

    /// What commits this consumer's offsets from another task (a source that commits once
    /// the hub stored what it read, while it goes on reading).
    pub fn committer(&self) -> KafkaCommitter {
        KafkaCommitter {
            brokers: self.brokers.clone(),
            topic: self.topic.clone(),
            partition: self.partition as i32,
            consumer: self.consumer.clone(),
        }
    }

    pub fn position(&self) -> i64 {
        self.position
    }

    pub async fn end_offset(&mut self) -> Result<i64, HubError> {
        let (c, t, p) = (
            self.consumer.clone(),
            self.topic.clone(),
            self.partition as i32,
        );
        let brokers = self.brokers.clone();
        tokio::task::spawn_blocking(move || c.fetch_watermarks(&t, p, META_TIMEOUT))
            .await
            .map_err(|e| err(&brokers, "reading the partition's end", e))?
            .map(|(_, high)| high)
            .map_err(|e| err(&brokers, "reading the partition's end", e))
    }
}

/// Commits the offsets of one consumer's partition; cheap to clone.
#[derive(Clone)]
pub struct KafkaCommitter {
    brokers: String,
    topic: String,
    partition: i32,
    consumer: Arc<StreamConsumer>,
}

impl KafkaCommitter {
    /// Commits `next_offset` for the consumer group, synchronously with the broker.
    pub async fn commit(&self, next_offset: i64) -> Result<(), HubError> {
        let (c, t, p) = (self.consumer.clone(), self.topic.clone(), self.partition);
        let brokers = self.brokers.clone();
        tokio::task::spawn_blocking(move || {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(&t, p, Offset::Offset(next_offset))?;
            c.commit(&tpl, CommitMode::Sync)
        })
        .await
        .map_err(|e| err(&brokers, "committing the offset", e))?
        .map_err(|e| err(&brokers, "committing the offset", e))
    }
}
