//! http-sink: sends each record to an HTTP endpoint. Keep-alive connections, bounded
//! concurrency that keeps per-key order, retries with backoff for 5xx, 408, 429 and transport
//! errors, then the error policy (dead-letter by default). Offsets are committed only after
//! delivery.

use std::{process::ExitCode, time::Duration};

use http_sink::{HttpSink, HttpSinkConfig};
use reqwest::{
    Client, StatusCode,
    header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue},
};
use runnel_runtime::{
    BoxError, ConsumedRecord, app,
    config::ConnectorConfig,
    pipeline::{Deliver, DeliveryError, SinkContext},
};

/// How often the endpoint's reachability is checked for `/readyz` while nothing is sent.
const PROBE_EVERY: Duration = Duration::from_secs(5);

struct Sender {
    client: Client,
    method: reqwest::Method,
    url: reqwest::Url,
    headers: HeaderMap,
    ctx: SinkContext,
    encoder: runnel_codec::Encoder,
}

impl Sender {
    fn new(config: &ConnectorConfig<HttpSinkConfig>, ctx: &SinkContext) -> Result<Self, BoxError> {
        let c = &config.config;
        let concurrency = config.delivery.as_ref().map_or(1, |d| d.concurrency);
        let client = Client::builder()
            .user_agent(
                c.user_agent
                    .clone()
                    .unwrap_or_else(|| http_common::default_user_agent("http-sink")),
            )
            .timeout(c.http_request_timeout.0)
            .connect_timeout(c.http_connect_timeout.0)
            .pool_max_idle_per_host(concurrency.max(1))
            .tcp_keepalive(Duration::from_secs(30))
            .build()
            .map_err(http_common::describe)?;
        let url = http_common::endpoint("http.endpoint", &c.endpoint)?;
        tokio::spawn(probe(url.clone(), c.http_connect_timeout.0, ctx.clone()));
        let encoder = runnel_codec::Encoder::new(&c.format);
        let mut headers = http_common::header_map("http.headers", &c.headers)?;
        if let (Some(t), false) = (encoder.media_type(), headers.contains_key(CONTENT_TYPE)) {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(t));
        }
        Ok(Sender {
            client,
            method: http_common::method("http.method", &c.method)?,
            url,
            headers,
            ctx: ctx.clone(),
            encoder,
        })
    }

    /// The request's headers and body for `record`, as the format makes them.
    fn request_parts(
        &self,
        record: &ConsumedRecord,
    ) -> Result<(HeaderMap, bytes::Bytes), DeliveryError> {
        if self.encoder.is_passthrough() {
            return Ok((self.headers.clone(), record.record.value.clone()));
        }
        let id = format!("{}-{}-{}", record.topic, record.partition, record.offset);
        let body = self
            .encoder
            .encode(&record.record, &id)
            .map_err(|e| DeliveryError::permanent(runnel_runtime::chain(&e)))?;
        let mut headers = self.headers.clone();
        if self.encoder.is_binary_event() {
            // CloudEvents' HTTP binding, binary mode: each attribute is a ce- header, the
            // data's media type the Content-Type.
            for (name, value) in &record.record.headers {
                let is_attr = name.starts_with("ce-");
                if !is_attr && !name.eq_ignore_ascii_case("content-type") {
                    continue;
                }
                let bad = |what: &str| {
                    DeliveryError::permanent(format!(
                        "the record's header {name:?} cannot be an HTTP header: {what}"
                    ))
                };
                let n = HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
                    .map_err(|_| bad("not a valid name"))?;
                let v = HeaderValue::from_bytes(value).map_err(|_| bad("not a valid value"))?;
                if is_attr || !headers.contains_key(CONTENT_TYPE) {
                    headers.insert(n, v);
                }
            }
        }
        Ok((headers, body.into()))
    }
}

/// Keeps `/readyz` true to the endpoint while no records flow: a TCP connection to its host
/// and port every few seconds (deliveries say so too, as they happen).
async fn probe(url: reqwest::Url, timeout: Duration, ctx: SinkContext) {
    let (Some(host), Some(port)) = (
        url.host_str().map(String::from),
        url.port_or_known_default(),
    ) else {
        return;
    };
    // An IPv6 literal comes bracketed in URLs.
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let mut was = None;
    loop {
        let up = matches!(
            tokio::time::timeout(
                timeout,
                tokio::net::TcpStream::connect((host.as_str(), port))
            )
            .await,
            Ok(Ok(_))
        );
        ctx.set_ready(up);
        if was != Some(up) {
            if up {
                tracing::info!(host = %host, port, "The endpoint accepts connections.");
            } else {
                tracing::warn!(host = %host, port, "The endpoint does not accept connections; /readyz reports it.");
            }
            was = Some(up);
        }
        tokio::select! {
            _ = tokio::time::sleep(PROBE_EVERY) => {}
            _ = ctx.shutdown().wait() => return,
        }
    }
}

impl Deliver for Sender {
    async fn deliver(&self, record: &ConsumedRecord) -> Result<(), DeliveryError> {
        let (headers, body) = self.request_parts(record)?;
        let resp = self
            .client
            .request(self.method.clone(), self.url.clone())
            .headers(headers)
            .body(body)
            .send()
            .await
            .map_err(|e| {
                if e.is_connect() {
                    self.ctx.set_ready(false);
                }
                DeliveryError::retryable(http_common::describe(e))
            })?;
        self.ctx.set_ready(true);
        let status = resp.status();
        // Read the body so the connection goes back to the pool.
        let _ = resp.bytes().await;
        if status.is_success() {
            Ok(())
        } else if status.is_server_error()
            || status == StatusCode::TOO_MANY_REQUESTS
            || status == StatusCode::REQUEST_TIMEOUT
        {
            Err(DeliveryError::retryable(format!(
                "the endpoint answered {status}"
            )))
        } else {
            Err(DeliveryError::permanent(format!(
                "the endpoint answered {status}"
            )))
        }
    }
}

fn main() -> ExitCode {
    app::sink_main::<HttpSink, _, _>(Sender::new)
}
