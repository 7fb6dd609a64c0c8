//! websocket-source's protocol: a WebSocket client. After every connect it sends the subscription
//! messages, then turns each text or binary message into records; it pings the server and
//! takes two silent intervals as a dead peer; a lost connection is made again with backoff,
//! forever (`/readyz` says 503 meanwhile). WebSocket has no acknowledgements: a message read
//! but not yet stored when the process dies is gone, and the server sends nothing again
//! after a reconnect. While the hub is slow, reading waits, so the server's sends wait on
//! TCP rather than piling up here.

use std::time::Duration;

use crate::WebSocketSourceConfig;
use bytes::Bytes;
use futures_util::{FutureExt, SinkExt, StreamExt};
use runnel_codec::Messages;
use runnel_core::retry::Backoff;
use runnel_runtime::{BoxError, Record, pipeline::SourceContext};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::{Error, Message, error::CapacityError};
use websocket_common::{Socket, Target};

/// Why a connection ended.
enum End {
    Shutdown,
    Lost(String),
}

/// Turns messages into records.
struct Records {
    messages: Messages,
    out: Vec<Record>,
}

impl Records {
    /// Decodes a message's body into the records waiting to be handed on.
    fn take(&mut self, body: Bytes, ctx: &SourceContext) {
        if let Err(e) = self.messages.records(body, &mut self.out) {
            ctx.metrics().records_failed.inc();
            tracing::warn!(reason = %runnel_runtime::Chain(&e), "Skipping a message that does not decode.");
        }
    }

    /// Hands on what the messages read so far gave.
    async fn flush(&mut self, ctx: &SourceContext) -> Result<(), BoxError> {
        Ok(ctx.send_many(std::mem::take(&mut self.out)).await?)
    }
}

/// Messages taken in one go when the socket already holds them, before their records are
/// handed on together.
const BURST: usize = 256;

/// Takes one read from the socket: its records wait in `records`; the end of the
/// connection when it ended.
fn take(
    m: Option<Result<Message, Error>>,
    records: &mut Records,
    ctx: &SourceContext,
) -> Option<End> {
    match m {
        None => Some(End::Lost("the connection ended".into())),
        Some(Err(e)) => {
            if matches!(e, Error::Capacity(CapacityError::MessageTooLong { .. })) {
                ctx.metrics().records_failed.inc();
            }
            Some(End::Lost(websocket_common::describe(&e)))
        }
        Some(Ok(Message::Text(t))) => {
            records.take(Bytes::from(t), ctx);
            None
        }
        Some(Ok(Message::Binary(b))) => {
            records.take(b, ctx);
            None
        }
        Some(Ok(Message::Close(frame))) => {
            Some(End::Lost(websocket_common::close_reason(frame.as_ref())))
        }
        // tungstenite answers pings itself.
        Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => None,
    }
}

/// Sends the subscription messages, in order.
async fn subscribe(ws: &mut Socket, c: &WebSocketSourceConfig) -> Result<(), String> {
    for m in c.websocket_config.subscriptions() {
        ws.feed(Message::text(m))
            .await
            .map_err(|e| websocket_common::describe(&e))?;
    }
    ws.flush().await.map_err(|e| websocket_common::describe(&e))
}

/// Reads until the connection ends or shutdown fires.
async fn read(
    ws: &mut Socket,
    ping: Option<Duration>,
    records: &mut Records,
    ctx: &SourceContext,
) -> Result<End, BoxError> {
    let mut ticker = tokio::time::interval(ping.unwrap_or(Duration::from_secs(3600)));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // When a ping went out with nothing heard since.
    let mut unanswered: Option<Instant> = None;
    loop {
        tokio::select! {
            biased;
            _ = ctx.shutdown().wait() => {
                let _ = ws.close(None).await;
                return Ok(End::Shutdown);
            }
            m = ws.next() => {
                unanswered = None;
                // What else the socket already holds is taken too, and stored as one.
                let mut m = m;
                let mut taken = 1;
                let end = loop {
                    if let Some(end) = take(m, records, ctx) {
                        break Some(end);
                    }
                    if taken == BURST {
                        break None;
                    }
                    match ws.next().now_or_never() {
                        Some(next) => m = next,
                        None => break None,
                    }
                    taken += 1;
                };
                records.flush(ctx).await?;
                if let Some(end) = end {
                    return Ok(end);
                }
            }
            _ = ticker.tick(), if ping.is_some() => {
                let every = ping.unwrap_or_default();
                if let Some(since) = unanswered
                    && since.elapsed() >= every * 2 - every / 10
                {
                    return Ok(End::Lost(format!(
                        "the server answered nothing for {} ms (no pong, no message)",
                        since.elapsed().as_millis()
                    )));
                }
                if let Err(e) = ws.send(Message::Ping(Bytes::new())).await {
                    return Ok(End::Lost(websocket_common::describe(&e)));
                }
                unanswered.get_or_insert_with(Instant::now);
            }
        }
    }
}

/// Runs the source until shutdown (or until the server refuses the credentials). http-source
/// runs it too, for Fluvio's files that give it a ws:// endpoint.
pub async fn run(c: &WebSocketSourceConfig, ctx: SourceContext) -> Result<(), BoxError> {
    let url = websocket_common::endpoint("endpoint", &c.endpoint)?;
    let headers = websocket_common::headers("headers", &c.headers)?;
    let max = usize::try_from(c.max_record_size.0.0).unwrap_or(usize::MAX);
    let target = Target::new(
        url,
        headers,
        c.subprotocol.clone(),
        max,
        c.connect_timeout.0,
    );
    if c.websocket_config.subscription_message.is_some() {
        tracing::warn!(
            "websocket_config.subscription_message is Fluvio's older form: it is sent first; write it in subscription_messages instead."
        );
    }
    let ping = (c.websocket_config.ping_interval_ms > 0)
        .then(|| Duration::from_millis(c.websocket_config.ping_interval_ms));
    let mut records = Records {
        messages: Messages::new(&c.format, runnel_runtime::record::now_millis()),
        out: Vec::new(),
    };
    let mut backoff = Backoff::new(c.initial_backoff.0, c.max_backoff.0);
    loop {
        let connected = tokio::select! {
            r = target.connect() => r,
            _ = ctx.shutdown().wait() => return Ok(()),
        };
        let problem = match connected {
            Err(e) if e.refused => {
                return Err(format!("{}: {}", target.shown(), e.text).into());
            }
            Err(e) => e.text,
            Ok(mut ws) => match subscribe(&mut ws, c).await {
                Err(e) => e,
                Ok(()) => {
                    ctx.health().set_upstream(true);
                    backoff.reset();
                    tracing::info!(endpoint = %target.shown(), "Connected.");
                    match read(&mut ws, ping, &mut records, &ctx).await? {
                        End::Shutdown => return Ok(()),
                        End::Lost(why) => why,
                    }
                }
            },
        };
        ctx.health().set_upstream(false);
        let wait = backoff.next_delay();
        tracing::warn!(endpoint = %target.shown(), reason = %problem, retry_in_ms = wait.as_millis() as u64, "Not connected; trying again.");
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = ctx.shutdown().wait() => return Ok(()),
        }
    }
}
