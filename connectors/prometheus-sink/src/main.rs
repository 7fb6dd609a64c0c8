//! prometheus-sink: each batch of JSON records becomes one remote-write request, its
//! samples grouped into series by their labels and ordered by time within each. A record
//! that gives no sample (not a JSON object, no value, a metric name Prometheus does not
//! take) follows `on_error` with the reason and is never sent. When the receiver refuses
//! part of a request (400: a sample out of order, too old, a duplicate of another value),
//! the batch goes again one record per request, so only the refused records follow
//! `on_error`, with the receiver's message (a sample sent twice with the same value and
//! time is stored once); Prometheus 2.x's 500 "too old sample" counts as such a refusal.
//! While the receiver cannot be reached or answers another 5xx or 429 the batch waits for
//! it; a refused login or an endpoint that does not receive remote writes
//! stops the connector (exit 1).

use std::{collections::HashMap, process::ExitCode, time::Duration};

use http_common::sink::{self, Answer};
use prometheus_sink::proto::{Label, Sample, TimeSeries, WriteRequest};
use prometheus_sink::{PrometheusSink, PrometheusSinkConfig, metric_name_ok};
use reqwest::{StatusCode, header};
use runnel_codec::template::{self, Template};
use runnel_runtime::{
    BoxError, ConsumedRecord, app,
    config::ConnectorConfig,
    pipeline::{DeliverBatch, DeliveryError, SinkContext},
};
use serde_json::Value;

/// How often readiness is checked while no records flow.
const PING_EVERY: Duration = Duration::from_secs(5);

/// Where a record's samples come from.
#[derive(Clone)]
enum Values {
    /// One sample: the metric name's template and the value's field.
    One(Template, Vec<String>),
    /// Metric name → the value's field.
    Many(Vec<(String, Vec<String>)>),
}

#[derive(Clone)]
enum Auth {
    None,
    Basic(String, String),
    Bearer(String),
}

#[derive(Clone)]
struct Writer {
    client: reqwest::Client,
    endpoint: reqwest::Url,
    shown: String,
    auth: Auth,
    values: Values,
    labels: Vec<(String, Template)>,
    timestamp_field: Option<Vec<String>>,
    unit: prometheus_sink::Unit,
    ctx: SinkContext,
}

/// A record's samples: each with its sorted labels (`__name__` among them).
type Samples = Vec<(Vec<Label>, Sample)>;

/// Whether a 5xx answer is about the samples rather than the receiver: Prometheus 2.x
/// answers 500 for a sample older than its out-of-order window takes ("too old sample"),
/// where newer versions answer 400. Such an answer refuses samples; any other 5xx is an
/// outage to wait out.
fn about_the_samples(reason: &str) -> bool {
    [
        "too old sample",
        "out of bounds",
        "out of order sample",
        "duplicate sample",
    ]
    .iter()
    .any(|m| reason.contains(m))
}

/// A JSON value as a sample value.
fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

