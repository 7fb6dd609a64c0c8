//! redis-sink: each batch becomes one pipeline of commands (XADD, PUBLISH, LPUSH / RPUSH,
//! SET or HSET), sent at once and answered in order; the batch counts as delivered (and the
//! hub offset is committed) only once Redis answered every command. A record the server
//! refuses for good (a key of another type, a value longer than its proto-max-bulk-len)
//! follows on_error on its own; a lost connection or a timeout fails the whole batch, which
//! is sent again (at least once). While the server cannot be reached, batches wait for it
//! and `/readyz` says 503.

use std::{process::ExitCode, sync::Arc, time::Duration};

use redis::{Pipeline, Value, aio::MultiplexedConnection};
use redis_common::Address;
use redis_sink::{KeyFrom, Mode, RedisSink, RedisSinkConfig};
use runnel_runtime::{
    BoxError, ConsumedRecord, app,
    config::ConnectorConfig,
    pipeline::{DeliverBatch, DeliveryError, SinkContext},
};
use tokio::sync::Mutex;

/// How often the connection is checked (and made again when lost) while nothing is sent.
const KEEP_EVERY: Duration = Duration::from_secs(2);
/// Redis's own limit on one argument, when the server does not say its own.
const DEFAULT_MAX_BULK: u64 = 512 * 1024 * 1024;

struct Link {
    conn: MultiplexedConnection,
    /// The server's proto-max-bulk-len: no argument may be longer.
    max_bulk: u64,
}

struct Writer {
    addr: Address,
    mode: Mode,
    key: KeyFrom,
    maxlen: Option<u64>,
    ttl: Option<Duration>,
    value_field: String,
    encoder: runnel_codec::Encoder,
    timeout: Duration,
    link: Mutex<Option<Link>>,
    ctx: SinkContext,
}

/// Why the connection could not be had.
enum Down {
    Fatal(String),
    Unreachable(String),
}

impl Writer {
    /// The connection, made first when there is none.
    async fn link(&self) -> Result<(MultiplexedConnection, u64), Down> {
        let mut link = self.link.lock().await;
        if let Some(l) = link.as_ref() {
            return Ok((l.conn.clone(), l.max_bulk));
        }
        let mut conn = match redis_common::connect(&self.addr, self.timeout).await {
            Ok(c) => c,
            Err(e) => {
                let text = redis_common::describe(&self.addr, &e);
                return Err(if redis_common::is_fatal(&e) {
                    Down::Fatal(text)
                } else {
                    Down::Unreachable(text)
                });
            }
        };
        // The server's limit on one argument; CONFIG may be refused to this user.
        let max_bulk = redis::cmd("CONFIG")
            .arg("GET")
            .arg("proto-max-bulk-len")
            .query_async::<Vec<String>>(&mut conn)
            .await
            .ok()
            .and_then(|kv| kv.get(1).and_then(|v| v.parse().ok()))
            .unwrap_or(DEFAULT_MAX_BULK);
        tracing::info!(server = %self.addr, "Connected to Redis.");
        self.ctx.set_ready(true);
        *link = Some(Link {
            conn: conn.clone(),
            max_bulk,
        });
        Ok((conn, max_bulk))
    }

    /// Drops the connection after a failure, so the next attempt makes a new one.
    async fn broken(&self) {
        self.link.lock().await.take();
        self.ctx.set_ready(false);
    }

    fn key_of(&self, r: &ConsumedRecord) -> Result<Vec<u8>, DeliveryError> {
        match &self.key {
            KeyFrom::Fixed(k) => Ok(k.as_bytes().to_vec()),
            KeyFrom::RecordKey => match &r.record.key {
                Some(k) if !k.is_empty() => Ok(k.to_vec()),
                _ => Err(DeliveryError::permanent(
                    "the record has no key to write to (key_from: key)",
                )),
            },
            KeyFrom::Header(name) => match r.record.headers.iter().find(|(k, _)| k == name) {
                Some((_, v)) if !v.is_empty() => Ok(v.to_vec()),
                _ => Err(DeliveryError::permanent(format!(
                    "the record has no header {name:?} to take its key from"
                ))),
            },
            KeyFrom::Field(name) => {
                let v: serde_json::Value = serde_json::from_slice(&r.record.value).map_err(|e| {
                    DeliveryError::permanent(format!(
                        "the value is not JSON ({e}), so it has no field {name:?} to take its key from"
                    ))
                })?;
                match v.get(name) {
                    Some(serde_json::Value::String(s)) if !s.is_empty() => {
                        Ok(s.as_bytes().to_vec())
                    }
                    Some(serde_json::Value::Number(n)) => Ok(n.to_string().into_bytes()),
                    Some(_) => Err(DeliveryError::permanent(format!(
                        "field {name:?} of the value is not a string or a number"
                    ))),
                    None => Err(DeliveryError::permanent(format!(
                        "the value has no field {name:?} to take its key from"
                    ))),
                }
            }
        }
    }

