//! influxdb-sink: each batch of JSON records becomes points in InfluxDB's line protocol,
//! POSTed to `/write` in one request. A record that cannot be a point (not a JSON object,
//! no field, a timestamp field that is not a number) follows `on_error` with the reason and
//! is never sent. When InfluxDB refuses part of a batch (400: a field's type conflicts, a
//! value too long), the batch's points go again one per request, so only the refused ones
//! follow `on_error`, with InfluxDB's message; the others are written again over
//! themselves (a point is its measurement, tags and timestamp: writing it twice stores it
//! once). While the server cannot be reached the batch waits for it; a refused login or a
//! database that does not exist stops the connector (exit 1).

use std::{collections::HashSet, fmt::Write as _, process::ExitCode, time::Duration};

use http_common::sink::{self, Answer};
use influxdb_sink::{InfluxdbSink, InfluxdbSinkConfig, Precision};
use reqwest::StatusCode;
use runnel_codec::template::{self, Template};
use runnel_runtime::{
    BoxError, ConsumedRecord, app,
    config::ConnectorConfig,
    pipeline::{DeliverBatch, DeliveryError, SinkContext},
};
use serde_json::Value;

/// How often readiness is checked while no records flow.
const PING_EVERY: Duration = Duration::from_secs(5);

#[derive(Clone)]
struct Writer {
    client: reqwest::Client,
    write_url: reqwest::Url,
    login: Option<(String, String)>,
    /// The address shown in logs and errors.
    shown: String,
    measurement: Template,
    /// Escaped tag name and its template, sorted by name (as InfluxDB keeps them).
    tags: Vec<(String, Template)>,
    /// Listed fields: escaped name and path.
    fields: Option<Vec<(String, Vec<String>)>>,
    /// Top-level names left out of the default fields (tag templates, the timestamp).
    not_fields: HashSet<String>,
    ts_field: Option<Vec<String>>,
    precision: Precision,
    integers: bool,
    ctx: SinkContext,
}

