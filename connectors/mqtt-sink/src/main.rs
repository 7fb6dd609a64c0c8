//! mqtt-sink: publishes each record's value to an MQTT topic, fixed or taken from the
//! record's key. At QoS 1 a delivery succeeds only once the broker's PUBACK arrived, so the
//! runtime commits the hub offset only after the broker has the message.
//!
//! rumqttc reports which packet id each publish got (`Outgoing::Publish`) in the order the
//! requests were queued, and then the PUBACK for that id. A delivery queues its publish and
//! its waiter under one lock, so the event loop can pair them in order. When the connection
//! breaks, every waiting delivery fails (the runtime retries it) and rumqttc's own resend
//! queue is emptied, so a publish is never sent twice by two parties.

use std::{
    collections::{HashMap, VecDeque},
    process::ExitCode,
    sync::{Arc, Mutex},
    time::Duration,
};

use mqtt_common::{BrokerUrl, Session};
use mqtt_sink::{MqttSink, MqttSinkConfig, topic_check};
use rumqttc::{AsyncClient, Event, EventLoop, Incoming, Outgoing, QoS};
use runnel_runtime::{
    BoxError, ConsumedRecord, app,
    config::{ConnectorConfig, HumanDuration},
    pipeline::{Deliver, DeliveryError, SinkContext},
    retry::Backoff,
};
use tokio::sync::oneshot;

type Waiter = oneshot::Sender<Result<(), String>>;

/// Deliveries waiting for the event loop: first for their packet id, then for the PUBACK.
#[derive(Default)]
struct Waiting {
    next_id: u64,
    /// In the order their publishes were queued to rumqttc.
    queued: VecDeque<(u64, Waiter)>,
    /// Sent at QoS 1, by packet id.
    sent: HashMap<u16, (u64, Waiter)>,
    /// A publish rumqttc holds back because its packet id is still in use; its
    /// `Outgoing::Publish` comes later and must not take a new waiter.
    collided: Option<u16>,
}

impl Waiting {
    fn fail_all(&mut self, reason: &str) {
        for (_, w) in self.queued.drain(..) {
            let _ = w.send(Err(reason.to_string()));
        }
        for (_, (_, w)) in self.sent.drain() {
            let _ = w.send(Err(reason.to_string()));
        }
        self.collided = None;
    }

    fn forget(&mut self, id: u64) {
        self.queued.retain(|(i, _)| *i != id);
        self.sent.retain(|_, (i, _)| *i != id);
    }
}

struct Publisher {
    client: AsyncClient,
    qos: QoS,
    retain: bool,
    topic: Option<String>,
    publish_timeout: Duration,
    waiting: Arc<Mutex<Waiting>>,
    encoder: runnel_codec::Encoder,
}

impl Publisher {
    fn new(config: &ConnectorConfig<MqttSinkConfig>, ctx: &SinkContext) -> Result<Self, BoxError> {
        let c = &config.config;
        let concurrency = config.delivery.as_ref().map_or(1, |d| d.concurrency);
        let url = BrokerUrl::parse("mqtt.url", &c.url)?;
        let qos = mqtt_common::qos("mqtt.qos", c.qos)?;
        let client_id = c
            .client_id
            .clone()
            .or_else(|| url.client_id.clone())
            .unwrap_or_else(mqtt_common::generated_client_id);
        let inflight = u16::try_from(concurrency.max(100)).unwrap_or(u16::MAX);
        let options = mqtt_common::options(
            &url,
            &Session {
                client_id: &client_id,
                keep_alive: c.timeout.0,
                clean_session: true,
                username: c.username.as_deref(),
                password: c.password.as_ref(),
                inflight,
                manual_acks: false,
            },
        )?;
        let (client, events) = AsyncClient::new(options, concurrency.max(1) * 2 + 8);
        let waiting = Arc::new(Mutex::new(Waiting::default()));
        tracing::info!(broker = %url, qos = c.qos, client_id = %client_id, "Connecting to the MQTT broker.");
        tokio::spawn(event_loop(events, waiting.clone(), url, ctx.clone()));
        Ok(Publisher {
            client,
            qos,
            retain: c.retain,
            topic: c.topic.clone(),
            publish_timeout: c.publish_timeout.0,
            waiting,
            encoder: runnel_codec::Encoder::new(&c.format),
        })
    }

    fn topic_of<'a>(&'a self, record: &'a ConsumedRecord) -> Result<&'a str, DeliveryError> {
        if let Some(t) = &self.topic {
            return Ok(t);
        }
        let key = record.record.key.as_ref().ok_or_else(|| {
            DeliveryError::permanent(
                "the record has no key, and topic_from_key takes the MQTT topic from it",
            )
        })?;
        let t = std::str::from_utf8(key).map_err(|_| {
            DeliveryError::permanent("the record's key is not UTF-8, so it cannot be an MQTT topic")
        })?;
        topic_check(t).map_err(|m| DeliveryError::permanent(format!("the record's key {m}")))?;
        Ok(t)
    }
}

