//! rabbitmq-sink: publishes each record to an exchange on a channel in confirm mode. A record
//! counts as delivered only once the broker confirmed it (so the hub offset is committed only
//! after the broker has it); a message the broker returns as unroutable (mandatory) fails for
//! good and follows on_error; a nack, a timeout or a lost connection is retried, on a new
//! connection when the old one is gone. `/readyz` follows the connection.

use std::{process::ExitCode, sync::Arc, time::Duration};

use lapin::{
    BasicProperties, Channel, Confirmation, Connection,
    options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions},
    types::{AMQPValue, FieldTable, LongString, ShortString},
};
use rabbitmq_common::Address;
use rabbitmq_sink::{RabbitmqSink, RabbitmqSinkConfig, RoutingKey};
use runnel_runtime::{
    BoxError, ConsumedRecord, app,
    config::ConnectorConfig,
    pipeline::{Deliver, DeliveryError, SinkContext},
};
use tokio::sync::Mutex;

/// How often the connection is checked (and made again when lost) while nothing is sent.
const KEEP_EVERY: Duration = Duration::from_secs(2);

struct Link {
    conn: Connection,
    channel: Channel,
}

struct Shared {
    addr: Address,
    exchange: String,
    declare: Option<lapin::ExchangeKind>,
    link: Mutex<Option<Link>>,
    ctx: SinkContext,
}

