//! http-source: polls an HTTP endpoint every `interval`, or keeps one response open and
//! splits it into records at `delimiter` (`stream: true`), as Fluvio's http-source does.

use std::{process::ExitCode, sync::Arc, time::Duration};

use bytes::{Bytes, BytesMut};
use http_source::{HttpSource, HttpSourceConfig, OutputParts, OutputType, StatusPolicy};
use reqwest::{Client, Response, StatusCode, header::HeaderMap};
use runnel_codec::{Decoder, Deframer, Frame, Framing};
use runnel_runtime::{
    BoxError, Record, app,
    config::{ByteSize, ConnectorConfig},
    pipeline::SourceContext,
    retry::Backoff,
};

/// A request ready to send again and again.
struct Poller {
    client: Client,
    method: reqwest::Method,
    url: reqwest::Url,
    headers: HeaderMap,
    body: Option<String>,
    parts: OutputParts,
    kind: OutputType,
    format: runnel_codec::FormatOptions,
}

/// Turns the pieces of one response (a polled body, or a stream's pieces) into records with
/// the `format` option; each response is a stream of its own, so a CSV header row is read
/// again at the start of each.
struct Pieces {
    decoder: Decoder,
    /// Ids of events made here (binary mode): the poller's start time and a count.
    started: i64,
    made: u64,
}

impl Pieces {
    fn new(p: &Poller) -> Self {
        Pieces {
            decoder: Decoder::new(&p.format),
            started: runnel_runtime::record::now_millis(),
            made: 0,
        }
    }

    /// The records of one piece; a piece that does not decode is skipped with the reason
    /// in a log line and counted in records_failed.
    fn records(
        &mut self,
        p: &Poller,
        head: &ResponseHead,
        piece: Bytes,
        ctx: &SourceContext,
    ) -> Vec<Record> {
        if self.decoder.is_passthrough() {
            return vec![Record::new(p.value(head, &piece))];
        }
        let mut out = Vec::new();
        let (started, made) = (self.started, &mut self.made);
        let id = || {
            *made += 1;
            format!("{started}-{made}")
        };
        if let Err(e) = self.decoder.decode_into(piece, id, &mut out) {
            ctx.metrics().records_failed.inc();
            tracing::warn!(reason = %runnel_runtime::Chain(&e), "Skipping a piece that does not decode.");
        }
        out.into_iter()
            .map(|d| {
                let mut r = Record::new(d.value);
                r.headers = d.headers;
                r
            })
            .collect()
    }
}

enum Failure {
    /// The request did not complete: connect, TLS, timeout, a dropped body.
    Transport(String),
    /// A non-2xx answer that the policy did not turn into a record.
    Status {
        code: StatusCode,
        retry_after: Option<Duration>,
    },
}

impl Poller {
    fn new(c: &HttpSourceConfig) -> Result<Self, BoxError> {
        let client = Client::builder()
            .user_agent(
                c.user_agent
                    .clone()
                    .unwrap_or_else(|| http_common::default_user_agent("http-source")),
            )
            .connect_timeout(c.request_timeout.0)
            .tcp_keepalive(Duration::from_secs(30))
            .build()
            .map_err(http_common::describe)?;
        Ok(Poller {
            client,
            method: http_common::method("http.method", &c.method)?,
            url: http_common::endpoint("http.endpoint", &c.endpoint)?,
            headers: http_common::header_map("http.headers", &c.headers)?,
            body: c.body.clone(),
            parts: c.output_parts,
            kind: c.output_type,
            format: c.format.clone(),
        })
    }

    fn request(&self) -> reqwest::RequestBuilder {
        let mut req = self
            .client
            .request(self.method.clone(), self.url.clone())
            .headers(self.headers.clone());
        if let Some(b) = &self.body {
            req = req.body(b.clone());
        }
        req
    }

    /// Formats one piece of a response as a record value.
    fn value(&self, resp: &ResponseHead, body: &[u8]) -> Bytes {
        match (self.parts, self.kind) {
            (OutputParts::Body, OutputType::Text) => Bytes::copy_from_slice(body),
            (OutputParts::Body, OutputType::Json) => {
                json_bytes(&serde_json::json!({ "body": String::from_utf8_lossy(body) }))
            }
            (OutputParts::Full, OutputType::Text) => {
                let mut out = format!("{:?} {}\n", resp.version, resp.status);
                for (k, v) in &resp.headers {
                    out.push_str(k.as_str());
                    out.push_str(": ");
                    out.push_str(&String::from_utf8_lossy(v.as_bytes()));
                    out.push('\n');
                }
                out.push('\n');
                let mut b = out.into_bytes();
                b.extend_from_slice(body);
                Bytes::from(b)
            }
            (OutputParts::Full, OutputType::Json) => {
                let mut header = serde_json::Map::new();
                for (k, v) in &resp.headers {
                    let v = serde_json::Value::from(String::from_utf8_lossy(v.as_bytes()));
                    match header.get_mut(k.as_str()) {
                        Some(serde_json::Value::Array(a)) => a.push(v),
                        Some(prev) => *prev = serde_json::Value::Array(vec![prev.take(), v]),
                        None => {
                            header.insert(k.as_str().to_string(), v);
                        }
                    }
                }
                json_bytes(&serde_json::json!({
                    "status": {
                        "version": format!("{:?}", resp.version),
                        "code": resp.status.as_u16(),
                        "string": resp.status.canonical_reason().unwrap_or(""),
                    },
                    "header": header,
                    "body": String::from_utf8_lossy(body),
                }))
            }
        }
    }
}

