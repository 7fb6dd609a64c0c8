//! The stage pipeline.
//!
//! Source: the connector's protocol task hands records to a [`SourceContext`]; a bounded
//! channel carries them to the producer stage, which batches (up to `linger` and the batch
//! size), writes each batch to the hub, and only then acknowledges the records to the
//! protocol side (for protocols that ack, such as MQTT QoS 1).
//!
//! Sink: batches are fetched from the hub, delivered through the connector's [`Deliver`]
//! with retries and backoff, failures follow the [`ErrorPolicy`], and the consumer offset is
//! committed only after every record of the batch was delivered or handled by the policy.
//! A crash therefore redelivers at most the batch in flight: at-least-once.

use std::{
    collections::{HashMap, VecDeque},
    future::Future,
    sync::Arc,
    time::Duration,
};

use bytes::Bytes;
use futures_util::FutureExt;
use tokio::{
    sync::{Semaphore, mpsc, oneshot},
    time::Instant,
};

pub use runnel_core::{DeliveryError, ErrorPolicy};

use crate::{
    BoxError,
    checkpoint::{CheckpointError, CheckpointStore, Committer, Pending},
    config::OffsetStart,
    hub::{Hub, HubError, Producer},
    record::{ConsumedRecord, Record},
    retry::{Backoff, RetryConfig},
    server::Health,
    shutdown::{self, Shutdown},
    telemetry::Metrics,
};

/// Why a pipeline stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Hub(#[from] HubError),
    /// The connector's protocol side failed; its error, causes and all.
    #[error(transparent)]
    Protocol(BoxError),
    /// A stage's task panicked or was cancelled.
    #[error("{what}")]
    Task {
        what: String,
        #[source]
        source: tokio::task::JoinError,
    },
    /// A SmartModule rejected a record and the policy is stop.
    #[error("a SmartModule rejected a record and --on-transform-error is stop: {0}")]
    Rejected(String),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(
        "record at offset {offset} failed after {attempts} attempt(s) and on_error is stop: {message}"
    )]
    Stopped {
        offset: i64,
        attempts: u32,
        message: String,
    },
}

/// The pipeline has stopped taking records (shutdown, or the hub side failed).
#[derive(Debug, thiserror::Error)]
#[error("the pipeline has stopped")]
pub struct Closed;

struct Envelope {
    record: Record,
    entered: Instant,
    ack: Option<oneshot::Sender<()>>,
}

/// What a source's protocol task gets: a way to hand records on, and the shared services.
#[derive(Clone)]
pub struct SourceContext {
    tx: mpsc::Sender<Envelope>,
    shutdown: Shutdown,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    committer: Option<Committer>,
}

impl SourceContext {
    /// Hands a record on; waits while the producer stage is full (backpressure).
    pub async fn send(&self, record: Record) -> Result<(), Closed> {
        self.push(record, None).await
    }

    /// Hands a record on and returns a receiver that completes once the hub has it. Use it
    /// to acknowledge the outside system only after the record is safe.
    pub async fn send_acked(&self, record: Record) -> Result<oneshot::Receiver<()>, Closed> {
        let (tx, rx) = oneshot::channel();
        self.push(record, Some(tx)).await?;
        Ok(rx)
    }

    /// Hands on the records one message of the outside system gave (none, one, or several:
    /// CSV rows) and returns a receiver that completes once the hub has them all (records
    /// are stored in order, so the last one's acknowledgement covers them), at once when
    /// there were none. Acknowledge the message when it completes.
    pub async fn send_all_acked(
        &self,
        mut records: Vec<Record>,
    ) -> Result<oneshot::Receiver<()>, Closed> {
        let Some(last) = records.pop() else {
            let (done, stored) = oneshot::channel();
            let _ = done.send(());
            return Ok(stored);
        };
        self.send_many(records).await?;
        self.send_acked(last).await
    }

    /// Hands on many records at once, in order: one wait for room in the producer stage per
    /// chunk instead of one per record, which is what a source reading records in bulk
    /// (a file's read, a burst of messages) should use.
    pub async fn send_many(&self, records: Vec<Record>) -> Result<(), Closed> {
        if records.is_empty() {
            return Ok(());
        }
        let bytes: usize = records.iter().map(Record::size).sum();
        self.metrics.records_in.inc_by(records.len() as u64);
        self.metrics.bytes_in.inc_by(bytes as u64);
        let entered = Instant::now();
        let mut records = records.into_iter();
        // Room for at most a chunk is asked at once, so a long read cannot ask for more
        // than the channel holds.
        let chunk = self.tx.max_capacity().max(1);
        loop {
            let n = records.len().min(chunk);
            if n == 0 {
                return Ok(());
            }
            let permits = self.tx.reserve_many(n).await.map_err(|_| Closed)?;
            for (permit, record) in permits.zip(records.by_ref()) {
                permit.send(Envelope {
                    record,
                    entered,
                    ack: None,
                });
            }
        }
    }

    /// Hands a record on with the source's position after it (saved under `key` in the
    /// checkpoint store once the hub stored this record and every one sent before it).
    /// Giving a position with the last record of each read is enough: the ones before it
    /// are covered. Without a checkpoint store (the connector did not ask for one) it is
    /// [`SourceContext::send`].
    pub async fn send_at(
        &self,
        record: Record,
        key: impl Into<String>,
        position: serde_json::Value,
    ) -> Result<(), Closed> {
        let Some(c) = &self.committer else {
            return self.send(record).await;
        };
        let stored = self.send_acked(record).await?;
        c.tx.send(Pending {
            stored: Some(stored),
            key: key.into(),
            value: position,
        })
        .await
        .map_err(|_| Closed)
    }