/// Escapes a measurement (commas, spaces) or a tag or field key or tag value (commas,
/// equals signs, spaces) for line protocol.
fn escape(out: &mut String, s: &str, equals: bool) {
    for c in s.chars() {
        if c == ',' || c == ' ' || (equals && c == '=') || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
}

fn no_newline(what: &str, s: &str) -> Result<(), String> {
    if s.contains('\n') || s.contains('\r') {
        Err(format!(
            "{what} {s:?} has a line break, which line protocol cannot carry"
        ))
    } else {
        Ok(())
    }
}

impl Writer {
    /// One field `key=value`; `false` when the value is not one (null, or an object or
    /// array where flattening is not asked).
    fn field(
        &self,
        out: &mut String,
        first: &mut bool,
        key: &str,
        v: &Value,
    ) -> Result<(), String> {
        let mut value = String::new();
        match v {
            Value::Null | Value::Object(_) | Value::Array(_) => return Ok(()),
            Value::Bool(b) => value.push_str(if *b { "true" } else { "false" }),
            Value::Number(n) => {
                value.push_str(&n.to_string());
                if self.integers && (n.is_i64() || n.is_u64()) {
                    value.push('i');
                } else if n.as_f64().is_some_and(|f| !f.is_finite()) {
                    return Err(format!("field {key} is not a finite number"));
                }
            }
            Value::String(s) => {
                value.push('"');
                for c in s.chars() {
                    if c == '"' || c == '\\' {
                        value.push('\\');
                    }
                    value.push(c);
                }
                value.push('"');
            }
        }
        no_newline("field name", key)?;
        out.push(if *first { ' ' } else { ',' });
        *first = false;
        escape(out, key, true);
        out.push('=');
        out.push_str(&value);
        Ok(())
    }

    /// Every field of an object, nested ones flattened as `outer_inner` (arrays by index).
    fn flattened(
        &self,
        out: &mut String,
        first: &mut bool,
        prefix: &str,
        v: &Value,
    ) -> Result<(), String> {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    if prefix.is_empty() && self.not_fields.contains(k) {
                        continue;
                    }
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}_{k}")
                    };
                    self.flattened(out, first, &key, v)?;
                }
                Ok(())
            }
            Value::Array(a) => {
                for (i, v) in a.iter().enumerate() {
                    self.flattened(out, first, &format!("{prefix}_{i}"), v)?;
                }
                Ok(())
            }
            other => self.field(out, first, prefix, other),
        }
    }

    /// The record as one line of line protocol.
    fn line(&self, r: &ConsumedRecord, out: &mut String) -> Result<(), String> {
        let record: Value = serde_json::from_slice(&r.record.value)
            .map_err(|e| format!("the record is not JSON: {e}"))?;
        if !record.is_object() {
            return Err("the record is not a JSON object".into());
        }
        let start = out.len();
        let measurement = self
            .measurement
            .render(&record)
            .filter(|m| !m.is_empty())
            .ok_or("the measurement's template names a field the record does not have")?;
        no_newline("measurement", &measurement)?;
        escape(out, &measurement, false);
        for (key, template) in &self.tags {
            // A tag whose field is missing, or that is empty, is left out.
            if let Some(v) = template.render(&record).filter(|v| !v.is_empty()) {
                no_newline("tag value", &v)?;
                out.push(',');
                out.push_str(key);
                out.push('=');
                escape(out, &v, true);
            }
        }
        let mut first = true;
        match &self.fields {
            Some(list) => {
                for (name, path) in list {
                    if let Some(v) = template::at(&record, path) {
                        self.flattened(out, &mut first, name, v)?;
                    }
                }
            }
            None => self.flattened(out, &mut first, "", &record)?,
        }
        if first {
            out.truncate(start);
            return Err("no field to write (a point needs at least one)".into());
        }
        let ts = match &self.ts_field {
            Some(path) => match template::at(&record, path) {
                Some(Value::Number(n)) if n.is_i64() => n.as_i64().unwrap_or_default(),
                Some(Value::String(s)) if s.parse::<i64>().is_ok() => s.parse().unwrap_or_default(),
                _ => {
                    out.truncate(start);
                    return Err(format!(
                        "the timestamp field {} is missing or not a whole number",
                        path.join(".")
                    ));
                }
            },
            None => self.precision.from_millis(r.record.timestamp),
        };
        let _ = write!(out, " {ts}");
        Ok(())
    }

    async fn post(&self, body: String) -> Result<reqwest::Response, reqwest::Error> {
        let mut req = self.client.post(self.write_url.clone()).body(body);
        if let Some((u, p)) = &self.login {
            req = req.basic_auth(u, Some(p));
        }
        req.send().await
    }

    /// What InfluxDB said, from its JSON error body.
    async fn reason(resp: reqwest::Response) -> String {
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        let said = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
            .unwrap_or_else(|| body.trim().chars().take(300).collect());
        format!("InfluxDB answered {status}: {said}")
    }

    /// What InfluxDB's answer to writing `body` means.
    async fn answer(&self, body: String) -> Answer {
        let resp = match self.post(body).await {
            Ok(resp) => resp,
            Err(e) => return Answer::Away(http_common::describe(e)),
        };
        match resp.status() {
            s if s.is_success() => Answer::Stored,
            StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE => {
                Answer::Refused(Writer::reason(resp).await)
            }
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::NOT_FOUND => {
                Answer::Fatal(format!(
                    "writing to {}: {}",
                    self.shown,
                    Writer::reason(resp).await
                ))
            }
            s if s.is_server_error() => Answer::Away(Writer::reason(resp).await),
            _ => Answer::Retry(Writer::reason(resp).await),
        }
    }

    /// Writes `body`: `Ok(None)` when stored, `Ok(Some(reason))` when InfluxDB refused
    /// points in it (400 or 413), an error when the batch must be written again.
    async fn write(&self, body: String) -> Result<Option<String>, DeliveryError> {
        sink::write(&self.ctx, &self.shown, || self.answer(body.clone())).await
    }
}