impl Shared {
    /// The channel, connecting first when there is none (or the last one broke).
    async fn channel(&self) -> Result<Channel, lapin::Error> {
        let mut link = self.link.lock().await;
        if let Some(l) = link.as_ref() {
            if l.conn.status().connected() && l.channel.status().connected() {
                return Ok(l.channel.clone());
            }
            tracing::warn!(broker = %self.addr, "RabbitMQ connection lost; connecting again.");
            *link = None;
            self.ctx.set_ready(false);
        }
        let conn = rabbitmq_common::connect(&self.addr, "runnel rabbitmq-sink").await?;
        let channel = conn.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        if let Some(kind) = &self.declare {
            channel
                .exchange_declare(
                    self.exchange.as_str().into(),
                    kind.clone(),
                    ExchangeDeclareOptions {
                        durable: true,
                        ..ExchangeDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await?;
        }
        tracing::info!(broker = %self.addr, exchange = %self.exchange, "Connected to RabbitMQ.");
        self.ctx.set_ready(true);
        *link = Some(Link {
            conn,
            channel: channel.clone(),
        });
        Ok(channel)
    }

    /// Drops the connection after a failure, so the next attempt makes a new one.
    async fn broken(&self) {
        if let Some(l) = self.link.lock().await.take() {
            let _ = l.conn.close(320, "reconnecting".into()).await;
        }
        self.ctx.set_ready(false);
    }
}

/// Keeps `/readyz` true to the broker while no records flow: connects at start, and again
/// whenever the connection is lost.
async fn keep(shared: Arc<Shared>) {
    let mut was_down_logged = false;
    loop {
        match shared.channel().await {
            Ok(_) => was_down_logged = false,
            Err(e) => {
                shared.ctx.set_ready(false);
                if rabbitmq_common::is_fatal(&e) {
                    shared.ctx.fail(format!(
                        "{}: RabbitMQ refused the login: {}",
                        shared.addr,
                        rabbitmq_common::describe(&e)
                    ));
                    return;
                } else if !was_down_logged {
                    tracing::warn!(broker = %shared.addr, error = %rabbitmq_common::describe(&e), "Cannot connect to RabbitMQ; /readyz reports it, and records wait.");
                }
                was_down_logged = true;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(KEEP_EVERY) => {}
            _ = shared.ctx.shutdown().wait() => return,
        }
    }
}

struct Publisher {
    shared: Arc<Shared>,
    routing: RoutingKey,
    persistent: bool,
    mandatory: bool,
    content_type: Option<String>,
    encoder: runnel_codec::Encoder,
    publish_timeout: Duration,
}

impl Publisher {
    fn new(
        config: &ConnectorConfig<RabbitmqSinkConfig>,
        ctx: &SinkContext,
    ) -> Result<Self, BoxError> {
        let c = &config.config;
        let declare = c
            .declare_exchange
            .then_some(match c.exchange_type.as_str() {
                "fanout" => lapin::ExchangeKind::Fanout,
                "topic" => lapin::ExchangeKind::Topic,
                "headers" => lapin::ExchangeKind::Headers,
                _ => lapin::ExchangeKind::Direct,
            });
        let shared = Arc::new(Shared {
            addr: c.address()?,
            exchange: c.exchange.clone(),
            declare,
            link: Mutex::new(None),
            ctx: ctx.clone(),
        });
        tokio::spawn(keep(shared.clone()));
        let encoder = runnel_codec::Encoder::new(&c.format);
        let content_type = c
            .content_type
            .clone()
            .or_else(|| encoder.media_type().map(String::from));
        Ok(Publisher {
            shared,
            routing: c.routing()?,
            persistent: c.persistent,
            mandatory: c.mandatory,
            content_type,
            encoder,
            publish_timeout: c.publish_timeout.0,
        })
    }

    fn routing_key<'a>(&'a self, r: &'a ConsumedRecord) -> Result<String, DeliveryError> {
        match &self.routing {
            RoutingKey::Fixed(k) => Ok(k.clone()),
            RoutingKey::RecordKey => match &r.record.key {
                Some(k) => key_text(k, "the record's key"),
                None => Err(DeliveryError::permanent(
                    "the record has no key to route by (routing_key_from: key)",
                )),
            },
            RoutingKey::Header(name) => match r.record.headers.iter().find(|(k, _)| k == name) {
                Some((_, v)) => key_text(v, &format!("header {name:?}")),
                None => Err(DeliveryError::permanent(format!(
                    "the record has no header {name:?} to route by (routing_key_from: header:{name})"
                ))),
            },
        }
    }

    fn properties(&self, r: &ConsumedRecord) -> BasicProperties {
        let mut headers = FieldTable::default();
        let mut content_type = self.content_type.clone();
        for (k, v) in &r.record.headers {
            if k.eq_ignore_ascii_case("content-type") {
                content_type.get_or_insert_with(|| String::from_utf8_lossy(v).into_owned());
                continue;
            }
            if k.len() <= 255 {
                headers.insert(
                    ShortString::from(k.as_str()),
                    AMQPValue::LongString(LongString::from(v.to_vec())),
                );
            }
        }
        let mut p = BasicProperties::default()
            .with_headers(headers)
            .with_delivery_mode(if self.persistent { 2 } else { 1 });
        if let Some(t) = content_type {
            p = p.with_content_type(ShortString::from(t));
        }
        p
    }
}

fn key_text(v: &[u8], what: &str) -> Result<String, DeliveryError> {
    match std::str::from_utf8(v) {
        Ok(s) if s.len() <= 255 => Ok(s.to_string()),
        Ok(_) => Err(DeliveryError::permanent(format!(
            "{what} is longer than 255 bytes: not a routing key"
        ))),
        Err(_) => Err(DeliveryError::permanent(format!(
            "{what} is not UTF-8: not a routing key"
        ))),
    }
}

impl Deliver for Publisher {
    async fn deliver(&self, record: &ConsumedRecord) -> Result<(), DeliveryError> {
        let routing_key = self.routing_key(record)?;
        let body = if self.encoder.is_passthrough() {
            record.record.value.to_vec()
        } else {
            let id = format!("{}-{}-{}", record.topic, record.partition, record.offset);
            self.encoder
                .encode(&record.record, &id)
                .map_err(|e| DeliveryError::permanent(runnel_runtime::chain(&e)))?
        };
        let shared = &self.shared;
        let mut connected = true;
        let attempt = async {
            // While the broker is away the attempt waits for it (up to publish_timeout),
            // so an outage of the broker does not use up the record's attempts.
            let mut wait = Duration::from_millis(100);
            let channel = loop {
                match shared.channel().await {
                    Ok(c) => break c,
                    Err(e) if rabbitmq_common::is_fatal(&e) => return Err(e),
                    Err(_) => {
                        connected = false;
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(Duration::from_secs(2));
                    }
                }
            };
            connected = true;
            let confirm = channel
                .basic_publish(
                    shared.exchange.as_str().into(),
                    routing_key.as_str().into(),
                    BasicPublishOptions {
                        mandatory: self.mandatory,
                        ..BasicPublishOptions::default()
                    },
                    &body,
                    self.properties(record),
                )
                .await?;
            confirm.await
        };
        let confirmation = match tokio::time::timeout(self.publish_timeout, attempt).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                shared.broken().await;
                return Err(DeliveryError::retryable(rabbitmq_common::describe(&e)));
            }
            Err(_) if !connected => {
                return Err(DeliveryError::retryable(format!(
                    "the broker could not be reached within {} (publish_timeout)",
                    humantime_short(self.publish_timeout)
                )));
            }
            Err(_) => {
                shared.broken().await;
                return Err(DeliveryError::retryable(format!(
                    "no confirm from the broker within {} (publish_timeout)",
                    humantime_short(self.publish_timeout)
                )));
            }
        };
        match confirmation {
            Confirmation::Ack(None) => Ok(()),
            Confirmation::Ack(Some(returned)) | Confirmation::Nack(Some(returned))
                if returned.reply_code == 312 =>
            {
                Err(DeliveryError::permanent(format!(
                    "unroutable: no queue takes routing key {routing_key:?} on exchange {:?} (the broker returned it: {} {})",
                    shared.exchange,
                    returned.reply_code,
                    returned.reply_text.as_str()
                )))
            }
            Confirmation::Ack(Some(returned)) | Confirmation::Nack(Some(returned)) => {
                Err(DeliveryError::retryable(format!(
                    "the broker returned the message: {} {}",
                    returned.reply_code,
                    returned.reply_text.as_str()
                )))
            }
            Confirmation::Nack(None) => Err(DeliveryError::retryable(
                "the broker could not take the message (nack)",
            )),
            Confirmation::NotRequested => Err(DeliveryError::retryable(
                "the channel is not in confirm mode",
            )),
        }
    }
}

fn humantime_short(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

fn main() -> ExitCode {
    app::sink_main::<RabbitmqSink, _, _>(Publisher::new)
}