    /// Saves a position with no record of its own (a read that only skipped bytes): it is
    /// saved once the records given with [`SourceContext::send_at`] before it are stored.
    /// Records given with plain [`SourceContext::send`] since the last `send_at` are not
    /// covered: give the last of them with `send_at` instead.
    pub async fn save_at(
        &self,
        key: impl Into<String>,
        position: serde_json::Value,
    ) -> Result<(), Closed> {
        let Some(c) = &self.committer else {
            return Ok(());
        };
        c.tx.send(Pending {
            stored: None,
            key: key.into(),
            value: position,
        })
        .await
        .map_err(|_| Closed)
    }

    /// The saved positions, read when the source starts; `None` unless the connector's
    /// kind keeps a position ([`crate::config::ConnectorKind::KEEPS_POSITION`]).
    pub fn checkpoints(&self) -> Option<&CheckpointStore> {
        self.committer.as_ref().map(|c| &*c.store)
    }

    async fn push(&self, record: Record, ack: Option<oneshot::Sender<()>>) -> Result<(), Closed> {
        self.metrics.records_in.inc();
        self.metrics.bytes_in.inc_by(record.size() as u64);
        self.tx
            .send(Envelope {
                record,
                entered: Instant::now(),
                ack,
            })
            .await
            .map_err(|_| Closed)
    }

    /// Fires when the connector should stop; protocol loops select on it.
    pub fn shutdown(&self) -> &Shutdown {
        &self.shutdown
    }