impl Writer {
    fn samples(&self, r: &ConsumedRecord) -> Result<Samples, String> {
        let record: Value = serde_json::from_slice(&r.record.value)
            .map_err(|e| format!("the record is not JSON: {e}"))?;
        if !record.is_object() {
            return Err("the record is not a JSON object".into());
        }
        let timestamp = match &self.timestamp_field {
            None => r.record.timestamp,
            Some(path) => template::at(&record, path)
                .and_then(|v| match v {
                    Value::Number(n) => n.as_f64(),
                    Value::String(s) => s.trim().parse().ok(),
                    _ => None,
                })
                .filter(|t| t.is_finite())
                .map(|t| self.unit.to_millis(t).round() as i64)
                .ok_or_else(|| {
                    format!(
                        "the timestamp field {} is missing or not a number",
                        path.join(".")
                    )
                })?,
        };
        let mut labels = Vec::with_capacity(self.labels.len() + 1);
        for (name, t) in &self.labels {
            if let Some(value) = t.render(&record).filter(|v| !v.is_empty()) {
                labels.push(Label {
                    name: name.clone(),
                    value,
                });
            }
        }
        let mut out = Vec::new();
        let mut add = |name: String, value: f64| {
            let mut l = labels.clone();
            l.push(Label {
                name: "__name__".into(),
                value: name,
            });
            l.sort();
            out.push((l, Sample { value, timestamp }));
        };
        match &self.values {
            Values::One(metric, field) => {
                let name = metric
                    .render(&record)
                    .ok_or("the metric name's template names a field the record does not have")?;
                if !metric_name_ok(&name) {
                    return Err(format!(
                        "{name:?} is not a metric name (letters, digits, _ and :, not starting with a digit)"
                    ));
                }
                let value = template::at(&record, field)
                    .and_then(number)
                    .ok_or_else(|| {
                        format!(
                            "the value field {} is missing or not a number",
                            field.join(".")
                        )
                    })?;
                add(name, value);
            }
            Values::Many(list) => {
                for (name, field) in list {
                    match template::at(&record, field) {
                        None | Some(Value::Null) => {}
                        Some(v) => {
                            let value = number(v).ok_or_else(|| {
                                format!("the value field {} is not a number", field.join("."))
                            })?;
                            add(name.clone(), value);
                        }
                    }
                }
                if out.is_empty() {
                    return Err(
                        "no value to write: the record has none of the values' fields".into(),
                    );
                }
            }
        }
        Ok(out)
    }

    /// The request body of these samples: series grouped by labels, samples in time order.
    fn body<'a>(samples: impl IntoIterator<Item = &'a (Vec<Label>, Sample)>) -> Vec<u8> {
        let mut series: Vec<TimeSeries> = Vec::new();
        let mut index: HashMap<&'a [Label], usize> = HashMap::new();
        for (labels, sample) in samples {
            let i = match index.get(labels.as_slice()) {
                Some(&i) => i,
                None => {
                    series.push(TimeSeries {
                        labels: labels.clone(),
                        samples: Vec::new(),
                    });
                    index.insert(labels, series.len() - 1);
                    series.len() - 1
                }
            };
            series[i].samples.push(sample.clone());
        }
        for s in &mut series {
            s.samples.sort_by_key(|s| s.timestamp);
        }
        WriteRequest { timeseries: series }.body()
    }

    async fn post(&self, body: Vec<u8>) -> Result<reqwest::Response, reqwest::Error> {
        let mut req = self
            .client
            .post(self.endpoint.clone())
            .header(header::CONTENT_TYPE, "application/x-protobuf")
            .header(header::CONTENT_ENCODING, "snappy")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .body(body);
        match &self.auth {
            Auth::None => {}
            Auth::Basic(u, p) => req = req.basic_auth(u, Some(p)),
            Auth::Bearer(t) => req = req.bearer_auth(t),
        }
        req.send().await
    }

    async fn reason(resp: reqwest::Response) -> String {
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        let said: String = body.trim().chars().take(300).collect();
        format!("the receiver answered {status}: {said}")
    }

    /// Refusals that no wait mends: the login, or an endpoint that takes no remote writes.
    async fn fatal(&self, resp: reqwest::Response) -> String {
        let not_found = resp.status() == StatusCode::NOT_FOUND;
        let mut why = format!("writing to {}: {}", self.shown, Writer::reason(resp).await);
        if not_found {
            why.push_str(" (is it a remote-write endpoint? Prometheus takes them at /api/v1/write when started with --web.enable-remote-write-receiver)");
        }
        why
    }

    /// What the receiver's answer to `body` means.
    async fn answer(&self, body: Vec<u8>) -> Answer {
        let resp = match self.post(body).await {
            Ok(resp) => resp,
            Err(e) => return Answer::Away(http_common::describe(e)),
        };
        match resp.status() {
            s if s.is_success() => Answer::Stored,
            StatusCode::BAD_REQUEST => Answer::Refused(Writer::reason(resp).await),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::NOT_FOUND => {
                Answer::Fatal(self.fatal(resp).await)
            }
            s if s.is_server_error() => {
                let why = Writer::reason(resp).await;
                if about_the_samples(&why) {
                    Answer::Refused(why)
                } else {
                    Answer::Away(why)
                }
            }
            StatusCode::TOO_MANY_REQUESTS => Answer::Away(Writer::reason(resp).await),
            _ => Answer::Retry(Writer::reason(resp).await),
        }
    }

    /// Sends `body`: `Ok(None)` when stored, `Ok(Some(reason))` when the receiver refused
    /// samples in it, an error when the batch must be written again.
    async fn write(&self, body: Vec<u8>) -> Result<Option<String>, DeliveryError> {
        sink::write(&self.ctx, &self.shown, || self.answer(body.clone())).await
    }
}