    fn value_of(&self, r: &ConsumedRecord) -> Result<Vec<u8>, DeliveryError> {
        if self.encoder.is_passthrough() {
            return Ok(r.record.value.to_vec());
        }
        let id = format!("{}-{}-{}", r.topic, r.partition, r.offset);
        self.encoder
            .encode(&r.record, &id)
            .map_err(|e| DeliveryError::permanent(runnel_runtime::chain(&e)))
    }

    /// Adds the record's commands to the pipeline; returns how many it added.
    fn commands(
        &self,
        r: &ConsumedRecord,
        max_bulk: u64,
        pipe: &mut Pipeline,
    ) -> Result<usize, DeliveryError> {
        let key = self.key_of(r)?;
        let value = self.value_of(r)?;
        let too_long = |what: &str, n: usize| {
            DeliveryError::permanent(format!(
                "{what} is {n} bytes, more than the server's proto-max-bulk-len ({max_bulk})"
            ))
        };
        if value.len() as u64 > max_bulk {
            return Err(too_long("the value", value.len()));
        }
        if key.len() as u64 > max_bulk {
            return Err(too_long("the key", key.len()));
        }
        let px = self.ttl.map(|t| t.as_millis().max(1) as u64);
        match self.mode {
            Mode::Xadd => {
                let c = pipe.cmd("XADD").arg(&key);
                if let Some(n) = self.maxlen {
                    c.arg("MAXLEN").arg("~").arg(n);
                }
                c.arg("*").arg(&self.value_field).arg(&value);
                if let Some(k) = &r.record.key {
                    c.arg("key").arg(&k[..]);
                }
                for (k, v) in &r.record.headers {
                    if k != &self.value_field && k != "key" {
                        c.arg(k).arg(&v[..]);
                    }
                }
                Ok(1)
            }
            Mode::Publish => {
                pipe.cmd("PUBLISH").arg(&key).arg(&value);
                Ok(1)
            }
            Mode::Lpush | Mode::Rpush => {
                let name = if self.mode == Mode::Lpush {
                    "LPUSH"
                } else {
                    "RPUSH"
                };
                pipe.cmd(name).arg(&key).arg(&value);
                Ok(1)
            }
            Mode::Set => {
                let c = pipe.cmd("SET").arg(&key).arg(&value);
                if let Some(px) = px {
                    c.arg("PX").arg(px);
                }
                Ok(1)
            }
            Mode::Hset => {
                let fields = hash_fields(&value)?;
                let c = pipe.cmd("HSET").arg(&key);
                for (f, v) in &fields {
                    c.arg(f).arg(v);
                }
                if let Some(px) = px {
                    pipe.cmd("PEXPIRE").arg(&key).arg(px);
                    return Ok(2);
                }
                Ok(1)
            }
        }
    }
}

/// The hash fields of a JSON object: strings as they are, other values as JSON text.
fn hash_fields(value: &[u8]) -> Result<Vec<(String, String)>, DeliveryError> {
    let v: serde_json::Value = serde_json::from_slice(value).map_err(|e| {
        DeliveryError::permanent(format!(
            "mode hset needs a JSON object as the value, and this is not JSON ({e})"
        ))
    })?;
    let serde_json::Value::Object(map) = v else {
        return Err(DeliveryError::permanent(
            "mode hset needs a JSON object as the value",
        ));
    };
    if map.is_empty() {
        return Err(DeliveryError::permanent(
            "mode hset needs at least one field in the value",
        ));
    }
    Ok(map
        .into_iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => (k, s),
            other => (k, other.to_string()),
        })
        .collect())
}