    pub fn health(&self) -> &Health {
        &self.health
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}

/// How the producer stage batches.
#[derive(Debug)]
pub struct SourceSettings {
    /// Wait this long for more records before writing a batch that is not full.
    pub linger: Duration,
    /// Write once a batch holds this many bytes.
    pub batch_bytes: usize,
    /// And at most this many records.
    pub batch_records: usize,
    /// The filter and shape stages, run on each batch before it is written.
    pub transforms: Option<SourceTransforms>,
    /// Where positions given to [`SourceContext::send_at`] are saved.
    pub checkpoints: Option<Arc<CheckpointStore>>,
}

/// A source's SmartModule chain and what happens to the records it rejects.
#[derive(Debug)]
pub struct SourceTransforms {
    pub chain: smartmodule_host::Chain,
    pub on_error: ErrorPolicy,
    pub dead_letter_topic: String,
    pub connector: String,
    pub secrets: Vec<String>,
}

impl Default for SourceSettings {
    fn default() -> Self {
        SourceSettings {
            linger: Duration::ZERO,
            batch_bytes: 1 << 20,
            batch_records: 4096,
            transforms: None,
            checkpoints: None,
        }
    }
}

/// Runs a source: `protocol` produces records through its [`SourceContext`] until it returns
/// or shutdown fires; every record it handed on is in the hub when this returns `Ok`.
pub async fn run_source<F, Fut>(
    hub: &Hub,
    topic: &str,
    mut settings: SourceSettings,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    shutdown: Shutdown,
    protocol: F,
) -> Result<(), PipelineError>
where
    F: FnOnce(SourceContext) -> Fut,
    Fut: Future<Output = Result<(), BoxError>>,
{
    let producer = hub.producer(topic).await?;
    health.set_hub(true);
    // The protocol sees an inner shutdown that also fires when the producer stage fails.
    let (stop, inner) = shutdown::channel();
    let forward = {
        let stop = stop.clone();
        let outer = shutdown.clone();
        tokio::spawn(async move {
            outer.wait().await;
            stop.trigger();
        })
    };
    let (tx, rx) = mpsc::channel(settings.batch_records * 2);
    // A source that saves positions repeats, after a crash, what the hub stored since the
    // last save; one batch in flight keeps that to about one batch (with more, the hub may
    // commit several at once just before the crash).
    let in_flight = if settings.checkpoints.is_some() {
        1
    } else {
        producer.max_in_flight()
    };
    let (committer, committing) = match settings.checkpoints.take() {
        Some(store) => {
            let (c, task) = Committer::start(store, 1024);
            (Some(c), Some(task))
        }
        None => (None, None),
    };
    let ctx = SourceContext {
        tx,
        shutdown: inner,
        health: health.clone(),
        metrics: metrics.clone(),
        committer,
    };
    // Its own task, so the protocol and the hub writes run on separate threads.
    let dead_letter = match &settings.transforms {
        Some(t) if t.on_error == ErrorPolicy::DeadLetter => {
            hub.ensure_topic(&t.dead_letter_topic, true, None).await?;
            Some(hub.producer(&t.dead_letter_topic).await?)
        }
        _ => None,
    };
    let writer = Written {
        producer,
        in_flight,
        health,
        metrics: metrics.clone(),
        stop: stop.clone(),
    };
    let producing = tokio::spawn(produce_loop(
        writer,
        dead_letter,
        rx,
        settings,
        metrics,
        stop,
    ));
    let p = protocol(ctx).await.map_err(PipelineError::Protocol);
    // The protocol's context is gone: the channel closes and the producer drains it.
    let q = producing.await.map_err(|source| PipelineError::Task {
        what: "the producer stage failed".into(),
        source,
    })?;
    forward.abort();
    // Every stored record's position is saved before this returns.
    let c = match committing {
        Some(task) => task
            .await
            .map_err(|source| PipelineError::Task {
                what: "saving checkpoints failed".into(),
                source,
            })?
            .map_err(PipelineError::Checkpoint),
        None => Ok(()),
    };
    // The hub error is the cause when both failed: the protocol only saw the pipeline close.
    q?;
    c?;
    p
}

async fn produce_loop(
    mut writer: Written,
    mut dead_letter: Option<Producer>,
    mut rx: mpsc::Receiver<Envelope>,
    mut settings: SourceSettings,
    metrics: Arc<Metrics>,
    stop: shutdown::Trigger,
) -> Result<(), PipelineError> {
    let max = settings.batch_records.max(1);
    let mut buf: Vec<Envelope> = Vec::with_capacity(max);
    // Records taken but left for the next batch because this one reached batch_bytes.
    let mut carry: Vec<Envelope> = Vec::new();
    // Batches queued to the hub and not yet acknowledged, oldest first.
    let mut flights: VecDeque<Flight> = VecDeque::new();
    loop {
        buf.clear();
        buf.append(&mut carry);
        if buf.is_empty() {
            // Waiting for records; meanwhile the oldest queued batch may complete.
            let closed = loop {
                let Some(oldest) = flights.front_mut() else {
                    break rx.recv_many(&mut buf, max).await == 0;
                };
                tokio::select! {
                    done = &mut oldest.pending => {
                        let f = flights.pop_front().expect("the oldest batch");
                        writer.land(f, done).await?;
                    }
                    n = rx.recv_many(&mut buf, max) => break n == 0,
                }
            };
            if closed {
                while let Some(mut f) = flights.pop_front() {
                    let done = f.pending.as_mut().await;
                    writer.land(f, done).await?;
                }
                return Ok(());
            }
        } else if buf.len() < max {
            // Whatever else is already waiting, without blocking.
            while buf.len() < max {
                match rx.try_recv() {
                    Ok(e) => buf.push(e),
                    Err(_) => break,
                }
            }
        }
        if !settings.linger.is_zero() {
            let deadline = Instant::now() + settings.linger;
            let mut bytes: usize = buf.iter().map(|e| e.record.size()).sum();
            while buf.len() < max && bytes < settings.batch_bytes {
                let before = buf.len();
                tokio::select! {
                    n = rx.recv_many(&mut buf, max - before) => if n == 0 { break },
                    _ = tokio::time::sleep_until(deadline) => break,
                }
                bytes += buf[before..].iter().map(|e| e.record.size()).sum::<usize>();
            }
        }
        // A batch stops at batch_bytes (with at least one record); the rest waits its turn.
        let mut size = 0;
        if let Some(cut) = buf.iter().position(|e| {
            size += e.record.size();
            size > settings.batch_bytes
        }) {
            carry = buf.split_off(cut.max(1));
        }
        // Records move into one shared batch; what is left of each envelope waits for the ack.
        let mut waiting = Vec::with_capacity(buf.len());
        let records: Vec<Record> = buf
            .drain(..)
            .map(|e| {
                waiting.push((e.entered, e.ack));
                e.record
            })
            .collect();
        let records = match &mut settings.transforms {
            None => records,
            Some(t) => {
                let (out, rejected) = crate::transform::apply(&mut t.chain, &records);
                metrics
                    .records_filtered
                    .inc_by(records.len().saturating_sub(out.len() + rejected.len()) as u64);
                for r in &rejected {
                    metrics.records_failed.inc();
                    match t.on_error {
                        ErrorPolicy::Stop => {
                            stop.trigger();
                            return Err(PipelineError::Rejected(crate::config::secrets_masked(
                                &r.reason, &t.secrets,
                            )));
                        }
                        ErrorPolicy::Skip => {
                            tracing::warn!(error = %crate::config::secrets_masked(&r.reason, &t.secrets), "Record rejected by a SmartModule; skipped as --on-transform-error says.");
                        }
                        ErrorPolicy::DeadLetter => {
                            let dl = crate::transform::dead_letter(r, &t.connector, &t.secrets);
                            if let Some(p) = dead_letter.as_mut() {
                                if let Err(e) =
                                    send_with_retry(p, Arc::new(vec![dl]), &writer.health, &metrics)
                                        .await
                                {
                                    stop.trigger();
                                    return Err(e.into());
                                }
                                metrics.records_dead_lettered.inc();
                            }
                            tracing::warn!(error = %crate::config::secrets_masked(&r.reason, &t.secrets), topic = %t.dead_letter_topic, "Record rejected by a SmartModule; written to the dead-letter topic.");
                        }
                    }
                }
                out.into_iter().map(|(_, r)| r).collect()
            }
        };
        let records = Arc::new(records);
        // A batch the filter emptied still takes its turn, so acks keep their order.
        let queued = if records.is_empty() {
            Ok(Box::pin(std::future::ready(Ok(-1i64))) as crate::hub::Pending)
        } else {
            writer.producer.enqueue(records.clone()).await
        };
        let pending = match queued {
            Ok(p) => p,
            Err(e) => {
                // Queueing failed: the batches before it land first, then this one is
                // retried on its own.
                while let Some(mut f) = flights.pop_front() {
                    let done = f.pending.as_mut().await;
                    writer.land(f, done).await?;
                }
                Box::pin(std::future::ready(Err(e)))
            }
        };
        flights.push_back(Flight {
            records,
            pending,
            waiting,
            started: Instant::now(),
        });
        // Batches already stored are acknowledged now, not when the window fills: the
        // outside system (and the checkpoints) hear of them as soon as the hub has them.
        while let Some(f) = flights.front_mut() {
            let Some(done) = f.pending.as_mut().now_or_never() else {
                break;
            };
            let f = flights.pop_front().expect("the oldest batch");
            writer.land(f, done).await?;
        }
        while flights.len() >= writer.in_flight {
            let mut f = flights.pop_front().expect("a queued batch");
            let done = f.pending.as_mut().await;
            writer.land(f, done).await?;
        }
    }
}

/// A batch queued to the hub and the acks its records wait for.
struct Flight {
    records: Arc<Vec<Record>>,
    pending: crate::hub::Pending,
    waiting: Vec<(Instant, Option<oneshot::Sender<()>>)>,
    started: Instant,
}

/// The producer stage's hub side: where queued batches land.
struct Written {
    producer: Producer,
    /// Batches queued before the oldest must be acknowledged.
    in_flight: usize,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    stop: shutdown::Trigger,
}

impl Written {
    /// A queued batch completed with `done`: on success its records are acknowledged; on
    /// failure it is written again (with retries) before anything later is acknowledged.
    /// A batch queued after it may then be stored before it: order holds within each batch
    /// and everywhere the hub did not fail, and nothing is lost.
    async fn land(&mut self, f: Flight, done: Result<i64, HubError>) -> Result<(), PipelineError> {
        if let Err(e) = done {
            if matches!(e, HubError::TopicNotFound(_)) {
                self.stop.trigger();
                return Err(e.into());
            }
            self.health.set_hub(false);
            self.metrics.retries.inc();
            tracing::warn!(error = %crate::Chain(&e), records = f.records.len(), "Writing a batch to the hub failed; writing it again.");
            if let Err(e) = self.producer.recover() {
                self.stop.trigger();
                return Err(e.into());
            }
            if let Err(e) = send_with_retry(
                &mut self.producer,
                f.records.clone(),
                &self.health,
                &self.metrics,
            )
            .await
            {
                self.stop.trigger();
                return Err(e.into());
            }
        }
        self.health.set_hub(true);
        let bytes: usize = f.records.iter().map(Record::size).sum();
        self.metrics.records_out.inc_by(f.records.len() as u64);
        self.metrics.bytes_out.inc_by(bytes as u64);
        tracing::trace!(
            records = f.records.len(),
            bytes,
            micros = f.started.elapsed().as_micros() as u64,
            "Batch written to the hub."
        );
        ack_all(&self.metrics, f.waiting);
        Ok(())
    }
}

/// Acknowledges records the hub stored (or a filter dropped) to the protocol side.
fn ack_all(metrics: &Metrics, waiting: Vec<(Instant, Option<oneshot::Sender<()>>)>) {
    let now = Instant::now();
    for (entered, ack) in waiting {
        metrics.observe_latency(now - entered);
        if let Some(ack) = ack {
            let _ = ack.send(());
        }
    }
}

/// Hub writes are retried with backoff for about a minute before the connector gives up;
/// giving up exits non-zero so a supervisor restarts it, and nothing unacked is lost.
async fn send_with_retry(
    producer: &mut Producer,
    records: Arc<Vec<Record>>,
    health: &Health,
    metrics: &Metrics,
) -> Result<i64, HubError> {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
    let mut attempt = 1;
    loop {
        match producer.send_shared(records.clone()).await {
            Ok(base) => {
                health.set_hub(true);
                return Ok(base);
            }
            Err(e @ HubError::TopicNotFound(_)) => return Err(e),
            Err(e) if attempt >= 10 => return Err(e),
            Err(e) => {
                health.set_hub(false);
                metrics.retries.inc();
                let wait = backoff.next_delay();
                tracing::warn!(error = %crate::Chain(&e), attempt, retry_in_ms = wait.as_millis() as u64, "Writing to the hub failed; retrying.");
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
        }
    }
}

/// What a sink's protocol side is given when it is built: readiness of the outside system
/// (`/readyz`), metrics and shutdown.
#[derive(Clone)]
pub struct SinkContext {
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    shutdown: Shutdown,
    failed: Arc<tokio::sync::watch::Sender<Option<String>>>,
}

impl SinkContext {
    /// One pause of a batch waiting for its outside system to come back (an outage does not
    /// use up the batch's attempts): sleeps `wait`, then doubles it up to 2 s. When the
    /// connector is stopping it returns at once with the batch's failure.
    pub async fn wait_for_outside(&self, wait: &mut Duration) -> Result<(), DeliveryError> {
        if self.shutdown.is_triggered() {
            return Err(DeliveryError::retryable("shutting down"));
        }
        tokio::select! {
            _ = tokio::time::sleep(*wait) => {}
            _ = self.shutdown.wait() => {}
        }
        *wait = (*wait * 2).min(Duration::from_secs(2));
        Ok(())
    }

    pub fn new(health: Arc<Health>, metrics: Arc<Metrics>, shutdown: Shutdown) -> Self {
        SinkContext {
            health,
            metrics,
            shutdown,
            failed: Arc::new(tokio::sync::watch::channel(None).0),
        }
    }

    /// Stops the connector with exit 1 and `reason` (already free of secrets): for what no
    /// retry can mend, such as the outside system refusing the login. What is in flight is
    /// not committed, and is delivered again at the next start.
    pub fn fail(&self, reason: impl Into<String>) {
        let reason = reason.into();
        self.failed.send_if_modified(|slot| {
            if slot.is_some() {
                return false;
            }
            *slot = Some(reason);
            true
        });
    }

    /// Completes with the reason once [`SinkContext::fail`] was called.
    pub async fn failed(&self) -> String {
        let mut rx = self.failed.subscribe();
        let reason = rx.wait_for(|f| f.is_some()).await.map(|r| r.clone());
        match reason {
            Ok(r) => r.unwrap_or_default(),
            // The sender lives in this context, so it cannot be gone.
            Err(_) => std::future::pending().await,
        }
    }

    /// Says whether the outside system can be reached: `/readyz` answers 200 only while it
    /// can (and the hub can). A sink starts not ready until it says so.
    pub fn set_ready(&self, ready: bool) {
        self.health.set_upstream(ready);
    }

    pub fn health(&self) -> &Arc<Health> {
        &self.health
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn shutdown(&self) -> &Shutdown {
        &self.shutdown
    }
}

/// The protocol side of a sink: sends one record to the outside system.
pub trait Deliver: Send + Sync + 'static {
    fn deliver(
        &self,
        record: &ConsumedRecord,
    ) -> impl Future<Output = Result<(), DeliveryError>> + Send;
}

/// The protocol side of a sink that writes whole batches (files, SQL, object stores).
pub trait DeliverBatch: Send + Sync + 'static {
    /// Writes `batch` (in offset order) so that it is durable when this returns: the hub
    /// offset is committed only after. `Err` fails the batch as a whole: it is written again
    /// as `retry` says, and once retries are spent (or the error is permanent) every record
    /// of it follows `on_error`. `Ok` lists the records (by index) that failed for good on
    /// their own and follow `on_error`; the rest were delivered.
    fn deliver_batch(
        &self,
        batch: &[ConsumedRecord],
    ) -> impl Future<Output = Result<Vec<(usize, DeliveryError)>, DeliveryError>> + Send;
}

/// A writer shared with a task of its own (a keep-alive that watches the connection while
/// no records flow) delivers as itself.
impl<B: DeliverBatch> DeliverBatch for Arc<B> {
    fn deliver_batch(
        &self,
        batch: &[ConsumedRecord],
    ) -> impl Future<Output = Result<Vec<(usize, DeliveryError)>, DeliveryError>> + Send {
        (**self).deliver_batch(batch)
    }
}

/// How a sink reads, delivers and handles failures.
#[derive(Debug, Clone)]
pub struct SinkSettings {
    pub partition: u32,
    /// `consumer.partition: all`: the topic must have the one partition this reads.
    pub all_partitions: bool,
    /// Offsets are stored under this id; `None` never stores them.
    pub consumer_id: Option<String>,
    /// Where to start when no offset is stored.
    pub start: OffsetStart,
    pub batch_records: usize,
    /// Records in flight at once. Records with the same key are always delivered in order;
    /// with 1, every record is.
    pub concurrency: usize,
    pub retry: RetryConfig,
    pub on_error: ErrorPolicy,
    pub dead_letter_topic: String,
    /// The connector's name, put in dead-letter headers.
    pub connector: String,
    /// Secret values to mask in error text written to the dead-letter topic.
    pub secrets: Vec<String>,
}

struct Failure {
    index: usize,
    attempts: u32,
    error: DeliveryError,
}

/// What a sink runs on: the hub and its topic, how it reads and delivers, the filter and
/// shape chain and the shared services. Run it with [`SinkRun::per_record`] or
/// [`SinkRun::batched`].
pub struct SinkRun<'a> {
    pub hub: &'a Hub,
    pub topic: &'a str,
    pub settings: SinkSettings,
    pub chain: Option<smartmodule_host::Chain>,
    pub health: Arc<Health>,
    pub metrics: Arc<Metrics>,
    pub shutdown: Shutdown,
}

