//! http-sink: sends each record to an HTTP endpoint. Keep-alive connections, bounded
//! concurrency that keeps per-key order, retries with backoff for 5xx, 408, 429 and transport
//! errors, then the error policy (dead-letter by default). Offsets are committed only after
//! delivery.

use std::process::ExitCode;

use reqwest::{Client, StatusCode, header::HeaderMap};
use runnel_runtime::{
    BoxError, ConsumedRecord, app,
    app::SinkOptions,
    config::{
        ConnectorConfig, ConnectorKind, Direction, FieldError, HumanDuration, Meta, Validate,
    },
    pipeline::{Deliver, DeliveryError, ErrorPolicy},
    retry::RetryConfig,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

struct HttpSink;

impl ConnectorKind for HttpSink {
    const TYPE: &'static str = "http-sink";
    const ALIASES: &'static [&'static str] = &["http"];
    const SECTION: &'static str = "http";
    const DIRECTION: Direction = Direction::Sink;
    type Config = HttpSinkConfig;
}

/// Options of http-sink (the `http:` section).
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct HttpSinkConfig {
    /// The URL each record is sent to (http:// or https://).
    endpoint: String,
    /// The request method. Default POST.
    #[serde(default = "default_method")]
    method: String,
    /// Request headers, each written "Name: value".
    #[serde(default)]
    headers: Vec<String>,
    /// The User-Agent header. Default runnel-http-sink/VERSION.
    #[serde(alias = "user-agent")]
    user_agent: Option<String>,
    /// How long one request may take. Default 30s.
    #[serde(default = "default_request_timeout", alias = "http-request-timeout")]
    http_request_timeout: HumanDuration,
    /// How long connecting may take. Default 15s.
    #[serde(default = "default_connect_timeout", alias = "http-connect-timeout")]
    http_connect_timeout: HumanDuration,
    /// Requests in flight at once. With 1 (the default) records arrive in topic order; with
    /// more, records with the same key still arrive in order.
    #[serde(default = "default_concurrency")]
    concurrency: usize,
    /// Retries of a failed request (5xx, 408, 429, transport errors).
    #[serde(default)]
    retry: RetryConfig,
    /// What happens to a record that still fails: dead-letter (default), skip or stop.
    #[serde(default, alias = "on-error")]
    on_error: ErrorPolicy,
    /// The dead-letter topic. Default: the topic's name with -dlq.
    #[serde(alias = "dead-letter-topic")]
    dead_letter_topic: Option<String>,
}

fn default_method() -> String {
    "POST".into()
}
fn default_request_timeout() -> HumanDuration {
    HumanDuration::from_millis(30_000)
}
fn default_connect_timeout() -> HumanDuration {
    HumanDuration::from_millis(15_000)
}
fn default_concurrency() -> usize {
    1
}

impl Validate for HttpSinkConfig {
    fn validate(&self) -> Result<(), FieldError> {
        http_common::endpoint("endpoint", &self.endpoint)?;
        http_common::method("method", &self.method)?;
        http_common::header_map("headers", &self.headers)?;
        if !(1..=1024).contains(&self.concurrency) {
            return Err(FieldError::new(
                "concurrency",
                format!("{} is out of range: 1 to 1024", self.concurrency),
            ));
        }
        self.retry.check().map_err(|e| e.under("retry"))?;
        if self.http_request_timeout.0.is_zero() {
            return Err(FieldError::new(
                "http_request_timeout",
                "must be more than 0",
            ));
        }
        if self.http_connect_timeout.0.is_zero() {
            return Err(FieldError::new(
                "http_connect_timeout",
                "must be more than 0",
            ));
        }
        self.check_dead_letter_topic()
    }

    fn validate_with_meta(&self, meta: &Meta) -> Result<(), FieldError> {
        self.check_dead_letter_not_source(meta)
    }
}

impl SinkOptions for HttpSinkConfig {
    fn concurrency(&self) -> usize {
        self.concurrency
    }
    fn retry(&self) -> RetryConfig {
        self.retry
    }
    fn on_error(&self) -> ErrorPolicy {
        self.on_error
    }
    fn dead_letter_topic(&self) -> Option<&str> {
        self.dead_letter_topic.as_deref()
    }
}

struct Sender {
    client: Client,
    method: reqwest::Method,
    url: reqwest::Url,
    headers: HeaderMap,
}

impl Sender {
    fn new(config: &ConnectorConfig<HttpSinkConfig>) -> Result<Self, BoxError> {
        let c = &config.config;
        let client = Client::builder()
            .user_agent(
                c.user_agent
                    .clone()
                    .unwrap_or_else(|| http_common::default_user_agent("http-sink")),
            )
            .timeout(c.http_request_timeout.0)
            .connect_timeout(c.http_connect_timeout.0)
            .pool_max_idle_per_host(c.concurrency.max(1))
            .tcp_keepalive(std::time::Duration::from_secs(30))
            .build()
            .map_err(http_common::describe)?;
        Ok(Sender {
            client,
            method: http_common::method("http.method", &c.method)?,
            url: http_common::endpoint("http.endpoint", &c.endpoint)?,
            headers: http_common::header_map("http.headers", &c.headers)?,
        })
    }
}

impl Deliver for Sender {
    async fn deliver(&self, record: &ConsumedRecord) -> Result<(), DeliveryError> {
        let resp = self
            .client
            .request(self.method.clone(), self.url.clone())
            .headers(self.headers.clone())
            .body(record.record.value.clone())
            .send()
            .await
            .map_err(|e| DeliveryError::retryable(http_common::describe(e)))?;
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
