//! websocket-sink: each batch is written to the connection in offset order, then (with
//! `confirm: ping`) a ping whose pong proves the server read every message before it; only
//! then is the hub offset committed. A broken connection, a close or a missing pong fails
//! the batch, which is sent again on a new connection (at least once: a batch may arrive
//! twice, never be lost). A record that cannot be a message (not UTF-8 for a text
//! message, or not fitting the format) follows on_error on its own. While the server cannot
//! be reached, batches wait for it and `/readyz` says 503.

use std::{
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use runnel_runtime::{
    BoxError, ConsumedRecord, app,
    config::ConnectorConfig,
    pipeline::{DeliverBatch, DeliveryError, SinkContext},
};
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use websocket_common::{Socket, Target};
use websocket_sink::{Confirm, MessageType, WebSocketSink, WebSocketSinkConfig};

/// How often an idle connection is checked with a ping (and made again when lost).
const KEEP_EVERY: Duration = Duration::from_secs(2);

struct Writer {
    target: Target,
    message_type: MessageType,
    confirm: Confirm,
    encoder: runnel_codec::Encoder,
    timeout: Duration,
    socket: Mutex<Option<Socket>>,
    pings: AtomicU64,
    ctx: SinkContext,
}

impl Writer {
    fn message(&self, r: &ConsumedRecord) -> Result<Message, DeliveryError> {
        let value = if self.encoder.is_passthrough() {
            r.record.value.clone()
        } else {
            let id = format!("{}-{}-{}", r.topic, r.partition, r.offset);
            Bytes::from(
                self.encoder
                    .encode(&r.record, &id)
                    .map_err(|e| DeliveryError::permanent(runnel_runtime::chain(&e)))?,
            )
        };
        match self.message_type {
            MessageType::Binary => Ok(Message::Binary(value)),
            MessageType::Text => Utf8Bytes::try_from(value).map(Message::Text).map_err(|_| {
                DeliveryError::permanent(
                    "the value is not UTF-8, so it cannot be a text message (message_type: binary sends it as it is)",
                )
            }),
        }
    }

    /// The open connection, made first when there is none.
    async fn open<'a>(
        &self,
        slot: &'a mut Option<Socket>,
    ) -> Result<&'a mut Socket, websocket_common::ConnectError> {
        if slot.is_none() {
            let ws = self.target.connect().await?;
            tracing::info!(endpoint = %self.target.shown(), "Connected.");
            self.ctx.set_ready(true);
            *slot = Some(ws);
        }
        slot.as_mut()
            .ok_or_else(|| websocket_common::ConnectError::from("not connected".to_string()))
    }

    /// Sends a ping and reads until its pong: every message written before it has been
    /// read by the server. Messages the server sends meanwhile are not records of this
    /// sink: they are dropped (at debug level).
    async fn confirmed(&self, ws: &mut Socket) -> Result<(), String> {
        let n = self.pings.fetch_add(1, Ordering::Relaxed);
        let payload = Bytes::copy_from_slice(&n.to_be_bytes());
        ws.send(Message::Ping(payload.clone()))
            .await
            .map_err(|e| websocket_common::describe(&e))?;
        loop {
            match ws.next().await {
                None => return Err("the connection ended before the pong".into()),
                Some(Err(e)) => return Err(websocket_common::describe(&e)),
                Some(Ok(Message::Pong(p))) if p == payload => return Ok(()),
                Some(Ok(Message::Close(f))) => {
                    return Err(websocket_common::close_reason(f.as_ref()));
                }
                Some(Ok(Message::Text(_) | Message::Binary(_))) => {
                    tracing::debug!("Dropping a message the server sent (a sink only sends).");
                }
                Some(Ok(_)) => {}
            }
        }
    }

    /// Writes the messages in order, flushes, and confirms as configured.
    async fn write(&self, ws: &mut Socket, messages: Vec<Message>) -> Result<(), String> {
        for m in messages {
            ws.feed(m)
                .await
                .map_err(|e| websocket_common::describe(&e))?;
        }
        ws.flush()
            .await
            .map_err(|e| websocket_common::describe(&e))?;
        if self.confirm == Confirm::Ping {
            self.confirmed(ws).await?;
        }
        Ok(())
    }

    fn broken(&self, slot: &mut Option<Socket>) {
        slot.take();
        self.ctx.set_ready(false);
    }
}