fn lock(w: &Mutex<Waiting>) -> std::sync::MutexGuard<'_, Waiting> {
    w.lock().unwrap_or_else(|e| e.into_inner())
}

impl Deliver for Publisher {
    async fn deliver(&self, record: &ConsumedRecord) -> Result<(), DeliveryError> {
        let topic = self.topic_of(record)?;
        let payload = if self.encoder.is_passthrough() {
            record.record.value.clone()
        } else {
            let id = format!("{}-{}-{}", record.topic, record.partition, record.offset);
            self.encoder
                .encode(&record.record, &id)
                .map(Into::into)
                .map_err(|e| DeliveryError::permanent(runnel_runtime::chain(&e)))?
        };
        let deadline = tokio::time::Instant::now() + self.publish_timeout;
        let (tx, rx) = oneshot::channel();
        let mut tx = Some(tx);
        let id = loop {
            let queued = {
                let mut w = lock(&self.waiting);
                let id = w.next_id;
                match self
                    .client
                    .try_publish(topic, self.qos, self.retain, payload.clone())
                {
                    Ok(()) => {
                        w.next_id += 1;
                        if let Some(tx) = tx.take() {
                            w.queued.push_back((id, tx));
                        }
                        Some(id)
                    }
                    Err(_) => None,
                }
            };
            if let Some(id) = queued {
                break id;
            }
            // rumqttc's request queue is full (the connection is down or slow).
            if tokio::time::Instant::now() >= deadline {
                return Err(DeliveryError::retryable(format!(
                    "the publish could not be queued within {} (is the broker reachable?)",
                    humantime_short(self.publish_timeout)
                )));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(reason))) => Err(DeliveryError::retryable(reason)),
            Ok(Err(_)) => Err(DeliveryError::retryable("the MQTT event loop stopped")),
            Err(_) => {
                lock(&self.waiting).forget(id);
                Err(DeliveryError::retryable(format!(
                    "no acknowledgement from the broker within {}",
                    humantime_short(self.publish_timeout)
                )))
            }
        }
    }
}

fn humantime_short(d: Duration) -> String {
    HumanDuration::<1>(d).to_string()
}

/// Drives the connection: pairs publishes with their waiters, reconnects with backoff.
/// `/readyz` follows the connection: ready from the broker's CONNACK until it is lost.
async fn event_loop(
    mut events: EventLoop,
    waiting: Arc<Mutex<Waiting>>,
    url: BrokerUrl,
    ctx: SinkContext,
) {
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    let mut up = true;
    loop {
        match events.poll().await {
            Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                tracing::info!(broker = %url, "Connected to the MQTT broker.");
                backoff.reset();
                up = true;
                ctx.set_ready(true);
            }
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                let mut w = lock(&waiting);
                if w.collided == Some(pkid) {
                    w.collided = None;
                    continue;
                }
                if let Some((id, waiter)) = w.queued.pop_front() {
                    if pkid == 0 {
                        // QoS 0: written to the connection is as far as it goes.
                        let _ = waiter.send(Ok(()));
                    } else {
                        w.sent.insert(pkid, (id, waiter));
                    }
                }
            }
            Ok(Event::Outgoing(Outgoing::AwaitAck(pkid))) => {
                let mut w = lock(&waiting);
                if let Some(entry) = w.queued.pop_front() {
                    w.sent.insert(pkid, entry);
                    w.collided = Some(pkid);
                }
            }
            Ok(Event::Incoming(Incoming::PubAck(ack))) => {
                if let Some((_, waiter)) = lock(&waiting).sent.remove(&ack.pkid) {
                    let _ = waiter.send(Ok(()));
                }
            }
            Ok(_) => {}
            Err(e) => {
                ctx.set_ready(false);
                let reason = mqtt_common::describe(&e);
                {
                    let mut w = lock(&waiting);
                    w.fail_all(&format!("the MQTT connection was lost: {reason}"));
                    // Everything queued or unacknowledged has just failed and will be
                    // retried by the runtime: rumqttc must not also send it again.
                    events.clean();
                    events.pending.clear();
                    events.state.events.clear();
                    events.state.collision = None;
                }
                let wait = backoff.next_delay();
                if mqtt_common::is_fatal(&e) {
                    tracing::error!(broker = %url, error = %reason, retry_in_ms = wait.as_millis() as u64, "The MQTT broker refused the connection; records fail until it accepts it.");
                } else if up {
                    tracing::warn!(broker = %url, error = %reason, retry_in_ms = wait.as_millis() as u64, "MQTT connection lost; reconnecting with backoff.");
                } else {
                    tracing::debug!(broker = %url, error = %reason, retry_in_ms = wait.as_millis() as u64, "Reconnect failed.");
                }
                up = false;
                tokio::time::sleep(wait).await;
            }
        }
    }
}

fn main() -> ExitCode {
    app::sink_main::<MqttSink, _, _>(Publisher::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_to_publish_to() {
        assert!(topic_check("a/b").is_ok());
        assert!(topic_check("").is_err());
        assert!(topic_check("a/+").is_err());
        assert!(topic_check("a/#").is_err());
    }
}
