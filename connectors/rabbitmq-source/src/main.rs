//! rabbitmq-source: consumes a queue with a prefetch window and hands each message on as a
//! record. A delivery is acknowledged only after the hub stored its record (an ack task
//! awaits the hub's acknowledgements in order), so a crash or a lost connection makes the
//! broker deliver again what was not stored: at least once, and a message delivered again
//! carries `amqp-redelivered: true`. A lost connection or channel is reconnected with
//! backoff; the queue is declared and bound again at each connect.

use std::{process::ExitCode, sync::Arc, time::Duration};

use futures_util::StreamExt;
use lapin::{
    Acker, Channel, Connection,
    message::Delivery,
    options::{
        BasicAckOptions, BasicConsumeOptions, BasicQosOptions, QueueBindOptions,
        QueueDeclareOptions,
    },
    types::{AMQPValue, FieldTable},
};
use rabbitmq_common::Address;
use rabbitmq_source::{RabbitmqSource, RabbitmqSourceConfig};
use runnel_runtime::{
    BoxError, Record, app, config::ConnectorConfig, pipeline::SourceContext, retry::Backoff,
};
use tokio::sync::{mpsc, oneshot};

/// A delivery waiting for the hub to store its record (or records).
struct PendingAck {
    acker: Acker,
    stored: oneshot::Receiver<()>,
}

/// Acknowledges deliveries in arrival order, each once its record is stored. Returns when
/// the queue closes or the pipeline stopped storing.
async fn ack_task(mut queue: mpsc::UnboundedReceiver<PendingAck>) {
    while let Some(p) = queue.recv().await {
        if p.stored.await.is_err() {
            // The pipeline stopped before storing it: nothing more is acknowledged, and the
            // broker delivers the rest again.
            return;
        }
        if let Err(e) = p.acker.ack(BasicAckOptions::default()).await {
            // The channel is gone (a reconnect): the broker delivers the message again.
            tracing::debug!(error = %e, "An acknowledgement could not be sent; the message will be delivered again.");
        }
    }
}

/// Turns deliveries into records.
struct Extract {
    messages: runnel_codec::Messages,
}

fn text(v: &AMQPValue) -> Option<String> {
    match v {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_string()),
        AMQPValue::Boolean(b) => Some(b.to_string()),
        AMQPValue::LongLongInt(n) => Some(n.to_string()),
        AMQPValue::LongInt(n) => Some(n.to_string()),
        AMQPValue::ShortInt(n) => Some(n.to_string()),
        _ => None,
    }
}

impl Extract {
    /// The records of one delivery: one, or with `format: csv` one per row, or none when
    /// the body does not decode (logged with the reason, counted in records_failed).
    fn records(&mut self, d: &mut Delivery, ctx: &SourceContext) -> Vec<Record> {
        let body = bytes::Bytes::from(std::mem::take(&mut d.data));
        let mut out = Vec::new();
        if let Err(e) = self.messages.records(body, &mut out) {
            ctx.metrics().records_failed.inc();
            tracing::warn!(routing_key = %d.routing_key, reason = %runnel_runtime::Chain(&e), "Skipping a message that does not decode.");
        }
        let mut headers = vec![
            ("amqp-exchange".to_string(), d.exchange.as_str().to_string()),
            (
                "amqp-routing-key".to_string(),
                d.routing_key.as_str().to_string(),
            ),
        ];
        if d.redelivered {
            headers.push(("amqp-redelivered".into(), "true".into()));
        }
        let p = &d.properties;
        if let Some(id) = p.message_id() {
            headers.push(("amqp-message-id".into(), id.as_str().to_string()));
        }
        if let Some(t) = p.content_type() {
            headers.push(("content-type".into(), t.as_str().to_string()));
        }
        if let Some(table) = p.headers() {
            for (k, v) in table.inner() {
                if let Some(v) = text(v) {
                    headers.push((k.as_str().to_string(), v));
                }
            }
        }
        for r in &mut out {
            for (k, v) in &headers {
                r.headers.push((k.clone(), v.clone().into()));
            }
        }
        out
    }
}

