//! webhook-source: an HTTP server taking records pushed to it. A request is answered 200
//! only once the hub stored every record of its body, so a sender that retries until it
//! gets a 2xx loses nothing: at least once. A request is refused before anything of it is
//! stored when it is on no configured path (404), with another method (405), without the
//! token or signature (401), over the body limit (413) or with a piece that does not
//! decode (400); while the hub is down, or when it did not store in time, it is 503 with
//! Retry-After, and the sender sends again.

use std::{
    net::SocketAddr,
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use axum::{
    Router,
    body::Body,
    extract::State,
    http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header},
    response::{IntoResponse, Response},
    routing::any,
};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use hmac::{Hmac, Mac};
use runnel_codec::{Decoder, FormatOptions, Split};
use runnel_runtime::{BoxError, Record, app, config::ConnectorConfig, pipeline::SourceContext};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;
use webhook_source::{WebhookSource, WebhookSourceConfig};

/// What every request handler shares.
struct Shared {
    ctx: SourceContext,
    methods: Vec<Method>,
    allow: HeaderValue,
    max_body: usize,
    token: Option<Vec<u8>>,
    hmac: Option<(Vec<u8>, String, String)>,
    split: Split,
    format: FormatOptions,
    key_header: Option<String>,
    headers: Vec<String>,
    timeout: Duration,
    permits: Semaphore,
    started: i64,
    made: AtomicU64,
}

/// A refusal: the status and a line saying why.
fn refuse(status: StatusCode, why: impl Into<String>) -> Response {
    let mut line = why.into();
    line.push('\n');
    (status, line).into_response()
}

fn unavailable(why: impl Into<String>) -> Response {
    let mut r = refuse(StatusCode::SERVICE_UNAVAILABLE, why);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

impl Shared {
    fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
            .unwrap_or_default();
        bool::from(given.ct_eq(token))
    }

    fn signed(&self, headers: &HeaderMap, body: &[u8]) -> bool {
        let Some((secret, name, prefix)) = &self.hmac else {
            return true;
        };
        let Some(given) = headers
            .get(name.as_str())
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix(prefix.as_str()))
            .and_then(|v| hex::decode(v.trim()).ok())
        else {
            return false;
        };
        let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(secret) else {
            return false;
        };
        mac.update(body);
        mac.verify_slice(&given).is_ok()
    }

    /// The records of a body, or why it is refused.
    fn records(
        &self,
        body: Bytes,
        method: &Method,
        uri: &Uri,
        h: &HeaderMap,
    ) -> Result<Vec<Record>, String> {
        let pieces = self
            .split
            .pieces(body)
            .map_err(|e| runnel_runtime::Chain(&e).to_string())?;
        let mut decoder = Decoder::new(&self.format);
        let mut decoded = Vec::with_capacity(pieces.len());
        let mut records = Vec::with_capacity(pieces.len());
        for (i, piece) in pieces.into_iter().enumerate() {
            if decoder.is_passthrough() {
                records.push(Record::new(piece));
                continue;
            }
            decoded.clear();
            let id = || {
                let n = self.made.fetch_add(1, Ordering::Relaxed) + 1;
                format!("{}-{n}", self.started)
            };
            decoder.decode_into(piece, id, &mut decoded).map_err(|e| {
                format!("piece {} of the body: {}", i + 1, runnel_runtime::Chain(&e))
            })?;
            for d in decoded.drain(..) {
                let mut r = Record::new(d.value);
                r.headers = d.headers;
                records.push(r);
            }
        }
        let mut common: Vec<(String, Bytes)> = vec![
            (
                "http-method".into(),
                Bytes::copy_from_slice(method.as_str().as_bytes()),
            ),
            (
                "http-path".into(),
                Bytes::copy_from_slice(uri.path().as_bytes()),
            ),
        ];
        if let Some(t) = h.get(header::CONTENT_TYPE) {
            common.push(("content-type".into(), Bytes::copy_from_slice(t.as_bytes())));
        }
        for name in &self.headers {
            for v in h.get_all(name.as_str()) {
                common.push((name.clone(), Bytes::copy_from_slice(v.as_bytes())));
            }
        }
        let key = self
            .key_header
            .as_ref()
            .and_then(|k| h.get(k.as_str()))
            .map(|v| Bytes::copy_from_slice(v.as_bytes()));
        for r in &mut records {
            r.headers.extend(common.iter().cloned());
            if key.is_some() {
                r.key.clone_from(&key);
            }
        }
        Ok(records)
    }
}

