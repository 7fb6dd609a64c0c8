//! What a sink that writes each batch in one HTTP request (influxdb-sink,
//! prometheus-sink) does with the answers: a refusal of what was sent goes back to the
//! sink, a refusal no retry mends stops the connector, an outage is waited out with
//! `/readyz` saying so, and an empty write probes the server while no records flow.

use std::{future::Future, time::Duration};

use runnel_runtime::pipeline::{DeliveryError, SinkContext};

/// What one write request's answer means.
#[derive(Debug)]
pub enum Answer {
    /// Stored.
    Stored,
    /// The server refused what was sent, or part of it: the reason.
    Refused(String),
    /// No retry mends it (the login, the address): the connector stops with the reason.
    Fatal(String),
    /// The server cannot be reached or is failing: the batch waits for it.
    Away(String),
    /// Anything else: the batch is tried again under the retry policy.
    Retry(String),
}

/// Sends with `send` until the answer is not an outage: `Ok(None)` when stored,
/// `Ok(Some(reason))` when refused, an error when the batch must be delivered again (or
/// the connector stops). `server` names the server in the outage's log line.
pub async fn write<F, Fut>(
    ctx: &SinkContext,
    server: &str,
    mut send: F,
) -> Result<Option<String>, DeliveryError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Answer>,
{
    let mut wait = Duration::from_millis(100);
    let mut logged = false;
    loop {
        match send().await {
            Answer::Stored => {
                ctx.set_ready(true);
                return Ok(None);
            }
            Answer::Refused(why) => return Ok(Some(why)),
            Answer::Fatal(why) => {
                ctx.fail(why.clone());
                return Err(DeliveryError::permanent(why));
            }
            Answer::Retry(why) => return Err(DeliveryError::retryable(why)),
            Answer::Away(why) => {
                ctx.set_ready(false);
                if !logged {
                    tracing::warn!(server, error = %why, "Cannot write to the server; the batch waits for it and /readyz says so.");
                    logged = true;
                }
                ctx.wait_for_outside(&mut wait).await?;
            }
        }
    }
}

/// Probes the server with `probe` (an empty write) now and every `every` until shutdown:
/// `/readyz` follows it, and a fatal answer (a refused login, a wrong address) stops the
/// connector at once rather than at the first record.
pub async fn keep_ready<F, Fut>(ctx: SinkContext, every: Duration, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Answer>,
{
    loop {
        match probe().await {
            Answer::Stored => ctx.set_ready(true),
            Answer::Fatal(why) => {
                ctx.fail(why);
                return;
            }
            _ => ctx.set_ready(false),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = ctx.shutdown().wait() => return,
        }
    }
}

/// After the server refused part of a batch sent whole: sends each record's part alone
/// (`send` answering for it) and adds the parts it refuses to `refused`, by the record's
/// index, in order. The parts it stores again overwrite themselves (points and samples
/// are keyed by series and time).
pub async fn refused_alone<B, F, Fut>(
    ctx: &SinkContext,
    server: &str,
    parts: impl IntoIterator<Item = (usize, B)>,
    send: F,
    refused: &mut Vec<(usize, DeliveryError)>,
) -> Result<(), DeliveryError>
where
    B: Clone,
    F: Fn(B) -> Fut,
    Fut: Future<Output = Answer>,
{
    for (i, part) in parts {
        if let Some(why) = write(ctx, server, || send(part.clone())).await? {
            refused.push((i, DeliveryError::permanent(why)));
        }
    }
    refused.sort_by_key(|(i, _)| *i);
    Ok(())
}

/// `scheme://host[:port]` and the path, never the login or the query (for logs).
pub fn shown(url: &url::Url) -> String {
    format!(
        "{}://{}{}{}",
        url.scheme(),
        url.host_str().unwrap_or_default(),
        url.port().map(|p| format!(":{p}")).unwrap_or_default(),
        url.path().trim_end_matches('/')
    )
}
