//! kafka-sink: writes each batch to a topic on a Kafka cluster of the user's own with the
//! producer code the Kafka hub runs on (librdkafka through rdkafka: `acks=all`,
//! idempotence, order kept within a partition), and counts the batch delivered (so the hub
//! offset is committed) only once the brokers acknowledged every record of it.
//!
//! A record the brokers refuse for good (larger than message.max.bytes, a partition the
//! topic does not have) follows on_error on its own; any other failure (a timeout, a lost
//! leader) fails the batch, which is written again on a fresh producer (at least once).
//! While the cluster does not answer, batches wait for it and `/readyz` says 503.

use std::{process::ExitCode, sync::Arc, time::Duration};

use kafka_sink::{KafkaSink, KafkaSinkConfig};
use runnel_runtime::{
    BoxError, ConsumedRecord, Record, app,
    config::ConnectorConfig,
    hub::{
        HubError,
        kafka::{KafkaHub, KafkaProducer},
    },
    pipeline::{DeliverBatch, DeliveryError, SinkContext},
};
use tokio::sync::{Mutex, watch};

/// How often the cluster is asked whether it is there.
const PROBE_EVERY: Duration = Duration::from_secs(2);
/// A probe not answered within this counts as the cluster being away.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

struct Writer {
    brokers: String,
    settings: Vec<(String, String)>,
    topic: String,
    partition: Option<i32>,
    create_topic: bool,
    encoder: runnel_codec::Encoder,
    /// The cluster, once it answered; librdkafka reconnects by itself after that.
    hub: Mutex<Option<KafkaHub>>,
    producer: Mutex<Option<KafkaProducer>>,
    /// Whether the cluster answered the last probe (or write).
    up: watch::Sender<bool>,
    ctx: SinkContext,
}

impl Writer {
    /// The cluster, connected first when it was not yet.
    async fn hub(&self) -> Result<KafkaHub, HubError> {
        let mut hub = self.hub.lock().await;
        if let Some(h) = hub.as_ref() {
            return Ok(h.clone());
        }
        let h = KafkaHub::connect_with(&self.brokers, self.settings.clone()).await?;
        if self.create_topic && h.topic(&self.topic).await?.is_none() {
            match h.create_topic(&self.topic, 1).await {
                Ok(()) => {
                    tracing::info!(topic = %self.topic, "Created the topic on the Kafka cluster.")
                }
                Err(HubError::TopicExists(_)) => {}
                Err(e) => return Err(e),
            }
        }
        *hub = Some(h.clone());
        Ok(h)
    }

    fn set_up(&self, up: bool) {
        self.up.send_replace(up);
        self.ctx.set_ready(up);
    }

    /// The record as it goes to Kafka: its key, timestamp and headers, the value made by
    /// the format.
    fn outgoing(&self, r: &ConsumedRecord) -> Result<Record, DeliveryError> {
        let mut out = r.record.clone();
        if !self.encoder.is_passthrough() {
            let id = format!("{}-{}-{}", r.topic, r.partition, r.offset);
            let value = self
                .encoder
                .encode(&r.record, &id)
                .map_err(|e| DeliveryError::permanent(runnel_runtime::chain(&e)))?;
            out.value = value.into();
        }
        Ok(out)
    }
}

