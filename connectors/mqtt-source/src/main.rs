//! mqtt-source: subscribes to an MQTT topic filter and writes each message into a hub topic,
//! as Fluvio's mqtt-source does, with QoS 1 end to end: a message is acknowledged to the
//! broker only after the hub has stored its record, so with a persistent session
//! (`clean_session: false`) a crash or a broker restart loses nothing.
//!
//! The event loop never waits for the hub: it hands each QoS 1 message's hub acknowledgement
//! to an ack task, which awaits them in arrival order (MQTT wants PUBACKs in order) and only
//! then sends the PUBACK. The hand-over never blocks: rumqttc sends a PUBACK only while its
//! event loop is polled, so an event loop waiting for room in the ack queue, while the ack
//! task waits for the event loop to take its PUBACKs, would stop both for good. The queue
//! holds one entry per message the broker has sent and we have not acknowledged, which the
//! broker's in-flight window bounds; mosquitto 2.0.11 does not keep that window once acks
//! come late (seen here: 74,797 unacknowledged with `max_inflight_messages 1000`), so the
//! queue may grow to the broker's backlog, and the ack task says so once it passes 65,535.
//! With a clean session, acknowledgements of messages from an earlier connection are
//! dropped: that session, and the broker's memory of those messages, is gone.
//! With a persistent session they are sent on the new connection: packet ids belong to the
//! session, and a broker restored from its store (mosquitto) does not always send the
//! messages again, so dropping their acks would leave its in-flight window full.