impl SinkRun<'_> {
    /// Runs until shutdown, or until a record fails under `on_error: stop`, delivering one
    /// record at a time (concurrently by key, as `concurrency` says).
    pub async fn per_record<D: Deliver>(self, deliver: Arc<D>) -> Result<(), PipelineError> {
        consume_loop(self, PerRecord(deliver)).await
    }

    /// The same, with each fetched batch (after the filter and shape stages) given to
    /// `deliver` whole.
    pub async fn batched<B: DeliverBatch>(self, deliver: Arc<B>) -> Result<(), PipelineError> {
        consume_loop(self, Batched(deliver)).await
    }
}

/// How a fetched batch reaches the outside system.
trait SinkSide {
    fn deliver(
        &self,
        batch: &Arc<Vec<ConsumedRecord>>,
        settings: &Arc<SinkSettings>,
        metrics: &Arc<Metrics>,
        shutdown: &Shutdown,
    ) -> impl Future<Output = Batch> + Send;
}

struct PerRecord<D>(Arc<D>);

impl<D: Deliver> SinkSide for PerRecord<D> {
    async fn deliver(
        &self,
        batch: &Arc<Vec<ConsumedRecord>>,
        settings: &Arc<SinkSettings>,
        metrics: &Arc<Metrics>,
        shutdown: &Shutdown,
    ) -> Batch {
        deliver_batch(batch, &self.0, settings, metrics, shutdown).await
    }
}