impl DeliverBatch for Writer {
    async fn deliver_batch(
        &self,
        batch: &[ConsumedRecord],
    ) -> Result<Vec<(usize, DeliveryError)>, DeliveryError> {
        let mut refused = Vec::new();
        let mut body = String::with_capacity(batch.len() * 128);
        // Each line's record and its place in the body.
        let mut lines = Vec::with_capacity(batch.len());
        for (i, r) in batch.iter().enumerate() {
            let start = body.len();
            match self.line(r, &mut body) {
                Ok(()) => {
                    lines.push((i, start..body.len()));
                    body.push('\n');
                }
                Err(why) => {
                    body.truncate(start);
                    refused.push((i, DeliveryError::permanent(why)));
                }
            }
        }
        if lines.is_empty() {
            return Ok(refused);
        }
        if self.write(body.clone()).await?.is_none() {
            return Ok(refused);
        }
        // Part of the batch was refused: each point alone finds which.
        let mut parts: Vec<(usize, &str)> = Vec::with_capacity(lines.len());
        for (i, range) in lines {
            parts.push((i, &body[range]));
        }
        sink::refused_alone(
            &self.ctx,
            &self.shown,
            parts,
            |line: &str| self.answer(line.to_string()),
            &mut refused,
        )
        .await?;
        Ok(refused)
    }
}

fn make(
    config: &ConnectorConfig<InfluxdbSinkConfig>,
    ctx: &SinkContext,
) -> Result<Writer, BoxError> {
    let c = &config.config;
    let base = http_common::endpoint("addr", &c.addr)?;
    let mut write_url = base.join("write")?;
    {
        let mut q = write_url.query_pairs_mut();
        q.append_pair("db", &c.database)
            .append_pair("precision", c.precision.as_str());
        if let Some(rp) = &c.retention_policy {
            q.append_pair("rp", rp);
        }
    }
    let shown = sink::shown(&base);
    let mut tags = Vec::new();
    let mut not_fields = HashSet::new();
    for (name, template) in c.tag_templates()? {
        not_fields.extend(template.fields().map(str::to_string));
        let mut key = String::new();
        escape(&mut key, &name, true);
        tags.push((key, template));
    }
    let ts_field: Option<Vec<String>> = c.ts_field.as_ref().map(|f| template::path(f));
    if let Some(top) = ts_field.as_ref().and_then(|p| p.first()) {
        not_fields.insert(top.clone());
    }
    let fields = c.field_names().map(|names| {
        names
            .into_iter()
            .map(|n| {
                let path = template::path(&n);
                (n, path)
            })
            .collect()
    });
    let client = reqwest::Client::builder()
        .timeout(c.timeout.0)
        .user_agent(http_common::default_user_agent("influxdb-sink"))
        .build()?;
    let measurement = Template::parse("measurement", &c.measurement)?;
    tracing::info!(server = %shown, database = %c.database, "Writing points to InfluxDB.");
    Ok(Writer {
        client,
        write_url,
        // eKuiper's examples give an empty username for none.
        login: c.username.clone().filter(|u| !u.is_empty()).map(|u| {
            (
                u,
                c.password
                    .as_ref()
                    .map(|p| p.expose().to_string())
                    .unwrap_or_default(),
            )
        }),
        shown,
        measurement,
        tags,
        fields,
        not_fields,
        ts_field,
        precision: c.precision,
        integers: c.integers,
        ctx: ctx.clone(),
    })
}

fn main() -> ExitCode {
    app::batch_sink_main::<InfluxdbSink, _, _>(|config, ctx| {
        let w = make(config, ctx)?;
        // The login and the database checked with an empty write, and /readyz kept true
        // to the server while no records flow.
        let probe = std::sync::Arc::new(w.clone());
        tokio::spawn(sink::keep_ready(ctx.clone(), PING_EVERY, move || {
            let probe = probe.clone();
            async move { probe.answer(String::new()).await }
        }));
        Ok(w)
    })
}