/// Connects, declares and binds, and starts consuming.
async fn subscribe(
    addr: &Address,
    c: &RabbitmqSourceConfig,
) -> Result<(Connection, Channel, lapin::Consumer), lapin::Error> {
    let conn = rabbitmq_common::connect(addr, "runnel rabbitmq-source").await?;
    let ch = conn.create_channel().await?;
    ch.basic_qos(c.prefetch, BasicQosOptions::default()).await?;
    if c.declare {
        ch.queue_declare(
            c.queue.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    }
    if let Some(x) = &c.exchange {
        let keys = if c.routing_keys.is_empty() {
            vec![String::new()]
        } else {
            c.routing_keys.clone()
        };
        for k in keys {
            ch.queue_bind(
                c.queue.as_str().into(),
                x.as_str().into(),
                k.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        }
    }
    let consumer = ch
        .basic_consume(
            c.queue.as_str().into(),
            c.consumer_tag.as_deref().unwrap_or("").into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok((conn, ch, consumer))
}

enum End {
    Shutdown,
    Lost(String),
}

async fn consume(
    consumer: &mut lapin::Consumer,
    extract: &mut Extract,
    acks: &mpsc::UnboundedSender<PendingAck>,
    ctx: &SourceContext,
) -> Result<End, BoxError> {
    loop {
        let next = tokio::select! {
            biased;
            _ = ctx.shutdown().wait() => return Ok(End::Shutdown),
            n = consumer.next() => n,
        };
        let mut d = match next {
            Some(Ok(d)) => d,
            Some(Err(e)) => return Ok(End::Lost(rabbitmq_common::describe(&e))),
            None => return Ok(End::Lost("the broker cancelled the consumer".into())),
        };
        let stored = ctx.send_all_acked(extract.records(&mut d, ctx)).await?;
        acks.send(PendingAck {
            acker: d.acker,
            stored,
        })
        .map_err(|_| "the acknowledgement task stopped")?;
    }
}

async fn run(
    config: Arc<ConnectorConfig<RabbitmqSourceConfig>>,
    ctx: SourceContext,
) -> Result<(), BoxError> {
    let c = &config.config;
    let addr = c.address()?;
    let mut extract = Extract {
        messages: runnel_codec::Messages::new(&c.format, runnel_runtime::record::now_millis()),
    };
    let mut backoff = Backoff::new(c.initial_backoff.0, c.max_backoff.0);
    let mut up = true;
    tracing::info!(broker = %addr, queue = %c.queue, prefetch = c.prefetch, "Connecting to RabbitMQ.");
    loop {
        let attempt = tokio::select! {
            biased;
            _ = ctx.shutdown().wait() => return Ok(()),
            a = subscribe(&addr, c) => a,
        };
        let reason = match attempt {
            Ok((conn, _channel, mut consumer)) => {
                ctx.health().set_upstream(true);
                backoff.reset();
                up = true;
                tracing::info!(broker = %addr, queue = %c.queue, "Consuming.");
                // One ack task per connection: acks belong to the channel they came on.
                let (tx, rx) = mpsc::unbounded_channel();
                let mut acking = tokio::spawn(ack_task(rx));
                let end = consume(&mut consumer, &mut extract, &tx, &ctx).await;
                drop(tx);
                // Let the acks of what was stored go out before the connection closes
                // (briefly: whatever is left is delivered again).
                if tokio::time::timeout(Duration::from_secs(2), &mut acking)
                    .await
                    .is_err()
                {
                    acking.abort();
                }
                match end? {
                    End::Shutdown => {
                        let _ = conn.close(200, "shutting down".into()).await;
                        return Ok(());
                    }
                    End::Lost(reason) => reason,
                }
            }
            Err(e) => {
                if rabbitmq_common::is_fatal(&e) {
                    return Err(format!("{addr}: {}", rabbitmq_common::describe(&e)).into());
                }
                rabbitmq_common::describe(&e)
            }
        };
        ctx.health().set_upstream(false);
        let wait = backoff.next_delay();
        if up {
            tracing::warn!(broker = %addr, error = %reason, retry_in_ms = wait.as_millis() as u64, "RabbitMQ connection lost; reconnecting with backoff.");
        } else {
            tracing::debug!(broker = %addr, error = %reason, retry_in_ms = wait.as_millis() as u64, "Reconnect failed.");
        }
        up = false;
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = ctx.shutdown().wait() => return Ok(()),
        }
    }
}

fn main() -> ExitCode {
    app::source_main::<RabbitmqSource, _, _>(run)
}