struct Batched<B>(Arc<B>);

impl<B: DeliverBatch> SinkSide for Batched<B> {
    /// The whole batch with retries; a write in progress is not interrupted by shutdown (the
    /// grace period bounds it), a wait between attempts is.
    async fn deliver(
        &self,
        batch: &Arc<Vec<ConsumedRecord>>,
        settings: &Arc<SinkSettings>,
        metrics: &Arc<Metrics>,
        shutdown: &Shutdown,
    ) -> Batch {
        let started = Instant::now();
        let mut backoff = Backoff::from_config(&settings.retry);
        let max = settings.retry.max_attempts.max(1);
        let mut attempt = 1;
        loop {
            match self.0.deliver_batch(batch).await {
                Ok(rejected) => {
                    let mut failures: Vec<Failure> = rejected
                        .into_iter()
                        .filter(|(i, _)| *i < batch.len())
                        .map(|(index, error)| Failure {
                            index,
                            attempts: attempt,
                            error,
                        })
                        .collect();
                    failures.sort_by_key(|f| f.index);
                    failures.dedup_by_key(|f| f.index);
                    let delivered = batch.len() - failures.len();
                    let bytes: usize = batch.iter().map(|r| r.record.size()).sum();
                    metrics.records_out.inc_by(delivered as u64);
                    metrics.bytes_out.inc_by(bytes as u64);
                    metrics.observe_latency(started.elapsed());
                    return Batch::Done(failures);
                }
                Err(error) if !error.retryable || attempt >= max => {
                    let failures = (0..batch.len())
                        .map(|index| Failure {
                            index,
                            attempts: attempt,
                            error: error.clone(),
                        })
                        .collect();
                    return Batch::Done(failures);
                }
                Err(error) => {
                    metrics.retries.inc();
                    let wait = backoff.next_delay();
                    tracing::warn!(from_offset = batch[0].offset, records = batch.len(), attempt, error = %error.message, retry_in_ms = wait.as_millis() as u64, "Writing the batch failed; retrying.");
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = shutdown.wait() => return Batch::Interrupted,
                    }
                    attempt += 1;
                }
            }
        }
    }
}

