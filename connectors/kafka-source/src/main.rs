//! kafka-source: reads one partition of a topic on a Kafka cluster of the user's own with
//! the Kafka client code the hub runs on (librdkafka through rdkafka), and hands every
//! message on as a record: its key, value, timestamp and headers as they are (or the
//! records the `format` makes of the value).
//!
//! The consumer group's offset is committed only once the hub stored the records before
//! it (a commit task awaits the hub's acknowledgements in order and commits the newest
//! stored position, at most every 200 ms while records flow). After a crash the group
//! resumes where the last commit left it: at least once, repeats at most the batches that
//! were in flight.
//!
//! librdkafka reconnects by itself when a broker goes away; while the cluster does not
//! answer, `/readyz` says 503 and the connector waits. A cluster that cannot be reached at
//! start is waited for the same way; a client librdkafka refuses to make (a bad option, a
//! TLS file it cannot read) stops the connector.

use std::{process::ExitCode, sync::Arc, time::Duration};

use kafka_source::{KafkaSource, KafkaSourceConfig, Start};
use runnel_runtime::{
    BoxError, Record, app,
    config::{ConnectorConfig, OffsetStart},
    hub::{
        HubError,
        kafka::{KafkaCommitter, KafkaConsumer, KafkaHub},
    },
    pipeline::SourceContext,
    retry::Backoff,
};
use tokio::sync::{mpsc, oneshot};

/// How long a read waits for messages before the loop looks around (shutdown, health).
const READ_WAIT: Duration = Duration::from_millis(500);
/// After this long without messages the cluster is asked whether it is there.
const PROBE_EVERY: Duration = Duration::from_secs(2);
/// A probe not answered within this counts as the cluster being away.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// Commits at most this often while records flow (always when the queue runs dry).
const COMMIT_EVERY: Duration = Duration::from_millis(200);

/// Whether a failed connect is the cluster not answering (wait for it) rather than a
/// client librdkafka will never make (stop).
fn unreachable(e: &HubError) -> bool {
    matches!(e, HubError::Remote { what, .. } if what.starts_with("cannot reach"))
}