struct ResponseHead {
    status: StatusCode,
    version: reqwest::Version,
    headers: HeaderMap,
}

impl ResponseHead {
    fn of(r: &Response) -> Self {
        ResponseHead {
            status: r.status(),
            version: r.version(),
            headers: r.headers().clone(),
        }
    }
}

fn json_bytes(v: &serde_json::Value) -> Bytes {
    Bytes::from(serde_json::to_vec(v).unwrap_or_default())
}

fn retry_after(h: &HeaderMap) -> Option<Duration> {
    let secs: u64 = h
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs.min(3600)))
}

/// Applies the status policy to a non-2xx answer: `Ok(true)` when it should become a record.
fn on_status(
    policy: StatusPolicy,
    head: &ResponseHead,
    ctx: &SourceContext,
) -> Result<bool, BoxError> {
    match policy {
        StatusPolicy::Record => Ok(true),
        StatusPolicy::Stop => Err(format!(
            "the endpoint answered {} and on_error_status is stop",
            head.status
        )
        .into()),
        StatusPolicy::Skip => {
            ctx.metrics().records_failed.inc();
            tracing::warn!(
                status = head.status.as_u16(),
                "The endpoint answered with an error status; no record written (on_error_status: skip)."
            );
            Ok(false)
        }
    }
}

async fn poll_once(
    p: &Poller,
    timeout: Duration,
    policy: StatusPolicy,
    max: usize,
    ctx: &SourceContext,
) -> Result<Result<(), Failure>, BoxError> {
    let resp = match p.request().timeout(timeout).send().await {
        Ok(r) => r,
        Err(e) => return Ok(Err(Failure::Transport(http_common::describe(e)))),
    };
    ctx.health().set_upstream(true);
    let head = ResponseHead::of(&resp);
    let body = match read_body(resp, max).await {
        Ok(Some(b)) => b,
        Ok(None) => {
            ctx.metrics().records_failed.inc();
            return Ok(Ok(()));
        }
        Err(e) => return Ok(Err(Failure::Transport(http_common::describe(e)))),
    };
    if !head.status.is_success() && !on_status(policy, &head, ctx)? {
        return Ok(Err(Failure::Status {
            code: head.status,
            retry_after: retry_after(&head.headers),
        }));
    }
    for record in Pieces::new(p).records(p, &head, body, ctx) {
        ctx.send(record)
            .await
            .map_err(|e| Box::new(e) as BoxError)?;
    }
    Ok(Ok(()))
}