async fn consume_loop<S: SinkSide>(run: SinkRun<'_>, deliver: S) -> Result<(), PipelineError> {
    let SinkRun {
        hub,
        topic,
        settings,
        mut chain,
        health,
        metrics,
        shutdown,
    } = run;
    if settings.all_partitions
        && let Some(t) = hub.topic(topic).await?
        && t.partitions > 1
    {
        return Err(HubError::Invalid(format!(
            "consumer.partition: all: topic {topic:?} has {} partitions, and a sink reads one \
             partition for now; run one sink per partition with consumer.partition: N",
            t.partitions
        ))
        .into());
    }
    let mut consumer = hub
        .consumer(
            topic,
            settings.partition,
            settings.consumer_id.as_deref(),
            settings.start,
        )
        .await?;
    health.set_hub(true);
    let mut dead_letter: Option<Producer> = None;
    let settings = Arc::new(settings);
    // The batch read while the one before it was being delivered.
    let mut next: Option<Vec<ConsumedRecord>> = None;
    // The offset after the last delivered batch, committed while the next one is delivered
    // (or before waiting for more records): a crash repeats at most that one batch more.
    let mut uncommitted: Option<i64> = None;
    loop {
        let batch = match next.take() {
            Some(b) => b,
            None => {
                if let Some(o) = uncommitted.take() {
                    consumer.commit(o).await?;
                }
                tokio::select! {
                    biased;
                    _ = shutdown.wait() => return Ok(()),
                    r = consumer.fetch(settings.batch_records, Duration::from_millis(500)) => r?,
                }
            }
        };
        let Some(last) = batch.last().map(|r| r.offset) else {
            continue;
        };
        metrics.records_in.inc_by(batch.len() as u64);
        metrics
            .bytes_in
            .inc_by(batch.iter().map(|r| r.record.size() as u64).sum());
        // The filter and shape stages: records a module rejects join the delivery failures
        // and follow on_error like them.
        let mut rejected: Vec<(ConsumedRecord, String)> = Vec::new();
        let batch = match chain.as_mut() {
            None => batch,
            Some(chain) => {
                let inputs: Vec<Record> = batch.iter().map(|c| c.record.clone()).collect();
                let (out, rejections) = crate::transform::apply(chain, &inputs);
                let mut last_offset = batch[0].offset;
                let shaped: Vec<ConsumedRecord> = out
                    .into_iter()
                    .map(|(source, record)| {
                        if let Some(i) = source {
                            last_offset = batch[i].offset;
                        }
                        ConsumedRecord {
                            topic: batch[0].topic.clone(),
                            partition: batch[0].partition,
                            offset: last_offset,
                            record,
                        }
                    })
                    .collect();
                metrics.records_filtered.inc_by(
                    (batch.len() as u64).saturating_sub((shaped.len() + rejections.len()) as u64),
                );
                for r in rejections {
                    let consumed = match r.source {
                        Some(i) => batch[i].clone(),
                        None => ConsumedRecord {
                            topic: batch[0].topic.clone(),
                            partition: batch[0].partition,
                            offset: batch[0].offset,
                            record: r.record,
                        },
                    };
                    rejected.push((consumed, format!("transform: {}", r.reason)));
                }
                shaped
            }
        };
        for (rec, message) in rejected {
            let f = Failure {
                index: 0,
                attempts: 0,
                error: DeliveryError::permanent(message),
            };
            handle_failure(
                &rec,
                &f,
                hub,
                &mut dead_letter,
                &settings,
                &health,
                &metrics,
            )
            .await?;
        }
        let batch = Arc::new(batch);
        // While this batch is delivered, the one before it is committed and the next is
        // read from the hub (what is already there, without waiting); the next is delivered
        // only after this one, so the order and the commits' order stay as they were.
        let (outcome, prefetched) = tokio::join!(
            deliver.deliver(&batch, &settings, &metrics, &shutdown),
            async {
                if let Some(o) = uncommitted.take() {
                    consumer.commit(o).await?;
                }
                consumer.fetch(settings.batch_records, Duration::ZERO).await
            }
        );
        let prefetched = prefetched?;
        next = (!prefetched.is_empty()).then_some(prefetched);
        let failures = match outcome {
            Batch::Done(f) => f,
            Batch::Interrupted => {
                // Shutdown mid-batch: not committed, redelivered after a restart.
                tracing::info!(
                    from_offset = batch[0].offset,
                    "Stopped mid-batch; it will be delivered again after a restart."
                );
                return Ok(());
            }
            Batch::Panicked(e) => {
                return Err(PipelineError::Task {
                    what: format!(
                        "delivering the batch from offset {} failed",
                        batch[0].offset
                    ),
                    source: e,
                });
            }
        };
        for f in failures {
            let rec = &batch[f.index];
            handle_failure(rec, &f, hub, &mut dead_letter, &settings, &health, &metrics).await?;
        }
        if settings.consumer_id.is_some() {
            uncommitted = Some(last + 1);
        }
    }
}

