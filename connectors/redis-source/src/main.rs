//! redis-source: reads a stream with a consumer group, a list used as a reliable queue, or
//! Pub/Sub channels, and hands each value on as a record.
//!
//! - Streams: XREADGROUP, and XACK only after the hub stored the entries (an ack task
//!   awaits the hub's acknowledgements in order). At each connect the consumer first reads
//!   its own pending entries (read before a crash or a lost connection, never acknowledged),
//!   then new ones; entries of a dead consumer idle longer than `claim_idle` are claimed
//!   with XAUTOCLAIM. At least once.
//! - List: each item is moved (BLMOVE / LMOVE) to a processing list and removed from it
//!   (LREM) once stored; items left in the processing list are read again at each connect.
//!   At least once.
//! - Pub/Sub: SUBSCRIBE / PSUBSCRIBE; at most once, as Redis keeps nothing for a
//!   subscriber that is away.
//!
//! A lost connection is made again with backoff; a refused login stops the connector.

use std::{process::ExitCode, sync::Arc, time::Duration};

use futures_util::StreamExt;
use redis::{Value, aio::MultiplexedConnection};
use redis_common::Address;
use redis_source::{GroupStart, Mode, RedisSource, RedisSourceConfig};
use runnel_runtime::{
    BoxError, Record, app, config::ConnectorConfig, pipeline::SourceContext, retry::Backoff,
};
use tokio::sync::{mpsc, oneshot};

/// How long a blocking read waits for new entries before it asks again.
const BLOCK: Duration = Duration::from_secs(1);
/// Replies to anything else come within this, or the connection counts as dead.
const REPLY: Duration = Duration::from_secs(10);

fn bytes(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        Value::VerbatimString { text, .. } => Some(text.as_bytes()),
        _ => None,
    }
}

fn items(v: &Value) -> &[Value] {
    match v {
        Value::Array(a) | Value::Set(a) => a,
        _ => &[],
    }
}

/// One stream entry: its ID and its fields in order.
struct Entry {
    id: Vec<u8>,
    fields: Option<Vec<(Vec<u8>, Vec<u8>)>>,
}

/// The entries of a reply: `[[id, [f, v, ...]], ...]` (a deleted entry has no fields).
fn entries(v: &Value) -> Vec<Entry> {
    items(v)
        .iter()
        .filter_map(|e| {
            let parts = items(e);
            let id = bytes(parts.first()?)?.to_vec();
            let fields = match parts.get(1) {
                Some(Value::Array(kv)) => Some(
                    kv.chunks(2)
                        .filter_map(|p| Some((bytes(&p[0])?.to_vec(), bytes(p.get(1)?)?.to_vec())))
                        .collect(),
                ),
                Some(Value::Map(kv)) => Some(
                    kv.iter()
                        .filter_map(|(k, v)| Some((bytes(k)?.to_vec(), bytes(v)?.to_vec())))
                        .collect(),
                ),
                _ => None,
            };
            Some(Entry { id, fields })
        })
        .collect()
}

/// The entries of an XREADGROUP reply for one stream: `[[stream, [entries]]]` (or a map).
fn read_reply(v: &Value) -> Vec<Entry> {
    match v {
        Value::Nil => Vec::new(),
        Value::Map(m) => m.first().map(|(_, e)| entries(e)).unwrap_or_default(),
        v => items(v)
            .first()
            .and_then(|s| items(s).get(1))
            .map(entries)
            .unwrap_or_default(),
    }
}

/// Turns values into records through the codec.
struct Extract {
    messages: runnel_codec::Messages,
    value_field: Vec<u8>,
}

impl Extract {
    /// The records of one value (none when it does not decode: logged and counted).
    fn records(
        &mut self,
        value: Vec<u8>,
        key: Option<Vec<u8>>,
        headers: &[(String, Vec<u8>)],
        ctx: &SourceContext,
    ) -> Vec<Record> {
        let mut out = Vec::new();
        if let Err(e) = self.messages.records(bytes::Bytes::from(value), &mut out) {
            ctx.metrics().records_failed.inc();
            tracing::warn!(reason = %runnel_runtime::Chain(&e), "Skipping a value that does not decode.");
        }
        for r in &mut out {
            if let Some(k) = &key {
                r.key = Some(k.clone().into());
            }
            for (k, v) in headers {
                r.headers.push((k.clone(), v.clone().into()));
            }
        }
        out
    }