/// Connects to the cluster, waiting while it does not answer.
async fn connect(
    brokers: &str,
    settings: &[(String, String)],
    ctx: &SourceContext,
) -> Result<Option<KafkaHub>, BoxError> {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    let mut logged = false;
    loop {
        match KafkaHub::connect_with(brokers, settings.to_vec()).await {
            Ok(h) => return Ok(Some(h)),
            Err(e) if unreachable(&e) => {
                ctx.health().set_upstream(false);
                let wait = backoff.next_delay();
                if !logged {
                    tracing::warn!(brokers, error = %runnel_runtime::Chain(&e), "Cannot reach the Kafka cluster; /readyz reports it, and the connector waits for it.");
                    logged = true;
                }
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = ctx.shutdown().wait() => return Ok(None),
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Opens the consumer of the partition in the group, waiting while the topic is not
/// there or the cluster does not answer.
async fn open(
    upstream: &KafkaHub,
    c: &KafkaSourceConfig,
    ctx: &SourceContext,
) -> Result<Option<KafkaConsumer>, BoxError> {
    let start = match c.start {
        Start::Beginning => OffsetStart::Beginning,
        Start::End => OffsetStart::End,
    };
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    let mut logged = false;
    loop {
        // The partition is checked 0 or more by the config.
        let partition = c.partition.unsigned_abs();
        match upstream
            .consumer(&c.topic, partition, Some(&c.group), start)
            .await
        {
            Ok(consumer) => return Ok(Some(consumer)),
            Err(e) => {
                ctx.health().set_upstream(false);
                if !logged {
                    let what = match &e {
                        HubError::TopicNotFound(_) => {
                            "The topic is not on the Kafka cluster; waiting for it."
                        }
                        _ => "Cannot open the partition; trying again.",
                    };
                    tracing::warn!(topic = %c.topic, partition, error = %runnel_runtime::Chain(&e), "{what}");
                    logged = true;
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff.next_delay()) => {}
                    _ = ctx.shutdown().wait() => return Ok(None),
                }
            }
        }
    }
}

/// Commits, in order, the position after each batch once the hub stored it; returns
/// when the queue closes or the pipeline stopped storing.
async fn commit_task(
    committer: KafkaCommitter,
    mut queue: mpsc::UnboundedReceiver<(i64, oneshot::Receiver<()>)>,
) {
    let mut stored_up_to: Option<i64> = None;
    let mut committed: Option<i64> = None;
    let mut last = tokio::time::Instant::now();
    let mut failing = false;
    loop {
        let next = queue.recv().await;
        let closed = next.is_none();
        if let Some((position, stored)) = next {
            if stored.await.is_err() {
                // The pipeline stopped before storing it: what came after is read again.
                break;
            }
            stored_up_to = Some(position);
            if !queue.is_empty() && last.elapsed() < COMMIT_EVERY {
                continue;
            }
        }
        if let Some(p) = stored_up_to.filter(|p| committed != Some(*p)) {
            last = tokio::time::Instant::now();
            match committer.commit(p).await {
                Ok(()) => {
                    committed = Some(p);
                    if failing {
                        tracing::info!(offset = p, "Committing the group's offset works again.");
                    }
                    failing = false;
                }
                Err(e) => {
                    // Kept, and committed with the next batch (or at the end).
                    if !failing {
                        tracing::warn!(offset = p, error = %runnel_runtime::Chain(&e), "Committing the group's offset failed; it is committed again with the next one.");
                    }
                    failing = true;
                }
            }
        }
        if closed {
            return;
        }
    }
    if let Some(p) = stored_up_to.filter(|p| committed != Some(*p))
        && let Err(e) = committer.commit(p).await
    {
        tracing::warn!(offset = p, error = %runnel_runtime::Chain(&e), "The last commit failed; what came after the group's offset is read again.");
    }
}

/// Appends the records of one message to `out`: the message as it is, or what the format
/// makes of its value (each with the message's key, timestamp and headers).
fn add_records(
    messages: &mut runnel_codec::Messages,
    m: Record,
    ctx: &SourceContext,
    out: &mut Vec<Record>,
) {
    if messages.is_passthrough() {
        out.push(m);
        return;
    }
    let from = out.len();
    if let Err(e) = messages.records(m.value.clone(), out) {
        ctx.metrics().records_failed.inc();
        tracing::warn!(reason = %runnel_runtime::Chain(&e), "Skipping a message whose value does not decode.");
    }
    for r in &mut out[from..] {
        r.key = m.key.clone();
        r.timestamp = m.timestamp;
        r.headers.extend(m.headers.iter().cloned());
    }
}

async fn run(
    config: Arc<ConnectorConfig<KafkaSourceConfig>>,
    ctx: SourceContext,
) -> Result<(), BoxError> {
    let c = &config.config;
    let brokers = kafka_common::brokers(&c.url)?;
    let settings = c.client_settings()?;
    KafkaHub::check_settings(&brokers, &settings)?;
    tracing::info!(topic = %c.topic, partition = c.partition, group = %c.group, "Connecting to the Kafka cluster.");
    let Some(upstream) = connect(&brokers, &settings, &ctx).await? else {
        return Ok(());
    };
    let Some(mut consumer) = open(&upstream, c, &ctx).await? else {
        return Ok(());
    };
    ctx.health().set_upstream(true);
    tracing::info!(topic = %c.topic, partition = c.partition, group = %c.group, position = consumer.position(), "Reading the partition.");
    let (commit_tx, commit_rx) = mpsc::unbounded_channel();
    let mut committing = tokio::spawn(commit_task(consumer.committer(), commit_rx));
    let mut messages = runnel_codec::Messages::new(&c.format, runnel_runtime::record::now_millis());
    let mut idle_since = tokio::time::Instant::now();
    let mut away = false;
    let result: Result<(), BoxError> = loop {
        let got = tokio::select! {
            biased;
            _ = ctx.shutdown().wait() => break Ok(()),
            r = consumer.fetch(c.count, READ_WAIT) => r,
        };
        let batch = match got {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %runnel_runtime::Chain(&e), "Reading the partition failed; reading on.");
                Vec::new()
            }
        };
        let Some(last) = batch.last().map(|m| m.offset) else {
            if idle_since.elapsed() >= PROBE_EVERY {
                // Nothing came for a while: is the cluster there at all?
                idle_since = tokio::time::Instant::now();
                let probe = tokio::select! {
                    biased;
                    _ = ctx.shutdown().wait() => break Ok(()),
                    r = upstream.probe(&c.topic, PROBE_TIMEOUT) => r,
                };
                match probe {
                    Ok(_) => {
                        if away {
                            tracing::info!("The Kafka cluster answers again.");
                        }
                        away = false;
                        ctx.health().set_upstream(true);
                    }
                    Err(e) => {
                        if !away {
                            tracing::warn!(error = %runnel_runtime::Chain(&e), "The Kafka cluster does not answer; /readyz reports it, and the connector waits.");
                        }
                        away = true;
                        ctx.health().set_upstream(false);
                    }
                }
            }
            continue;
        };
        idle_since = tokio::time::Instant::now();
        if away {
            tracing::info!("The Kafka cluster answers again.");
            away = false;
        }
        ctx.health().set_upstream(true);
        let mut records = Vec::with_capacity(batch.len());
        for m in batch {
            add_records(&mut messages, m.record, &ctx, &mut records);
        }
        let stored = match ctx.send_all_acked(records).await {
            Ok(s) => s,
            Err(e) => break Err(e.into()),
        };
        if commit_tx.send((last + 1, stored)).is_err() {
            break Err("the commit task stopped".into());
        }
    };
    // Let the commits of what was stored go out (briefly: the rest is read again).
    drop(commit_tx);
    if tokio::time::timeout(Duration::from_secs(5), &mut committing)
        .await
        .is_err()
    {
        committing.abort();
    }
    result
}

fn main() -> ExitCode {
    app::source_main::<KafkaSource, _, _>(run)
}