use std::{
    process::ExitCode,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use mqtt_common::{BrokerUrl, Session};
use mqtt_source::{MqttSource, MqttSourceConfig, PayloadOutputType};
use rumqttc::{
    AsyncClient, ClientError, Event, EventLoop, Incoming, Publish, QoS, SubscribeReasonCode,
};
use runnel_runtime::{
    BoxError, Record, app, config::ConnectorConfig, pipeline::SourceContext, retry::Backoff,
};
use tokio::sync::{mpsc, oneshot};

/// Unacknowledged messages a broker may have outstanding: MQTT packet ids are 16 bits. A
/// longer ack queue means the broker reuses ids of messages not yet acknowledged.
const PACKET_IDS: usize = 65_535;

/// Requests (PUBACKs, the subscription) waiting for the event loop.
const REQUEST_CAPACITY: usize = 4096;

/// The connection a message arrived on, and the lock that keeps an ack of an old connection
/// from reaching a new one.
#[derive(Default)]
struct Generation(Mutex<u64>);

impl Generation {
    fn current(&self) -> u64 {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct PendingAck {
    generation: u64,
    pkid: u16,
    stored: oneshot::Receiver<()>,
}

/// Awaits hub acknowledgements in arrival order and sends each PUBACK after its record is
/// stored. Returns when the queue closes or a record can no longer be stored.
async fn ack_task(
    client: AsyncClient,
    generation: Arc<Generation>,
    persistent: bool,
    mut queue: mpsc::UnboundedReceiver<PendingAck>,
) {
    let mut warned = false;
    while let Some(p) = queue.recv().await {
        if !warned && queue.len() >= PACKET_IDS {
            warned = true;
            tracing::warn!(
                unacknowledged = queue.len() + 1,
                "The broker has sent more unacknowledged QoS 1 messages than MQTT packet ids allow: it is not keeping its in-flight limit (seen with mosquitto 2.0.11 when acks come late). Nothing is lost; acks go out as records are stored."
            );
        }
        if p.stored.await.is_err() {
            // The pipeline stopped before storing it; nothing after it may be acked either.
            // The broker sends the rest again on the next connection.
            tracing::debug!(
                pkid = p.pkid,
                unacknowledged = queue.len() + 1,
                "The pipeline stopped before storing a record; no more PUBACKs are sent."
            );
            return;
        }
        let mut ack = Publish::new("", QoS::AtLeastOnce, Vec::new());
        ack.pkid = p.pkid;
        loop {
            let sent = {
                let g = generation.0.lock().unwrap_or_else(|e| e.into_inner());
                if !persistent && *g != p.generation {
                    break;
                }
                client.try_ack(&ack)
            };
            match sent {
                Ok(()) => break,
                Err(ClientError::TryRequest(_) | ClientError::Request(_)) => {
                    // Either the request queue is full (the event loop is busy: let it
                    // drain) or the event loop is gone, which also closes our queue.
                    if queue.is_closed() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
    }
}

/// Turns one message into a record.
fn record(p: &Publish, kind: PayloadOutputType) -> Record {
    let value = match kind {
        PayloadOutputType::Binary => p.payload.clone(),
        PayloadOutputType::Json => {
            let payload = serde_json::from_slice::<serde_json::Value>(&p.payload)
                .unwrap_or_else(|_| String::from_utf8_lossy(&p.payload).into_owned().into());
            let v = serde_json::json!({ "mqtt_topic": p.topic, "payload": payload });
            Bytes::from(serde_json::to_vec(&v).unwrap_or_default())
        }
    };
    Record::new(value).with_header("mqtt-topic", Bytes::from(p.topic.clone().into_bytes()))
}

struct Source {
    url: BrokerUrl,
    topic: String,
    qos: QoS,
    output: PayloadOutputType,
    /// The `format` option; each message is a stream of its own (a CSV header row in it
    /// is read as one).
    decoder: runnel_codec::Decoder,
    /// Ids of events made here (binary mode): the start time and a count.
    started: i64,
    made: u64,
    client: AsyncClient,
    events: EventLoop,
    generation: Arc<Generation>,
    acks: Option<mpsc::UnboundedSender<PendingAck>>,
}

impl Source {
    /// The records of one message: one, or with `format: csv` one per row; none when it
    /// does not decode, which is logged with the reason and counted in records_failed.
    fn records(&mut self, p: &Publish, ctx: &SourceContext) -> Vec<Record> {
        if self.decoder.is_passthrough() {
            return vec![record(p, self.output)];
        }
        self.decoder.reset();
        let mut out = Vec::new();
        let (started, made) = (self.started, &mut self.made);
        let id = || {
            *made += 1;
            format!("{started}-{made}")
        };
        if let Err(e) = self.decoder.decode_into(p.payload.clone(), id, &mut out) {
            ctx.metrics().records_failed.inc();
            tracing::warn!(mqtt_topic = %p.topic, reason = %runnel_runtime::Chain(&e), "Skipping a message that does not decode.");
        }
        let topic = Bytes::from(p.topic.clone().into_bytes());
        out.into_iter()
            .map(|d| {
                let mut r = Record::new(d.value);
                r.headers = d.headers;
                r.with_header("mqtt-topic", topic.clone())
            })
            .collect()
    }

    /// Handles one event; `Err` stops the connector.
    async fn on_event(&mut self, event: Event, ctx: &SourceContext) -> Result<(), BoxError> {
        match event {
            Event::Incoming(Incoming::ConnAck(ack)) => {
                ctx.health().set_upstream(true);
                tracing::info!(broker = %self.url, session_present = ack.session_present, "Connected to the MQTT broker.");
                // A resumed session still has the subscription; subscribing again would
                // make the broker send its retained messages again.
                if !ack.session_present {
                    self.client
                        .try_subscribe(self.topic.clone(), self.qos)
                        .map_err(|_| "the MQTT event loop stopped")?;
                }
            }
            Event::Incoming(Incoming::SubAck(ack)) => {
                if ack
                    .return_codes
                    .iter()
                    .any(|c| matches!(c, SubscribeReasonCode::Failure))
                {
                    return Err(format!(
                        "the broker refused the subscription to {:?} (not authorized for it?)",
                        self.topic
                    )
                    .into());
                }
                tracing::info!(topic = %self.topic, qos = self.qos as u8, "Subscribed.");
            }
            Event::Incoming(Incoming::Publish(p)) => {
                let records = self.records(&p, ctx);
                match (&self.acks, p.qos) {
                    (Some(acks), QoS::AtLeastOnce) => {
                        let stored = ctx.send_all_acked(records).await?;
                        let pending = PendingAck {
                            generation: self.generation.current(),
                            pkid: p.pkid,
                            stored,
                        };
                        // Never waits: see the module doc.
                        acks.send(pending)
                            .map_err(|_| "the acknowledgement task stopped")?;
                    }
                    _ => {
                        for r in records {
                            ctx.send(r).await?;
                        }
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// After a lost connection: messages read before it broke are still handed on (their
    /// acks will be dropped); acks still queued or on their way belong to the old
    /// connection, and the broker sends those messages again on the new one.
    async fn forget_connection(&mut self, ctx: &SourceContext) -> Result<(), BoxError> {
        let leftovers: Vec<Event> = self.events.state.events.drain(..).collect();
        for e in leftovers {
            if matches!(e, Event::Incoming(Incoming::Publish(_))) {
                self.on_event(e, ctx).await?;
            }
        }
        let mut g = self.generation.0.lock().unwrap_or_else(|e| e.into_inner());
        *g += 1;
        // Drops PUBACKs queued since rumqttc cleaned up, keeps other requests.
        self.events.clean();
        Ok(())
    }
}

async fn run(
    config: Arc<ConnectorConfig<MqttSourceConfig>>,
    ctx: SourceContext,
) -> Result<(), BoxError> {
    let c = &config.config;
    let url = BrokerUrl::parse("mqtt.url", &c.url)?;
    let qos = mqtt_common::qos("mqtt.qos", c.qos)?;
    let client_id = c
        .client_id
        .clone()
        .or_else(|| url.client_id.clone())
        .unwrap_or_else(mqtt_common::generated_client_id);
    let options = mqtt_common::options(
        &url,
        &Session {
            client_id: &client_id,
            keep_alive: c.timeout.0,
            clean_session: c.clean_session,
            username: c.username.as_deref(),
            password: c.password.as_ref(),
            inflight: 100,
            manual_acks: qos == QoS::AtLeastOnce,
        },
    )?;
    let (client, events) = AsyncClient::new(options, REQUEST_CAPACITY);
    let generation = Arc::new(Generation::default());
    let (acks, ack_task) = if qos == QoS::AtLeastOnce {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(ack_task(
            client.clone(),
            generation.clone(),
            !c.clean_session,
            rx,
        ));
        (Some(tx), Some(task))
    } else {
        (None, None)
    };
    tracing::info!(broker = %url, topic = %c.topic, qos = c.qos, client_id = %client_id, clean_session = c.clean_session, "Connecting to the MQTT broker.");
    let mut s = Source {
        url,
        topic: c.topic.clone(),
        qos,
        output: c.payload_output_type,
        decoder: runnel_codec::Decoder::new(&c.format),
        started: runnel_runtime::record::now_millis(),
        made: 0,
        client,
        events,
        generation,
        acks,
    };
    let mut backoff = Backoff::new(c.initial_backoff.0, c.max_backoff.0);
    // Whether the last connection attempt succeeded, so each outage is logged once.
    let mut up = true;
    loop {
        let polled = tokio::select! {
            biased;
            _ = ctx.shutdown().wait() => break,
            e = s.events.poll() => e,
        };
        match polled {
            Ok(event) => {
                if matches!(event, Event::Incoming(Incoming::ConnAck(_))) {
                    up = true;
                    backoff.reset();
                }
                s.on_event(event, &ctx).await?;
            }
            Err(e) => {
                ctx.health().set_upstream(false);
                s.forget_connection(&ctx).await?;
                let reason = mqtt_common::describe(&e);
                if mqtt_common::is_fatal(&e) {
                    return Err(format!("{}: {reason}", s.url).into());
                }
                let wait = backoff.next_delay();
                if up {
                    tracing::warn!(broker = %s.url, error = %reason, retry_in_ms = wait.as_millis() as u64, "MQTT connection lost; reconnecting with backoff.");
                } else {
                    tracing::debug!(broker = %s.url, error = %reason, retry_in_ms = wait.as_millis() as u64, "Reconnect failed.");
                }
                up = false;
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = ctx.shutdown().wait() => break,
                }
            }
        }
    }
    shutdown(s, ack_task).await;
    Ok(())
}

/// On shutdown: wait (briefly) for the hub to store what was taken, send those PUBACKs and
/// disconnect cleanly. Anything not acked is sent again by the broker after a restart.
async fn shutdown(mut s: Source, ack_task: Option<tokio::task::JoinHandle<()>>) {
    s.acks = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    if let Some(mut task) = ack_task {
        loop {
            tokio::select! {
                _ = &mut task => break,
                _ = tokio::time::sleep_until(deadline) => { task.abort(); break }
                r = s.events.poll() => if r.is_err() { task.abort(); break },
            }
        }
    }
    if s.client.try_disconnect().is_ok() {
        while tokio::time::Instant::now() < deadline {
            match tokio::time::timeout_at(deadline, s.events.poll()).await {
                Ok(Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect))) | Ok(Err(_)) | Err(_) => {
                    break;
                }
                Ok(Ok(_)) => {}
            }
        }
    }
}

fn main() -> ExitCode {
    app::source_main::<MqttSource, _, _>(run)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_output_wraps_topic_and_payload() {
        let p = Publish::new("a/b", QoS::AtMostOnce, br#"{"t":21.5}"#.to_vec());
        let r = record(&p, PayloadOutputType::Json);
        assert_eq!(
            r.value,
            Bytes::from_static(br#"{"mqtt_topic":"a/b","payload":{"t":21.5}}"#)
        );
        let p = Publish::new("a/b", QoS::AtMostOnce, b"plain".to_vec());
        let r = record(&p, PayloadOutputType::Json);
        assert_eq!(
            r.value,
            Bytes::from_static(br#"{"mqtt_topic":"a/b","payload":"plain"}"#)
        );
        let r = record(&p, PayloadOutputType::Binary);
        assert_eq!(r.value, Bytes::from_static(b"plain"));
        assert_eq!(r.headers, vec![("mqtt-topic".into(), Bytes::from("a/b"))]);
    }
}