    /// The records of a stream entry: the value field is the value, `key` the key, the rest
    /// headers; an entry without the value field becomes a JSON object of its fields.
    fn entry(&mut self, stream: &str, e: Entry, ctx: &SourceContext) -> Vec<Record> {
        let id = String::from_utf8_lossy(&e.id).into_owned();
        let mut headers = vec![
            ("redis-stream".to_string(), stream.as_bytes().to_vec()),
            ("redis-id".to_string(), id.into_bytes()),
        ];
        let fields = e.fields.unwrap_or_default();
        let Some(at) = fields.iter().position(|(k, _)| *k == self.value_field) else {
            let object: serde_json::Map<String, serde_json::Value> = fields
                .iter()
                .map(|(k, v)| {
                    (
                        String::from_utf8_lossy(k).into_owned(),
                        String::from_utf8_lossy(v).into_owned().into(),
                    )
                })
                .collect();
            let json = serde_json::to_vec(&object).unwrap_or_default();
            return self.records(json, None, &headers, ctx);
        };
        let mut key = None;
        let mut value = Vec::new();
        for (i, (k, v)) in fields.into_iter().enumerate() {
            if i == at {
                value = v;
            } else if k == b"key" && key.is_none() {
                key = Some(v);
            } else {
                headers.push((String::from_utf8_lossy(&k).into_owned(), v));
            }
        }
        self.records(value, key, &headers, ctx)
    }
}

enum End {
    Shutdown,
    Lost(String),
}

/// Whether the last connection got as far as reading (so its loss is news, and the
/// backoff starts over).
fn was_up(ctx: &SourceContext) -> bool {
    ctx.health().is_upstream()
}

/// A batch waiting for the hub to store it, and what acknowledges it then.
struct PendingAck {
    done: Ack,
    stored: oneshot::Receiver<()>,
}

enum Ack {
    /// XACK these IDs.
    Stream(Vec<Vec<u8>>),
    /// LREM these items from the processing list.
    List(Vec<Vec<u8>>),
}