/// Keeps `/readyz` true to the cluster: connects, then asks for the topic's metadata every
/// few seconds.
async fn keep(w: Arc<Writer>) {
    let mut logged = false;
    loop {
        let probe = match w.hub().await {
            Ok(h) => h.probe(&w.topic, PROBE_TIMEOUT).await,
            Err(e) => Err(e),
        };
        match probe {
            Ok(true) => {
                if logged {
                    tracing::info!(topic = %w.topic, "The Kafka cluster answers again.");
                }
                logged = false;
                w.set_up(true);
            }
            Ok(false) => {
                // librdkafka writes to a topic the brokers create on first use (their
                // auto.create.topics.enable); say so, but do not hold records back.
                if !logged {
                    tracing::warn!(topic = %w.topic, "The Kafka cluster has no such topic; records are written when the brokers create it on first use (or set create_topic).");
                }
                logged = true;
                w.set_up(true);
            }
            Err(e) => {
                if !logged {
                    tracing::warn!(brokers = %w.brokers, error = %runnel_runtime::Chain(&e), "Cannot reach the Kafka cluster; /readyz reports it, and records wait.");
                }
                logged = true;
                w.set_up(false);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(PROBE_EVERY) => {}
            _ = w.ctx.shutdown().wait() => return,
        }
    }
}

impl DeliverBatch for Writer {
    async fn deliver_batch(
        &self,
        batch: &[ConsumedRecord],
    ) -> Result<Vec<(usize, DeliveryError)>, DeliveryError> {
        // While the cluster is away the batch waits for it: an outage does not use up the
        // batch's attempts, and /readyz says 503 meanwhile.
        let mut up = self.up.subscribe();
        tokio::select! {
            r = up.wait_for(|u| *u) => {
                r.map_err(|_| DeliveryError::retryable("the connection watch stopped"))?;
            }
            _ = self.ctx.shutdown().wait() => return Err(DeliveryError::retryable("shutting down")),
        }
        let mut rejected = Vec::new();
        let mut records = Vec::with_capacity(batch.len());
        // For each record written, its index in the batch.
        let mut owners = Vec::with_capacity(batch.len());
        for (i, r) in batch.iter().enumerate() {
            match self.outgoing(r) {
                Ok(rec) => {
                    records.push(rec);
                    owners.push(i);
                }
                Err(e) => rejected.push((i, e)),
            }
        }
        if records.is_empty() {
            return Ok(rejected);
        }
        let mut producer = self.producer.lock().await;
        if producer.is_none() {
            let hub = self
                .hub()
                .await
                .map_err(|e| DeliveryError::retryable(runnel_runtime::chain(&e)))?;
            *producer = Some(
                hub.producer_to(&self.topic, self.partition)
                    .await
                    .map_err(|e| DeliveryError::retryable(runnel_runtime::chain(&e)))?,
            );
        }
        let Some(p) = producer.as_mut() else {
            return Err(DeliveryError::retryable("no producer"));
        };
        let outcomes = p.send_each(&records).await;
        let mut retry = None;
        for (outcome, &i) in outcomes.into_iter().zip(&owners) {
            match outcome {
                None => {}
                Some(r) if r.permanent => rejected.push((i, DeliveryError::permanent(r.message))),
                Some(r) => {
                    retry.get_or_insert(r.message);
                }
            }
        }
        if let Some(e) = retry {
            // The whole batch again, once the cluster answers.
            self.set_up(false);
            return Err(DeliveryError::retryable(e));
        }
        rejected.sort_by_key(|(i, _)| *i);
        Ok(rejected)
    }
}

fn make(config: &ConnectorConfig<KafkaSinkConfig>, ctx: &SinkContext) -> Result<Writer, BoxError> {
    let c = &config.config;
    let brokers = kafka_common::brokers(&c.url)?;
    let settings = c.client_settings()?;
    KafkaHub::check_settings(&brokers, &settings)?;
    Ok(Writer {
        brokers,
        settings,
        topic: c.topic.clone(),
        partition: c.partition,
        create_topic: c.create_topic,
        encoder: runnel_codec::Encoder::new(&c.format),
        hub: Mutex::new(None),
        producer: Mutex::new(None),
        up: watch::channel(false).0,
        ctx: ctx.clone(),
    })
}

fn main() -> ExitCode {
    app::batch_sink_main::<KafkaSink, _, _>(|config, ctx| {
        let w = Arc::new(make(config, ctx)?);
        tokio::spawn(keep(w.clone()));
        Ok(w)
    })
}
