//! test-source: Fluvio's test connector. Produces a record every `interval` from a template,
//! `count` times or until stopped. Useful to try a hub, a sink or a SmartModule chain.

use std::{process::ExitCode, sync::Arc, time::Duration};

use runnel_runtime::{BoxError, Record, app, config::ConnectorConfig, pipeline::SourceContext};
use test_source::{TestConfig, TestSource};

const DEFAULT_TEMPLATE: &str = r#"{"count":{{count}},"timestamp":{{timestamp}}}"#;

/// A template split once into literal text and placeholders.
#[derive(Debug)]
struct Template(Vec<Part>);

#[derive(Debug)]
enum Part {
    Text(String),
    Count,
    Timestamp,
}

impl Template {
    fn parse(s: &str) -> Self {
        let mut parts = Vec::new();
        let mut rest = s;
        loop {
            let next = [("{{count}}", false), ("{{timestamp}}", true), ("{}", false)]
                .into_iter()
                .filter_map(|(pat, ts)| rest.find(pat).map(|i| (i, pat.len(), ts)))
                .min_by_key(|(i, _, _)| *i);
            match next {
                Some((i, len, ts)) => {
                    if i > 0 {
                        parts.push(Part::Text(rest[..i].to_string()));
                    }
                    parts.push(if ts { Part::Timestamp } else { Part::Count });
                    rest = &rest[i + len..];
                }
                None => {
                    if !rest.is_empty() {
                        parts.push(Part::Text(rest.to_string()));
                    }
                    return Template(parts);
                }
            }
        }
    }

    fn render(&self, count: u64, timestamp: i64, out: &mut String) {
        use std::fmt::Write;
        out.clear();
        for p in &self.0 {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Count => {
                    let _ = write!(out, "{count}");
                }
                Part::Timestamp => {
                    let _ = write!(out, "{timestamp}");
                }
            }
        }
    }
}

async fn produce(
    config: Arc<ConnectorConfig<TestConfig>>,
    ctx: SourceContext,
) -> Result<(), BoxError> {
    let c = &config.config;
    let value = Template::parse(c.template.as_deref().unwrap_or(DEFAULT_TEMPLATE));
    let key = c.key.as_deref().map(Template::parse);
    let interval: Duration = c.interval.into();
    let mut ticker = (!interval.is_zero()).then(|| {
        let mut t = tokio::time::interval(interval);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    ctx.health().set_upstream(true);
    let mut buf = String::new();
    let mut n: u64 = 0;
    while c.count.is_none_or(|max| n < max) {
        if let Some(t) = ticker.as_mut() {
            tokio::select! {
                _ = t.tick() => {}
                _ = ctx.shutdown().wait() => break,
            }
        } else if ctx.shutdown().is_triggered() {
            break;
        }
        let now = runnel_runtime::record::now_millis();
        value.render(n, now, &mut buf);
        let mut record = Record {
            value: buf.clone().into(),
            timestamp: now,
            ..Record::default()
        };
        if let Some(k) = &key {
            k.render(n, now, &mut buf);
            record.key = Some(buf.clone().into());
        }
        if ctx.send(record).await.is_err() {
            break;
        }
        n += 1;
    }
    tracing::info!(records = n, "test-source finished producing.");
    Ok(())
}

fn main() -> ExitCode {
    app::source_main::<TestSource, _, _>(produce)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_render() {
        let t = Template::parse("Hello {} at {{timestamp}} #{{count}}");
        let mut s = String::new();
        t.render(7, 1234, &mut s);
        assert_eq!(s, "Hello 7 at 1234 #7");
        Template::parse(DEFAULT_TEMPLATE).render(1, 2, &mut s);
        assert_eq!(s, r#"{"count":1,"timestamp":2}"#);
    }
}
