//! sql-sink: each batch of records (operations of Fluvio's SQL model) is written in one
//! transaction with prepared statements, and the hub offset is committed only after the
//! commit. A record that is not an operation, or a value that does not parse as its type
//! (Fluvio's rules), follows `on_error` with the column and the reason, and never reaches
//! the database. A statement the database refuses (a missing column, a constraint) sends
//! the batch through again one record at a time, each in a savepoint, so only the refused
//! records follow `on_error`. A lost connection fails the batch, which is written again on
//! a new one (at least once).

mod model;
mod postgres;
mod sqlite;

use std::{collections::HashMap, process::ExitCode};

use model::{Mark, Place};
use runnel_runtime::{
    BoxError, ConsumedRecord, app,
    config::ConnectorConfig,
    pipeline::{DeliverBatch, DeliveryError, SinkContext},
};
use sql_sink::{Guarantee, SqlSink, SqlSinkConfig};
use tokio::sync::Mutex;

/// What one attempt at a batch gives: the records refused for good (by index), or a
/// failure of the whole batch.
type Outcome = Result<Vec<(usize, DeliveryError)>, DeliveryError>;

enum Database {
    Postgres(Box<postgres::Postgres>),
    Sqlite(sqlite::Sqlite),
}

/// The next offset of each topic partition as the database holds it.
type Known = Mutex<HashMap<(String, u32), i64>>;

struct Writer {
    db: Database,
    /// Under `delivery: exactly-once`, the consumer id the marks are kept under, and the
    /// next offset of each topic partition as the database holds it.
    exactly_once: Option<(String, Known)>,
    /// json-sql's mapping, for plain JSON records.
    mapping: Option<sql_sink::Mapping>,
}

impl Writer {
    async fn write(&self, rows: Vec<(usize, model::Row)>, mark: Option<&Mark>) -> Outcome {
        match &self.db {
            Database::Postgres(p) => p.write(rows, mark).await,
            Database::Sqlite(s) => s.write(rows, mark).await,
        }
    }

    /// The next offset the database holds for the batch's partition (read once, then
    /// kept as this writer moves it).
    async fn next_offset(
        &self,
        consumer: &str,
        first: &ConsumedRecord,
    ) -> Result<i64, DeliveryError> {
        let key = (first.topic.clone(), first.partition);
        if let Some((_, known)) = &self.exactly_once
            && let Some(n) = known.lock().await.get(&key)
        {
            return Ok(*n);
        }
        let at = Place {
            consumer,
            topic: &first.topic,
            partition: i64::from(first.partition),
        };
        let stored = match &self.db {
            Database::Postgres(db) => db.stored(at).await?,
            Database::Sqlite(db) => db.stored(at).await?,
        };
        let n = stored.unwrap_or(0);
        if let Some((_, known)) = &self.exactly_once {
            known.lock().await.insert(key, n);
        }
        if n > 0 {
            tracing::info!(topic = %first.topic, partition = first.partition, next_offset = n, "Records before the offset kept in runnel_offsets are in the database already; they are passed over.");
        }
        Ok(n)
    }
}

impl DeliverBatch for Writer {
    async fn deliver_batch(&self, batch: &[ConsumedRecord]) -> Outcome {
        let (Some(first), Some(last)) = (batch.first(), batch.last()) else {
            return Ok(Vec::new());
        };
        // Under exactly-once, what the database already holds is passed over as delivered.
        let (from, mark) = match &self.exactly_once {
            None => (i64::MIN, None),
            Some((consumer, _)) => {
                let from = self.next_offset(consumer, first).await?;
                let mark = Mark {
                    consumer: consumer.clone(),
                    topic: first.topic.clone(),
                    partition: i64::from(first.partition),
                    next: last.offset + 1,
                };
                (from, (last.offset >= from).then_some(mark))
            }
        };
        let mut refused = Vec::new();
        let mut rows = Vec::with_capacity(batch.len());
        for (i, r) in batch.iter().enumerate() {
            if r.offset < from {
                continue;
            }
            let row = match &self.mapping {
                Some(m) => model::mapped_row(m, &r.record.value),
                None => model::row(&r.record.value),
            };
            match row {
                Ok(row) => rows.push((i, row)),
                Err(why) => refused.push((i, DeliveryError::permanent(why))),
            }
        }
        if rows.is_empty() {
            return Ok(refused);
        }
        let mut failed = self.write(rows, mark.as_ref()).await?;
        if let (Some(m), Some((_, known))) = (&mark, &self.exactly_once) {
            known
                .lock()
                .await
                .insert((m.topic.clone(), first.partition), m.next);
        }
        refused.append(&mut failed);
        Ok(refused)
    }
}

fn make(config: &ConnectorConfig<SqlSinkConfig>, ctx: &SinkContext) -> Result<Writer, BoxError> {
    let c = &config.config;
    let exactly_once = (c.delivery == Guarantee::ExactlyOnce).then(|| {
        (
            config.meta.consumer_id().to_string(),
            Mutex::new(HashMap::new()),
        )
    });
    let db =
        match c.database()? {
            sql_sink::Database::Postgres(url) => Database::Postgres(Box::new(
                postgres::Postgres::new(&url, c.connect_timeout.0, ctx.clone())?,
            )),
            sql_sink::Database::Sqlite(path) => Database::Sqlite(sqlite::Sqlite::open(&path, ctx)?),
        };
    Ok(Writer {
        db,
        exactly_once,
        mapping: c.mapping.clone(),
    })
}

fn main() -> ExitCode {
    app::batch_sink_main::<SqlSink, _, _>(|config, ctx| {
        let w = make(config, ctx)?;
        if let Database::Postgres(p) = &w.db {
            tokio::spawn(p.keep());
        }
        Ok(w)
    })
}