/// Applies on_error to a record that failed for good.
async fn handle_failure(
    rec: &ConsumedRecord,
    f: &Failure,
    hub: &Hub,
    dead_letter: &mut Option<Producer>,
    settings: &SinkSettings,
    health: &Health,
    metrics: &Metrics,
) -> Result<(), PipelineError> {
    metrics.records_failed.inc();
    match settings.on_error {
        ErrorPolicy::Stop => {
            return Err(PipelineError::Stopped {
                offset: rec.offset,
                attempts: f.attempts,
                message: crate::config::secrets_masked(&f.error.message, &settings.secrets),
            });
        }
        ErrorPolicy::Skip => {
            tracing::warn!(offset = rec.offset, attempts = f.attempts, error = %f.error.message, "Record not delivered; skipped as on_error says.");
        }
        ErrorPolicy::DeadLetter => {
            let producer = match dead_letter {
                Some(p) => p,
                None => {
                    hub.ensure_topic(&settings.dead_letter_topic, true, None)
                        .await?;
                    dead_letter.insert(hub.producer(&settings.dead_letter_topic).await?)
                }
            };
            let dl = dead_letter_record(rec, f, settings);
            send_with_retry(producer, Arc::new(vec![dl]), health, metrics).await?;
            metrics.records_dead_lettered.inc();
            tracing::warn!(offset = rec.offset, attempts = f.attempts, error = %f.error.message, topic = %settings.dead_letter_topic, "Record not delivered; written to the dead-letter topic.");
        }
    }
    Ok(())
}

fn dead_letter_record(rec: &ConsumedRecord, f: &Failure, settings: &SinkSettings) -> Record {
    let connector = &settings.connector;
    let mut r = rec.record.clone();
    for (k, v) in [
        (
            "runnel-error",
            crate::config::secrets_masked(&f.error.message, &settings.secrets),
        ),
        ("runnel-attempts", f.attempts.to_string()),
        ("runnel-topic", rec.topic.clone()),
        ("runnel-partition", rec.partition.to_string()),
        ("runnel-offset", rec.offset.to_string()),
        ("runnel-connector", connector.to_string()),
    ] {
        r.headers.push((k.to_string(), Bytes::from(v)));
    }
    r
}

/// How delivering a batch ended.
enum Batch {
    /// Every record delivered or failed for good (these, in offset order).
    Done(Vec<Failure>),
    /// Shutdown came first.
    Interrupted,
    /// The connector's deliver panicked.
    Panicked(tokio::task::JoinError),
}

async fn deliver_batch<D: Deliver>(
    batch: &Arc<Vec<ConsumedRecord>>,
    deliver: &Arc<D>,
    settings: &Arc<SinkSettings>,
    metrics: &Arc<Metrics>,
    shutdown: &Shutdown,
) -> Batch {
    // Under `stop`, nothing after a failed record is sent: the restart begins there.
    let stop_early = settings.on_error == ErrorPolicy::Stop;
    if settings.concurrency <= 1 {
        let mut failures = Vec::new();
        for i in 0..batch.len() {
            match deliver_one(&**deliver, batch, i, settings, metrics, shutdown).await {
                None => return Batch::Interrupted,
                Some(None) => {}
                Some(Some(f)) => {
                    failures.push(f);
                    if stop_early {
                        break;
                    }
                }
            }
        }
        return Batch::Done(failures);
    }
    // Groups of indexes that must go in order: one per key, one per keyless record.
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut by_key: HashMap<&[u8], usize> = HashMap::new();
    for (i, r) in batch.iter().enumerate() {
        match &r.record.key {
            Some(k) => {
                let g = *by_key.entry(k.as_ref()).or_insert_with(|| {
                    groups.push(Vec::new());
                    groups.len() - 1
                });
                groups[g].push(i);
            }
            None => groups.push(vec![i]),
        }
    }
    let permits = Arc::new(Semaphore::new(settings.concurrency));
    let mut tasks = tokio::task::JoinSet::new();
    for group in groups {
        let (batch, deliver, settings, metrics, shutdown, permits) = (
            batch.clone(),
            deliver.clone(),
            settings.clone(),
            metrics.clone(),
            shutdown.clone(),
            permits.clone(),
        );
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await.ok()?;
            let mut failures = Vec::new();
            for i in group {
                if let Some(f) =
                    deliver_one(&*deliver, &batch, i, &settings, &metrics, &shutdown).await?
                {
                    failures.push(f);
                    if stop_early {
                        break;
                    }
                }
            }
            Some(failures)
        });
    }
    let mut failures = Vec::new();
    let mut interrupted = false;
    let mut panicked = None;
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(Some(f)) => failures.extend(f),
            Ok(None) => interrupted = true,
            Err(e) => panicked = Some(e),
        }
    }
    if let Some(e) = panicked {
        return Batch::Panicked(e);
    }
    if interrupted {
        return Batch::Interrupted;
    }
    failures.sort_by_key(|f| f.index);
    Batch::Done(failures)
}

