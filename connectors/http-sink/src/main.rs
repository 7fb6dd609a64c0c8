//! http-sink: sends each record to an HTTP endpoint. Keep-alive connections, bounded
//! concurrency that keeps per-key order, retries with backoff for 5xx, 408, 429 and transport
//! errors, then the error policy (dead-letter by default). Offsets are committed only after
//! delivery.

use std::process::ExitCode;

use http_sink::{HttpSink, HttpSinkConfig};
use reqwest::{Client, StatusCode, header::HeaderMap};
use runnel_runtime::{
    BoxError, ConsumedRecord, app,
    config::ConnectorConfig,
    pipeline::{Deliver, DeliveryError},
};

struct Sender {
    client: Client,
    method: reqwest::Method,
    url: reqwest::Url,
    headers: HeaderMap,
}

impl Sender {
    fn new(config: &ConnectorConfig<HttpSinkConfig>) -> Result<Self, BoxError> {
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