/// A polled body of at most `max` bytes. A larger one (by its Content-Length, or as it
/// arrives) is not read further: it is skipped with a warning naming its size and counted
/// in records_failed, and `None` is returned.
async fn read_body(mut resp: Response, max: usize) -> Result<Option<Bytes>, reqwest::Error> {
    if let Some(len) = resp.content_length().filter(|l| *l > max as u64) {
        skip_oversized(len, true, max);
        return Ok(None);
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = resp.chunk().await? {
        if body.len() + chunk.len() > max {
            skip_oversized((body.len() + chunk.len()) as u64, false, max);
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body.freeze()))
}

fn skip_oversized(size: u64, complete: bool, max: usize) {
    tracing::warn!(
        reason = %runnel_codec::oversized_reason(size, complete, max),
        "Skipping a record over the maximum size."
    );
}

async fn poll_loop(c: &HttpSourceConfig, p: Poller, ctx: SourceContext) -> Result<(), BoxError> {
    let mut backoff = Backoff::new(c.initial_backoff.0, c.max_backoff.0);
    let interval = c.interval.0;
    let max = usize::try_from(c.max_record_size.0.0).unwrap_or(usize::MAX);
    loop {
        let started = tokio::time::Instant::now();
        let outcome = tokio::select! {
            r = poll_once(&p, c.request_timeout.0, c.on_error_status, max, &ctx) => r?,
            _ = ctx.shutdown().wait() => return Ok(()),
        };
        let wait = match outcome {
            Ok(()) => {
                backoff.reset();
                interval.saturating_sub(started.elapsed())
            }
            Err(Failure::Transport(e)) => {
                ctx.health().set_upstream(false);
                let wait = backoff.next_delay();
                tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "Request failed.");
                wait
            }
            Err(Failure::Status { code, retry_after }) => {
                let busy = code == StatusCode::TOO_MANY_REQUESTS || code.is_server_error();
                match retry_after {
                    Some(d) => d.max(interval),
                    None if busy => backoff.next_delay().max(interval),
                    None => interval,
                }
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = ctx.shutdown().wait() => return Ok(()),
        }
    }
}

async fn stream_loop(c: &HttpSourceConfig, p: Poller, ctx: SourceContext) -> Result<(), BoxError> {
    let framing = c.stream_framing()?;
    let mut backoff = Backoff::new(c.initial_backoff.0, c.max_backoff.0);
    loop {
        let sent = tokio::select! {
            r = p.request().send() => r,
            _ = ctx.shutdown().wait() => return Ok(()),
        };
        let problem = match sent {
            Err(e) => http_common::describe(e),
            Ok(resp) => {
                let head = ResponseHead::of(&resp);
                if !head.status.is_success() && !on_status(c.on_error_status, &head, &ctx)? {
                    format!("the endpoint answered {}", head.status)
                } else {
                    ctx.health().set_upstream(true);
                    backoff.reset();
                    tracing::info!(status = head.status.as_u16(), "Stream opened.");
                    match read_stream(&p, resp, &head, &framing, c.max_record_size.0, &ctx).await? {
                        StreamEnd::Shutdown => return Ok(()),
                        StreamEnd::Closed => "the server closed the stream".to_string(),
                        StreamEnd::Broken(e) => e,
                    }
                }
            }
        };
        ctx.health().set_upstream(false);
        let wait = backoff.next_delay();
        tracing::warn!(reason = %problem, retry_in_ms = wait.as_millis() as u64, "Stream interrupted; reconnecting.");
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = ctx.shutdown().wait() => return Ok(()),
        }
    }
}

enum StreamEnd {
    Shutdown,
    Closed,
    Broken(String),
}

async fn read_stream(
    p: &Poller,
    mut resp: Response,
    head: &ResponseHead,
    framing: &Framing,
    max: ByteSize,
    ctx: &SourceContext,
) -> Result<StreamEnd, BoxError> {
    let mut frames = Deframer::new(framing.clone(), max);
    let mut pieces = Pieces::new(p);
    loop {
        let chunk = tokio::select! {
            c = resp.chunk() => c,
            _ = ctx.shutdown().wait() => return Ok(StreamEnd::Shutdown),
        };
        match chunk {
            Ok(Some(bytes)) => {
                frames.push(&bytes);
                while let Some(frame) = frames.next_frame() {
                    send_frame(p, &mut pieces, head, frame, frames.max(), ctx).await?;
                }
            }
            Ok(None) => {
                if let Some(frame) = frames.finish() {
                    send_frame(p, &mut pieces, head, frame, frames.max(), ctx).await?;
                }
                return Ok(StreamEnd::Closed);
            }
            Err(e) => {
                if frames.buffered() > 0 {
                    tracing::warn!(
                        bytes = frames.buffered(),
                        "Discarding an incomplete record: the stream broke before its delimiter."
                    );
                    ctx.metrics().records_failed.inc();
                }
                return Ok(StreamEnd::Broken(http_common::describe(e)));
            }
        }
    }
}

/// A piece of the stream: a record, or one over the maximum, skipped with its size.
async fn send_frame(
    p: &Poller,
    pieces: &mut Pieces,
    head: &ResponseHead,
    frame: Frame,
    max: usize,
    ctx: &SourceContext,
) -> Result<(), BoxError> {
    match frame {
        Frame::Record(piece) => {
            for r in pieces.records(p, head, piece, ctx) {
                ctx.send(r).await?;
            }
        }
        Frame::Oversized { size, complete } => {
            skip_oversized(size, complete, max);
            ctx.metrics().records_failed.inc();
        }
        Frame::Truncated { size, expected } => {
            tracing::warn!(
                bytes = size,
                expected,
                "Discarding an incomplete record: the stream ended inside a length-prefixed record."
            );
            ctx.metrics().records_failed.inc();
        }
    }
    Ok(())
}

async fn run(
    config: Arc<ConnectorConfig<HttpSourceConfig>>,
    ctx: SourceContext,
) -> Result<(), BoxError> {
    let c = &config.config;
    if c.is_websocket() {
        return websocket_source::run::run(&c.websocket(), ctx).await;
    }
    let poller = Poller::new(c)?;
    if c.stream {
        stream_loop(c, poller, ctx).await
    } else {
        poll_loop(c, poller, ctx).await
    }
}

fn main() -> ExitCode {
    app::source_main::<HttpSource, _, _>(run)
}