/// Reads a body of at most `max` bytes; `None` when it is longer. A body that came in one
/// chunk is not copied.
async fn read_body(body: Body, max: usize) -> Result<Option<Bytes>, axum::Error> {
    let mut stream = body.into_data_stream();
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut len = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        len += chunk.len();
        if len > max {
            return Ok(None);
        }
        chunks.push(chunk);
    }
    Ok(Some(match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.pop().unwrap_or_default(),
        _ => {
            let mut buf = BytesMut::with_capacity(len);
            for c in chunks {
                buf.extend_from_slice(&c);
            }
            buf.freeze()
        }
    }))
}

async fn receive(
    State(s): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if !s.methods.contains(&method) {
        let mut r = refuse(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} is not taken here"),
        );
        r.headers_mut().insert(header::ALLOW, s.allow.clone());
        return r;
    }
    if !s.authorized(&headers) {
        let mut r = refuse(StatusCode::UNAUTHORIZED, "a bearer token is required");
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return r;
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > s.max_body as u64) {
        return too_large(&s);
    }
    // Bodies are read a bounded number at a time: memory stays within concurrency ×
    // max_body whatever the senders do.
    let Ok(_permit) = s.permits.acquire().await else {
        return unavailable("the connector is stopping");
    };
    if !s.ctx.health().is_hub() {
        return unavailable("the hub is unavailable; send again later");
    }
    let body = match read_body(body, s.max_body).await {
        Ok(Some(b)) => b,
        Ok(None) => return too_large(&s),
        Err(e) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                format!("the body could not be read: {e}"),
            );
        }
    };
    if !s.signed(&headers, &body) {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "the signature is missing or does not match the body",
        );
    }
    let records = match s.records(body, &method, &uri, &headers) {
        Ok(r) => r,
        Err(why) => {
            s.ctx.metrics().records_failed.inc();
            tracing::warn!(path = %uri.path(), reason = %why, "Refused a body that does not decode (400); nothing of it was stored.");
            return refuse(StatusCode::BAD_REQUEST, why);
        }
    };
    let n = records.len();
    let stored = tokio::time::timeout(s.timeout, async {
        s.ctx.send_all_acked(records).await.ok()?.await.ok()
    })
    .await;
    match stored {
        Ok(Some(())) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            format!("{{\"records\":{n}}}\n"),
        )
            .into_response(),
        Ok(None) => {
            unavailable("the connector stopped before the hub stored the records; send them again")
        }
        Err(_) => unavailable(format!(
            "the hub did not store the records within {:?}; send them again",
            s.timeout
        )),
    }
}

fn too_large(s: &Shared) -> Response {
    refuse(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the body is longer than max_body ({} bytes)", s.max_body),
    )
}

async fn run(
    config: Arc<ConnectorConfig<WebhookSourceConfig>>,
    ctx: SourceContext,
) -> Result<(), BoxError> {
    let c = &config.config;
    let addr: SocketAddr = c.listen_addr()?;
    let methods: Vec<Method> = c
        .all_methods()
        .iter()
        .map(|m| Method::from_bytes(m.as_bytes()))
        .collect::<Result<_, _>>()?;
    let allow = HeaderValue::from_str(&c.all_methods().join(", "))?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let bound = listener.local_addr()?;
    let paths = c.all_paths();
    tracing::info!(listen = %bound, paths = ?paths, "Taking records pushed over HTTP.");
    ctx.health().set_upstream(true);
    let shutdown = ctx.shutdown().clone();
    let shared = Arc::new(Shared {
        ctx,
        methods,
        allow,
        max_body: usize::try_from(c.max_body.0).unwrap_or(usize::MAX),
        token: c.token.as_ref().map(|t| t.expose().as_bytes().to_vec()),
        hmac: c.hmac.as_ref().map(|h| {
            (
                h.secret.expose().as_bytes().to_vec(),
                h.header.to_ascii_lowercase(),
                h.prefix.clone(),
            )
        }),
        split: c.split,
        format: c.format.clone(),
        key_header: c.key_header.as_ref().map(|k| k.to_ascii_lowercase()),
        headers: c.headers.iter().map(|h| h.to_ascii_lowercase()).collect(),
        timeout: c.timeout.0,
        permits: Semaphore::new(c.concurrency as usize),
        started: runnel_runtime::record::now_millis(),
        made: AtomicU64::new(0),
    });
    let mut router = Router::new();
    for p in &paths {
        router = router.route(p, any(receive));
    }
    let router = router
        .fallback(|uri: Uri| async move {
            refuse(
                StatusCode::NOT_FOUND,
                format!("{} takes no records", uri.path()),
            )
        })
        .with_state(shared);
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { shutdown.wait().await })
        .await?;
    Ok(())
}

fn main() -> ExitCode {
    app::source_main::<WebhookSource, _, _>(run)
}