/// Sends the acknowledgements in order, each once its batch is stored, on a connection of
/// its own (made again when lost, the acknowledgement retried). Returns when the queue
/// closes or the pipeline stopped storing.
async fn ack_task(
    addr: Address,
    key: String,
    group: String,
    mut queue: mpsc::UnboundedReceiver<PendingAck>,
    ctx: SourceContext,
) {
    let mut conn: Option<MultiplexedConnection> = None;
    while let Some(p) = queue.recv().await {
        if p.stored.await.is_err() {
            // The pipeline stopped before storing it: nothing more is acknowledged, and
            // what is left is read again at the next start.
            return;
        }
        let mut pipe = redis::pipe();
        match &p.done {
            Ack::Stream(ids) => {
                pipe.cmd("XACK").arg(&key).arg(&group).arg(ids).ignore();
            }
            Ack::List(values) => {
                for v in values {
                    pipe.cmd("LREM").arg(&key).arg(-1).arg(v).ignore();
                }
            }
        }
        let mut wait = Duration::from_millis(100);
        loop {
            if conn.is_none() {
                conn = redis_common::connect(&addr, REPLY).await.ok();
            }
            if let Some(c) = conn.as_mut() {
                match pipe.query_async::<()>(c).await {
                    Ok(()) => break,
                    Err(e) => {
                        tracing::debug!(error = %redis_common::describe(&addr, &e), "An acknowledgement failed; sending it again.");
                        conn = None;
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = ctx.shutdown().wait() => return,
            }
            wait = (wait * 2).min(Duration::from_secs(2));
        }
    }
}

/// Reads a stream with the consumer group, until shutdown or a lost connection.
async fn read_stream(
    c: &RedisSourceConfig,
    conn: &mut MultiplexedConnection,
    extract: &mut Extract,
    acks: &mpsc::UnboundedSender<PendingAck>,
    ctx: &SourceContext,
) -> Result<End, BoxError> {
    let stream = c.stream.clone().unwrap_or_default();
    let consumer = c.consumer_name();
    let start = match c.group_start() {
        GroupStart::Beginning => "0".to_string(),
        GroupStart::End => "$".to_string(),
        GroupStart::Id(id) => id,
    };
    let created: Result<(), _> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&stream)
        .arg(&c.group)
        .arg(&start)
        .arg("MKSTREAM")
        .query_async(conn)
        .await;
    match created {
        Ok(()) => {
            tracing::info!(stream = %stream, group = %c.group, start = %start, "Created the consumer group.")
        }
        Err(e) if e.code() == Some("BUSYGROUP") => {}
        Err(e) if redis_common::is_fatal(&e) => return Err(e.into()),
        Err(e) => return Ok(End::Lost(e.to_string())),
    }
    ctx.health().set_upstream(true);
    tracing::info!(stream = %stream, group = %c.group, consumer = %consumer, "Reading the stream.");
    // First what this consumer read before and never acknowledged, then new entries.
    let mut cursor = b"0".to_vec();
    let mut last_claim: Option<tokio::time::Instant> = None;
    let claim_every = (c.claim_idle.0 / 2).max(Duration::from_secs(1));
    loop {
        let mut batch = Vec::new();
        if cursor == b">" && last_claim.is_none_or(|t| t.elapsed() >= claim_every) {
            last_claim = Some(tokio::time::Instant::now());
            let mut claim = redis::cmd("XAUTOCLAIM");
            claim
                .arg(&stream)
                .arg(&c.group)
                .arg(&consumer)
                .arg(c.claim_idle.0.as_millis() as u64)
                .arg("0-0")
                .arg("COUNT")
                .arg(c.count);
            let claimed = tokio::select! {
                biased;
                _ = ctx.shutdown().wait() => return Ok(End::Shutdown),
                r = claim.query_async::<Value>(conn) => r,
            };
            match claimed {
                Ok(v) => {
                    let got = items(&v).get(1).map(entries).unwrap_or_default();
                    if !got.is_empty() {
                        tracing::info!(
                            entries = got.len(),
                            "Claimed entries a silent consumer left unacknowledged."
                        );
                    }
                    batch = got;
                }
                Err(e) => return Ok(End::Lost(e.to_string())),
            }
        }
        if batch.is_empty() {
            let mut cmd = redis::cmd("XREADGROUP");
            cmd.arg("GROUP")
                .arg(&c.group)
                .arg(&consumer)
                .arg("COUNT")
                .arg(c.count);
            if cursor == b">" {
                cmd.arg("BLOCK").arg(BLOCK.as_millis() as u64);
            }
            cmd.arg("STREAMS").arg(&stream).arg(&cursor);
            let reply = tokio::select! {
                biased;
                _ = ctx.shutdown().wait() => return Ok(End::Shutdown),
                r = cmd.query_async::<Value>(conn) => r,
            };
            let reply = match reply {
                Ok(v) => v,
                Err(e) if e.code() == Some("NOGROUP") => {
                    // The stream or the group was deleted: make them again.
                    return Ok(End::Lost(e.to_string()));
                }
                Err(e) => return Ok(End::Lost(e.to_string())),
            };
            batch = read_reply(&reply);
            if cursor != b">" {
                match batch.last() {
                    Some(e) => cursor = e.id.clone(),
                    None => cursor = b">".to_vec(),
                }
            }
        }
        if batch.is_empty() {
            continue;
        }
        let ids: Vec<Vec<u8>> = batch.iter().map(|e| e.id.clone()).collect();
        let mut records = Vec::with_capacity(batch.len());
        for e in batch {
            if e.fields.is_none() {
                // Deleted from the stream while pending: nothing to read, only to ack.
                continue;
            }
            records.extend(extract.entry(&stream, e, ctx));
        }
        let stored = ctx.send_all_acked(records).await?;
        acks.send(PendingAck {
            done: Ack::Stream(ids),
            stored,
        })
        .map_err(|_| "the acknowledgement task stopped")?;
    }
}

/// Consumes a list through the processing list, until shutdown or a lost connection.
async fn read_list(
    c: &RedisSourceConfig,
    conn: &mut MultiplexedConnection,
    extract: &mut Extract,
    acks: &mpsc::UnboundedSender<PendingAck>,
    ctx: &SourceContext,
) -> Result<End, BoxError> {
    let list = c.list.clone().unwrap_or_default();
    let processing = c.processing_list_name();
    // What a crash or a lost connection left in the processing list, oldest first.
    let left: Result<Vec<Vec<u8>>, _> = redis::cmd("LRANGE")
        .arg(&processing)
        .arg(0)
        .arg(-1)
        .query_async(conn)
        .await;
    let mut left = match left {
        Ok(l) => l,
        Err(e) if redis_common::is_fatal(&e) => return Err(e.into()),
        Err(e) => return Ok(End::Lost(e.to_string())),
    };
    left.reverse();
    ctx.health().set_upstream(true);
    if !left.is_empty() {
        tracing::info!(items = left.len(), processing_list = %processing, "Reading again what the processing list holds.");
    }
    tracing::info!(list = %list, processing_list = %processing, "Consuming the list.");
    let headers = [("redis-list".to_string(), list.as_bytes().to_vec())];
    let mut left = left.into_iter();
    loop {
        let mut got: Vec<Vec<u8>> = left.by_ref().take(c.count).collect();
        if got.is_empty() {
            let mut take = redis::cmd("BLMOVE");
            take.arg(&list)
                .arg(&processing)
                .arg("RIGHT")
                .arg("LEFT")
                .arg(BLOCK.as_secs_f64());
            let first = tokio::select! {
                biased;
                _ = ctx.shutdown().wait() => return Ok(End::Shutdown),
                r = take.query_async::<Option<Vec<u8>>>(conn) => r,
            };
            match first {
                Ok(Some(v)) => got.push(v),
                Ok(None) => continue,
                Err(e) => return Ok(End::Lost(e.to_string())),
            }
            if c.count > 1 {
                let mut pipe = redis::pipe();
                for _ in 1..c.count {
                    pipe.cmd("LMOVE")
                        .arg(&list)
                        .arg(&processing)
                        .arg("RIGHT")
                        .arg("LEFT");
                }
                match pipe.query_async::<Vec<Option<Vec<u8>>>>(conn).await {
                    Ok(more) => got.extend(more.into_iter().flatten()),
                    Err(e) => {
                        // The items moved so far wait in the processing list for the next
                        // connect; the one in hand goes on now.
                        tracing::debug!(error = %e, "Taking more items failed.");
                    }
                }
            }
        }
        let mut records = Vec::with_capacity(got.len());
        for v in &got {
            records.extend(extract.records(v.clone(), None, &headers, ctx));
        }
        let stored = ctx.send_all_acked(records).await?;
        acks.send(PendingAck {
            done: Ack::List(got),
            stored,
        })
        .map_err(|_| "the acknowledgement task stopped")?;
    }
}

/// Subscribes and hands on every message, until shutdown or a lost connection.
async fn read_pubsub(
    c: &RedisSourceConfig,
    addr: &Address,
    extract: &mut Extract,
    ctx: &SourceContext,
) -> Result<End, BoxError> {
    let client = redis_common::client(addr)?;
    let pubsub = match client.get_async_pubsub().await {
        Ok(p) => p,
        Err(e) if redis_common::is_fatal(&e) => return Err(e.into()),
        Err(e) => return Ok(End::Lost(redis_common::describe(addr, &e))),
    };
    let (mut sink, mut stream) = pubsub.split();
    for ch in &c.channels {
        if let Err(e) = sink.subscribe(ch).await {
            return Ok(End::Lost(e.to_string()));
        }
    }
    for p in &c.patterns {
        if let Err(e) = sink.psubscribe(p).await {
            return Ok(End::Lost(e.to_string()));
        }
    }
    ctx.health().set_upstream(true);
    tracing::info!(channels = ?c.channels, patterns = ?c.patterns, "Subscribed (at most once: messages sent while away are not kept by Redis).");
    let mut ping = tokio::time::interval(Duration::from_secs(10));
    ping.tick().await;
    loop {
        let msg = tokio::select! {
            biased;
            _ = ctx.shutdown().wait() => return Ok(End::Shutdown),
            m = stream.next() => m,
            _ = ping.tick() => {
                match tokio::time::timeout(REPLY, sink.ping::<Value>()).await {
                    Ok(Ok(_)) => continue,
                    Ok(Err(e)) => return Ok(End::Lost(e.to_string())),
                    Err(_) => return Ok(End::Lost("no answer to a ping".into())),
                }
            }
        };
        let Some(msg) = msg else {
            return Ok(End::Lost("the connection closed".into()));
        };
        let headers = [(
            "redis-channel".to_string(),
            msg.get_channel_name().as_bytes().to_vec(),
        )];
        let records = extract.records(msg.get_payload_bytes().to_vec(), None, &headers, ctx);
        for r in records {
            ctx.send(r).await?;
        }
    }
}

async fn run(
    config: Arc<ConnectorConfig<RedisSourceConfig>>,
    ctx: SourceContext,
) -> Result<(), BoxError> {
    let c = &config.config;
    let addr = c.address()?;
    let mode = c.mode()?;
    let mut extract = Extract {
        messages: runnel_codec::Messages::new(&c.format, runnel_runtime::record::now_millis()),
        value_field: c.value_field.as_bytes().to_vec(),
    };
    let mut backoff = Backoff::new(c.initial_backoff.0, c.max_backoff.0);
    let mut up = true;
    tracing::info!(server = %addr, mode = redis_source::mode_name(mode), "Connecting to Redis.");
    // Acknowledgements go out on a connection of their own, in order, across reconnects.
    let (ack_tx, ack_rx) = mpsc::unbounded_channel();
    let ack_key = match mode {
        Mode::Streams => c.stream.clone().unwrap_or_default(),
        _ => c.processing_list_name(),
    };
    let acking = tokio::spawn(ack_task(
        addr.clone(),
        ack_key,
        c.group.clone(),
        ack_rx,
        ctx.clone(),
    ));
    let result = loop {
        let end = if mode == Mode::Pubsub {
            read_pubsub(c, &addr, &mut extract, &ctx).await
        } else {
            let read_timeout = BLOCK + REPLY;
            let attempt = tokio::select! {
                biased;
                _ = ctx.shutdown().wait() => break Ok(()),
                a = redis_common::connect(&addr, read_timeout) => a,
            };
            match attempt {
                Ok(mut conn) => {
                    if mode == Mode::Streams {
                        read_stream(c, &mut conn, &mut extract, &ack_tx, &ctx).await
                    } else {
                        read_list(c, &mut conn, &mut extract, &ack_tx, &ctx).await
                    }
                }
                Err(e) if redis_common::is_fatal(&e) => {
                    break Err(format!("{addr}: {}", redis_common::describe(&addr, &e)).into());
                }
                Err(e) => Ok(End::Lost(redis_common::describe(&addr, &e))),
            }
        };
        let reason = match end {
            Ok(End::Shutdown) => break Ok(()),
            Ok(End::Lost(r)) => r,
            Err(e) => break Err(format!("{addr}: {e}").into()),
        };
        if was_up(&ctx) {
            backoff.reset();
            up = true;
        }
        ctx.health().set_upstream(false);
        let wait = backoff.next_delay();
        if up {
            tracing::warn!(server = %addr, error = %reason, retry_in_ms = wait.as_millis() as u64, "Redis connection lost; reconnecting with backoff.");
        } else {
            tracing::debug!(server = %addr, error = %reason, retry_in_ms = wait.as_millis() as u64, "Reconnect failed.");
        }
        up = false;
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = ctx.shutdown().wait() => break Ok(()),
        }
    };
    // Let the acknowledgements of what was stored go out (briefly: the rest is read again).
    drop(ack_tx);
    let mut acking = acking;
    if tokio::time::timeout(Duration::from_secs(2), &mut acking)
        .await
        .is_err()
    {
        acking.abort();
    }
    result
}

fn main() -> ExitCode {
    app::source_main::<RedisSource, _, _>(run)
}
