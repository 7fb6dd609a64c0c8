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

use std::process::ExitCode;

use runnel_runtime::{
    BoxError, ConsumedRecord, app,
    config::ConnectorConfig,
    pipeline::{DeliverBatch, DeliveryError, SinkContext},
};
use sql_sink::{Database, SqlSink, SqlSinkConfig};

/// What one attempt at a batch gives: the records refused for good (by index), or a
/// failure of the whole batch.
type Outcome = Result<Vec<(usize, DeliveryError)>, DeliveryError>;

enum Writer {
    Postgres(Box<postgres::Postgres>),
    Sqlite(sqlite::Sqlite),
}

impl DeliverBatch for Writer {
    async fn deliver_batch(&self, batch: &[ConsumedRecord]) -> Outcome {
        let mut refused = Vec::new();
        let mut rows = Vec::with_capacity(batch.len());
        for (i, r) in batch.iter().enumerate() {
            match model::row(&r.record.value) {
                Ok(row) => rows.push((i, row)),
                Err(why) => refused.push((i, DeliveryError::permanent(why))),
            }
        }
        if rows.is_empty() {
            return Ok(refused);
        }
        let mut failed = match self {
            Writer::Postgres(p) => p.write(rows).await?,
            Writer::Sqlite(s) => s.write(rows).await?,
        };
        refused.append(&mut failed);
        Ok(refused)
    }
}

fn make(config: &ConnectorConfig<SqlSinkConfig>, ctx: &SinkContext) -> Result<Writer, BoxError> {
    let c = &config.config;
    Ok(match c.database()? {
        Database::Postgres(url) => Writer::Postgres(Box::new(postgres::Postgres::new(
            &url,
            c.connect_timeout.0,
            ctx.clone(),
        )?)),
        Database::Sqlite(path) => Writer::Sqlite(sqlite::Sqlite::open(&path, ctx)?),
    })
}

fn main() -> ExitCode {
    app::batch_sink_main::<SqlSink, _, _>(|config, ctx| {
        let w = make(config, ctx)?;
        if let Writer::Postgres(p) = &w {
            tokio::spawn(p.keep());
        }
        Ok(w)
    })
}