/// Keeps `/readyz` true to the server while no records flow: connects at start, pings,
/// and connects again whenever the connection is lost.
async fn keep(w: Arc<Writer>) {
    let mut logged = false;
    loop {
        match w.link().await {
            Ok((mut conn, _)) => match redis::cmd("PING").query_async::<Value>(&mut conn).await {
                Ok(_) => {
                    if logged {
                        tracing::info!(server = %w.addr, "Redis is reachable again.");
                    }
                    logged = false;
                    w.ctx.set_ready(true);
                }
                Err(e) => {
                    tracing::warn!(server = %w.addr, error = %redis_common::describe(&w.addr, &e), "Redis connection lost; connecting again.");
                    w.broken().await;
                    logged = true;
                }
            },
            Err(Down::Fatal(e)) => {
                w.ctx.set_ready(false);
                w.ctx
                    .fail(format!("{}: Redis refused the login: {e}", w.addr));
                return;
            }
            Err(Down::Unreachable(e)) => {
                w.ctx.set_ready(false);
                if !logged {
                    tracing::warn!(server = %w.addr, error = %e, "Cannot connect to Redis; /readyz reports it, and records wait.");
                }
                logged = true;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(KEEP_EVERY) => {}
            _ = w.ctx.shutdown().wait() => return,
        }
    }
}

/// Whether a command's error is the record's own fault, so sending it again cannot help.
fn permanent(e: &redis::RedisError) -> bool {
    matches!(e.code(), Some("WRONGTYPE" | "ERR" | "NOPERM" | "EXECABORT"))
        && !e.to_string().contains("max number of clients")
}

impl DeliverBatch for Writer {
    async fn deliver_batch(
        &self,
        batch: &[ConsumedRecord],
    ) -> Result<Vec<(usize, DeliveryError)>, DeliveryError> {
        // While the server is away the batch waits for it: an outage does not use up the
        // batch's attempts, and /readyz says 503 meanwhile.
        let mut wait = Duration::from_millis(100);
        let (mut conn, max_bulk) = loop {
            match self.link().await {
                Ok(l) => break l,
                Err(Down::Fatal(e)) => return Err(DeliveryError::retryable(e)),
                Err(Down::Unreachable(_)) => {
                    self.ctx.wait_for_outside(&mut wait).await?;
                }
            }
        };
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        let mut rejected = Vec::new();
        // For each command of the pipeline, the record it is for.
        let mut owners = Vec::with_capacity(batch.len());
        for (i, r) in batch.iter().enumerate() {
            match self.commands(r, max_bulk, &mut pipe) {
                Ok(n) => owners.extend(std::iter::repeat_n(i, n)),
                Err(e) => rejected.push((i, e)),
            }
        }
        if owners.is_empty() {
            return Ok(rejected);
        }
        let replies = match tokio::time::timeout(
            self.timeout,
            pipe.query_async::<Vec<redis::RedisResult<Value>>>(&mut conn),
        )
        .await
        {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                self.broken().await;
                return Err(DeliveryError::retryable(redis_common::describe(
                    &self.addr, &e,
                )));
            }
            Err(_) => {
                self.broken().await;
                return Err(DeliveryError::retryable(format!(
                    "no reply from Redis within {}ms (timeout)",
                    self.timeout.as_millis()
                )));
            }
        };
        let mut retry = None;
        for (reply, &i) in replies.iter().zip(&owners) {
            if let Err(e) = reply {
                let text = redis_common::describe(&self.addr, e);
                if permanent(e) {
                    if rejected.last().is_none_or(|(j, _)| *j != i) {
                        rejected.push((i, DeliveryError::permanent(text)));
                    }
                } else {
                    retry.get_or_insert(text);
                }
            }
        }
        if let Some(e) = retry {
            // Out of memory, loading, a replica: the whole batch again, later.
            return Err(DeliveryError::retryable(e));
        }
        rejected.sort_by_key(|(i, _)| *i);
        Ok(rejected)
    }
}

fn make(config: &ConnectorConfig<RedisSinkConfig>, ctx: &SinkContext) -> Result<Writer, BoxError> {
    let c = &config.config;
    Ok(Writer {
        addr: c.address()?,
        mode: c.mode()?,
        key: c.key_source()?,
        maxlen: c.maxlen,
        ttl: c.ttl()?,
        value_field: c.value_field.clone(),
        encoder: runnel_codec::Encoder::new(&c.format),
        timeout: c.timeout.0,
        link: Mutex::new(None),
        ctx: ctx.clone(),
    })
}

fn main() -> ExitCode {
    app::batch_sink_main::<RedisSink, _, _>(|config, ctx| {
        let w = Arc::new(make(config, ctx)?);
        tokio::spawn(keep(w.clone()));
        Ok(w)
    })
}