/// One record with retries. `Some(None)`: delivered; `Some(Some(f))`: failed for good;
/// `None`: shutdown came first.
async fn deliver_one<D: Deliver>(
    deliver: &D,
    batch: &[ConsumedRecord],
    index: usize,
    settings: &SinkSettings,
    metrics: &Metrics,
    shutdown: &Shutdown,
) -> Option<Option<Failure>> {
    let rec = &batch[index];
    let started = Instant::now();
    let mut backoff = Backoff::from_config(&settings.retry);
    let max = settings.retry.max_attempts.max(1);
    let mut attempt = 1;
    loop {
        match deliver.deliver(rec).await {
            Ok(()) => {
                metrics.records_out.inc();
                metrics.bytes_out.inc_by(rec.record.size() as u64);
                metrics.observe_latency(started.elapsed());
                return Some(None);
            }
            Err(error) if !error.retryable || attempt >= max => {
                return Some(Some(Failure {
                    index,
                    attempts: attempt,
                    error,
                }));
            }
            Err(error) => {
                metrics.retries.inc();
                let wait = backoff.next_delay();
                tracing::debug!(offset = rec.offset, attempt, error = %error.message, retry_in_ms = wait.as_millis() as u64, "Delivery failed; retrying.");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.wait() => return None,
                }
                attempt += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::HubUrl;

    /// Runs a source with `protocol` into a topic of a new local hub; what the topic then
    /// holds, and the source's metrics.
    async fn run_into_topic<F, Fut>(
        settings: SourceSettings,
        protocol: F,
    ) -> (Vec<ConsumedRecord>, Arc<Metrics>)
    where
        F: FnOnce(SourceContext) -> Fut,
        Fut: Future<Output = Result<(), BoxError>>,
    {
        let dir = tempfile::tempdir().unwrap();
        let url: HubUrl = format!("local:{}", dir.path().join("hub.db").display())
            .parse()
            .unwrap();
        let hub = Hub::connect(&url).await.unwrap();
        hub.create_topic("t", 1).await.unwrap();
        let (_trigger, shutdown) = shutdown::channel();
        let metrics = Metrics::new("t", "test");
        run_source(
            &hub,
            "t",
            settings,
            Arc::default(),
            metrics.clone(),
            shutdown,
            protocol,
        )
        .await
        .unwrap();
        let mut c = hub
            .consumer("t", 0, None, OffsetStart::Beginning)
            .await
            .unwrap();
        (c.fetch(100_000, Duration::ZERO).await.unwrap(), metrics)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batches_stop_at_batch_bytes_and_keep_order() {
        let settings = SourceSettings {
            linger: Duration::from_millis(5),
            batch_bytes: 250,
            batch_records: 64,
            transforms: None,
            checkpoints: None,
        };
        let (got, metrics) = run_into_topic(settings, |ctx| async move {
            for i in 0..500 {
                let acked = ctx.send_acked(Record::new(format!("{i:0100}"))).await?;
                if i % 100 == 0 {
                    // Acks arrive only once the record is in the hub.
                    acked.await?;
                }
            }
            Ok(())
        })
        .await;
        assert_eq!(got.len(), 500);
        for (i, r) in got.iter().enumerate() {
            assert_eq!(r.record.value, format!("{i:0100}").as_bytes());
        }
        assert_eq!(metrics.records_out.get(), 500);
    }

    /// A read longer than the producer stage's channel goes in chunks, in order, mixed with
    /// single records, and every one is counted in.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn send_many_keeps_order_past_the_channel_size() {
        let settings = SourceSettings {
            batch_records: 100,
            ..SourceSettings::default()
        };
        let (got, metrics) = run_into_topic(settings, |ctx| async move {
            let mut next = 0;
            for round in 0..5 {
                let read: Vec<Record> = (next..next + 1000 * round)
                    .map(|i| Record::new(i.to_string()))
                    .collect();
                next += read.len();
                ctx.send_many(read).await?;
                ctx.send(Record::new(next.to_string())).await?;
                next += 1;
            }
            Ok(())
        })
        .await;
        assert_eq!(got.len(), 10_005);
        for (i, r) in got.iter().enumerate() {
            assert_eq!(r.record.value, i.to_string().as_bytes());
        }
        assert_eq!(metrics.records_in.get(), 10_005);
        assert_eq!(metrics.records_out.get(), 10_005);
    }
}