impl DeliverBatch for Writer {
    async fn deliver_batch(
        &self,
        batch: &[ConsumedRecord],
    ) -> Result<Vec<(usize, DeliveryError)>, DeliveryError> {
        let mut rejected = Vec::new();
        let mut messages = Vec::with_capacity(batch.len());
        for (i, r) in batch.iter().enumerate() {
            match self.message(r) {
                Ok(m) => messages.push(m),
                Err(e) => rejected.push((i, e)),
            }
        }
        let mut slot = self.socket.lock().await;
        // While the server is away the batch waits for it: an outage does not use up the
        // batch's attempts, and /readyz says 503 meanwhile.
        let mut wait = Duration::from_millis(100);
        loop {
            match self.open(&mut slot).await {
                Ok(_) => break,
                Err(e) if e.refused => return Err(DeliveryError::retryable(e.text)),
                Err(_) => {
                    self.ctx.wait_for_outside(&mut wait).await?;
                }
            }
        }
        let Some(ws) = slot.as_mut() else {
            return Err(DeliveryError::retryable("not connected"));
        };
        if messages.is_empty() {
            return Ok(rejected);
        }
        match tokio::time::timeout(self.timeout, self.write(ws, messages)).await {
            Ok(Ok(())) => Ok(rejected),
            Ok(Err(e)) => {
                self.broken(&mut slot);
                Err(DeliveryError::retryable(e))
            }
            Err(_) => {
                self.broken(&mut slot);
                Err(DeliveryError::retryable(format!(
                    "the batch was not written and confirmed within {}ms (timeout)",
                    self.timeout.as_millis()
                )))
            }
        }
    }
}

/// Keeps `/readyz` true to the server while no records flow: connects at start, pings an
/// idle connection, and connects again whenever it is lost.
async fn keep(w: Arc<Writer>) {
    let mut logged = false;
    loop {
        // A batch in progress checks the connection itself.
        if let Ok(mut slot) = w.socket.try_lock() {
            let checked = match w.open(&mut slot).await {
                Err(e) => Err((e.refused, e.text)),
                Ok(ws) => tokio::time::timeout(w.timeout, w.confirmed(ws))
                    .await
                    .unwrap_or_else(|_| Err("no pong within the timeout".into()))
                    .map_err(|e| (false, e)),
            };
            match checked {
                Ok(()) => {
                    if logged {
                        tracing::info!(endpoint = %w.target.shown(), "The server is reachable again.");
                    }
                    logged = false;
                }
                Err((refused, e)) => {
                    w.broken(&mut slot);
                    if refused {
                        w.ctx.fail(format!(
                            "{}: the server refused the connection: {e}",
                            w.target.shown()
                        ));
                        return;
                    } else if !logged {
                        tracing::warn!(endpoint = %w.target.shown(), error = %e, "Cannot reach the server; /readyz reports it, and records wait.");
                    }
                    logged = true;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(KEEP_EVERY) => {}
            _ = w.ctx.shutdown().wait() => return,
        }
    }
}

fn make(
    config: &ConnectorConfig<WebSocketSinkConfig>,
    ctx: &SinkContext,
) -> Result<Writer, BoxError> {
    let c = &config.config;
    let url = websocket_common::endpoint("endpoint", &c.endpoint)?;
    let headers = websocket_common::headers("headers", &c.headers)?;
    // The server's own messages (an echo, say) are read only to find pongs and dropped;
    // 16 MiB bounds the one it may make this sink hold.
    let target = Target::new(
        url,
        headers,
        c.subprotocol.clone(),
        16 << 20,
        c.connect_timeout.0,
    );
    Ok(Writer {
        target,
        message_type: c.message_type,
        confirm: c.confirm,
        encoder: runnel_codec::Encoder::new(&c.format),
        timeout: c.timeout.0,
        socket: Mutex::new(None),
        pings: AtomicU64::new(0),
        ctx: ctx.clone(),
    })
}

fn main() -> ExitCode {
    app::batch_sink_main::<WebSocketSink, _, _>(|config, ctx| {
        let w = Arc::new(make(config, ctx)?);
        tokio::spawn(keep(w.clone()));
        Ok(w)
    })
}