impl DeliverBatch for Writer {
    async fn deliver_batch(
        &self,
        batch: &[ConsumedRecord],
    ) -> Result<Vec<(usize, DeliveryError)>, DeliveryError> {
        let mut refused = Vec::new();
        let mut each: Vec<(usize, Samples)> = Vec::with_capacity(batch.len());
        for (i, r) in batch.iter().enumerate() {
            match self.samples(r) {
                Ok(s) => each.push((i, s)),
                Err(why) => refused.push((i, DeliveryError::permanent(why))),
            }
        }
        if each.is_empty() {
            return Ok(refused);
        }
        let all = Writer::body(each.iter().flat_map(|(_, s)| s.iter()));
        if self.write(all).await?.is_none() {
            return Ok(refused);
        }
        // Part of the request was refused: each record alone finds which.
        let mut parts: Vec<(usize, &Samples)> = Vec::with_capacity(each.len());
        for (i, samples) in &each {
            parts.push((*i, samples));
        }
        sink::refused_alone(
            &self.ctx,
            &self.shown,
            parts,
            |samples: &Samples| self.answer(Writer::body(samples)),
            &mut refused,
        )
        .await?;
        Ok(refused)
    }
}

fn make(
    config: &ConnectorConfig<PrometheusSinkConfig>,
    ctx: &SinkContext,
) -> Result<Writer, BoxError> {
    let c = &config.config;
    let endpoint = http_common::endpoint("endpoint", &c.endpoint)?;
    let shown = sink::shown(&endpoint);
    let values = match c.metric_template()? {
        Some(t) => Values::One(t, template::path(&c.value_field)),
        None => Values::Many(
            c.values
                .iter()
                .map(|(name, field)| (name.clone(), template::path(field)))
                .collect(),
        ),
    };
    let auth = match (&c.username, &c.password, &c.bearer_token) {
        (Some(u), p, _) if !u.is_empty() => Auth::Basic(
            u.clone(),
            p.as_ref()
                .map(|p| p.expose().to_string())
                .unwrap_or_default(),
        ),
        (_, _, Some(t)) => Auth::Bearer(t.expose().to_string()),
        _ => Auth::None,
    };
    let client = reqwest::Client::builder()
        .timeout(c.timeout.0)
        .user_agent(http_common::default_user_agent("prometheus-sink"))
        .build()?;
    tracing::info!(endpoint = %shown, "Writing samples with remote-write.");
    Ok(Writer {
        client,
        endpoint,
        shown,
        auth,
        values,
        labels: c.label_templates()?,
        timestamp_field: c.timestamp_field.as_deref().map(template::path),
        unit: c.timestamp_unit,
        ctx: ctx.clone(),
    })
}

fn main() -> ExitCode {
    app::batch_sink_main::<PrometheusSink, _, _>(|config, ctx| {
        let w = make(config, ctx)?;
        // The endpoint and the login checked with an empty write, and /readyz kept true
        // to the receiver while no records flow.
        let probe = std::sync::Arc::new(w.clone());
        tokio::spawn(sink::keep_ready(ctx.clone(), PING_EVERY, move || {
            let probe = probe.clone();
            async move { probe.answer(Writer::body(&[])).await }
        }));
        Ok(w)
    })
}
